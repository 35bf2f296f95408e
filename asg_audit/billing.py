"""Fetch the provider's monthly usage and invoices into `billing_usage` and `billing_invoices`.

`GET /v1/billing/usage?month=YYYY-MM` is asked for every month with data: every month in which
a stored result settled or a task was created, plus the months the invoices name. Each answer
is stored raw (the evidence) and parsed (the figures the billing checks compare). The checks
themselves live in `asg_audit.reconcile`.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import httpx

from asg_audit.config import AuditConfig
from asg_audit.errors import (
    ApiStatusError,
    ApiTransientError,
    AuthError,
    ConfigError,
    StoreFileError,
)
from asg_audit.interrupts import is_interrupt

__all__ = ["BillingSummary", "fetch_billing", "months_with_data", "parse_usage"]

DEFAULT_TIMEOUT_S: Final = 30.0
DEFAULT_MAX_RETRIES: Final = 5
_MONTH_RE: Final = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


@dataclass
class BillingSummary:
    """What one `fetch_billing` run stored."""

    run_id: str = ""
    months: list[str] = field(default_factory=list)
    invoices: int = 0
    requests: int = 0

    def lines(self) -> list[str]:
        """Return the human summary, one fact per line."""
        return [
            f"usage months fetched: {len(self.months)} ({', '.join(self.months) or 'none'})",
            f"invoices stored: {self.invoices}",
            f"requests: {self.requests}",
        ]


def months_with_data(con: Any) -> list[str]:
    """Return the "YYYY-MM" months in which a stored task settled or was created, sorted."""
    rows = con.execute(
        """SELECT DISTINCT strftime(ts AT TIME ZONE 'UTC', '%Y-%m') FROM (
            SELECT settled_at AS ts FROM results UNION ALL SELECT created_at FROM results
            UNION ALL SELECT created_at FROM submissions) WHERE ts IS NOT NULL ORDER BY 1"""
    ).fetchall()
    return [r[0] for r in rows]


def _int(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = int(str(value))  # sats are integers; "12.5" sats is not a valid amount
    except ValueError:
        return None
    return number


def parse_usage(body: dict[str, Any]) -> dict[str, Any]:
    """Return the parsed columns of one usage answer (unparseable figures become null)."""
    daily = []
    for row in body.get("daily_breakdown") or []:
        if not isinstance(row, dict):
            continue
        try:
            day = datetime.strptime(str(row.get("date")), "%Y-%m-%d").date()
        except ValueError:
            day = None
        daily.append(
            {"date": day, "tasks": _int(row, "tasks"), "cost_sats": _int(row, "cost_sats")}
        )
    usd = body.get("total_cost_usd_estimate")
    return {
        "month": str(body.get("month", "")),
        "customer_id": body.get("customer_id"),
        "tier": body.get("tier"),
        "tasks_settled": _int(body, "tasks_settled"),
        "total_cost_sats": _int(body, "total_cost_sats"),
        "total_cost_usd_estimate": str(usd) if isinstance(usd, int | float) else None,
        "worker_payouts_sats": _int(body, "worker_payouts_sats"),
        "platform_fee_sats": _int(body, "platform_fee_sats"),
        "daily_breakdown": daily,
    }


class _Gateway:
    def __init__(self, config: AuditConfig, transport: httpx.BaseTransport | None) -> None:
        if config.api_key is None:
            raise ConfigError("billing needs the API key (ASG_API_KEY)")
        self.http = httpx.Client(
            base_url=config.base_url.rstrip("/"),
            headers={
                "Authorization": f"Bearer {config.api_key.reveal()}",
                "Accept": "application/json",
            },
            timeout=float(config.billing.get("timeout_seconds", DEFAULT_TIMEOUT_S)),
            transport=transport,
        )
        self.retries = int(config.billing.get("max_retries", DEFAULT_MAX_RETRIES))
        self.requests = 0

    def get(self, path: str, params: dict[str, str] | None = None) -> tuple[dict[str, Any], str]:
        for attempt in range(self.retries + 1):
            self.requests += 1
            try:
                resp = self.http.get(path, params=params)
            except httpx.TransportError as exc:
                if attempt == self.retries:
                    raise ApiTransientError(f"GET {path}: {exc!r}") from exc
                time.sleep(min(10.0, 0.25 * 2**attempt))
                continue
            if resp.status_code == 429 or resp.status_code >= 500:
                if attempt == self.retries:
                    raise ApiTransientError(f"GET {path}: {resp.status_code} after retries")
                try:
                    wait = float(resp.headers.get("Retry-After", "0"))
                except ValueError:
                    wait = 0.0
                time.sleep(max(wait, min(10.0, 0.25 * 2**attempt)))
                continue
            if resp.status_code in (401, 403):
                raise AuthError(
                    f"GET {path}: the API refused the key ({resp.status_code})",
                    status_code=resp.status_code,
                )
            if resp.status_code != 200:
                raise ApiStatusError(
                    f"GET {path}: {resp.status_code}", status_code=resp.status_code
                )
            try:
                body = resp.json()
            except ValueError:
                # A truncated or garbled 200 is a transport fault: ask again.
                if attempt == self.retries:
                    raise ApiTransientError(f"GET {path}: body is not JSON") from None
                time.sleep(min(10.0, 0.25 * 2**attempt))
                continue
            if not isinstance(body, dict):
                raise ApiStatusError(f"GET {path}: expected a JSON object")
            return body, resp.text
        raise AssertionError("unreachable")  # pragma: no cover


def _ts(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def fetch_billing(
    db: str | Path,
    config: AuditConfig,
    *,
    months: list[str] | None = None,
    transport: httpx.BaseTransport | None = None,
) -> BillingSummary:
    """Return the summary of fetching invoices and usage for every month with data (or `months`).

    Stores each answer raw and parsed, replacing an earlier answer for the same month/invoice.
    """
    from asg_audit.store import open_store

    for m in months or []:
        if not _MONTH_RE.match(m):
            raise ConfigError(f"month must be YYYY-MM, got {m!r}")
    if not Path(db).exists():  # a typo must not create an empty store
        raise StoreFileError(
            f"{db}: no database here yet (run `asg-audit ingest`, `track` or `collect`)"
        )
    gw = _Gateway(config, transport)
    summary = BillingSummary()
    try:
        with open_store(db) as store:
            run_id = store.start_run("billing")
            summary.run_id = run_id
            status = "failed"
            try:
                inv_body, _ = gw.get("/v1/billing/invoices")
                invoices = [i for i in inv_body.get("invoices") or [] if isinstance(i, dict)]
                wanted = months or sorted(
                    set(months_with_data(store.con))
                    | {
                        str(i.get("month"))
                        for i in invoices
                        if _MONTH_RE.match(str(i.get("month")))
                    }
                )
                usage = []
                for month in wanted:
                    body, raw = gw.get("/v1/billing/usage", {"month": month})
                    usage.append((parse_usage(body) | {"month": month}, raw))
                now = datetime.now(UTC)
                with store.transaction():
                    con = store.con
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
                        inv_id = str(inv.get("invoice_id") or f"month:{inv.get('month')}")
                        con.execute("DELETE FROM billing_invoices WHERE invoice_id = ?", [inv_id])
                        con.execute(
                            "INSERT INTO billing_invoices VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            [
                                inv_id,
                                inv.get("month"),
                                inv.get("status"),
                                _int(inv, "tasks_settled"),
                                _int(inv, "total_cost_sats"),
                                _ts(inv.get("issued_at")),
                                json.dumps(inv),
                                now,
                                run_id,
                            ],
                        )
                summary.months = [p["month"] for p, _ in usage]
                summary.invoices = len(invoices)
                status = "ok"
            except BaseException as exc:
                if is_interrupt(exc):  # Ctrl-C, or SIGTERM under `audit` (stopsignals)
                    status = "interrupted"
                raise
            finally:
                summary.requests = gw.requests
                store.finish_run(
                    run_id,
                    status=status,
                    stats={
                        "months": summary.months,
                        "invoices": summary.invoices,
                        "requests": summary.requests,
                    },
                )
    finally:
        gw.http.close()
    return summary


# Register the billing checks with the check registry (the registry imports this module).
from asg_audit import reconcile as _reconcile  # noqa: E402,F401
