"""Settled result records for the tests: a flat export line with every field set, the same
without its settlement fields, and an NDJSON export of many."""

from __future__ import annotations

import json
from pathlib import Path


def settled_record(task_id: str, **extra: object) -> dict[str, object]:
    """A flat settled result of `task_id` (3 of 3 workers agree, 975 sats); `extra` overrides
    or adds fields."""
    return {
        "task_id": task_id,
        "status": "settled",
        "consensus_label": "cat",
        "confidence": 1.0,
        "worker_count": 3,
        "agreement_count": 3,
        "bsv_txid": "ab" * 32,
        "cost_sats": 975,
        "created_at": "2026-11-01T10:00:00Z",
        "settled_at": "2026-11-01T10:00:40Z",
        **extra,
    }


SETTLEMENT_FIELDS = ("bsv_txid", "cost_sats", "settled_at")


def consensus_record(task_id: str, **extra: object) -> dict[str, object]:
    """`settled_record` without its settlement fields (`SETTLEMENT_FIELDS`: no txid, cost or
    settlement time); `extra` overrides or adds fields, added ones last."""
    record = settled_record(task_id)
    for field in SETTLEMENT_FIELDS:
        del record[field]
    return {**record, **extra}


def settled_line(task_id: str, **extra: object) -> str:
    """`settled_record` as one JSON text (no newline)."""
    return json.dumps(settled_record(task_id, **extra))


def settled_export(path: Path, tasks: int, prefix: str = "t") -> Path:
    """Write an NDJSON export of `tasks` settled results (`<prefix>0000000`, ...) to `path`."""
    with path.open("w") as fh:
        for i in range(tasks):
            fh.write(settled_line(f"{prefix}{i:07d}") + "\n")
    return path
