"""A stop ends `collect`'s wait for a busy store at once, not when `lock_wait_s` runs out.

`collect` waits for the store on its writer thread (for another process's lock, or for this
process's collect claim) while its event loop handles SIGINT/SIGTERM by setting a flag: the
wait did not look at it, so Ctrl-C, or systemd's SIGTERM, went unanswered for the whole
`lock_wait_s` (10 s by default, up to a day as configured). Now the wait ends within a tenth of
a second of the stop: exit 3, `database busy: ... (a stop ended the wait after N s)`, no run
recorded. Real commands, a real store held open by another process, a real signal.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from _hardening_procs import clean_env
from _scripted_gateway import tracked_store

from asg_audit.collector import collect_sync
from asg_audit.config import load_config
from asg_audit.errors import StoreBusyError
from asg_audit.store import collect_claim, open_store

IDS = ["tsk_a", "tsk_b"]
HOLD = "import duckdb, sys, time\ncon = duckdb.connect(sys.argv[1])\nprint('held', flush=True)\ntime.sleep(120)\n"


def _collect_runs(db: Path) -> list[tuple[str]]:
    with open_store(db, read_only=True) as store:
        return store.con.execute("SELECT status FROM runs WHERE command = 'collect'").fetchall()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_ends_collects_wait_for_a_store_another_process_holds(
    tmp_path: Path, sig: signal.Signals
) -> None:
    db = tracked_store(tmp_path, IDS)
    config = tmp_path / "c.toml"
    config.write_text("[collector]\nlock_wait_s = 120\n")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(db)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        cmd = [sys.executable, "-m", "asg_audit", "collect", "--db", str(db)]
        env = clean_env(ASG_API_KEY="asg_test_key", ASG_BASE_URL="http://127.0.0.1:9")
        proc = subprocess.Popen(
            [*cmd, "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        time.sleep(3.0)  # started, and waiting for the store
        assert proc.poll() is None, proc.communicate()
        sent = time.monotonic()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 3, (out, err)
    assert took < 5, took  # was the rest of lock_wait_s (117 s)
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"asg-audit: error: {db}: database busy: another process has it open")
    assert "(a stop ended the wait after " in last, last
    assert _collect_runs(db) == []  # no run was started


def test_a_stop_event_ends_a_wait_for_this_processs_collect_claim(tmp_path: Path) -> None:
    db = tracked_store(tmp_path, IDS)
    config = load_config(
        None,
        env={"ASG_API_KEY": "asg_test_key", "ASG_BASE_URL": "http://127.0.0.1:9"},
        overrides={"db_path": str(db), "collector": {"lock_wait_s": 120}},
    )
    stop = threading.Event()
    outcome: list[BaseException | object] = []

    def run() -> None:
        try:
            outcome.append(collect_sync(config, stop_event=stop))
        except BaseException as exc:  # the test looks at what it was
            outcome.append(exc)

    with collect_claim(db, 0):  # another collect run of this process has the store
        thread = threading.Thread(target=run)
        thread.start()
        time.sleep(1.0)
        assert thread.is_alive()  # waiting for the claim
        sent = time.monotonic()
        stop.set()
        thread.join(30)
        took = time.monotonic() - sent
    assert not thread.is_alive()
    assert took < 2, took
    assert len(outcome) == 1 and isinstance(outcome[0], StoreBusyError), outcome
    message = str(outcome[0])
    assert "database busy: another collect run of this process writes to it" in message
    assert "(a stop ended the wait after " in message
    assert _collect_runs(db) == []


def test_without_a_stop_the_wait_still_lasts_lock_wait_s(tmp_path: Path) -> None:
    db = tracked_store(tmp_path, IDS)
    with collect_claim(db, 0):
        started = time.monotonic()
        with (
            pytest.raises(StoreBusyError, match=r"writes to it \(waited 0\.5 s\)$"),
            collect_claim(db, 0.5, stopped=lambda: False),
        ):
            pass
        assert 0.5 <= time.monotonic() - started < 2
