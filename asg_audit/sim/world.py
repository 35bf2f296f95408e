"""The simulated world: configuration, tasks with true and reported fields, and its exports."""

from __future__ import annotations

import csv
import gzip as gzip_module
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from asg_audit.sim.chainmodel import BlockSchedule
from asg_audit.sim.clock import format_ts
from asg_audit.sim.txbuild import SimTx

__all__ = ["DEFAULT_START", "SimTask", "World", "WorldConfig", "render_result"]

DEFAULT_START = datetime(2026, 9, 15, tzinfo=UTC)  # spans Sep and Oct: two billing months
DEFAULT_SPAN = timedelta(days=30)
DEFAULT_LIVE_WINDOW = timedelta(minutes=10)
DEFAULT_PAYOUT_PER_WORKER_SATS = 325
DEFAULT_TASK_REWARD_SATS = 1000


@dataclass(frozen=True)
class WorldConfig:
    """Everything that shapes a generated world; the same config gives the same world."""

    seed: int = 7
    tasks: int = 5000
    start: datetime = DEFAULT_START
    span: timedelta = DEFAULT_SPAN
    # The last part of the span is served live: "now" starts at `start + span - live_window`.
    live_window: timedelta = DEFAULT_LIVE_WINDOW
    live_fraction: float = 0.01  # tasks created in the minute before "now", settling live
    nested_fraction: float = 0.5  # share of results in the nested shape (rest flat)
    confidence_formula: str = "A/W"  # or "A/T"
    fixed_2_of_3: bool = False  # the deployed engine's fixed 3-label 2-of-3 rule
    cost_model: str = "per_worker"  # or "fixed"
    payout_per_worker_sats: int = DEFAULT_PAYOUT_PER_WORKER_SATS
    task_reward_sats: int = DEFAULT_TASK_REWARD_SATS
    fee_percent: Decimal | float | int = 0  # platform fee on top of the worker payouts
    unknown_cost_rate: float = 0.03  # cost reported as 0 (unknown, not an anomaly)
    batch_rate: float = 0.1  # share of tasks settled in a batch sharing one txid
    uppercase_txid_rate: float = 0.02  # honest txids reported in uppercase
    op_return_rate: float = 0.3  # settlement transactions carrying an OP_RETURN
    anomalies: Mapping[str, float] | str | None = None  # "all", "none" or kind -> rate/count

    def __post_init__(self) -> None:
        if self.confidence_formula not in ("A/W", "A/T"):
            raise ValueError("confidence_formula must be 'A/W' or 'A/T'")
        if self.cost_model not in ("per_worker", "fixed"):
            raise ValueError("cost_model must be 'per_worker' or 'fixed'")
        if self.tasks < 1:
            raise ValueError("tasks must be at least 1")
        if self.start.tzinfo is None:
            raise ValueError("start must be an aware UTC datetime")


@dataclass
class SimTask:
    """One task: the true lifecycle and counts, and what the service reports (`reported`)."""

    task_id: str
    task_type: str
    type_field: str  # the submission record names it "type" or "task_type"
    threshold: int
    options: list[str]
    data_url: str
    created_at: int  # epoch seconds
    in_progress_at: int
    verified_at: int
    settled_at: int  # true moment the payment completed
    shape: str  # flat | nested
    cost_field: str  # flat results name the cost "cost_sats" or "total_cost_sats"
    label: str
    worker_count: int
    agreement_count: int
    confidence: float
    cost_sats: int  # under the configured model
    fee_sats: int  # the platform fee part of cost_sats
    bsv_txid: str | None
    live: bool = False
    batch_size: int = 1
    cost_unknown: bool = False
    final_status: str = "settled"  # settled | failed | timed_out | stuck | unknown
    anomaly: str | None = None
    reported: dict[str, Any] = field(default_factory=dict)
    revision_at: int | None = None  # changed_after_settlement: when version 2 is served
    revision: dict[str, Any] = field(default_factory=dict)

    def reported_at(self, now: float) -> dict[str, Any]:
        """Return the reported settlement fields served at `now` (version 1 or 2)."""
        if self.revision_at is not None and now >= self.revision_at:
            return {**self.reported, **self.revision}
        return self.reported

    def status_at(self, now: float) -> str | None:
        """Return the lifecycle status at `now`; None while the service does not know it."""
        if self.final_status == "unknown" or now < self.created_at:
            return None
        if now < self.in_progress_at:
            return "pending"
        if self.final_status == "stuck" or now < self.verified_at:
            return "in_progress"
        if now < self.settled_at:
            return "in_progress" if self.final_status in ("failed", "timed_out") else "verified"
        return self.final_status

    def submission(self) -> dict[str, Any]:
        """Return the record the customer kept when submitting this task."""
        return {
            "task_id": self.task_id,
            self.type_field: self.task_type,
            "consensus_threshold": self.threshold,
            "label_spec": {"options": list(self.options)},
            "data_url": self.data_url,
            "created_at": format_ts(self.created_at),
        }


def render_result(task: SimTask, now: float) -> dict[str, Any] | None:
    """Return the 200 body of GET /v1/tasks/{id}/result at `now`, or None (202/404)."""
    status = task.status_at(now)
    if status is None or status in ("pending", "in_progress"):
        return None
    if status in ("failed", "timed_out"):
        return {
            "task_id": task.task_id,
            "status": status,
            "task_type": task.task_type,
            "created_at": format_ts(task.created_at),
        }
    rep = task.reported_at(now)
    body: dict[str, Any] = {
        "task_id": task.task_id,
        "status": status,
        "consensus_label": rep["consensus_label"],
        "confidence": rep["confidence"],
        "worker_count": rep["worker_count"],
        "agreement_count": rep["agreement_count"],
    }
    if status == "verified":
        body["created_at"] = format_ts(task.created_at)
        return body
    if task.shape == "flat":
        body["bsv_txid"] = rep["bsv_txid"]
        body[task.cost_field] = rep["cost_sats"]
        body["created_at"] = format_ts(task.created_at)
        body["settled_at"] = format_ts(rep["settled_at"])
        return body
    settlement: dict[str, Any] = {}
    if rep["bsv_txid"] is not None:
        settlement["bsv_txid"] = rep["bsv_txid"]
    settlement["total_cost_sats"] = rep["cost_sats"]
    settlement["settled_at"] = format_ts(rep["settled_at"])
    body["created_at"] = format_ts(task.created_at)
    body["settlement"] = settlement
    return body


def render_webhook(task: SimTask, delivered_at: float) -> dict[str, Any]:
    """Return the `task.settled` payload for a task's first settled version."""
    rep = task.reported
    return {
        "event": "task.settled",
        "task_id": task.task_id,
        "consensus_label": rep["consensus_label"],
        "confidence": rep["confidence"],
        "bsv_txid": rep["bsv_txid"],
        "settled_at": format_ts(rep["settled_at"]),
        "timestamp": format_ts(delivered_at),
    }


@dataclass
class World:
    """A generated world: tasks, chain transactions, billing, and the planted anomalies."""

    config: WorldConfig
    tasks: list[SimTask]  # in created_at order
    txs: dict[str, SimTx]  # by lowercase txid
    blocks: BlockSchedule
    now_at: int  # simulated "now" when serving starts
    end_at: int  # end of the span
    anomalies: list[dict[str, Any]]
    billing_tamper: dict[str, dict[str, Any]]  # month -> planted billing change
    customer_id: str
    wallets: dict[str, Any] = field(default_factory=dict)  # worker/payer keys, for live txs

    def __post_init__(self) -> None:
        self.by_id = {t.task_id: t for t in self.tasks}

    # -- customer-side records -------------------------------------------------------------
    @property
    def submissions(self) -> list[dict[str, Any]]:
        """Return the customer's submission records, in created_at order."""
        return [t.submission() for t in self.tasks]

    def write_submissions(self, path: str | Path) -> Path:
        """Write the submissions as NDJSON; return the path."""
        return _write_lines(path, self.submissions)

    def write_submissions_csv(self, path: str | Path) -> Path:
        """Write the submissions as CSV (options `|`-joined); return the path."""
        path = Path(path)
        with path.open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["task_id", "task_type", "consensus_threshold", "options", "created_at"])
            for t in self.tasks:
                w.writerow(
                    [
                        t.task_id,
                        t.task_type,
                        t.threshold,
                        "|".join(t.options),
                        format_ts(t.created_at),
                    ]
                )
        return path

    def results_export(self) -> list[dict[str, Any]]:
        """Return the 200 bodies the API gives at the end of the span, in time order.

        A task whose result changed after settlement appears twice (both versions).
        """
        rows: list[tuple[int, int, dict[str, Any]]] = []
        for i, t in enumerate(self.tasks):
            first = render_result(t, t.settled_at)
            if first is None:
                continue
            rows.append((t.settled_at, i, first))
            if t.revision_at is not None:
                second = render_result(t, t.revision_at)
                assert second is not None
                rows.append((t.revision_at, i, second))
        rows.sort(key=lambda r: (r[0], r[1]))
        return [r[2] for r in rows]

    def write_results_export(self, path: str | Path, *, gzip: bool = False) -> Path:
        """Write the results export as NDJSON (gzip-compressed if asked); return the path."""
        return _write_lines(path, self.results_export(), compress=gzip)

    def webhook_log(self) -> list[dict[str, Any]]:
        """Return the `task.settled` payloads, one per settled task, in delivery order."""
        out = []
        for t in self.tasks:
            if t.final_status == "settled":
                delay = 1 + int(t.task_id[-2:], 16) % 3  # a webhook arrives 1-3 s after
                out.append((t.settled_at + delay, render_webhook(t, t.settled_at + delay)))
        out.sort(key=lambda r: (r[0], r[1]["task_id"]))
        return [r[1] for r in out]

    def write_webhook_log(self, path: str | Path) -> Path:
        """Write the webhook log as NDJSON; return the path."""
        return _write_lines(path, self.webhook_log())

    # -- billing -----------------------------------------------------------------------------
    @property
    def months(self) -> list[str]:
        """Return the months the span touches, "YYYY-MM", in order."""
        from asg_audit.sim.billing import months_between

        return months_between(self.tasks[0].created_at if self.tasks else self.end_at, self.end_at)

    def billing_usage(self, month: str, *, as_of: float | None = None) -> dict[str, Any]:
        """Return GET /v1/billing/usage for `month` as served at `as_of` (default: the end)."""
        from asg_audit.sim.billing import compute_usage

        return compute_usage(self, month, as_of=self.end_at if as_of is None else as_of)

    def invoices(self, *, as_of: float | None = None) -> list[dict[str, Any]]:
        """Return GET /v1/billing/invoices' list at `as_of` (default: the end)."""
        from asg_audit.sim.billing import compute_invoices

        return compute_invoices(self, as_of=self.end_at if as_of is None else as_of)

    # -- ground truth ------------------------------------------------------------------------
    def ground_truth(self) -> dict[str, Any]:
        """Return every task's true and reported fields, the anomalies, billing and chain."""
        tasks = []
        for t in self.tasks:
            row = {k: v for k, v in asdict(t).items() if k not in ("reported", "revision")}
            for key in ("created_at", "in_progress_at", "verified_at", "settled_at"):
                row[key] = format_ts(row[key])
            row["latency_s"] = t.settled_at - t.created_at
            row["reported"] = _ts_fields(t.reported)
            row["revision"] = _ts_fields(t.revision) if t.revision else None
            row["revision_at"] = format_ts(t.revision_at) if t.revision_at else None
            tasks.append(row)
        cfg = asdict(self.config)
        cfg["start"] = self.config.start.isoformat()
        cfg["span"] = self.config.span.total_seconds()
        cfg["live_window"] = self.config.live_window.total_seconds()
        cfg["fee_percent"] = str(self.config.fee_percent)
        return {
            "config": cfg,
            "now_at": format_ts(self.now_at),
            "end_at": format_ts(self.end_at),
            "customer_id": self.customer_id,
            "tasks": tasks,
            "anomalies": list(self.anomalies),
            "billing": {m: self.billing_usage(m) for m in self.months},
            "chain": [
                {
                    "txid": tx.txid,
                    "known": tx.known,
                    "mined": tx.mined,
                    "broadcast_at": format_ts(tx.broadcast_at),
                    "fee_sats": tx.fee_sats,
                    "non_data_sats": tx.non_data_sats(),
                    **tx.meta,
                }
                for tx in self.txs.values()
            ],
        }

    def write_ground_truth(self, path: str | Path) -> Path:
        """Write the ground truth as JSON; return the path."""
        path = Path(path)
        path.write_text(
            json.dumps(self.ground_truth(), indent=1, sort_keys=True) + "\n", encoding="utf-8"
        )
        return path

    def chain_transactions(self) -> list[SimTx]:
        """Return the chain transactions the index knows, in broadcast order."""
        return sorted(
            (tx for tx in self.txs.values() if tx.known), key=lambda tx: (tx.broadcast_at, tx.txid)
        )


def _ts_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (format_ts(v) if k == "settled_at" else v) for k, v in fields.items()}


def _write_lines(path: str | Path, rows: list[dict[str, Any]], *, compress: bool = False) -> Path:
    path = Path(path)
    data = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows).encode()
    if compress:
        # mtime=0 keeps the gzip bytes identical for the same world
        path.write_bytes(gzip_module.compress(data, mtime=0))
    else:
        path.write_bytes(data)
    return path
