"""A stop signal as `collect`'s run is being recorded (tester A4: `audit` ignored a Ctrl-C or
SIGTERM that came as its collect step's time budget ran out, and ran on through verify-chain,
billing and the report to exit 1). The run's outcome was settled, so the signal only set a
stop flag nobody read.

Now the run stands as recorded and the signal goes on to the handlers that were in place: here
Python's own, so `collect_sync` raises KeyboardInterrupt after the run is recorded. Real
simulator, real store; the SIGINT is sent as the run's end is written.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
from _hardening_procs import query

from asg_audit.collector import collect_sync
from asg_audit.config import load_config
from asg_audit.ingest_files import track_file
from asg_audit.pollwriter import PollWriter
from asg_audit.sim import WorldConfig, generate_world, run_simulator


def test_a_signal_as_the_run_is_recorded_is_not_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = generate_world(WorldConfig(seed=5, tasks=10, live_fraction=0.0))
    db = tmp_path / "c.duckdb"
    track_file(db, world.write_submissions(tmp_path / "submissions.ndjson"))
    finish_run = PollWriter.finish_run
    sent: list[str] = []

    def finish_then_signal(self: PollWriter, run_id: str, status: str, stats: Any) -> None:
        finish_run(self, run_id, status, stats)
        sent.append(status)
        os.kill(os.getpid(), signal.SIGINT)  # from the writer's thread, as a real one may

    monkeypatch.setattr(PollWriter, "finish_run", finish_then_signal)
    with run_simulator(world, time_scale=0.005) as sim:
        env = {"ASG_BASE_URL": sim.gateway_url, "ASG_API_KEY": sim.api_key}
        config = load_config(None, env=env, overrides={"db_path": str(db)})
        with pytest.raises(KeyboardInterrupt):
            collect_sync(config, run_for_s=2.0, max_rps=200, handle_signals=True)
    assert sent and sent[0] in ("completed", "partial")
    # the run stands as recorded: the signal came after its outcome
    assert query(db, "SELECT status FROM runs WHERE command = 'collect'") == [(sent[0],)]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
