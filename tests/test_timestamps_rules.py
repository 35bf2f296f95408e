"""One set of timestamp rules: the normaliser's SQL and `parse_timestamp` (used by `track`) agree.

The normaliser checks the usual form (`2026-04-08T21:00:47Z`) without a regexp, and lets DuckDB's
cast read it; that cast is lenient (hour 24, a space for a digit, a slash in the date, a trailing
blank). These tests feed both sides near-misses of real timestamps and require the same instant,
or a rejection for the same reason.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import duckdb
from hypothesis import given, settings
from hypothesis import strategies as st

from asg_audit.model import RejectReason, Source
from asg_audit.normalize import RawRecord, normalise_records
from asg_audit.timestamps import parse_timestamp

REPO = Path(__file__).parents[1]
NOW = datetime(2026, 11, 1, tzinfo=UTC)
TEMPLATES = (
    "2026-04-08T21:00:47Z",
    "2000-01-01T00:00:00Z",
    "2100-01-01T00:00:00Z",
    "2099-12-31T23:59:59Z",
    "2024-02-29T12:34:56Z",
    "2026-04-08t23:00:47.5+02:00",
    "2026-04-08 09:00:47-1200",
)
ALPHABET = "0123456789 -:Tt.+/Zz\t"


def python_verdict(value: object) -> tuple[str, object]:
    """("ok", instant) or ("bad", why) from `parse_timestamp`."""
    try:
        return "ok", parse_timestamp(value)
    except ValueError as exc:
        return "bad", str(exc)


def normaliser_verdicts(values: list[object]) -> list[tuple[str, object]]:
    """("ok", settled_at) or ("bad", reject detail) from the normaliser, one per value."""
    records = [
        RawRecord(
            body=json.dumps({"task_id": "t1", "status": "settled", "settled_at": value}),
            source=Source.FILE,
            origin="f.jsonl",
            observed_at=NOW,
            origin_line=i,
        )
        for i, value in enumerate(values)
    ]
    batch = normalise_records(records)
    verdicts: dict[int, tuple[str, object]] = {}
    for row in batch.accepted.iter_rows(named=True):
        verdicts[row["origin_line"]] = ("ok", row["settled_at"])
    for row in batch.rejects.iter_rows(named=True):
        assert (row["reason"], row["field"]) == (RejectReason.BAD_TIMESTAMP, "settled_at"), row
        verdicts[row["origin_line"]] = ("bad", row["detail"])
    return [verdicts[i] for i in range(len(values))]


def assert_agree(values: list[object]) -> None:
    disagree = []
    for value, (kind, got) in zip(values, normaliser_verdicts(values), strict=True):
        want_kind, want = python_verdict(value)
        if kind == want_kind == "ok":
            same = got == want
        elif kind == want_kind == "bad":
            # the normaliser's detail is the reason, then the value
            same = str(got).startswith(f"{want}: ")
        else:
            same = False
        if not same:
            disagree.append((value, (kind, got), (want_kind, want)))
    assert disagree == []


def near_misses(template: str) -> list[str]:
    """Every string one character away from the template: changed, dropped or added."""
    out = {template}
    for i in range(len(template)):
        for c in ALPHABET:
            out.add(template[:i] + c + template[i + 1 :])
            out.add(template[:i] + c + template[i:])
        out.add(template[:i] + template[i + 1 :])
    return sorted(out)


def test_timestamps_near_misses_of_real_timestamps_agree() -> None:
    values = [v for template in TEMPLATES for v in near_misses(template)]
    assert_agree(values)


def test_timestamps_two_digit_fields_at_every_value_agree() -> None:
    # every hour, minute, second, offset hour and offset minute 00-99: the range checks
    values: list[object] = []
    for n in range(100):
        values += [
            f"2026-04-08T{n:02d}:00:47Z",
            f"2026-04-08T{n:02d}:00:00Z",  # DuckDB's cast takes 24:00:00 as the next day
            f"2026-04-08T21:{n:02d}:47Z",
            f"2026-04-08T21:00:{n:02d}Z",
            f"2026-04-08T21:00:47+{n:02d}:00",
            f"2026-04-08T21:00:47-00:{n:02d}",
            f"2026-04-{n:02d}T21:00:47Z",
            f"2026-{n:02d}-08T21:00:47.1Z",
            f"{1950 + n}-06-01T00:00:00Z",
            f"{2050 + n}-06-01T00:00:00+05:30",
        ]
    assert_agree(values)


def test_timestamps_epoch_seconds_and_other_json_types_agree() -> None:
    values: list[object] = [
        0,
        -1,
        946684799,
        946684800,
        1775682047,
        4102444800,
        4102444801,
        2**63,
        1775682047.0,
        1e3,
        True,
        None,
        "",
        "1775682047",
        [],
        {},
    ]
    values = [v for v in values if v is not None]  # null is an absent field, not a timestamp
    assert_agree(values)


timestamp_like = st.text(alphabet=st.sampled_from(ALPHABET), max_size=32)
shaped = st.builds(
    lambda date, sep, time, fraction, zone: f"{date}{sep}{time}{fraction}{zone}",
    st.from_regex(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", fullmatch=True),
    st.sampled_from(["T", "t", " ", "_", ""]),
    st.from_regex(r"[0-9]{1,3}:[0-9]{2}(:[0-9]{2})?", fullmatch=True),
    st.from_regex(r"(\.[0-9]{0,12})?", fullmatch=True),
    st.from_regex(r"([Zz]|[+-][0-9]{2}(:?[0-9]{2})?(:[0-9]{2})?)?", fullmatch=True),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(shaped | timestamp_like, min_size=1, max_size=40))
def test_timestamps_generated_strings_agree(values: list[str]) -> None:
    assert_agree(list(values))


def test_timestamps_ingest_stores_no_impossible_timestamp(tmp_path: Path) -> None:
    # the tester's file: every settled_at is impossible or outside 2000-2100
    bad = [
        "2026-04-08T21:00:47+99:99",
        "2026-04-08T21:00:47+24:00",
        "2026-04-08T21:00:47+00:60",
        "2026-04-08T24:00:00Z",
        "2026-04-08T21:00:47+05:00:30",
        "9999-12-31T23:59:59Z",
    ]
    lines = [
        json.dumps(
            {
                "task_id": f"ts{i}",
                "status": "settled",
                "bsv_txid": "a" * 64,
                "created_at": "2026-04-08T21:00:00Z",
                "settled_at": value,
            }
        )
        for i, value in enumerate(bad)
    ]
    lines.append(lines[0].replace("ts0", "good").replace(bad[0], "2026-04-08T21:00:47+14:00"))
    path = tmp_path / "ts.jsonl"
    path.write_text("\n".join(lines) + "\n")
    db = tmp_path / "audit.duckdb"
    proc = subprocess.run(
        [sys.executable, "-m", "asg_audit", "ingest", "--db", str(db), str(path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode in (0, 1), proc.stderr
    con = duckdb.connect(str(db), read_only=True)
    try:
        stored = con.execute("SELECT task_id, settled_at FROM observations").fetchall()
        rejected = con.execute(
            "SELECT origin_line, reason, field FROM rejects ORDER BY origin_line"
        ).fetchall()
    finally:
        con.close()
    assert stored == [("good", datetime(2026, 4, 8, 7, 0, 47, tzinfo=UTC))]
    assert rejected == [(i + 1, "bad_timestamp", "settled_at") for i in range(len(bad))]
