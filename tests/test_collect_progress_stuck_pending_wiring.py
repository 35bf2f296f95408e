"""The collector's reporter and run use `pollprogress` for the stuck-pending ETA and the log
heartbeat (see test_collect_progress_stuck_pending.py for the rules)."""

from __future__ import annotations

import logging
import time

import pytest

from asg_audit.config import load_config
from asg_audit.pollprogress import WaitingProgress
from asg_audit.pollrun import CollectorRun
from asg_audit.polltask import PollTask
from asg_audit.pollwriter import CollectorSettings, CollectProgressReporter
from asg_audit.schedule import FixedInterval, TaskFacts


class Frozen:
    def now(self) -> float:
        return 1000.0

    async def sleep(self, seconds: float) -> None:
        pass


def _run_with_three_stuck_tasks() -> CollectorRun:
    config = load_config(None, env={"ASG_API_KEY": "sk_x"}, overrides={"db_path": "x.duckdb"})
    run = CollectorRun(
        config=config,
        settings=CollectorSettings(),
        policy=FixedInterval(60.0),
        clock=Frozen(),
        task_ids=None,
        run_for_s=None,
        progress=None,
        stop_event=None,
        transport=None,
    )
    for i, at in enumerate((1055.0, 1057.0, 1058.0)):
        t = PollTask(facts=TaskFacts(f"tsk_s{i}", None, None, None), next_poll_at=at)
        t.attempts, t.polls = 30, 30
        run.tasks[t.facts.task_id] = t
        run._push(t)
    run.pending = 3
    run.summary.settled = 2991
    return run


def test_run_snapshot_says_what_stuck_tasks_wait_for() -> None:
    snap = _run_with_three_stuck_tasks().snapshot()
    assert isinstance(snap, WaitingProgress)
    assert snap.open_ended == 3
    assert snap.first_poll_in_s == pytest.approx(55.0, abs=1.0)
    assert snap.next_poll_in_s == pytest.approx(58.0, abs=1.0)
    line = CollectProgressReporter(live=False).line(snap)
    assert line.endswith("ETA ? (3 pending, next poll in 55s)") or line.endswith(
        "ETA ? (3 pending, next poll in 54s)"
    ), line


def test_reporter_logs_unchanged_counts_once_a_minute(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    snap = _run_with_three_stuck_tasks().snapshot()
    reporter = CollectProgressReporter(live=False, log_every_s=10.0)
    clock = [0.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    with caplog.at_level(logging.INFO, logger="asg_audit.collector"):
        for step in range(1800):  # 15 minutes, a snapshot every 0.5 s
            clock[0] = step / 2
            reporter.update(snap)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("collect: ")]
    assert len(lines) == 15, len(lines)
