"""Hand-made result and submission frames for the analyses and checks tests."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl

from asg_audit.model import RESULTS_SCHEMA, SUBMISSIONS_SCHEMA

T0 = datetime(2026, 4, 8, 21, 0, 0, tzinfo=UTC)


def txid(seed: str) -> str:
    return hashlib.sha256(seed.encode()).hexdigest()


def result(task_id: str, **fields: Any) -> dict[str, Any]:
    """Return one healthy settled result (2 of 3 agree, 650 sats, 47 s), with overrides."""
    row: dict[str, Any] = {
        "task_id": task_id,
        "status": "settled",
        "consensus_label": "cat",
        "confidence": 2 / 3,
        "worker_count": 3,
        "agreement_count": 2,
        "bsv_txid": txid(task_id),
        "cost_sats": 650,
        "cost_unknown": False,
        "task_type": "image",
        "created_at": T0,
        "settled_at": T0 + timedelta(seconds=47),
        "delivered_at": None,
        "shape": "flat",
        "flags": [],
        "first_seen_at": T0 + timedelta(seconds=50),
        "settled_seen_at": T0 + timedelta(seconds=50),
        "last_seen_at": T0 + timedelta(seconds=50),
        "sources": ["poll"],
        "observation_count": 1,
        "conflict_count": 0,
    }
    row.update(fields)
    return row


def submission(task_id: str, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "task_id": task_id,
        "task_type": "image",
        "consensus_threshold": 3,
        "options": ["cat", "dog"],
        "created_at": T0,
        "data_url": None,
    }
    row.update(fields)
    return row


def results_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=RESULTS_SCHEMA)


def submissions_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=SUBMISSIONS_SCHEMA)


# A `chain_txs` row as `verify-chain` stores it.
CHAIN_SCHEMA: dict[str, Any] = {
    "txid": pl.String,
    "status": pl.String,
    "block_time": pl.Datetime("us", "UTC"),
    "confirmations": pl.Int64,
    "size_bytes": pl.Int64,
    "output_sats": pl.List(pl.Int64),
    "output_kinds": pl.List(pl.String),
    "non_data_sats": pl.Int64,
    "data_sats": pl.Int64,
    "zero_payouts": pl.Int32,
    "fee_sats": pl.Int64,
}
