"""Ctrl-C while DuckDB is normalising a file: the run says `interrupted`, exit 3, no traceback.

DuckDB surfaces an interrupted statement as `RuntimeError("Query interrupted")`, as an
InterruptException, or as "Current transaction is aborted" on the next statement; whichever it
is, the ingest rolls back the file being read, keeps what was committed and says so.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import duckdb
import pytest
from _records import settled_line

from asg_audit.ingest_files import ingest_paths
from asg_audit.interrupts import is_interrupt, sigint_interrupts
from asg_audit.store import Store, WriteStats, open_store


def test_sigint_while_duckdb_reads_stdin_rolls_back_that_input_and_exits_3(
    tmp_path: Path,
) -> None:
    # The second input is standard input, read inside DuckDB's normalising statement. Once the
    # ingest has consumed 1 MiB of it (the write returns), it is inside that statement, blocked
    # reading more: SIGINT arrives there, then the input ends. No sleeps.
    big = tmp_path / "big.jsonl"
    big.write_text("".join(settled_line(f"t{i}") + "\n" for i in range(5_000)))  # streamed: > 1 MiB
    db = tmp_path / "audit.duckdb"
    proc = subprocess.Popen(
        [sys.executable, "-m", "asg_audit", "ingest", "--db", str(db), "--quiet", str(big), "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None
    chunk = "".join(settled_line(f"s{i}") + "\n" for i in range(4_000)).encode()
    assert len(chunk) > (1 << 20)
    proc.stdin.write(chunk)
    proc.stdin.flush()
    proc.send_signal(signal.SIGINT)
    proc.stdin.close()
    assert proc.stdout is not None and proc.stderr is not None
    out, err = proc.stdout.read(), proc.stderr.read()  # both small; they end with the process
    proc.wait(timeout=60)
    text = err.decode()
    assert proc.returncode == 3, text
    assert "ingest interrupted: the files stored before it are kept" in text
    assert "Traceback" not in text and out == b""
    with open_store(db, read_only=True) as store:
        assert store.count("observations") == 5_000  # the big file; nothing of stdin
        assert store.count("results") == 5_000
        assert store.frame("ingested_files").get_column("path").to_list() == [str(big)]
        runs = store.frame("runs")
    assert runs.get_column("status").to_list() == ["interrupted"]
    assert runs.get_column("finished_at").is_not_null().all()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_sigint_during_a_running_statement_is_an_interrupted_run_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sig: int
) -> None:
    # The second file's commit first runs a statement that only ends when interrupted, and
    # SIGINT is sent to this process while it runs: DuckDB's client then raises
    # RuntimeError("Query interrupted"), not KeyboardInterrupt.
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text(settled_line("t1") + "\n")
    second.write_text(settled_line("t2") + "\n")
    db = tmp_path / "audit.duckdb"
    commit = Store.commit_staged
    calls: list[int] = []

    def slow_commit(self: Store, **kwargs: bool) -> WriteStats:
        calls.append(1)
        if len(calls) == 2:
            threading.Timer(0.2, os.kill, (os.getpid(), sig)).start()
            self.con.execute(_ENDLESS)
        return commit(self, **kwargs)

    monkeypatch.setattr("asg_audit.ingest_files.SMALL_FILE_BYTES", -1)  # one transaction a file
    monkeypatch.setattr(Store, "commit_staged", slow_commit)
    handlers = [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)]
    with pytest.raises(KeyboardInterrupt):  # StopSignal for SIGTERM, a KeyboardInterrupt
        ingest_paths(db, [first, second])
    assert [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)] == handlers
    with open_store(db, read_only=True) as store:
        assert store.frame("observations").get_column("task_id").to_list() == ["t1"]
        assert store.frame("runs").get_column("status").to_list() == ["interrupted"]


# A statement that runs until it is interrupted.
_ENDLESS = "SELECT count(*) FROM range(10000000000) a(x) WHERE md5(x::VARCHAR) = 'x'"


def test_the_forms_duckdb_gives_an_interrupted_statement_are_recognised() -> None:
    con = duckdb.connect()
    timer = threading.Timer(0.2, con.interrupt)
    timer.start()
    with pytest.raises(duckdb.Error) as caught:  # a statement that runs for many seconds
        con.execute(_ENDLESS)
    timer.join()
    assert is_interrupt(caught.value)
    assert is_interrupt(RuntimeError("Query interrupted"))
    assert is_interrupt(KeyboardInterrupt())
    assert not is_interrupt(duckdb.IOException("disk full"))
    assert not is_interrupt(RuntimeError("something else"))
    # another library's error that says "interrupted" is a failure, not a stop
    assert not is_interrupt(RuntimeError("download interrupted: connection reset by peer"))
    assert not is_interrupt(ValueError("Query interrupted"))


def test_sigint_handler_is_installed_only_for_the_block_and_acts_once() -> None:
    con = duckdb.connect()
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt), sigint_interrupts(con) as interrupted:
        assert signal.getsignal(signal.SIGINT) is not before
        signal.raise_signal(signal.SIGINT)
    assert interrupted.is_set()
    assert signal.getsignal(signal.SIGINT) is before
    with sigint_interrupts(con) as interrupted:  # a second block starts clear
        assert not interrupted.is_set()


def test_library_ingest_off_the_main_thread_leaves_signals_alone(tmp_path: Path) -> None:
    path = tmp_path / "one.jsonl"
    path.write_text(settled_line("t1") + "\n")
    handlers: list[object] = []
    result: list[int] = []

    def work() -> None:
        handlers.append(signal.getsignal(signal.SIGINT))
        result.append(ingest_paths(tmp_path / "audit.duckdb", [path]).records)

    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    assert result == [1] and handlers == [signal.getsignal(signal.SIGINT)]


@pytest.mark.parametrize("delay_s", [0.03, 0.08, 0.15, 0.3, 0.6])
def test_ctrl_c_at_any_moment_of_start_up_is_one_line_and_exit_3(
    tmp_path: Path, delay_s: float
) -> None:
    # while Python imports the command line (the first few tenths of a second) or after: the
    # same "interrupted" line as a Ctrl-C during the work, never a traceback
    data = tmp_path / "in.jsonl"
    data.write_text("".join(settled_line(f"tsk_{i:05d}") + "\n" for i in range(20_000)))
    script = Path(sys.executable).parent / "asg-audit"
    proc = subprocess.Popen(
        [str(script), "ingest", str(data), "--db", str(tmp_path / "s.duckdb")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    threading.Timer(delay_s, proc.send_signal, [signal.SIGINT]).start()
    _, err = proc.communicate(timeout=120)
    # Python's own start-up (site and its .pth files, then the import machinery finding and
    # compiling the package, before any line of asg_audit runs) may still be running at the
    # earliest delays on a busy machine; a KeyboardInterrupt there is printed by Python itself.
    # No traceback may pass through our code (the package imports nothing before entry's try).
    assert not re.search(r'File "[^"]*/asg_audit/', err), err
    # before Python's own handler exists the signal ends the process (-2); after the ingest
    # finished it is 0; otherwise it is an interrupted run
    # (1 is Python's own "Fatal Python error" when its initialisation is what was interrupted)
    if proc.returncode == 1:
        assert err.startswith("Fatal Python error: init_"), err
    else:
        assert proc.returncode in (3, 0, -signal.SIGINT), (proc.returncode, err)
    if proc.returncode == 3:
        assert "interrupted" in err


def test_the_console_script_imports_nothing_before_its_interrupt_handler() -> None:
    # a Ctrl-C lands in whatever runs before entry.main's try: keep that to the two modules
    probe = (
        "import sys; before = set(sys.modules); import asg_audit.entry; "
        "print(' '.join(sorted(set(sys.modules) - before)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["asg_audit", "asg_audit.entry"]
