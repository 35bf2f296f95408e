"""An interrupted `analyze()` leaves the store unlocked even while its exception is kept.

IPython keeps the last traceback (`sys.last_traceback`, `%tb`), and with it every frame the
KeyboardInterrupt went through. A Ctrl-C (Jupyter's "interrupt kernel") that landed in the loop
reading the results batch by batch left that frame's Arrow reader alive, and the reader kept
the whole DuckDB database open after the store was closed: another process's `ingest` found
the database busy, a writer in the same process was refused ("open read-only in this
process"), and the next `analyze()` failed to lower DuckDB's memory limit.

A real store (the analyses benchmark's generator), a real SIGINT from a timer thread at
growing delays until one lands while the results are read, every exception kept.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

from _hardening_procs import clean_env

REPO = Path(__file__).resolve().parents[1]

_SCRIPT = textwrap.dedent(
    """
    import json, os, signal, subprocess, sys, threading, time, traceback
    import asg_audit
    from asg_audit.store import open_store

    db = sys.argv[1]
    kept = []  # every interrupt, traceback and all, as a notebook keeps the last one
    attempts = []

    def landed_in(exc):
        frames = []
        while exc is not None:
            frames += traceback.extract_tb(exc.__traceback__)
            exc = exc.__cause__ or exc.__context__
        if any(f.name == "analyze_frames" for f in frames):
            return "after reading"
        for f in frames:
            # in `_fetch`, past the statement that makes the Arrow reader: in the batch loop
            if f.name == "_fetch" and "to_arrow_reader" not in (f.line or ""):
                return "batch loop"
        return "before"

    def other_process_writes():
        done = subprocess.run(
            [sys.executable, "-c", "import duckdb, sys; duckdb.connect(sys.argv[1]).close()", db],
            capture_output=True, text=True, timeout=60,
        )
        return done.returncode == 0, done.stderr.strip()[-200:]

    landed = 0
    delay = 0.02
    while landed < 2 and delay < 5.0:
        timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT))
        where = None
        try:
            try:
                timer.start()
                asg_audit.analyze(db)
                where = "after reading"
            finally:
                timer.cancel()
                timer.join()
        except KeyboardInterrupt as exc:
            kept.append(exc)
            where = landed_in(exc)
        attempt = {"delay": round(delay, 3), "where": where}
        delay += 0.01
        if where != "batch loop":
            attempts.append(attempt)
            if where == "after reading":
                break  # later delays land later still
            continue
        landed += 1
        # the exception is still held (in `kept`): the store must be free all the same
        attempt["other_process_writes"] = other_process_writes()
        try:
            with open_store(db):
                pass
            attempt["writer_here"] = "ok"
        except Exception as exc:
            attempt["writer_here"] = f"{type(exc).__name__}: {exc}"
        try:
            attempt["analyze_again"] = asg_audit.analyze(db).summary()["tasks"]
        except Exception as exc:
            attempt["analyze_again"] = f"{type(exc).__name__}: {exc}"
        attempts.append(attempt)
    print(json.dumps({"attempts": attempts, "kept": len(kept)}))
    """
)


def _store(tmp_path: Path, tasks: int) -> Path:
    spec = importlib.util.spec_from_file_location(
        "_bench_analyses", REPO / "benchmarks" / "analyses.py"
    )
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.DATA = tmp_path  # type: ignore[attr-defined]
    return Path(bench.generate(tasks))


def test_interrupt_while_reading_leaves_the_store_free_while_the_exception_is_kept(
    tmp_path: Path,
) -> None:
    tasks = 600_000
    db = _store(tmp_path, tasks)
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(db)],
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=600,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    in_fetch = [a for a in out["attempts"] if a["where"] == "batch loop"]
    # the timing is the machine's: at least one interrupt must land while the results are read
    assert in_fetch, out
    for attempt in in_fetch:
        assert attempt["other_process_writes"][0], attempt
        assert attempt["writer_here"] == "ok", attempt
        assert attempt["analyze_again"] == tasks, attempt
