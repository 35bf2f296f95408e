"""A collector run is not failed as "no usable answer" while 200s await the normaliser.

Answers are written in batches; a 200 is usable only once the normaliser accepts it. Bad bodies
(truncated, malformed) that arrive before the first write must not end the run as a wrong base
URL when good answers are waiting in the buffer: a clean-clone CI run under the simulator's
harsh faults failed this way (5 malformed 200s in 11 s, the good ones not yet written).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from _hardening_procs import query
from _scripted_gateway import Answer, scripted_gateway, settled_body, tracked_store

from asg_audit.clock import ScaledClock
from asg_audit.collector import collect
from asg_audit.config import load_config
from asg_audit.errors import ApiStatusError

KEY = "sk_sandbox_verdicts"
GOOD = "tsk_good"
BAD = [f"tsk_bad{i}" for i in range(1, 6)]


def _config(db: Path, url: str):
    # a write every 2 s of wall time, 40 clock seconds at this clock's pace: the bad bodies
    # pile up for far longer than the 10 clock seconds of the unusable rule before it
    return load_config(
        None,
        env={"ASG_API_KEY": KEY, "ASG_BASE_URL": url},
        overrides={
            "db_path": str(db),
            "collector": {
                "max_rps": 50.0,
                "deadline_s": 80.0,
                "flush_interval_s": 2.0,
                "flush_max_interval_s": 2.0,
                "batch_size": 100_000,
            },
        },
    )


def _script(good: bool):
    def answer(task_id: str, n: int) -> Answer:
        if task_id == GOOD and good:
            return 200, settled_body(task_id), {}
        return 200, b'{"task_id": "' + task_id.encode() + b'", "stat', {}

    return answer


def test_bad_bodies_before_the_first_write_do_not_fail_a_run_with_good_answers_waiting(
    tmp_path: Path,
) -> None:
    db = tracked_store(tmp_path, [GOOD, *BAD], options="a|b")
    with scripted_gateway(_script(good=True)) as gateway:
        clock = ScaledClock(1_790_000_000.0, time_scale=0.05)
        summary = asyncio.run(collect(_config(db, gateway.url), clock=clock, schedule="fixed"))
        bad_answers = [a for a in gateway.log if a[1] != GOOD]
    # the rule would have fired before the first write: 3+ bad answers over 10+ clock seconds
    assert len(bad_answers) >= 3
    assert summary.status in ("completed", "partial")
    assert summary.stats["unusable_bodies"] == len(bad_answers)
    assert query(db, "SELECT task_id, status FROM results WHERE status = 'settled'") == [
        (GOOD, "settled")
    ]
    assert query(db, "SELECT count(*) FROM rejects")[0][0] == len(bad_answers)


def test_a_run_whose_every_200_is_bad_still_fails_as_no_usable_answer(tmp_path: Path) -> None:
    db = tracked_store(tmp_path, [GOOD, *BAD], options="a|b")
    with scripted_gateway(_script(good=False)) as gateway:
        clock = ScaledClock(1_790_000_000.0, time_scale=0.05)
        with pytest.raises(ApiStatusError) as failure:
            asyncio.run(collect(_config(db, gateway.url), clock=clock, schedule="fixed"))
    assert f"no usable answer from {gateway.url}" in str(failure.value)
    assert query(db, "SELECT count(*) FROM results WHERE status = 'settled'")[0][0] == 0


def test_a_run_whose_200s_the_normaliser_always_rejects_still_fails_before_its_deadline(
    tmp_path: Path,
) -> None:
    """Every 200 is another task's result (rejected as `task_id_mismatch`), and 200s keep
    arriving while each write is under way: once a write's 200s all came back rejected, the
    200s waiting are no reason to defer the verdict (it waited for the deadline; code review)."""
    ids = [f"tsk_r{i:03d}" for i in range(400)]
    db = tracked_store(tmp_path, ids, options="a|b")

    def someone_else(task_id: str, n: int) -> Answer:
        return 200, settled_body("tsk_not_asked"), {}

    config = _config(db, "http://127.0.0.1:9").replace(
        collector={"max_rps": 400.0, "deadline_s": 3600.0, "flush_interval_s": 0.2}
    )
    with scripted_gateway(someone_else) as gateway:
        clock = ScaledClock(1_790_000_000.0, time_scale=0.05)
        started = clock.now()
        with pytest.raises(ApiStatusError) as failure:
            asyncio.run(collect(config.replace(base_url=gateway.url), clock=clock))
        took = clock.now() - started
    assert "no usable answer" in str(failure.value)
    assert "a body the normaliser rejected" in str(failure.value)
    assert took < 600, took  # the deadline is 3,600 clock seconds
    assert query(db, "SELECT DISTINCT reason FROM rejects") == [("task_id_mismatch",)]
