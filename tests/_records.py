"""One settled result record for the ingest tests: a flat export line with every field set."""

from __future__ import annotations

import json


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


def settled_line(task_id: str, **extra: object) -> str:
    """`settled_record` as one JSON text (no newline)."""
    return json.dumps(settled_record(task_id, **extra))
