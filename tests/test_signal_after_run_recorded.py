"""A one-run command (`ingest`, `track`, `verify-chain`, `billing`, `collect`) whose run is
recorded as ended has done its work: a stop signal from then on is left alone, so its summary
and findings are printed whole and its exit code stands. A signal in the moment between the
record and the command's return (its store being closed) used to end `billing` "interrupted"
with nothing printed although `runs` showed it `ok` (tester S: 16 of 20 signals in a window).
`audit` records a run per step: a signal after a step's run still stops the audit."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

import duckdb

SCRIPT = Path(sys.executable).parent / "asg-audit"

_PROBE = """
import signal, sys
from asg_audit.stopsignals import one_run_command, stop_on_signals
from asg_audit.store import open_store
stop_on_signals()
one_run_command("billing" if sys.argv[2] == "one-run" else "audit")
with open_store(sys.argv[1]) as store:
    run_id = store.start_run("billing")
    store.finish_run(run_id, status=sys.argv[3])
    try:
        signal.raise_signal(signal.SIGTERM)
    except KeyboardInterrupt as exc:
        print("stopped", type(exc).__name__)
    else:
        print("left alone")
"""


def _probe(tmp_path: Path, mode: str, status: str) -> str:
    db = tmp_path / f"{mode}-{status}.duckdb"
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, str(db), mode, status],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def test_a_signal_after_a_one_run_commands_record_is_left_alone(tmp_path: Path) -> None:
    assert _probe(tmp_path, "one-run", "ok") == "left alone"
    assert _probe(tmp_path, "one-run", "failed") == "left alone"


def test_a_signal_after_an_interrupted_record_or_in_audit_still_stops(tmp_path: Path) -> None:
    assert _probe(tmp_path, "one-run", "interrupted") == "stopped StopSignal"
    # `audit`'s billing step recorded its run: the audit goes on, and a signal stops it
    assert _probe(tmp_path, "audit", "ok") == "stopped StopSignal"


def _export(path: Path, tasks: int) -> Path:
    with path.open("w") as fh:
        for i in range(tasks):
            record = {
                "task_id": f"tsk_{i:06d}",
                "status": "settled",
                "consensus_label": "cat",
                "confidence": 1,
                "worker_count": 3,
                "agreement_count": 3,
            }
            fh.write(json.dumps(record) + "\n")
    return path


def test_ingest_stopped_at_any_moment_says_what_its_run_says(tmp_path: Path) -> None:
    # exit 3 "interrupted" <=> the run is not recorded as done; exit 0 <=> the summary printed
    export = _export(tmp_path / "in.ndjson", 20_000)
    outcomes = set()
    for i, delay_s in enumerate((0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0, 1.1, 1.3)):
        db = tmp_path / f"s{i}.duckdb"
        proc = subprocess.Popen(
            [str(SCRIPT), "ingest", str(export), "--db", str(db), "--quiet"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        threading.Timer(delay_s, proc.send_signal, [signal.SIGTERM]).start()
        out, err = proc.communicate(timeout=120)
        if not db.exists() or proc.returncode not in (0, 3):
            continue  # stopped before the store existed (or Python's own start-up)
        con = duckdb.connect(str(db), read_only=True)
        try:
            created = con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'runs'")
            runs = (
                con.execute("SELECT status FROM runs WHERE command = 'ingest'").fetchall()
                if created.fetchall()[0][0]
                else []  # stopped while the store was being created: its schema rolled back
            )
        finally:
            con.close()
        status = runs[0][0] if runs else None
        outcomes.add((proc.returncode, status))
        if proc.returncode == 3:
            assert status in (None, "interrupted"), (delay_s, status, err)
            assert "Traceback" not in err, err
        else:
            assert status == "ok" and "20,000" in out, (delay_s, status, out, err)
    assert outcomes, "no run reached the store"
