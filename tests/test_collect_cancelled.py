"""`await collect(config)` whose task is cancelled (a notebook's "interrupt kernel" cancels the
cell's task) records its run `interrupted`, not `failed` with the error "CancelledError"
(tester T10); what it polled is kept, and the cancel reaches the caller."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from _collect_child import collect_runs, stuck_simulator

from asg_audit.collector import collect
from asg_audit.config import AuditConfig, Secret
from asg_audit.ingest_files import track_file


def test_a_cancelled_collect_is_recorded_interrupted(tmp_path: Path) -> None:
    db = tmp_path / "audit.duckdb"
    with stuck_simulator() as (running, world):
        track_file(db, world.write_submissions(tmp_path / "submissions.ndjson"))
        config = AuditConfig(
            db_path=db, base_url=running.gateway_url, api_key=Secret(running.api_key)
        )

        async def cell() -> None:
            task = asyncio.create_task(
                collect(config, clock=running.clock, max_rps=20, run_for_s=3000.0)
            )
            await asyncio.sleep(2.0)  # polling, and writing what it polled
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(cell())
    statuses, stored = collect_runs(db)
    assert statuses == ["interrupted"]
    assert stored > 0
