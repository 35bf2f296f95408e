"""`audit` that ends with exit 2 or 3 says why on stderr (tester).

A run that started and ended with exit 3 (the Gateway down: collect failed) or 2 (a drop folder
listed in `[audit] drop_folders` that does not exist) wrote nothing to stderr without `--json`:
the failed step and `warning: unreadable input: ...` went to stdout only, so a scheduler that
keeps or mails stderr got exit 3 with no explanation. Now every such run ends with one
`asg-audit: error:` line on stderr naming the outcome (as `asg-audit runs` does: `incomplete`,
`failed`) and the first failed step, in both modes (with `--json` the JSON is unchanged: `error`
null, the run ended), and the run's warnings are on stderr too.

The real command in subprocesses; the Gateway "down" is a port bound and never listened on
(every connection refused at once).
"""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from _audit_job import offline_job, run_audit_json
from _hardening_procs import asg_audit, clean_env

REFUSING_PORT = 19331
KEY = "sk_sandbox_exitreason_SECRET"


@pytest.fixture
def refusing_gateway() -> Iterator[str]:
    """A Gateway URL whose port refuses every connection (bound, never listening)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", REFUSING_PORT))
    try:
        yield f"http://127.0.0.1:{REFUSING_PORT}"
    finally:
        sock.close()


def _audit(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        asg_audit("audit", "--config", str(config)),
        capture_output=True,
        text=True,
        env=clean_env(**env),
        timeout=180,
        check=False,
    )


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("asg-audit: error:")]


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_gateway_down_exit_3_names_the_failed_step_on_stderr(
    tmp_path: Path, refusing_gateway: str, as_json: bool
) -> None:
    job = offline_job(tmp_path, 2)
    env = {"ASG_API_KEY": KEY, "ASG_BASE_URL": refusing_gateway}
    if as_json:
        code, outcome, stderr = run_audit_json(job["config"], env=env)
        assert outcome["error"] is None  # the run ended: the JSON contract stands
        assert outcome["steps"]["collect"].startswith("failed: ")
    else:
        done = _audit(job["config"], env)
        code, stderr = done.returncode, done.stderr
        assert "collect       failed: " in done.stdout  # the step lines stay where they were
    assert code == 3
    assert "Traceback" not in stderr and KEY not in stderr
    (error,) = _errors(stderr)
    assert stderr.splitlines()[-1] == error  # the last line
    assert error.startswith(
        f"asg-audit: error: audit incomplete (exit 3): collect failed: the Gateway at"
        f" {refusing_gateway} is unreachable ("
    ), error
    assert "; also failed: billing" in error
    assert f"; the report is written: {job['reports']}" in error


@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_missing_drop_folder_exit_2_warns_and_says_why_on_stderr(
    tmp_path: Path, as_json: bool
) -> None:
    job = offline_job(tmp_path, 2)
    missing = tmp_path / "nodrop"
    job["config"].write_text(
        job["config"].read_text().replace(f'["{job["drop"]}"]', f'["{job["drop"]}", "{missing}"]')
    )
    if as_json:
        code, outcome, stderr = run_audit_json(job["config"])
        assert outcome["error"] is None
    else:
        done = _audit(job["config"], {})
        code, stderr = done.returncode, done.stderr
        # stdout keeps its warning; stderr has it too
        assert f"warning: unreadable input: {missing}: drop folder does not exist" in done.stdout
        assert (
            f"asg-audit: warning: unreadable input: {missing}: drop folder does not exist"
            in stderr.splitlines()
        )
    assert code == 2
    (error,) = _errors(stderr)
    assert stderr.splitlines()[-1] == error
    assert error.startswith(
        f"asg-audit: error: audit failed (exit 2): unreadable input: {missing}: drop folder"
        " does not exist; the report is written: "
    ), error


def test_a_run_that_exits_0_prints_no_error_line(tmp_path: Path) -> None:
    job = offline_job(tmp_path, 2)
    done = _audit(job["config"], {})
    assert done.returncode == 0, done.stderr
    assert _errors(done.stderr) == []


def test_unreadable_input_and_a_failed_step_name_the_same_first_step_as_the_report(
    tmp_path: Path, refusing_gateway: str
) -> None:
    # tester T8: the report's banner said "ingest failed: unreadable input ...; also failed:
    # collect", the stderr line "collect failed: ..." with no word of the ingest step
    job = offline_job(tmp_path, 2)
    missing = tmp_path / "nodrop"
    job["config"].write_text(
        job["config"].read_text().replace(f'["{job["drop"]}"]', f'["{job["drop"]}", "{missing}"]')
    )
    env = {"ASG_API_KEY": KEY, "ASG_BASE_URL": refusing_gateway}
    code, outcome, stderr = run_audit_json(job["config"], env=env)
    assert code == 3
    (error,) = _errors(stderr)
    note = outcome["steps"]["ingest"]
    assert note.startswith("unreadable input (") and note.endswith(
        f"): {missing}: drop folder does not exist"
    ), note
    assert error.startswith(f"asg-audit: error: audit incomplete (exit 3): ingest failed: {note}")
    assert "; also failed: collect, billing; the report is written: " in error
    summary = json.loads((Path(outcome["report"]) / "summary.json").read_text())
    failed = [step["step"] for step in summary["run"]["steps"] if step["outcome"] == "failed"]
    assert failed == ["ingest", "collect", "billing"]  # the banner's order: ingest first
    runs = subprocess.run(
        asg_audit("runs", "--db", str(job["db"])),
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=120,
        check=False,
    )
    (row,) = [line for line in runs.stdout.splitlines() if " audit " in line]
    assert "incomplete" in row and "ingest failed: unreadable input (" in row, runs.stdout
