"""`run_audit` from Python: output that cannot be written never stops the run; a store that
refuses a step for good (damaged, or from a newer asg_audit) is exit 2, as at the start.

1. The command line wraps sys.stdout and sys.stderr so that a log on a full disk never stops an
   audit (it runs every step, writes the report, then exits 3). `run_audit(config)` called from
   Python wrote to the bare sys.stdout (or the caller's `log`): a full disk (ENOSPC), a closed
   stream or a reader gone stopped the run after its first step, recorded `failed`, and raised.
   Now the log and sys.stderr are guarded for the run: every step runs, the report is written,
   `outcome.output_lost` names what was lost, and the exit code is 3 (not 0 or 1).
2. A store found damaged or newer (StoreFileError, SchemaVersionError: exit 2, "retrying will
   not help") when the findings are written made the run `incomplete`, exit 3, where the same
   store at the start of an audit is exit 2. Now the step is `refused: ...`, the run exits 2
   (3 still wins when a step could not be done) and is recorded `failed` with that error.

Offline job (no API key, no chain step), real store and report, in process.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from _hardening_procs import query
from _offline_config import STEPS, offline_config

from asg_audit import jobs
from asg_audit.cli import main as cli_main
from asg_audit.errors import (
    EXIT_INCOMPLETE,
    EXIT_OK,
    EXIT_USAGE,
    ApiError,
    SchemaVersionError,
    StoreFileError,
)
from asg_audit.jobs import run_audit
from asg_audit.store import Store


def _audit_run(db: Path) -> tuple[str, dict[str, Any]]:
    [(status, stats)] = query(db, "SELECT status, stats FROM runs WHERE command = 'audit'")
    return status, json.loads(stats)


def _assert_all_work_done(outcome: Any, db: Path) -> None:
    assert set(STEPS) <= set(outcome.steps), outcome.steps
    for step in STEPS:
        assert not outcome.steps[step].startswith(("failed", "interrupted")), outcome.steps
    assert outcome.report_dir is not None and (outcome.report_dir / "summary.json").is_file()
    status, stats = _audit_run(db)
    # recorded as the work ended (as the command line does): the work itself was ok
    assert status == "ok" and stats["exit_code"] == EXIT_OK, (status, stats)
    assert outcome.summary["tasks"] == 20


class _FullDisk(io.TextIOBase):
    """A text stream whose every write fails as on a full disk."""

    def write(self, text: str) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")


class _ReaderGone(io.TextIOBase):
    def write(self, text: str) -> int:
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")


# -- 1. output that cannot be written ----------------------------------------------------------


def test_run_audit_with_stdout_on_a_full_disk_does_all_its_work_and_says_output_was_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, job = offline_config(tmp_path, 20)
    monkeypatch.setattr(sys, "stdout", _FullDisk())
    outcome = run_audit(config)  # log=None: sys.stdout
    _assert_all_work_done(outcome, job["db"])
    assert outcome.output_lost == {"standard output": "No space left on device"}
    assert outcome.exit_code == EXIT_INCOMPLETE  # not 0: its output is not all there


@pytest.mark.parametrize(
    ("make_log", "why"),
    [
        (lambda p: _closed(io.StringIO()), "closed file"),
        (lambda p: _ReaderGone(), "Broken pipe"),
        # a real full device, line-buffered: the first line fails
        (lambda p: open("/dev/full", "w", buffering=1), "No space left on device"),  # noqa: SIM115
        # block-buffered: nothing fails before the end of the run, which flushes it
        (lambda p: open("/dev/full", "w"), "No space left on device"),  # noqa: SIM115
    ],
    ids=["closed", "reader-gone", "dev-full-line-buffered", "dev-full-buffered"],
)
def test_run_audit_with_a_log_that_cannot_be_written_does_all_its_work(
    tmp_path: Path, make_log: Any, why: str
) -> None:
    config, job = offline_config(tmp_path, 20)
    log = make_log(tmp_path)
    stderr = sys.stderr
    try:
        outcome = run_audit(config, log=log)
    finally:
        if not log.closed:
            # the caller's stream is left as it was; what it still buffers is the caller's
            with contextlib.suppress(OSError):
                log.close()
    _assert_all_work_done(outcome, job["db"])
    assert set(outcome.output_lost) == {"the log"}, outcome.output_lost
    assert why in outcome.output_lost["the log"]
    assert outcome.exit_code == EXIT_INCOMPLETE
    assert sys.stderr is stderr  # put back after the run


def test_run_audit_with_a_good_log_loses_nothing_and_exits_0(tmp_path: Path) -> None:
    config, job = offline_config(tmp_path, 20)
    log = io.StringIO()
    outcome = run_audit(config, log=log)
    _assert_all_work_done(outcome, job["db"])
    assert outcome.output_lost == {} and outcome.exit_code == EXIT_OK
    assert "ingest" in log.getvalue() and "billing" in log.getvalue()


def test_run_audit_with_stderr_on_a_full_disk_still_runs_and_puts_stderr_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, job = offline_config(tmp_path, 20)
    full = _FullDisk()
    monkeypatch.setattr(sys, "stderr", full)
    real_ingest = jobs._ingest_drop_folders

    def noisy_ingest(*args: Any) -> str:
        print("asg-audit: warning: something worth saying", file=sys.stderr)
        result: str = real_ingest(*args)
        return result

    monkeypatch.setattr(jobs, "_ingest_drop_folders", noisy_ingest)
    outcome = run_audit(config, log=io.StringIO())
    assert sys.stderr is full
    _assert_all_work_done(outcome, job["db"])
    assert outcome.output_lost == {"standard error": "No space left on device"}
    assert outcome.exit_code == EXIT_INCOMPLETE


def _closed(stream: io.StringIO) -> io.StringIO:
    stream.close()
    return stream


# -- 2. a store that refuses the findings (or a step) for good ---------------------------------


@pytest.mark.parametrize(
    "refusal",
    [
        SchemaVersionError("the store comes from a newer asg_audit (schema version 99)"),
        StoreFileError("a damaged store: schema version 5 but table findings missing"),
    ],
    ids=["newer", "damaged"],
)
def test_findings_refused_by_a_damaged_or_newer_store_is_exit_2_as_at_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refusal: Exception
) -> None:
    config, job = offline_config(tmp_path, 20)

    def refuse(self: Store, run_id: str, findings: Any) -> None:
        raise refusal

    monkeypatch.setattr(Store, "write_findings", refuse)
    outcome = run_audit(config, log=io.StringIO())
    assert outcome.steps["findings"].startswith("refused: not stored: "), outcome.steps
    assert str(refusal) in outcome.steps["findings"]
    assert not outcome.incomplete
    assert outcome.exit_code == EXIT_USAGE  # as the same store at the start of an audit
    assert outcome.report_dir is not None and (outcome.report_dir / "summary.json").is_file()
    status, stats = _audit_run(job["db"])
    assert status == "failed" and stats["exit_code"] == EXIT_USAGE, (status, stats)
    assert str(refusal) in stats["error"]


def test_refused_findings_and_a_failed_step_is_exit_3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, job = offline_config(tmp_path, 20)

    def refuse(self: Store, run_id: str, findings: Any) -> None:
        raise SchemaVersionError("the store comes from a newer asg_audit")

    def billing_down(config: Any, settings: Any) -> str:
        raise ApiError("the Gateway is down")

    monkeypatch.setattr(Store, "write_findings", refuse)
    monkeypatch.setattr(jobs, "_billing", billing_down)
    outcome = run_audit(config, log=io.StringIO())
    assert outcome.steps["billing"].startswith("failed"), outcome.steps
    assert outcome.steps["findings"].startswith("refused"), outcome.steps
    assert outcome.exit_code == EXIT_INCOMPLETE  # 3 wins over 2
    status, _ = _audit_run(job["db"])
    assert status == "incomplete"


def test_a_step_refused_by_a_damaged_store_is_exit_2_and_later_writers_are_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, _ = offline_config(tmp_path, 20)
    called: list[str] = []

    def damaged(*args: Any) -> str:
        raise StoreFileError(f"{config.db_path}: a damaged database file: truncated")

    def billing(config: Any, settings: Any) -> str:
        called.append("billing")
        return "ok"

    monkeypatch.setattr(jobs, "_ingest_drop_folders", damaged)
    monkeypatch.setattr(jobs, "_billing", billing)
    outcome = run_audit(config, log=io.StringIO())
    assert outcome.steps["ingest"].startswith("refused: "), outcome.steps
    assert called == [], "billing ran against a store known to refuse its writes"
    assert outcome.steps["billing"].startswith("skipped (the store refuses writes"), outcome.steps
    assert outcome.steps["findings"].startswith("skipped (not stored: "), outcome.steps
    assert outcome.exit_code == EXIT_USAGE


def test_cli_audit_json_with_findings_refused_by_a_newer_store_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _, job = offline_config(tmp_path, 20)

    def refuse(self: Store, run_id: str, findings: Any) -> None:
        raise SchemaVersionError("the store comes from a newer asg_audit")

    monkeypatch.setattr(Store, "write_findings", refuse)
    for name in ("ASG_API_KEY", "API_KEY", "ASG_AUDIT_DB", "ASG_BASE_URL", "ASG_CHAIN_URL"):
        monkeypatch.delenv(name, raising=False)
    code = cli_main(["audit", "--config", str(job["config"]), "--json"])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == EXIT_USAGE and out["exit_code"] == EXIT_USAGE, (code, out)
    assert out["steps"]["findings"].startswith("refused: not stored: ")
