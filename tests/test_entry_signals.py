"""The entry point: a Ctrl-C or SIGTERM at any moment of any command is one line and exit 3
(or the command's own exit code when it had already finished), never a traceback or a kill."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pytest
from _audit_job import offline_job, result_lines

from asg_audit.ingest_files import ingest_paths

SCRIPT = Path(sys.executable).parent / "asg-audit"


def _store(tmp_path: Path) -> Path:
    data = tmp_path / "in.jsonl"
    data.write_text(
        '{"task_id": "tsk_1", "status": "settled", "consensus_label": "cat", "confidence": 1,'
        ' "worker_count": 3, "agreement_count": 3}\n'
    )
    db = tmp_path / "s.duckdb"
    ingest_paths(db, [data])
    return db


def _signalled(cmd: list[str], sig: int, delay_s: float) -> tuple[int, str]:
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    threading.Timer(delay_s, proc.send_signal, [sig]).start()
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


def _assert_clean(code: int, err: str, sig: int) -> None:
    assert not re.search(r'File "[^"]*/asg_audit/', err), err
    assert "Traceback" not in err or err.startswith("Fatal Python error: init_"), err
    if code == 3:
        assert err.strip().splitlines()[-1] == "asg-audit: interrupted", err
    elif code == -sig or code == 1:
        # only before Python itself is ready (its own start-up, not a line of ours ran)
        assert err == "" or err.startswith("Fatal Python error: init_"), (code, err)
    else:
        assert code == 0, (code, err)  # the command had finished: its exit code stands


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("command", [["runs"], ["db", "info"]], ids=["runs", "db-info"])
def test_a_stop_signal_at_any_moment_of_a_short_command(
    tmp_path: Path, command: list[str], sig: int
) -> None:
    db = _store(tmp_path)
    codes = set()
    for delay_s in (0.05, 0.12, 0.2, 0.28, 0.36, 0.44, 0.52, 0.6, 0.8):
        code, err = _signalled([str(SCRIPT), *command, "--db", str(db)], sig, delay_s)
        _assert_clean(code, err, sig)
        codes.add(code)
    assert 3 in codes  # some signal landed while the command ran (the start-up is ~0.4 s)


@pytest.mark.parametrize("delay_s", [0.2, 0.4, 0.6, 0.9])
def test_sigterm_in_the_first_second_of_audit_is_interrupted(
    tmp_path: Path, delay_s: float
) -> None:
    db = _store(tmp_path)
    cmd = [str(SCRIPT), "audit", "--db", str(db), "--out", str(tmp_path / "r")]
    code, err = _signalled(cmd, signal.SIGTERM, delay_s)
    _assert_clean(code, err, signal.SIGTERM)
    assert code == 3, (code, err)


def _run_with_cli_raising(expr: str) -> subprocess.CompletedProcess[str]:
    probe = (
        "import sys, asg_audit.cli\n"
        "def failing(argv):\n"
        f"    {expr}\n"
        "asg_audit.cli.main = failing\n"
        "from asg_audit.entry import main\n"
        "sys.exit(main(['db', 'info']))\n"
    )
    return subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)


@pytest.mark.parametrize(
    "expr",
    [
        # Python 3.11 wraps a KeyboardInterrupt that lands in a class's __set_name__ (ipaddress,
        # imported by the command line) in a RuntimeError
        "raise RuntimeError('Error calling __set_name__') from KeyboardInterrupt()",
        # DuckDB's word for a statement a signal interrupted
        "raise RuntimeError('Query interrupted')",
    ],
)
def test_interrupts_in_other_forms_are_interrupted(expr: str) -> None:
    done = _run_with_cli_raising(expr)
    assert done.returncode == 3 and done.stderr == "asg-audit: interrupted\n", done.stderr


def test_a_real_error_still_propagates() -> None:
    done = _run_with_cli_raising("raise RuntimeError('a real bug')")
    assert done.returncode == 1 and "RuntimeError: a real bug" in done.stderr


def test_a_stop_python_would_swallow_is_raised_again() -> None:
    # A stop signal whose handler runs inside a weakref callback: Python prints "Exception
    # ignored" and goes on. The command line's handlers raise it again at the next moment.
    probe = (
        "import signal, weakref\n"
        "from asg_audit.stopsignals import stop_on_signals\n"
        "stop_on_signals()\n"
        "class A: pass\n"
        "def callback(ref):\n"
        "    signal.raise_signal(signal.SIGTERM)\n"
        "    sum(range(1000))  # the handler runs here, where its exception is ignored\n"
        "a = A(); r = weakref.ref(a, callback); del a\n"
        "try:\n"
        "    sum(range(10**8))\n"
        "    print('not stopped')\n"
        "except KeyboardInterrupt as exc:\n"
        "    print('stopped', type(exc).__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.stdout == "stopped StopSignal\n", (done.stdout, done.stderr)
    assert "Exception ignored" not in done.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_second_signal_does_not_cut_the_clean_up_of_an_audit(tmp_path: Path, sig: int) -> None:
    # two quick signals while the audit ingests its drop folder: the run is recorded
    # interrupted, never left running
    job = offline_job(tmp_path, 0)
    (job["drop"] / "export.ndjson").write_text(result_lines(150_000))
    proc = subprocess.Popen(
        [str(SCRIPT), "audit", "--config", str(job["config"]), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    first = proc.stderr.readline()  # the run is recorded and its steps begin: the ingest's
    assert first.startswith("warning: no ASG_API_KEY"), first
    proc.send_signal(sig)
    time.sleep(0.05)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 3, err
    assert err.splitlines()[-1] == "asg-audit: interrupted", err
    assert [status for _, status in _audit_runs(job["db"])] == ["interrupted"]
    assert json.loads(out)["error"] == "interrupted"


def _audit_runs(db: Path) -> list[tuple[str, str]]:
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute("SELECT run_id, status FROM runs WHERE command = 'audit'").fetchall()
    return [(r[0], r[1]) for r in rows]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("delay_s", [0.15, 0.3])
def test_audit_json_interrupted_while_starting_still_prints_its_outcome(
    tmp_path: Path, sig: int, delay_s: float
) -> None:
    job = offline_job(tmp_path, 3)
    proc = subprocess.Popen(
        [str(SCRIPT), "audit", "--config", str(job["config"]), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    threading.Timer(delay_s, proc.send_signal, [sig]).start()
    out, err = proc.communicate(timeout=120)
    _assert_clean(proc.returncode, err, sig)
    assert proc.returncode == 3, (proc.returncode, err)  # Python is ready long before 0.15 s
    assert json.loads(out)["error"] == "interrupted", (out, err)
