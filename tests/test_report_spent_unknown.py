"""The headline's `spent_sats` is null (not measurable) when tasks settled but none stated a
cost, e.g. a store of webhook deliveries only (tester T6: it said "0 sats", as if nothing had
been spent); 0 when no task settled; the known costs otherwise."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from asg_audit.audit import analyze
from asg_audit.ingest_files import ingest_paths
from asg_audit.report import render

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)


def _hook(i: int) -> dict[str, object]:
    return {
        "event": "task.settled",
        "task_id": f"tsk_{i}",
        "consensus_label": "cat",
        "confidence": 1.0,
        "bsv_txid": f"{i + 1:064x}",
        "settled_at": "2026-10-01T12:00:00Z",
        "timestamp": "2026-10-01T12:00:01Z",
    }


def _spent(tmp_path: Path, records: list[dict[str, object]]) -> tuple[object, str]:
    export = tmp_path / "in.ndjson"
    export.write_text("".join(json.dumps(r) + "\n" for r in records))
    db = tmp_path / "s.duckdb"
    ingest_paths(db, [export])
    out = render(analyze(db, as_of=AS_OF), tmp_path / "r", formats="json,md", run_id="r1")
    doc = json.loads(out.paths["json"].read_text(encoding="utf-8"))
    return doc["headline"]["spent_sats"], out.paths["md"].read_text(encoding="utf-8")


def test_settled_tasks_of_no_known_cost_spent_is_not_measurable(tmp_path: Path) -> None:
    spent, md = _spent(tmp_path, [_hook(i) for i in range(3)])
    assert spent is None
    assert "| Sats spent | 0 sats |" not in md
    assert "| Sats spent | n/a |" in md


def test_no_settled_task_spent_nothing(tmp_path: Path) -> None:
    spent, _ = _spent(tmp_path, [{"task_id": "tsk_1", "status": "pending"}])
    assert spent == 0


def test_one_known_cost_is_what_was_spent(tmp_path: Path) -> None:
    known = {**_hook(9), "status": "settled", "cost_sats": 650, "worker_count": 3}
    known |= {"agreement_count": 2, "confidence": 2 / 3, "created_at": "2026-10-01T11:59:00Z"}
    del known["event"], known["timestamp"]
    spent, _ = _spent(tmp_path, [_hook(1), known])
    assert spent == 650
