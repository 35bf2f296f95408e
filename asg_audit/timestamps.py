"""The one definition of what a timestamp is, used by the normaliser's SQL and by `track`.

RFC 3339 date-times with a zone, or integer epoch seconds, within 2000-2100 (UTC).
`parse_timestamp` applies these rules to one value (for `track`); `timestamp_sql` and
`timestamp_problem_sql` write the same rules as DuckDB SQL for `asg_audit.normalize`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Final

__all__ = [
    "JSON_INT_TYPES",
    "RFC3339_PATTERN",
    "TIMESTAMP_MAX",
    "TIMESTAMP_MIN",
    "TIMESTAMP_PROBLEMS",
    "parse_timestamp",
    "timestamp_problem_sql",
    "timestamp_sql",
]

# The types DuckDB's `json_type` gives an integer.
JSON_INT_TYPES: Final = "('UBIGINT', 'BIGINT')"
# RFC 3339 (section 5.6) date-times with a zone ('T', 't' or a space between date and time;
# 'Z', 'z' or an offset, `+0200` and `+02` read as `+02:00`), or integer epoch seconds, and
# either way an instant within 2000-01-01 .. 2100-01-01 (UTC).
TIMESTAMP_MIN: Final = datetime(2000, 1, 1, tzinfo=UTC)
TIMESTAMP_MAX: Final = datetime(2100, 1, 1, tzinfo=UTC)
_EPOCH_MIN: Final = int(TIMESTAMP_MIN.timestamp())
_EPOCH_MAX: Final = int(TIMESTAMP_MAX.timestamp())
# The patterns are full matches written for both Python `re` and DuckDB's RE2.
_D2 = "[0-9]{2}"
_DATE = "([0-9]{4})-([0-9]{2})-([0-9]{2})"  # the calendar (2026-02-30) is checked by parsing
_HOUR = "(?:[01][0-9]|2[0-3])"
_MINUTE = "[0-5][0-9]"  # a second too: 60 (a leap second) is not taken
_FRACTION = "(?:[.]([0-9]+))?"  # any number of digits, truncated to microseconds
RFC3339_PATTERN: Final = (
    f"{_DATE}[Tt ]({_HOUR}):({_MINUTE}):({_MINUTE}){_FRACTION}"
    f"(?:[Zz]|([+-])({_HOUR})(?::?({_MINUTE}))?)"
)
TS_NOT_A_TIMESTAMP: Final = (
    "not an RFC 3339 timestamp (a real date and time with a zone, as in 2026-04-08T21:00:00Z)"
    " nor integer epoch seconds"
)
TS_OUT_OF_RANGE: Final = "outside 2000-2100"
TS_EPOCH_OUT_OF_RANGE: Final = "epoch seconds outside 2000-2100"
TS_NO_SUCH_DATE: Final = "no such date"
# Why a string that is not RFC 3339 is not: the first pattern it matches in full says.
_ZONE_LOOSE = f"(?:[Zz]|[+-]{_D2}(?::?{_D2})?)"
TIMESTAMP_PROBLEMS: Final = (
    (
        f"{_DATE}(?:[Tt ]{_D2}:{_D2}(?::{_D2}{_FRACTION})?)?",
        "a date alone or a time without a zone is ambiguous (never taken as UTC)",
    ),
    (
        f"{_DATE}[Tt ]{_D2}:{_D2}:{_D2}{_FRACTION}[+-]{_D2}:{_D2}:{_D2}",
        "a zone offset has no seconds in RFC 3339",
    ),
    (
        f"{_DATE}[Tt ]{_HOUR}:{_MINUTE}:{_MINUTE}{_FRACTION}{_ZONE_LOOSE}",
        "zone offset out of range (hours 00-23, minutes 00-59)",
    ),
    (
        f"{_DATE}[Tt ]{_D2}:{_D2}:{_D2}{_FRACTION}{_ZONE_LOOSE}",
        "time out of range (hour 00-23, minute and second 00-59)",
    ),
)
_RFC3339 = re.compile(RFC3339_PATTERN)
_PROBLEMS = tuple((re.compile(pattern), message) for pattern, message in TIMESTAMP_PROBLEMS)


def parse_timestamp(value: object) -> datetime:
    """Return the UTC instant of an RFC 3339 string or integer epoch seconds, within 2000-2100.

    The normaliser's `bad_timestamp` rules, for `track`; raises ValueError saying what is wrong.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        if not _EPOCH_MIN <= value <= _EPOCH_MAX:
            raise ValueError(TS_EPOCH_OUT_OF_RANGE)
        return datetime.fromtimestamp(value, UTC)
    if not isinstance(value, str):
        raise ValueError(TS_NOT_A_TIMESTAMP)
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise ValueError(next((m for p, m in _PROBLEMS if p.fullmatch(value)), TS_NOT_A_TIMESTAMP))
    year, month, day, hour, minute, second, fraction, sign, off_hour, off_minute = match.groups()
    if not TIMESTAMP_MIN.year - 1 <= int(year) <= TIMESTAMP_MAX.year:
        raise ValueError(TS_OUT_OF_RANGE)
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    try:
        local = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micro, UTC
        )
    except ValueError:
        raise ValueError(TS_NO_SUCH_DATE) from None
    offset = timedelta(hours=int(off_hour or 0), minutes=int(off_minute or 0))
    instant = local + offset if sign == "-" else local - offset
    if not TIMESTAMP_MIN <= instant <= TIMESTAMP_MAX:
        raise ValueError(TS_OUT_OF_RANGE)
    return instant


def timestamp_sql(t: str, v: str) -> str:
    """Return SQL for the instant of a JSON value (type `t`, text `v`): null unless a timestamp.

    The rules of `parse_timestamp`. The usual form (`2026-04-08T21:00:47Z`) is checked first and
    without a regexp (it runs on every record): 20 characters, 'Z', in range by string order
    (fixed width), and strptime, which refuses what the cast lets by (hour 24, a space for a
    digit, a slash in the date); its one-digit fields and trailing blanks are ruled out by the
    length and the 'Z'. Anything else takes the full pattern.
    """
    lo, hi = (f"'{x:%Y-%m-%dT%H:%M:%SZ}'" for x in (TIMESTAMP_MIN, TIMESTAMP_MAX))
    usual = (
        f"strlen({v}) = 20 AND ends_with({v}, 'Z') AND {v} BETWEEN {lo} AND {hi}"
        f" AND try_strptime({v}, '%Y-%m-%dT%H:%M:%SZ') IS NOT NULL"
    )
    cast = f"TRY_CAST(upper({v}) AS TIMESTAMPTZ)"
    return (
        f"CASE WHEN ({t}) = 'VARCHAR' THEN CASE WHEN {usual} THEN TRY_CAST({v} AS TIMESTAMPTZ)"
        f" WHEN regexp_full_match({v}, '{RFC3339_PATTERN}')"
        f" AND {cast} BETWEEN TIMESTAMPTZ {lo} AND TIMESTAMPTZ {hi} THEN {cast} END"
        f" WHEN ({t}) IN {JSON_INT_TYPES} AND TRY_CAST({v} AS HUGEINT)"
        f" BETWEEN {_EPOCH_MIN} AND {_EPOCH_MAX} THEN to_timestamp(TRY_CAST({v} AS BIGINT))"
        " END"
    )


def timestamp_problem_sql(t: str, v: str) -> str:
    """Return SQL for why a value `timestamp_sql` refused is not a timestamp (as ValueError of
    `parse_timestamp` says), followed by the value."""
    years = f"'{TIMESTAMP_MIN.year - 1}' AND '{TIMESTAMP_MAX.year}'"
    problems = " ".join(
        f"WHEN regexp_full_match({v}, '{pattern}') THEN '{message}'"
        for pattern, message in TIMESTAMP_PROBLEMS
    )
    return (
        f"CASE WHEN ({t}) IN {JSON_INT_TYPES} THEN '{TS_EPOCH_OUT_OF_RANGE}'"
        f" WHEN ({t}) <> 'VARCHAR' THEN '{TS_NOT_A_TIMESTAMP}'"
        f" WHEN regexp_full_match({v}, '{RFC3339_PATTERN}') THEN CASE"
        f" WHEN substr({v}, 1, 4) NOT BETWEEN {years} THEN '{TS_OUT_OF_RANGE}'"
        f" WHEN TRY_CAST(upper({v}) AS TIMESTAMPTZ) IS NULL THEN '{TS_NO_SUCH_DATE}'"
        f" ELSE '{TS_OUT_OF_RANGE}' END"
        f" {problems} ELSE '{TS_NOT_A_TIMESTAMP}' END || ': ' || left({v}, 60)"
    )
