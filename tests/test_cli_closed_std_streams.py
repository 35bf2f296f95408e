"""Standard streams that are closed, overlapping run_audit calls, ingest's bar (fixer J1).

1. Standard error closed at the start (`2>&-`: Python's sys.stderr is None): `audit`, `ingest`
   crashed on `sys.stderr.isatty()` before any work, silently, exit 1 (read as "findings").
   Now nothing stops the work and the command exits 3 (output that cannot be written).
2. Standard output closed (`>&-`, sys.stdout None): `audit` failed at once (AttributeError on
   None, exit 3, no step run), `runs` exited 0 with nothing written and no notice; run_audit
   from Python raised. Now the work runs and the command exits 3, saying so on stderr.
3. Two run_audit calls overlapping in two threads shared one guard of sys.stderr: the second
   reused the first's (and was charged its losses: exit 3 because of the other run), and the
   first put the caller's stream back while the second still ran (its writes unguarded: a
   step failed). Now they share a guard counted by runs, each charged with its own losses.
4. `ingest`'s progress bar was drawn on standard output's console: with stderr a terminal
   and stdout a file, the file started with an empty line. The bar is on stderr now.
"""

from __future__ import annotations

import errno
import io
import json
import os
import pty
import shlex
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from _audit_job import offline_job
from _hardening_procs import asg_audit, clean_env, query
from _offline_config import STEPS, offline_config

from asg_audit import jobs
from asg_audit.config import AuditConfig
from asg_audit.errors import EXIT_INCOMPLETE, EXIT_OK
from asg_audit.jobs import run_audit

TASKS = 20


def _shell(command: list[str], redirections: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run `command` under sh with `redirections` (`2>&-`: really closed, not /dev/null)."""
    words = " ".join(shlex.quote(w) for w in command)
    return subprocess.run(
        ["sh", "-c", f"exec {words} {redirections}"],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=cwd,
        timeout=240,
    )


def _audit_runs(db: Path) -> list[tuple[str, dict[str, Any]]]:
    rows = query(db, "SELECT status, stats FROM runs WHERE command = 'audit'")
    return [(status, json.loads(stats)) for status, stats in rows]


def _assert_audit_work_done(job: dict[str, Path]) -> None:
    """The run is recorded as its work ended (ok), its report written, its results stored."""
    [(status, stats)] = _audit_runs(job["db"])
    assert status == "ok" and stats["exit_code"] == EXIT_OK, (status, stats)
    assert list(job["reports"].glob("*/summary.json")), "no report written"
    assert query(job["db"], "SELECT count(*) FROM results") == [(TASKS,)]


# -- 1 and 2: the command line ------------------------------------------------------------------


def test_audit_with_stderr_closed_runs_and_exits_3(tmp_path: Path) -> None:
    job = offline_job(tmp_path, tasks=TASKS)
    done = _shell(asg_audit("audit", "--config", str(job["config"])), "2>&-", tmp_path)
    assert done.returncode == EXIT_INCOMPLETE, (done.returncode, done.stdout)
    assert "ingest" in done.stdout and "report:" in done.stdout, done.stdout
    _assert_audit_work_done(job)


def test_audit_with_stdout_closed_runs_says_so_and_exits_3(tmp_path: Path) -> None:
    job = offline_job(tmp_path, tasks=TASKS)
    done = _shell(asg_audit("audit", "--config", str(job["config"])), ">&-", tmp_path)
    assert done.returncode == EXIT_INCOMPLETE, done.stderr
    assert "AttributeError" not in done.stderr and "failed" not in done.stderr, done.stderr
    assert "asg-audit: error: cannot write to standard output" in done.stderr, done.stderr
    _assert_audit_work_done(job)


def test_audit_with_both_closed_runs_and_exits_3(tmp_path: Path) -> None:
    job = offline_job(tmp_path, tasks=TASKS)
    done = _shell(
        asg_audit("audit", "--config", str(job["config"]), "--json"), ">&- 2>&-", tmp_path
    )
    assert done.returncode == EXIT_INCOMPLETE
    _assert_audit_work_done(job)


def test_audit_with_both_open_exits_0(tmp_path: Path) -> None:
    """The same job with its streams open: exit 0 (the 3s above are the closed streams')."""
    job = offline_job(tmp_path, tasks=TASKS)
    done = _shell(asg_audit("audit", "--config", str(job["config"])), "", tmp_path)
    assert done.returncode == EXIT_OK, done.stderr
    _assert_audit_work_done(job)


def test_ingest_with_stderr_closed_ingests_and_exits_3(tmp_path: Path) -> None:
    job = offline_job(tmp_path, tasks=TASKS)
    export = job["drop"] / "export.ndjson"
    done = _shell(asg_audit("ingest", "--db", str(job["db"]), str(export)), "2>&-", tmp_path)
    assert done.returncode == EXIT_INCOMPLETE, done.stdout
    assert "records read" in done.stdout, done.stdout
    assert query(job["db"], "SELECT count(*) FROM results") == [(TASKS,)]


@pytest.mark.parametrize("command", ["runs", "ingest"])
def test_a_command_with_stdout_closed_exits_3_and_says_so(tmp_path: Path, command: str) -> None:
    job = offline_job(tmp_path, tasks=TASKS)
    words = ["runs"] if command == "runs" else ["ingest", str(job["drop"] / "export.ndjson")]
    done = _shell(asg_audit(*words, "--db", str(job["db"])), ">&-", tmp_path)
    assert done.returncode == EXIT_INCOMPLETE, done.stderr
    assert "cannot write to standard output" in done.stderr, done.stderr
    if command == "ingest":  # the work is done
        assert query(job["db"], "SELECT count(*) FROM results") == [(TASKS,)]


def test_a_store_opened_with_stdout_and_stderr_closed_gets_no_standard_descriptor(
    tmp_path: Path,
) -> None:
    """What writes to descriptor 1 or 2 (a library, a child process) never writes into a file
    the command opened: the closed descriptors point at /dev/null from the start."""
    job = offline_job(tmp_path, tasks=TASKS)
    probe = tmp_path / "fds.txt"
    script = (
        "import os, sys\n"
        "from asg_audit.entry import main\n"
        "code = main(['runs', '--db', sys.argv[1]])\n"
        "with open(sys.argv[2], 'w') as f:\n"
        "    f.write(' '.join(os.path.realpath(f'/proc/self/fd/{n}') for n in (1, 2)))\n"
        "    f.write(f' {code}')\n"
    )
    _shell([sys.executable, "-c", script, str(job["db"]), str(probe)], ">&- 2>&-", tmp_path)
    assert probe.read_text().split() == [os.devnull, os.devnull, str(EXIT_INCOMPLETE)]


def test_with_every_standard_descriptor_closed_none_is_given_to_a_file(tmp_path: Path) -> None:
    """Standard input closed too (`<&-`): descriptor 0 would be the next file opened (the
    store), for whatever reads it; it points at /dev/null from the start as 1 and 2 do."""
    job = offline_job(tmp_path, tasks=TASKS)
    probe = tmp_path / "fds.txt"
    script = (
        "import os, sys\n"
        "from asg_audit.entry import main\n"
        "code = main(['runs', '--db', sys.argv[1]])\n"
        "with open(sys.argv[2], 'w') as f:\n"
        "    f.write(' '.join(os.path.realpath(f'/proc/self/fd/{n}') for n in (0, 1, 2)))\n"
        "    f.write(f' {code}')\n"
    )
    _shell([sys.executable, "-c", script, str(job["db"]), str(probe)], "<&- >&- 2>&-", tmp_path)
    assert probe.read_text().split() == [os.devnull] * 3 + [str(EXIT_INCOMPLETE)]


# -- 1 and 2 from Python --------------------------------------------------------------------------


def _assert_all_steps_ran(outcome: Any) -> None:
    for step in STEPS:
        assert not outcome.steps[step].startswith(("failed", "interrupted")), outcome.steps
    assert outcome.report_dir is not None and (outcome.report_dir / "summary.json").is_file()


def test_run_audit_with_sys_stdout_none_runs_and_exits_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, job = offline_config(tmp_path, TASKS)
    monkeypatch.setattr(sys, "stdout", None)
    outcome = run_audit(config)  # log=None: sys.stdout, which is none
    _assert_all_steps_ran(outcome)
    _assert_audit_work_done(job)
    assert set(outcome.output_lost) == {"standard output"}, outcome.output_lost
    assert outcome.exit_code == EXIT_INCOMPLETE


def test_run_audit_with_sys_stderr_none_and_progress_runs_and_exits_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, job = offline_config(tmp_path, TASKS)
    monkeypatch.setattr(sys, "stderr", None)
    outcome = run_audit(config, progress=True, log=io.StringIO())
    assert sys.stderr is None  # put back
    _assert_all_steps_ran(outcome)
    _assert_audit_work_done(job)
    assert set(outcome.output_lost) == {"standard error"}, outcome.output_lost
    assert outcome.exit_code == EXIT_INCOMPLETE


# -- 3. run_audit in two threads at once ----------------------------------------------------------


class _FullDisk(io.TextIOBase):
    def write(self, text: str) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


def _two_runs(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    ingest_a: Any,
    ingest_b: Any,
    a_done: threading.Event | None = None,
) -> tuple[Any, Any]:
    """Run audits A and B in two threads, each ingest step wrapped by its function (given the
    real step); A starts first (its ingest entered before B starts); `a_done` is set once A's
    run_audit returned. Return their outcomes."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    config_a, _ = offline_config(tmp_path / "a", TASKS)
    config_b, _ = offline_config(tmp_path / "b", TASKS)
    real = jobs._ingest_drop_folders
    a_in = threading.Event()

    def ingest(config: AuditConfig, *args: Any) -> str:
        step = lambda: real(config, *args)  # noqa: E731
        if config.db_path == config_a.db_path:
            a_in.set()
            return str(ingest_a(step))
        return str(ingest_b(step))

    monkeypatch.setattr(jobs, "_ingest_drop_folders", ingest)
    outcomes: dict[str, Any] = {}

    def run(name: str, config: AuditConfig) -> None:
        try:
            outcomes[name] = run_audit(config, log=io.StringIO())
        except BaseException as exc:  # handed to the test
            outcomes[name] = exc
        finally:
            if name == "a" and a_done is not None:
                a_done.set()

    a = threading.Thread(target=run, args=("a", config_a))
    b = threading.Thread(target=run, args=("b", config_b))
    a.start()
    assert a_in.wait(60)
    b.start()
    a.join(120)
    b.join(120)
    assert not a.is_alive() and not b.is_alive()
    return outcomes["a"], outcomes["b"]


def test_overlapping_runs_are_each_charged_only_with_their_own_lost_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A loses stderr output while B runs; B writes none: B is not charged with A's loss."""
    full = _FullDisk()
    monkeypatch.setattr(sys, "stderr", full)
    b_in, a_wrote = threading.Event(), threading.Event()

    def ingest_a(step: Any) -> str:
        assert b_in.wait(60)
        print("asg-audit: warning: A says something", file=sys.stderr)
        a_wrote.set()
        return str(step())

    def ingest_b(step: Any) -> str:
        b_in.set()
        assert a_wrote.wait(60)
        return str(step())

    a, b = _two_runs(tmp_path, monkeypatch, ingest_a, ingest_b)
    assert not isinstance(a, BaseException) and not isinstance(b, BaseException), (a, b)
    _assert_all_steps_ran(a)
    _assert_all_steps_ran(b)
    assert a.output_lost == {"standard error": "No space left on device"}
    assert a.exit_code == EXIT_INCOMPLETE
    assert b.output_lost == {} and b.exit_code == EXIT_OK, b.output_lost
    assert sys.stderr is full  # put back once both ended


def test_a_run_still_under_way_keeps_its_guard_when_the_other_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ends while B runs; B then writes to a stderr that fails: B's step is not failed by
    it (still guarded), B is charged with it, A is not."""
    full = _FullDisk()
    monkeypatch.setattr(sys, "stderr", full)
    a_done = threading.Event()

    def ingest_a(step: Any) -> str:
        return str(step())

    def ingest_b(step: Any) -> str:
        assert a_done.wait(120)
        print("asg-audit: warning: B says something", file=sys.stderr)
        return str(step())

    a, b = _two_runs(tmp_path, monkeypatch, ingest_a, ingest_b, a_done)
    assert not isinstance(a, BaseException) and not isinstance(b, BaseException), (a, b)
    _assert_all_steps_ran(a)
    _assert_all_steps_ran(b)
    assert a.output_lost == {} and a.exit_code == EXIT_OK, a.output_lost
    assert b.output_lost == {"standard error": "No space left on device"}
    assert b.exit_code == EXIT_INCOMPLETE
    assert sys.stderr is full


# -- 4. ingest's progress bar ---------------------------------------------------------------------


def test_ingest_with_stderr_a_terminal_writes_only_the_summary_on_stdout(tmp_path: Path) -> None:
    job = offline_job(tmp_path, tasks=TASKS)
    out = tmp_path / "out.txt"
    primary, secondary = pty.openpty()
    drawn: list[bytes] = []

    def drain() -> None:  # what is drawn on the terminal, read so that it never fills
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:
                return
            if not chunk:
                return
            drawn.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        with out.open("w") as stdout:
            done = subprocess.run(
                asg_audit("ingest", "--db", str(job["db"]), str(job["drop"] / "export.ndjson")),
                stdout=stdout,
                stderr=secondary,
                env=clean_env(),
                timeout=120,
            )
    finally:
        os.close(secondary)
        os.close(primary)
    assert done.returncode == EXIT_OK
    text = out.read_text()
    assert text.startswith("run "), repr(text[:80])
