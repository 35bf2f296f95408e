"""Months billed by a fake Gateway, judged against results in a real store.

Every store is built through the real parts: results ingested from an export file, tasks
tracked from a submissions file, usage and invoices fetched by `fetch_billing` from the fake
Gateway of `months_gateway` (real HTTP on 127.0.0.1), which answers what the last
`billed_store` call gave it (a month it was not given: no tasks, no sats).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
from _analyses_frames import result, results_frame
from _billing_gateway import Answer, BillingGateway, billing_gateway

from asg_audit.billing import fetch_billing, parse_usage
from asg_audit.chain import reconciliation_findings
from asg_audit.checks import CheckContext, run_checks
from asg_audit.config import AuditConfig, CostModel, load_config
from asg_audit.ingest_files import ingest, track_file

KEY = "sk_sandbox_FIXG2SECRET"
MONTH = "2026-10"

_USAGE: dict[str, dict[str, Any]] = {}  # the usage figures of each month


def _usage_answer(month: str) -> Answer:
    body: dict[str, Any] = {"customer_id": "cus_g2", "month": month, "tier": "sandbox"}
    body |= _USAGE.get(
        month,
        {
            "tasks_settled": 0,
            "total_cost_sats": 0,
            "worker_payouts_sats": 0,
            "platform_fee_sats": 0,
            "daily_breakdown": [],
        },
    )
    return 200, body, {}


_GATEWAY = BillingGateway(usage=_usage_answer)


@contextmanager
def months_gateway() -> Iterator[str]:
    """The fake Gateway billing what `billed_store` gives it; yields its base URL."""
    with billing_gateway(_GATEWAY) as url:
        yield url


def month_usage(tasks: int, sats: int, month: str = MONTH) -> dict[str, Any]:
    """A month's usage figures: `tasks` billed for `sats`, all paid out, on one day."""
    return {
        "tasks_settled": tasks,
        "total_cost_sats": sats,
        "worker_payouts_sats": sats,
        "platform_fee_sats": 0,
        "daily_breakdown": [{"date": f"{month}-10", "tasks": tasks, "cost_sats": sats}],
    }


def settled(task_id: str, day: int, cost: int | None) -> dict[str, Any]:
    """A settled result of `task_id` created on `day` of MONTH, of `cost` (None: no cost)."""
    record: dict[str, Any] = {
        "task_id": task_id,
        "status": "settled",
        "consensus_label": "cat",
        "confidence": 2 / 3,
        "worker_count": 3,
        "agreement_count": 2,
        "bsv_txid": f"{day:02x}" * 31 + f"{int(task_id[1:]):02x}",
        "created_at": f"{MONTH}-{day:02d}T10:00:00Z",
        "settled_at": f"{MONTH}-{day:02d}T10:00:40Z",
    }
    if cost is not None:
        record["cost_sats"] = cost
    return record


def billed_store(
    tmp_path: Path,
    gateway: str,
    results: list[dict[str, Any]],
    usage: dict[str, dict[str, Any]],
    invoices: list[dict[str, Any]] | None = None,
    *,
    pending: int = 0,
    months: list[str] | None = None,
) -> tuple[pl.DataFrame, Any]:
    """Ingest `results`, track `pending` more tasks (no result yet), fetch billing (of
    `months`, by default every month with data); return the billing findings and summary."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    db = tmp_path / "g2.duckdb"
    export = tmp_path / "results.ndjson"
    export.write_text("".join(json.dumps(r) + "\n" for r in results))
    ingest(db, export)
    if pending:
        subs = tmp_path / "submissions.ndjson"
        rows = [
            {
                "task_id": f"p{i}",
                "type": "classification",
                "consensus_threshold": 3,
                "label_spec": {"options": ["cat", "dog"]},
                "created_at": f"{MONTH}-20T10:00:00Z",
            }
            for i in range(pending)
        ]
        subs.write_text("".join(json.dumps(r) + "\n" for r in rows))
        track_file(db, subs)
    _USAGE.clear()
    _USAGE.update(usage)
    _GATEWAY.invoices = (200, {"invoices": invoices or []}, {})
    config = load_config(None, env={"ASG_API_KEY": KEY, "ASG_BASE_URL": gateway})
    summary = fetch_billing(db, config, months=months)
    findings, _ = reconciliation_findings(db, config, prefixes=("billing.",))
    return findings, summary


def check_rows(findings: pl.DataFrame, check: str) -> list[dict[str, Any]]:
    """The findings of `check`, as dicts."""
    return list(findings.filter(pl.col("check_id") == check).iter_rows(named=True))


def usage_frame(*usages: dict[str, Any]) -> pl.DataFrame:
    """Return `billing_usage` rows (as `parse_usage` gives them) as the frame the checks read."""
    return pl.DataFrame(
        list(usages),
        schema_overrides={
            "daily_breakdown": pl.List(
                pl.Struct({"date": pl.Date, "tasks": pl.Int64, "cost_sats": pl.Int64})
            )
        },
    )


def month_checks(
    model: CostModel, costs: list[int], *, payouts: int, fee: int, only: list[str]
) -> pl.DataFrame:
    """Run the checks `only` on one month (2026-10) billed `payouts` + `fee` for one settled
    task per entry of `costs` (its reported cost), under the cost `model`."""
    total = payouts + fee
    usage = parse_usage(
        {
            "customer_id": "cus_1", "month": "2026-10", "tier": "sandbox",
            "tasks_settled": len(costs), "total_cost_sats": total,
            "total_cost_usd_estimate": 1.0, "worker_payouts_sats": payouts,
            "platform_fee_sats": fee,
            "daily_breakdown": [{"date": "2026-10-01", "tasks": len(costs), "cost_sats": total}],
        }
    )  # fmt: skip
    results = results_frame(
        [
            result(
                f"t{i}",
                cost_sats=c,
                created_at=datetime(2026, 10, 1, 11, 59, tzinfo=UTC),
                settled_at=datetime(2026, 10, 1, 12, tzinfo=UTC),
            )
            for i, c in enumerate(costs)
        ]
    )
    ctx = CheckContext(
        {"results": results, "billing_usage": usage_frame(usage)},
        config=AuditConfig(costs=model),
        as_of=datetime(2026, 11, 1, tzinfo=UTC),
    )
    import asg_audit.billing  # noqa: F401  (registers the checks)

    return run_checks(ctx, only=only)
