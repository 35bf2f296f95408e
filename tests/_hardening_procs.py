"""Helpers of the hardening tests: commands as subprocesses, seeded SIGKILLs, store fingerprints.

The kill harness starts a command, kills it with SIGKILL at a seeded random moment, checks that
the store still opens and that what was committed before the kill is still there, restarts the
command, and repeats until the requested number of kills landed on a live process; then it lets
the command finish. The expected answer is a run of the same command without kills.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

REPO = Path(__file__).resolve().parents[1]
SECRET_ENV = ("ASG_API_KEY", "API_KEY", "WOC_API_KEY", "ASG_WEBHOOK_SECRET", "ASG_AUDIT_DB")

# The per-task fields a run derives from its inputs (not when it happened to see them).
RESULT_COLUMNS = (
    "task_id, status, consensus_label, confidence, worker_count, agreement_count, bsv_txid, "
    "cost_sats, cost_unknown, task_type, created_at, settled_at, delivered_at, shape, flags, "
    "sources, observation_count, conflict_count"
)


# `python -c FSIZE_LIMITED LIMIT <asg-audit arguments>`: the command with every file it writes
# limited to LIMIT bytes (RLIMIT_FSIZE): a full disk (EFBIG where a real one gives ENOSPC)
FSIZE_LIMITED = (
    "import resource, runpy, signal, sys\n"
    "limit = int(sys.argv.pop(1))\n"
    "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
    "resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))\n"
    "runpy.run_module('asg_audit', run_name='__main__')\n"
)


def ingest_limited(db: Path, export: Path, limit: int) -> subprocess.CompletedProcess[str]:
    """Run `asg-audit ingest --db DB EXPORT` with every file it writes limited to `limit` bytes."""
    return subprocess.run(
        [sys.executable, "-c", FSIZE_LIMITED, str(limit), "ingest", "--db", str(db), str(export)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def track_cli(db: Path, path: Path) -> subprocess.CompletedProcess[str]:
    """Run `asg-audit track --db DB PATH` in a subprocess (from the repository's folder)."""
    return subprocess.run(
        [sys.executable, "-m", "asg_audit", "track", "--db", str(db), str(path)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


def clean_env(*, drop_prefix: str | None = None, **extra: str) -> dict[str, str]:
    """Return the environment of a child command: no inherited secrets or store, plus `extra`.

    With `drop_prefix` (`"ASG_"`), no inherited variable whose name starts with it either.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in SECRET_ENV and not (drop_prefix and k.startswith(drop_prefix))
    }
    env.update(extra)
    return env


def asg_audit(*args: str) -> list[str]:
    """Return the argv of `python -m asg_audit ARGS`."""
    return [sys.executable, "-m", "asg_audit", *args]


def run_asg_audit(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """Run `asg-audit ARGS` in a subprocess in `cwd` (without it, in this process's folder),
    its output captured as text; `env` defaults to `clean_env(drop_prefix="ASG_")` (none of the
    shell's ASG_ settings)."""
    return subprocess.run(
        asg_audit(*args),
        cwd=cwd,
        env=clean_env(drop_prefix="ASG_") if env is None else env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def report_via_cli(folder: Path, submissions: Path, results: Path) -> Path:
    """Run `track SUBMISSIONS`, `ingest --quiet RESULTS` and `report` on the store
    `folder/s.duckdb`, in `folder`, each to exit 0 or 1 (findings); return the report's folder
    (`folder/rep/latest`)."""
    db = str(folder / "s.duckdb")
    for args in (
        ("track", "--db", db, str(submissions)),
        ("ingest", "--quiet", "--db", db, str(results)),
        ("report", "--db", db, "--out", str(folder / "rep")),
    ):
        done = run_asg_audit(*args, cwd=folder)
        assert done.returncode in (0, 1), done.stderr
    return folder / "rep" / "latest"


def query(db: Path, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Return the rows of `sql` on a read-only connection (closed after)."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


def results_fingerprint(db: Path) -> list[tuple[Any, ...]]:
    """Return every results row, the fields a run derives from its inputs, sorted by task."""
    return query(db, f"SELECT {RESULT_COLUMNS} FROM results ORDER BY task_id")


def duplicated_observations(db: Path) -> int:
    """Return how many (source, task, payload) observations are stored more than once."""
    return query(
        db,
        "SELECT count(*) FROM (SELECT source, task_id, payload_hash FROM observations"
        " GROUP BY ALL HAVING count(*) > 1)",
    )[0][0]


def assert_store_opens_cleanly(db: Path) -> dict[str, int]:
    """Open the store as a writer (migrations, WAL replay), read every table, checkpoint.

    Returns the row count of every table.
    """
    from asg_audit.store import open_store

    with open_store(db) as store:
        counts = {t: store.count(t) for t in store.tables()}
        for table in counts:  # reading every column touches every block of the table
            store.con.execute(f'SELECT * FROM "{table}"').fetchall()
        store.con.execute("CHECKPOINT")
    with open_store(db, read_only=True) as store:
        assert {t: store.count(t) for t in store.tables()} == counts
    return counts


def wait_store_open(proc: subprocess.Popen[bytes], db: Path, timeout: float = 60.0) -> None:
    """Wait until `proc` holds the store file open (it is past start-up, about to work)."""
    target = str(db.resolve())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            fds = os.listdir(f"/proc/{proc.pid}/fd")
        except OSError:
            return
        for fd in fds:
            try:
                if os.readlink(f"/proc/{proc.pid}/fd/{fd}") == target:
                    return
            except OSError:
                continue
        time.sleep(0.01)


def wait_store_written(
    proc: subprocess.Popen[bytes], db: Path, *, grown: int = 16384, timeout: float = 60.0
) -> None:
    """Wait until `proc` has written at least `grown` bytes to the store's write-ahead log (a
    commit of data, not just its run's record), or has ended. A checkpoint that empties the log
    lowers the mark from which growth is counted."""
    wal = Path(f"{db}.wal")
    low: int | None = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            size = wal.stat().st_size
        except OSError:
            size = 0
        low = size if low is None else min(low, size)
        if size - low >= grown:
            time.sleep(0.05)  # the commit's last writes
            return
        time.sleep(0.005)


@dataclass
class KillLog:
    """What the harness did: kills that hit a live process, and the committed rows after each."""

    kills: int = 0
    restarts: int = 0
    progress: list[int] = field(default_factory=list)
    final_returncode: int | None = None
    # Seconds from `ready` (or the start) to the end of the last start: the scale of a run's work
    # on this machine, for the kill delays of a run of the same work (a slower machine's kills
    # must land as far into the work as a fast one's).
    work_seconds: float = 0.0
    final_stdout: str = ""
    final_stderr: str = ""
    outputs: list[str] = field(default_factory=list)


def run_with_kills(
    argv: Sequence[str],
    *,
    db: Path,
    kills: int,
    seed: int,
    delay: tuple[float, float],
    env: dict[str, str],
    cwd: Path,
    committed: Callable[[Path], int],
    ready: Callable[[subprocess.Popen[bytes]], None] | None = None,
    finish: Callable[[subprocess.Popen[bytes]], None] | None = None,
    max_attempts: int | None = None,
    last_after_commit: bool = False,
) -> KillLog:
    """Run `argv` with `kills` SIGKILLs at seeded moments, then let its last start finish.

    `delay` is the (low, high) of the uniform wait after `ready` (default: the start) before a
    kill. `committed(db)` counts what the store holds; after each kill it must not shrink (what
    was committed stays committed) and the store must open. `finish` stops a server (a command
    that does not end by itself) once the caller's work is done. With `last_after_commit`, when
    no kill before the last one left anything committed, the last waits for the store's log to
    grow (`wait_store_written`) before its delay: at least one kill then lands after a commit,
    however slow the machine.
    """
    rng = random.Random(seed)
    log = KillLog()
    max_attempts = max_attempts or kills * 4 + 4
    previous = committed(db) if db.exists() else 0
    for _ in range(max_attempts):
        proc = subprocess.Popen(
            list(argv), env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        log.restarts += 1
        if log.kills >= kills:
            break
        if ready is not None:
            ready(proc)
        if last_after_commit and log.kills == kills - 1 and not any(log.progress):
            wait_store_written(proc, db)
        time.sleep(rng.uniform(*delay))
        if proc.poll() is not None:  # it finished before the kill: nothing left to kill
            out, err = proc.communicate()
            log.outputs.append(err.decode(errors="replace"))
            if proc.returncode != 0:
                raise AssertionError(f"{argv[3:]} failed: {err.decode(errors='replace')[-2000:]}")
            log.final_returncode, log.final_stdout = proc.returncode, out.decode()
            return log
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        log.kills += 1
        now = committed(db) if db.exists() else 0
        assert now >= previous, f"committed rows went from {previous} to {now} after a kill"
        log.progress.append(now)
        previous = now
    else:
        raise AssertionError(f"{kills} kills did not land in {max_attempts} starts")
    if ready is not None:
        ready(proc)
    started = time.monotonic()
    if finish is not None:
        finish(proc)
    out, err = proc.communicate(timeout=300)
    log.work_seconds = time.monotonic() - started
    log.final_returncode = proc.returncode
    log.final_stdout, log.final_stderr = out.decode(), err.decode()
    return log


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """Make a folder read-only for this process: root ignores permission bits, not `chattr +i`."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(folder)], check=True)
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
    else:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
