"""Fetch the provider's monthly usage and invoices into `billing_usage` and `billing_invoices`.

`GET /v1/billing/usage?month=YYYY-MM` is asked for every month with data: every month in which
a stored result settled or a task was created, plus the months the invoices name. Each answer
is stored raw (the evidence) and parsed (the figures the billing checks compare). The checks
themselves live in `asg_audit.reconcile`.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlencode

import httpx

from asg_audit import jsonload
from asg_audit.config import AuditConfig
from asg_audit.errors import (
    ApiStatusError,
    ApiTransientError,
    AuthError,
    ConfigError,
    StoreFileError,
)
from asg_audit.interrupts import is_interrupt
from asg_audit.model import MAX_SATS, path_text, printable
from asg_audit.ratelimit import parse_retry_after
from asg_audit.redaction import (
    Secret,
    check_http_url,
    clean_secret,
    data_secrets,
    display_url,
    error_text,
    redact,
)
from asg_audit.stopsignals import held_stops

if TYPE_CHECKING:
    import duckdb

__all__ = ["MONTH_RE", "BillingSummary", "fetch_billing", "months_with_data", "parse_usage"]

DEFAULT_TIMEOUT_S: Final = 30.0
DEFAULT_MAX_RETRIES: Final = 5
_MAX_RETRY_AFTER_S: Final = 60.0  # a longer Retry-After is waited this long, then asked again
# a month as the API and `billing --month` write it: YYYY-MM, 01 to 12
MONTH_RE: Final = re.compile(r"\d{4}-(0[1-9]|1[0-2])\Z")
_DATE_RE: Final = re.compile(r"\d{4}-\d{2}-\d{2}\Z")


@dataclass
class BillingSummary:
    """What one `fetch_billing` run stored."""

    run_id: str = ""
    months: list[str] = field(default_factory=list)
    invoices: int = 0
    requests: int = 0
    # impossible or missing figures in the answers (negative, fractional, beyond int64, sats
    # above the 21M BSV supply, a string, absent; daily rows not objects or outside the
    # month), stored as null
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """Return the human summary, one fact per line, control characters escaped (a note
        quotes the provider's invoice ids)."""
        return [
            f"usage months fetched: {len(self.months)} ({', '.join(self.months) or 'none'})",
            f"invoices stored: {self.invoices}",
            f"requests: {self.requests}",
            *(f"note: {printable(note, one_line=True)}" for note in self.notes),
        ]


def months_with_data(con: Any) -> list[str]:
    """Return the "YYYY-MM" months in which a stored task settled or was created, sorted."""
    rows = con.execute(
        """SELECT DISTINCT strftime(ts AT TIME ZONE 'UTC', '%Y-%m') FROM (
            SELECT settled_at AS ts FROM results UNION ALL SELECT created_at FROM results
            UNION ALL SELECT created_at FROM submissions) WHERE ts IS NOT NULL ORDER BY 1"""
    ).fetchall()
    return [r[0] for r in rows]


_INT64_MAX: Final = 2**63 - 1
# DECIMAL(18, 2): 16 digits before the point
_USD_LIMIT: Final = 10**16
# The figures of a usage answer (and of an invoice, and of a daily row) that are counts of
# tasks or amounts of sats: whole numbers, 0 or more, within the store's BIGINT.
USAGE_FIGURES: Final = (
    "tasks_settled",
    "total_cost_sats",
    "worker_payouts_sats",
    "platform_fee_sats",
)
DAILY_FIGURES: Final = ("tasks", "cost_sats")
INVOICE_FIGURES: Final = ("tasks_settled", "total_cost_sats")


def _is_sats(key: str) -> bool:
    """Return whether a figure named `key` is an amount of sats (else a count of tasks)."""
    return key.endswith("sats")


def _figure_problem(value: Any, sats: bool = False) -> str | None:
    """Return why a present figure (a count, or sats when `sats`) is impossible, or None when
    it is valid. An amount of sats above the 21M BSV supply is impossible."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return "not a number"
    try:
        number = int(str(value))  # sats are integers; "12.5" sats is not a valid amount
    except ValueError:
        return "not a whole number"
    if isinstance(value, str):  # "2": a JSON string, not a number (the spec's figures are numbers)
        return "a string, not a number"
    if number < 0:
        return "negative"
    if number > _INT64_MAX:
        return "beyond int64"
    if sats and number > MAX_SATS:
        return "beyond the 21M BSV supply"
    return None


def _int(body: dict[str, Any], key: str) -> int | None:
    """Return a count or sats figure, or None when it is absent or impossible."""
    value = body.get(key)
    if value is None or _figure_problem(value, _is_sats(key)) is not None:
        return None
    return int(str(value))


def _shown(value: Any) -> str:
    """Return a figure as it may be printed: numbers as written (shortened), else its type."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        text = str(value)
        return text if len(text) <= 30 else f"a {len(text)}-character number"
    if isinstance(value, str):
        return f"a string of {len(value)} character(s)"
    return f"a JSON {_JSON_TYPES.get(type(value), type(value).__name__)}"


_JSON_TYPES: Final = {dict: "object", list: "array", bool: "bool", type(None): "null"}
# `why` of a figure the answer does not give at all (absent, or null)
MISSING: Final = "missing"


def _absent(body: dict[str, Any], key: str) -> str:
    """Return how a missing value is shown: `null` when the key is there, else `nothing`."""
    return "null" if key in body else "nothing"


def _month_of(body: dict[str, Any], month: str | None) -> str | None:
    if month is not None:
        return month
    said = body.get("month")
    return said if isinstance(said, str) and MONTH_RE.match(said) else None


def _day(value: Any, month: str | None) -> tuple[date | None, str | None]:
    """Return a daily row's date, or None and why it is impossible (absent, not a date, or a
    day of another month than the answer's)."""
    if value is None:
        return None, MISSING
    if not isinstance(value, str) or not _DATE_RE.match(value):
        return None, "not a date (YYYY-MM-DD)"
    try:
        day = datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        return None, "not a date (YYYY-MM-DD)"
    if month is not None and value[:7] != month:
        return None, f"not a day of {month}"
    return day, None


def _daily_rows(body: dict[str, Any]) -> list[Any] | None:
    rows = body.get("daily_breakdown")
    return rows if isinstance(rows, list) else None


def figure_problems(
    body: dict[str, Any], figures: tuple[str, ...], month: str | None = None
) -> list[tuple[str, str, str]]:
    """Return (field, value shown, why) of each impossible figure of an answer.

    Impossible: not a whole number (a number written as a string included), negative, or
    beyond int64, or sats above the 21M BSV supply. For usage answers (`USAGE_FIGURES`) also
    a missing figure (absent or null: nothing could be checked), a `daily_breakdown` that
    is missing or not a list, and daily rows (`daily_breakdown[DATE].FIELD`, or `[#i]` for a
    row without a usable date) that are not objects, miss a figure or a date, or are dated
    outside `month` (by default the answer's own `month`). Such figures are stored as null.
    """
    usage = figures == USAGE_FIGURES
    out = []
    for key in figures:
        value = body.get(key)
        if value is None:
            if usage:
                out.append((key, _absent(body, key), MISSING))
            continue
        why = _figure_problem(value, _is_sats(key))
        if why is not None:
            out.append((key, _shown(value), why))
    if not usage:
        return out
    month = _month_of(body, month)
    daily = body.get("daily_breakdown")
    if daily is None:
        out.append(("daily_breakdown", _absent(body, "daily_breakdown"), MISSING))
    elif not isinstance(daily, list):
        out.append(("daily_breakdown", _shown(daily), "not a list of daily rows"))
    for i, row in enumerate(daily if isinstance(daily, list) else []):
        if not isinstance(row, dict):
            out.append((f"daily_breakdown[#{i}]", _shown(row), "not a daily row (an object)"))
            continue
        date_value = row.get("date")
        day, date_why = _day(date_value, month)
        other_month = date_why is not None and date_why.startswith("not a day of")
        where = str(date_value) if day is not None or other_month else f"#{i}"
        if date_why == MISSING:
            out.append((f"daily_breakdown[{where}].date", _absent(row, "date"), MISSING))
        elif date_why is not None:
            shown = str(date_value) if other_month else _shown(date_value)
            out.append((f"daily_breakdown[{where}].date", shown, date_why))
        for name in DAILY_FIGURES:
            value = row.get(name)
            if value is None:
                out.append((f"daily_breakdown[{where}].{name}", _absent(row, name), MISSING))
                continue
            why = _figure_problem(value, _is_sats(name))
            if why is not None:
                out.append((f"daily_breakdown[{where}].{name}", _shown(value), why))
    usd = body.get("total_cost_usd_estimate")
    if usd is not None and _usd(usd) is None:
        out.append(("total_cost_usd_estimate", _shown(usd), "not an amount the store can hold"))
    return out


def _usd(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or abs(value) >= _USD_LIMIT:
        return None
    return str(value)


def _text(value: Any) -> str | None:
    """Return a text field (an id, a tier, a status) as text; other JSON values become null."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    return str(value)


def _parsed_row(row: Any, month: str | None) -> dict[str, Any]:
    if not isinstance(row, dict):
        return {"date": None, "tasks": None, "cost_sats": None}
    return {
        "date": _day(row.get("date"), month)[0],
        "tasks": _int(row, "tasks"),
        "cost_sats": _int(row, "cost_sats"),
    }


def parse_usage(body: dict[str, Any], month: str | None = None) -> dict[str, Any]:
    """Return the parsed columns of one usage answer.

    Unparseable or impossible figures (not whole numbers, negative, beyond int64, sats above the
    21M BSV supply) become null,
    and so does a daily row's date that is not a day of `month` (by default the answer's own
    `month`); a `daily_breakdown` that is not a list is null (not an empty month), a daily row
    that is not an object a row of nulls. `figure_problems` says which and why.
    """
    month = _month_of(body, month)
    rows = _daily_rows(body)
    daily = None if rows is None else [_parsed_row(row, month) for row in rows]
    return {
        "month": str(body.get("month", "")),
        "customer_id": _text(body.get("customer_id")),
        "tier": _text(body.get("tier")),
        "tasks_settled": _int(body, "tasks_settled"),
        "total_cost_sats": _int(body, "total_cost_sats"),
        "total_cost_usd_estimate": _usd(body.get("total_cost_usd_estimate")),
        "worker_payouts_sats": _int(body, "worker_payouts_sats"),
        "platform_fee_sats": _int(body, "platform_fee_sats"),
        "daily_breakdown": daily,
    }


class _Gateway:
    def __init__(self, config: AuditConfig, transport: httpx.BaseTransport | None) -> None:
        if config.api_key is None:
            raise ConfigError("billing needs the API key (ASG_API_KEY)")
        # AuditConfig cleaned the key; a header that cannot carry it must fail here, not as
        # an httpx error quoting it (clean_secret names the setting, never the value)
        key = clean_secret(config.api_key.reveal(), "ASG_API_KEY")
        # every secret the process holds is masked in what is stored and printed (an answer
        # may echo the webhook secret or the WoC key as well as the key it was sent)
        self.secrets = (*config.all_secrets(), Secret(key))
        check_http_url(
            config.base_url,
            "base_url",
            "set by ASG_BASE_URL or base_url in the config file",
            base=True,
        )
        self.where = display_url(config.base_url.rstrip("/"))
        self.http = httpx.Client(
            base_url=config.base_url.rstrip("/"),
            headers={
                "Authorization": f"Bearer {key}",
                "Accept": "application/json",
            },
            timeout=float(config.billing.get("timeout_seconds", DEFAULT_TIMEOUT_S)),
            transport=transport,
        )
        self.retries = int(config.billing.get("max_retries", DEFAULT_MAX_RETRIES))
        self.requests = 0

    def get(self, path: str, params: dict[str, str] | None = None) -> tuple[dict[str, Any], str]:
        # Messages start `GET <path>: ` and name the Gateway by `display_url` (no user,
        # password or query) and the reason (a redirect's target, the Retry-After asked for);
        # a transport error's repr goes through `redact` with the key (it may quote a header).
        asked = path + (f"?{urlencode(params)}" if params else "")
        at = f"the Gateway at {self.where}"
        retry_after: str | None = None
        for attempt in range(self.retries + 1):
            self.requests += 1
            try:
                resp = self.http.get(path, params=params)
            except (httpx.UnsupportedProtocol, httpx.InvalidURL):
                # a URL that can never work is a configuration error, not a glitch to retry
                raise ConfigError(
                    f"GET {self.where}{path}: not an http(s) URL the Gateway can answer"
                    " (ASG_BASE_URL or base_url in the config)"
                ) from None
            except httpx.TransportError as exc:
                if attempt == self.retries:
                    raise ApiTransientError(
                        redact(f"GET {asked}: {at} could not be reached: {exc!r}", self.secrets)
                    ) from exc
                time.sleep(min(10.0, 0.25 * 2**attempt))
                continue
            if resp.status_code == 429 or resp.status_code >= 500:
                raw_after = resp.headers.get("Retry-After")
                if raw_after is not None:
                    retry_after = printable(redact(raw_after, self.secrets), one_line=True)[:60]
                if attempt == self.retries:
                    raise ApiTransientError(
                        f"GET {asked}: {resp.status_code} after retries ({at} answered"
                        f" {resp.status_code} {attempt + 1} time(s)"
                        + (
                            f"; it asked for Retry-After: {retry_after}, waited at most"
                            f" {_MAX_RETRY_AFTER_S:.0f} s each time"
                            if retry_after is not None
                            else ""
                        )
                        + "); run billing again later"
                    )
                # seconds or an HTTP date, read as `collect` and `verify-chain` read it; an
                # unreadable or non-finite one (`nan`, `inf`) is no floor, a long one is capped
                wait_asked = parse_retry_after(raw_after, now=time.time())
                wait = wait_asked if wait_asked is not None and math.isfinite(wait_asked) else 0.0
                backoff = min(10.0, 0.25 * 2**attempt)
                time.sleep(min(max(wait, backoff), _MAX_RETRY_AFTER_S))
                continue
            if resp.status_code in (401, 403):
                raise AuthError(
                    f"GET {asked}: the API ({at}) refused the key ({resp.status_code})",
                    status_code=resp.status_code,
                )
            if resp.status_code != 200:
                location = resp.headers.get("Location")
                why = (
                    f" (Location: {printable(display_url(location, self.secrets))[:200]};"
                    " redirects are not followed)"
                    if location is not None
                    else ""
                )
                raise ApiStatusError(
                    f"GET {asked}: {resp.status_code} from {at}{why}",
                    status_code=resp.status_code,
                )
            # an answer quoting the key (an echoed header) is stored and parsed masked: the raw
            # answer and the ids parsed from it go to the store
            text = redact(resp.text, data_secrets(self.secrets))  # a short one: data
            try:
                body = jsonload.loads(text)
            except ValueError:
                # A truncated or garbled 200 is a transport fault: ask again.
                if attempt == self.retries:
                    raise ApiTransientError(
                        f"GET {asked}: body is not JSON ({at} answered 200)"
                    ) from None
                time.sleep(min(10.0, 0.25 * 2**attempt))
                continue
            if not isinstance(body, dict):
                raise ApiStatusError(f"GET {asked}: expected a JSON object from {at}")
            return body, text
        raise AssertionError("unreachable")  # pragma: no cover


def _invoice_id(inv: dict[str, Any]) -> str:
    return str(_text(inv.get("invoice_id")) or f"month:{_text(inv.get('month'))}")


def _note(what: str, key: str, shown: str, why: str) -> str:
    if why == MISSING:
        return (
            f"{what}: the provider reported {key} = {shown} ({why}): a missing figure, nothing"
            " to check, stored as null"
        )
    return (
        f"{what}: the provider reported {key} = {shown} ({why}): an impossible figure,"
        " stored as null"
    )


def _check_month(body: dict[str, Any], month: str, where: str) -> None:
    """Raise ApiStatusError when a usage answer names another month than the one asked: its
    figures are not that month's usage, and nothing of it is stored as that month."""
    said = body.get("month")
    if said is None or said == month:
        return
    shown = printable(said[:20], one_line=True) if isinstance(said, str) else _shown(said)
    raise ApiStatusError(
        f"GET /v1/billing/usage?month={month}: the Gateway at {where} answered with the usage of"
        f" month {shown}, not {month}: not stored as {month}'s usage (nothing of this run is"
        " stored); run billing again, or ask the provider"
    )


def _ts(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    except (ValueError, OverflowError):  # not a time, or beyond year 1..9999 in UTC
        return None


def _check_arguments(
    db: Any, config: Any, months: Any, transport: Any
) -> tuple[Path, list[str] | None]:
    """Return the store path and the months; raise TypeError or ConfigError naming a bad one."""
    if not isinstance(db, str | Path) or not str(db):
        raise TypeError(f"fetch_billing db: expected a path (str or Path), got {type(db).__name__}")
    if not isinstance(config, AuditConfig):
        raise TypeError(
            f"fetch_billing config: expected an AuditConfig (see load_config),"
            f" got {type(config).__name__}"
        )
    if transport is not None and not isinstance(transport, httpx.BaseTransport):
        raise TypeError(
            f"fetch_billing transport: expected an httpx.BaseTransport or None,"
            f" got {type(transport).__name__}"
        )
    if months is None:
        return Path(db), None
    if isinstance(months, str):  # one month
        months = [months]
    if not isinstance(months, list | tuple) or not all(isinstance(m, str) for m in months):
        raise TypeError(
            "fetch_billing months: expected a 'YYYY-MM' string or a list of them,"
            f" got {type(months).__name__}"
        )
    for m in months:
        if not MONTH_RE.match(m):
            raise ConfigError(f"fetch_billing months: month must be YYYY-MM, got {m!r}")
    return Path(db), list(months) or None


def _store_answers(
    con: duckdb.DuckDBPyConnection,
    run_id: str,
    now: datetime,
    usage: list[tuple[dict[str, Any], str]],
    invoices: list[dict[str, Any]],
) -> None:
    """Store the usage answers and invoices of a run, each replacing an earlier one for the
    same month / invoice (inside the caller's transaction)."""
    for parsed, raw in usage:
        con.execute("DELETE FROM billing_usage WHERE month = ?", [parsed["month"]])
        con.execute(
            "INSERT INTO billing_usage VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                parsed["month"],
                parsed["customer_id"],
                parsed["tier"],
                parsed["tasks_settled"],
                parsed["total_cost_sats"],
                parsed["total_cost_usd_estimate"],
                parsed["worker_payouts_sats"],
                parsed["platform_fee_sats"],
                parsed["daily_breakdown"],
                raw,
                now,
                run_id,
            ],
        )
    for inv in invoices:
        inv_id = _invoice_id(inv)
        con.execute("DELETE FROM billing_invoices WHERE invoice_id = ?", [inv_id])
        con.execute(
            "INSERT INTO billing_invoices VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                inv_id,
                _text(inv.get("month")),
                _text(inv.get("status")),
                _int(inv, "tasks_settled"),
                _int(inv, "total_cost_sats"),
                _ts(inv.get("issued_at")),
                json.dumps(inv),
                now,
                run_id,
            ],
        )


def _run_stats(summary: BillingSummary, gw: _Gateway, error: str | None) -> dict[str, Any]:
    """Return what a billing run records in `runs.stats` (with its error when it failed)."""
    summary.requests = gw.requests
    stats: dict[str, Any] = {
        "months": summary.months,
        "invoices": summary.invoices,
        "requests": summary.requests,
        "invalid_figures": summary.notes,
    }
    if error is not None:
        stats["error"] = error
    return stats


def fetch_billing(
    db: str | Path,
    config: AuditConfig,
    *,
    months: str | list[str] | None = None,
    transport: httpx.BaseTransport | None = None,
) -> BillingSummary:
    """Return the summary of fetching invoices and usage for every month with data (or `months`).

    `months` is one "YYYY-MM" or a list of them. Stores each answer raw and parsed, replacing
    an earlier answer for the same month/invoice. A figure that cannot be a count or an amount
    of sats (negative, fractional, beyond int64, sats above the 21M BSV supply, a string), or
    that a usage answer does not
    give, is stored as null and named in `summary.notes`; the `billing.invalid_figure` check
    reports those of the usage answers. A usage answer naming another month than the one asked
    raises ApiStatusError (exit 3): nothing of the run is stored. A failed run records its
    error in `runs.stats.error`.
    """
    from asg_audit.store import open_store

    db, months = _check_arguments(db, config, months, transport)
    if not Path(db).exists():  # a typo must not create an empty store
        raise StoreFileError(
            f"{path_text(db)}: no database here yet (run `asg-audit ingest`, `track` or `collect`)"
        )
    gw = _Gateway(config, transport)
    summary = BillingSummary()
    try:
        with open_store(db) as store:
            run_id = store.start_run("billing")
            summary.run_id = run_id
            status = "failed"
            error: str | None = None
            ended = False  # the run is recorded `ok`, with its answers
            try:
                inv_body, _ = gw.get("/v1/billing/invoices")
                invoices = [i for i in inv_body.get("invoices") or [] if isinstance(i, dict)]
                wanted = months or sorted(
                    set(months_with_data(store.con))
                    | {str(i.get("month")) for i in invoices if MONTH_RE.match(str(i.get("month")))}
                )
                usage = []
                for month in wanted:
                    body, raw = gw.get("/v1/billing/usage", {"month": month})
                    _check_month(body, month, gw.where)
                    usage.append((parse_usage(body, month) | {"month": month}, raw))
                    for key, shown, why in figure_problems(body, USAGE_FIGURES, month):
                        summary.notes.append(_note(f"usage {month}", key, shown, why))
                for inv in invoices:
                    for key, shown, why in figure_problems(inv, INVOICE_FIGURES):
                        summary.notes.append(_note(f"invoice {_invoice_id(inv)}", key, shown, why))
                now = datetime.now(UTC)
                # The answers and the run's `ok` are one transaction: the store never holds
                # a run's answers with the run `interrupted` or `failed`. A stop signal from
                # the commit on waits until the run is known to have ended (`held_stops`).
                with held_stops() as hold:
                    with store.transaction():
                        _store_answers(store.con, run_id, now, usage, invoices)
                        summary.months = [p["month"] for p, _ in usage]
                        summary.invoices = len(invoices)
                        store.finish_run(run_id, status="ok", stats=_run_stats(summary, gw, None))
                        hold.begin()
                    ended = True
            except BaseException as exc:
                if not ended:  # nothing of it was stored
                    summary.months, summary.invoices = [], 0
                    if is_interrupt(exc):  # Ctrl-C, or SIGTERM under `audit` (stopsignals)
                        status = "interrupted"
                    else:  # shown by `asg-audit runs`, as collect's and verify-chain's
                        error = error_text(exc, gw.secrets)
                raise
            finally:
                if not ended:
                    store.finish_run(run_id, status=status, stats=_run_stats(summary, gw, error))
    finally:
        gw.http.close()
    return summary


# Register the billing checks with the check registry (the registry imports this module).
from asg_audit import reconcile as _reconcile  # noqa: E402,F401
from asg_audit.checks._registry import (  # noqa: E402
    CheckContext,
    finding,
    no_findings,
    register_check,
)
from asg_audit.config import CheckLevels  # noqa: E402


def _expected(field: str, month: str | None) -> str:
    """Return what `field` of an answer should have been, for a finding's `expected`."""
    if field == "daily_breakdown":
        return "a list of daily rows"
    if field == "total_cost_usd_estimate":
        return "an amount in USD below 10^16"
    if field.endswith("]"):
        return "a daily row: an object with date, tasks and cost_sats"
    if field.endswith(".date"):
        return f"a day of {month}" if month else "a date (YYYY-MM-DD)"
    if field.endswith("sats"):
        return f"a whole number of sats, 0 to the 21M BSV supply ({MAX_SATS:,})"
    return "a whole number, 0 or more, within int64"


@register_check("billing.invalid_figure", default=CheckLevels(severity="fail"))
def billing_invalid_figure(ctx: CheckContext) -> Any:
    """A month's usage answer or an invoice that states an impossible figure (negative,
    fractional or beyond int64 tasks or sats, sats above the 21M BSV supply, a number written
    as a string), or a usage answer
    missing a figure or its daily rows, or with a daily row that is not an object or is dated
    outside the month; the figure is stored as null and the other checks skip it (an audit
    never calls a month clean that nothing could be checked of).

    Read from the stored raw answers, so that what the provider said is quoted as evidence.
    Under --since/--until, only the months the window wholly covers (`judged_months`, as
    every month-level billing check); an invoice without a month is then not judged.
    """
    import polars as pl

    from asg_audit.reconcile import EXACT, judged_months

    rows: list[dict[str, str]] = []
    for table, entity, key_column, figures in (
        ("billing_usage", "month", "month", USAGE_FIGURES),
        ("billing_invoices", "invoice", "invoice_id", INVOICE_FIGURES),
    ):
        if not ctx.has_table(table):
            continue
        answers = ctx.table(table)
        names = set(answers.collect_schema().names())
        if not {key_column, "raw"} <= names:
            continue
        if ctx.has_table("billing_window"):
            if "month" not in names:
                continue
            answers = judged_months(ctx, answers.with_columns(pl.col("month").cast(pl.String)))
        for entity_id, raw in answers.select(key_column, "raw").collect().iter_rows():
            try:
                body = jsonload.loads(raw)
            except (TypeError, ValueError):
                continue
            if isinstance(body, dict):
                # a usage answer is judged as the month it is stored as (the one asked for)
                month = str(entity_id) if entity == "month" else None
                for key, shown, why in figure_problems(body, figures, month):
                    rows.append(
                        {
                            "entity": entity,
                            "id": entity_id,
                            "field": key,
                            "shown": shown,
                            "why": why,
                            "expected": _expected(key, month),
                            "kind": "a missing" if why == MISSING else "an impossible",
                        }
                    )
    if not rows:
        return no_findings()
    columns = ("entity", "id", "field", "shown", "why", "expected", "kind")
    schema = {c: pl.String for c in columns}
    frame = pl.LazyFrame(rows, schema=schema)
    return pl.concat(
        [
            frame.filter(pl.col("entity") == entity).select(
                *finding(
                    entity_type=entity,
                    entity_id=pl.col("id"),
                    expected=pl.col("expected"),
                    actual=pl.col("field") + pl.lit(" = ") + pl.col("shown"),
                    difference=None,
                    message=pl.lit("the provider reported ")
                    + pl.col("kind")
                    + pl.lit(" figure: ")
                    + pl.col("field")
                    + pl.lit(" = ")
                    + pl.col("shown")
                    + pl.lit(" (")
                    + pl.col("why")
                    + pl.lit("); stored as null, the checks that need it skip it"),
                ),
                pl.lit(EXACT).alias("proves"),
            )
            for entity in ("month", "invoice")
        ]
    )
