"""One collect run per store in one process, and `collect`'s run arguments checked first.

Tester T2: two collect runs on one store in one process (two threads calling `collect_sync`,
or `asyncio.gather` of two `collect`s) both ran, polled every task twice and stored each
answer twice; two processes cannot (DuckDB's file lock), DuckDB shares the file within one.
And `collect_sync(stop_event=5)` recorded a run before failing with an AttributeError, while
`run_for_s=nan` never ended the run. Real collector, real store, a gateway on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from pathlib import Path

import pytest
from _scripted_gateway import Answer, scripted_gateway, settled_body, tracked_store

from asg_audit.collector import collect, collect_sync
from asg_audit.config import AuditConfig, load_config
from asg_audit.errors import ConfigError, StoreBusyError
from asg_audit.store import open_store

IDS = [f"tsk_{i}" for i in range(4)]


def _slow_settled(task_id: str, n: int) -> Answer:
    time.sleep(0.15)  # keeps the first run polling while the second starts
    return 200, settled_body(task_id), {}


def _config(url: str, db: Path, lock_wait_s: float) -> AuditConfig:
    return load_config(
        None,
        env={"ASG_API_KEY": "asg_test_key", "ASG_BASE_URL": url},
        overrides={"db_path": str(db), "collector": {"lock_wait_s": lock_wait_s}},
    )


def _poll_observations(db: Path) -> int:
    with open_store(db, read_only=True) as store:
        (n,) = store.con.execute(
            "SELECT count(*) FROM observations WHERE source = 'poll'"
        ).fetchone() or (0,)
    return int(n)


def test_a_second_collect_in_the_same_process_waits_for_the_first(tmp_path: Path) -> None:
    db = tracked_store(tmp_path, IDS)
    with scripted_gateway(_slow_settled) as gateway:
        config = _config(gateway.url, db, lock_wait_s=30)
        summaries: list[object] = []
        threads = [
            threading.Thread(target=lambda: summaries.append(collect_sync(config, max_rps=100)))
            for _ in range(2)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert len(summaries) == 2
        # each task asked once: the second run found nothing left to poll
        assert sorted(gateway.codes(i) for i in IDS) == [[200]] * len(IDS)
    assert _poll_observations(db) == len(IDS)


def test_a_second_collect_that_may_not_wait_is_refused_as_busy(tmp_path: Path) -> None:
    db = tracked_store(tmp_path, IDS)
    with scripted_gateway(_slow_settled) as gateway:
        config = _config(gateway.url, db, lock_wait_s=0)

        async def both() -> list[object]:
            return await asyncio.gather(
                collect(config, max_rps=100), collect(config, max_rps=100), return_exceptions=True
            )

        first, second = sorted(asyncio.run(both()), key=lambda r: isinstance(r, Exception))
        assert getattr(first, "status", None) == "completed"
        assert isinstance(second, StoreBusyError)
        assert "database busy: another collect run of this process writes to it" in str(second)
        assert sorted(gateway.codes(i) for i in IDS) == [[200]] * len(IDS)
    assert _poll_observations(db) == len(IDS)
    with open_store(db, read_only=True) as store:
        runs = store.con.execute("SELECT status FROM runs WHERE command = 'collect'").fetchall()
    assert runs == [("completed",)]


@pytest.mark.parametrize("run_for_s", [math.nan, math.inf, -1, "3", True])
def test_a_bad_run_for_s_is_refused_before_a_run_is_recorded(
    tmp_path: Path, run_for_s: object
) -> None:
    db = tmp_path / "fresh.duckdb"
    config = _config("http://127.0.0.1:9", db, lock_wait_s=0)
    for call in (collect_sync, lambda c, **k: asyncio.run(collect(c, **k))):
        with pytest.raises(ConfigError, match=r"run_for_s: expected a finite number of seconds"):
            call(config, run_for_s=run_for_s)
    assert not db.exists()


@pytest.mark.parametrize("stop_event", [5, "x", object()])
def test_a_stop_event_that_is_not_a_threading_event_is_refused_first(
    tmp_path: Path, stop_event: object
) -> None:
    db = tmp_path / "fresh.duckdb"
    config = _config("http://127.0.0.1:9", db, lock_wait_s=0)
    before = threading.active_count()
    with pytest.raises(TypeError, match=r"collect_sync stop_event: expected a threading\.Event"):
        collect_sync(config, stop_event=stop_event)
    with pytest.raises(TypeError, match=r"collect stop_event: expected a threading\.Event"):
        asyncio.run(collect(config, stop_event=stop_event))  # type: ignore[arg-type]
    assert not db.exists()
    assert threading.active_count() == before


def test_a_run_cancelled_twice_while_it_waits_for_the_store_still_lets_it_go(
    tmp_path: Path,
) -> None:
    # review: the second cancel cancelled the writer's queued close; once the other run ended,
    # its writer opened the store and held it and the claim for as long as anything kept the
    # cancelled run's traceback (IPython keeps the last one): later collects were refused
    from asg_audit.store import collect_claim

    kept: list[BaseException] = []

    db = tracked_store(tmp_path, IDS)
    with scripted_gateway(_slow_settled) as gateway:
        waiting = _config(gateway.url, db, lock_wait_s=30)
        held = collect_claim(db, 0)  # another run of this process has the store
        held.__enter__()

        async def cancelled_twice() -> None:
            task = asyncio.create_task(collect(waiting, max_rps=100))
            await asyncio.sleep(0.5)  # its writer waits for the claim
            task.cancel()
            await asyncio.sleep(0.2)
            task.cancel()
            try:
                await task
            except asyncio.CancelledError as exc:
                kept.append(exc)  # its traceback holds the run's frames, as a notebook's does

        asyncio.run(cancelled_twice())
        assert len(kept) == 1
        held.__exit__(None, None, None)
        time.sleep(1.0)  # the first run's writer opens the store, then closes it
        summary = collect_sync(_config(gateway.url, db, lock_wait_s=0), max_rps=100)
        assert summary.status == "completed"
    assert _poll_observations(db) == len(IDS)
