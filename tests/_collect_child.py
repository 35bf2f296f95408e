"""A real collect run in a child process, against the simulator on 127.0.0.1, to be signalled.

The collect_sync interrupt and signal-handler tests each run their own child script: it begins
with `CHILD_SETUP`, which gives it `a` (the arguments `start` passes, the test's own included),
`clock` (the simulator's scaled clock) and `config` (the simulator's Gateway and key, the test's
store, no deadline). The child prints JSON lines: `{"go": true}` when its run starts, its
outcome last.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from asg_audit.ingest_files import track_file
from asg_audit.sim import WorldConfig, generate_world, run_simulator
from asg_audit.store import open_store

REPO = Path(__file__).resolve().parents[1]
SCALE = 0.05  # wall seconds a simulated second
PROMPT_S = 5.0  # from the SIGINT to the end of the call (a run of 3,000 s lasts 150 wall s)

CHILD_SETUP = r"""
import json, sys
from asg_audit.clock import ScaledClock
from asg_audit.config import load_config

a = json.loads(sys.argv[1])
clock = ScaledClock(a["sim_now"], time_scale=a["scale"], anchor=a["mono"])
config = load_config(None, env={"ASG_API_KEY": a["key"], "ASG_BASE_URL": a["url"]},
                     overrides={"db_path": a["db"],
                                "collector": {"deadline_s": 1e6, "flush_interval_s": 0.2}})
"""


@contextmanager
def stuck_simulator(seed: int = 3, tasks: int = 200) -> Iterator[tuple[Any, Any]]:
    """The simulator, half its tasks stuck (pending for ever): a run has polls left to make
    until it is stopped. Yields (the running simulator, its world)."""
    world = generate_world(
        WorldConfig(seed=seed, tasks=tasks, live_fraction=0.5, anomalies={"stuck_task": tasks // 2})
    )
    with run_simulator(world, time_scale=SCALE) as running:
        yield running, world


def start(
    running: Any,
    world: Any,
    tmp_path: Path,
    child_code: str,
    *,
    stdin: bool = True,
    stderr: bool = False,
    **extra: Any,
) -> tuple[subprocess.Popen[str], Path]:
    """Track the world's submissions in a new store and start `child_code` on it, its standard
    output a pipe (standard input and error too when asked). `extra` goes into its `a`."""
    db = tmp_path / "audit.duckdb"
    track_file(db, world.write_submissions(tmp_path / "submissions.ndjson"))
    args = {
        "sim_now": running.clock.now(),
        "mono": time.monotonic(),
        "scale": SCALE,
        "key": running.api_key,
        "url": running.gateway_url,
        "db": str(db),
        **extra,
    }
    child = subprocess.Popen(
        [sys.executable, "-c", child_code, json.dumps(args)],
        cwd=REPO,
        stdin=subprocess.PIPE if stdin else None,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE if stderr else None,
        text=True,
    )
    return child, db


def reader(child: subprocess.Popen[str]) -> queue.Queue[str]:
    """The child's output lines, read by a thread as they come."""
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert child.stdout is not None
        for line in child.stdout:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    return lines


def line(lines: queue.Queue[str], timeout: float) -> dict[str, Any]:
    """The child's next JSON line, within `timeout` seconds."""
    try:
        text = lines.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError(f"no word from the child within {timeout} s") from None
    answer: dict[str, Any] = json.loads(text)
    return answer


def answers(running: Any) -> int:
    """How many poll answers (200 and 202) the simulator's Gateway has given."""
    by_status = running.stats()["gateway"]["by_status"]
    return int(by_status.get("200", 0)) + int(by_status.get("202", 0))


def wait_for_answers(
    running: Any, before: int, settle_s: float, child: subprocess.Popen[str] | None = None
) -> None:
    """Wait (30 s at most) for 10 answers more than `before`, then `settle_s` seconds; the
    child, when given, must still be running meanwhile."""
    deadline = time.monotonic() + 30
    while answers(running) < before + 10:
        alive = child is None or child.poll() is None
        assert alive and time.monotonic() < deadline, running.stats()["gateway"]
        time.sleep(0.05)
    time.sleep(settle_s)


def polling(running: Any, lines: queue.Queue[str]) -> None:
    """Wait for the child's run to have answers in (something to write when it stops)."""
    assert line(lines, 60) == {"go": True}
    wait_for_answers(running, answers(running), 0.5)


def end(child: subprocess.Popen[str], wait_s: float = 10.0) -> None:
    """Close the child's standard input (it then exits) and wait for it; kill it if it is still
    there after `wait_s` seconds (the wait's TimeoutExpired is then raised)."""
    if child.stdin is not None:
        child.stdin.close()
    try:
        child.wait(wait_s)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def track_other(db: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Another process writes to the store (`asg-audit track` of one more task)."""
    extra = tmp_path / "extra.ndjson"
    extra.write_text(
        json.dumps(
            {"task_id": "extra-1", "status": "pending", "created_at": "2026-11-01T00:00:00Z"}
        )
        + "\n"
    )
    return subprocess.run(
        [sys.executable, "-m", "asg_audit", "track", "--db", str(db), str(extra)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def collect_runs(db: Path) -> tuple[list[str], int]:
    """The statuses of the store's collect runs, oldest first, and the observations the last
    one stored."""
    with open_store(db) as store:
        runs = store.con.execute(
            "SELECT run_id, status FROM runs WHERE command = 'collect' ORDER BY started_at"
        ).fetchall()
        stored = store.con.execute(
            "SELECT count(*) FROM observations WHERE run_id = ?", [runs[-1][0]]
        ).fetchall()[0][0]
    return [status for _, status in runs], int(stored)
