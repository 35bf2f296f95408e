"""The audit job's bad options and its failures: checked before any step runs, never left
`running`. Real stores, the real command in a subprocess where the exit code matters; no API
key and no chain step, so the job runs offline (ingest, analyse, report)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from _audit_job import offline_job
from _hardening_procs import asg_audit, clean_env, query

from asg_audit.config import AuditConfig, Secret
from asg_audit.errors import IncompleteRunError
from asg_audit.jobs import run_audit


@pytest.fixture
def job(tmp_path: Path) -> dict[str, Path]:
    """An empty store, a drop folder with 9 results, and a config that audits them offline."""
    return offline_job(tmp_path, 9)


def _audit(job: dict[str, Path], *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        asg_audit("audit", "--config", str(job["config"]), *extra),
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=180,
    )


def _runs(db: Path) -> list[tuple[str, str]]:
    """Return (run id, status) of the audit runs (ingest records its own runs too)."""
    return query(db, "SELECT run_id, status FROM runs WHERE command = 'audit' ORDER BY run_id")


def test_audit_offline_run_is_recorded_ok(job: dict[str, Path]) -> None:
    done = _audit(job)
    assert done.returncode == 0, done.stderr[-3000:]
    assert [status for _, status in _runs(job["db"])] == ["ok"]
    assert query(job["db"], "SELECT count(*) FROM results")[0][0] == 9


@pytest.mark.parametrize(
    "extra, message",
    [
        (("--compare", "nosuchrun"), "--compare: no report 'nosuchrun'"),
        (("--format", "pdf"), "--format: expected some of html,md,json"),
    ],
)
def test_audit_bad_option_exits_2_before_any_step(
    job: dict[str, Path], extra: tuple[str, ...], message: str
) -> None:
    done = _audit(job, *extra)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.startswith("asg-audit: error:") and message in done.stderr
    assert done.stdout == ""  # no step line: nothing ran
    assert _runs(job["db"]) == []  # no run recorded, none left running
    assert query(job["db"], "SELECT count(*) FROM results")[0][0] == 0  # the drop folder waits


def test_audit_report_folder_under_a_file_exits_2_before_any_step(
    job: dict[str, Path], tmp_path: Path
) -> None:
    (tmp_path / "afile").write_text("x")
    done = _audit(job, "--out", str(tmp_path / "afile" / "reports"))
    assert done.returncode == 2, done.stderr[-3000:]
    assert "is a file" in done.stderr and done.stdout == ""
    assert _runs(job["db"]) == []


def test_audit_a_bug_after_the_start_marks_the_run_failed_and_exits_3(
    job: dict[str, Path],
) -> None:
    # The job's log is a real stream that was closed: the first step line raises ValueError
    # (not an AuditError) after the run was recorded as running.
    script = (
        "import io, sys\n"
        "from asg_audit.cli import main\n"
        "sys.stdout = io.StringIO()\n"
        "sys.stdout.close()\n"
        f"sys.exit(main(['audit', '--config', {str(job['config'])!r}]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=clean_env(ASG_WEBHOOK_SECRET="whsec-SECRET456"),
        timeout=180,
    )
    assert done.returncode == 3, done.stderr[-3000:]
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("asg-audit: error: audit run ")
    assert "ValueError: I/O operation on closed file" in lines[0]
    assert "recorded as failed" in lines[0]
    ((run_id, status),) = _runs(job["db"])
    assert status == "failed" and f"audit run {run_id} failed" in lines[0]
    stats = json.loads(query(job["db"], "SELECT stats FROM runs WHERE run_id = ?", [run_id])[0][0])
    assert stats["error"] == "ValueError: I/O operation on closed file"
    assert stats["exit_code"] == 3


def test_audit_error_recorded_for_a_run_holds_no_secret(job: dict[str, Path]) -> None:
    # A bug's message may quote anything; the secrets the run holds are masked in what is
    # stored and raised. No real code path quotes a secret today, so a log stream whose write
    # fails with a message holding one stands in for such a bug.
    secret = "sk-test-SECRET123"

    class _Log(io.StringIO):
        def write(self, text: str) -> int:
            raise ValueError(f"cannot log with key {secret}")

    config = AuditConfig(
        db_path=job["db"],
        api_key=None,
        webhook_secrets=(Secret(secret),),
        audit={"drop_folders": [], "report_dir": str(job["reports"]), "verify_chain": False},
    )
    with pytest.raises(IncompleteRunError) as caught:
        run_audit(config, log=_Log())
    assert secret not in str(caught.value) and "cannot log with key ***" in str(caught.value)
    stats = query(job["db"], "SELECT status, stats FROM runs WHERE command = 'audit'")[0]
    assert stats[0] == "failed" and secret not in stats[1]


def test_audit_error_recorded_masks_tokens_it_does_not_hold_too(job: dict[str, Path]) -> None:
    # a bug quoting a request's header: a bearer token and an ASG-style key the config does not
    # hold (another environment's) are masked the way every other message masks them
    class _Log(io.StringIO):
        def write(self, text: str) -> int:
            raise ValueError("header Authorization: Bearer tok-OTHER-77 for sk_live_OTHERKEY99")

    config = AuditConfig(
        db_path=job["db"],
        api_key=None,
        audit={"drop_folders": [], "report_dir": str(job["reports"]), "verify_chain": False},
    )
    with pytest.raises(IncompleteRunError) as caught:
        run_audit(config, log=_Log())
    assert "tok-OTHER-77" not in str(caught.value) and "OTHERKEY99" not in str(caught.value)
    assert "Bearer ***" in str(caught.value)
    stats = query(job["db"], "SELECT stats FROM runs WHERE command = 'audit'")[0][0]
    assert "tok-OTHER-77" not in stats and "OTHERKEY99" not in stats
