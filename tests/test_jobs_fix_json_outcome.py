"""`asg-audit audit --json` prints its outcome as JSON on stdout whatever happens: a finished
run, a run that could not start (a bad config, a bad option, the database busy, another audit
holding the lock) and a run an error stopped after it started. Always the same keys, the same
exit code as without `--json`, and the same error line on stderr.

The real command in subprocesses, real stores, offline (no API key, no chain step).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from _audit_job import OUTCOME_KEYS as KEYS
from _audit_job import offline_job
from _audit_job import run_audit_json as _audit
from _hardening_procs import asg_audit, clean_env, query
from _scripted_gateway import Answer, scripted_gateway, settled_body

from asg_audit.jobs import audit_lock
from asg_audit.store import open_store


@pytest.fixture
def job(tmp_path: Path) -> dict[str, Path]:
    return offline_job(tmp_path, 3)


def _audit_runs(db: Path) -> list[tuple[str, str]]:
    return query(db, "SELECT run_id, status FROM runs WHERE command = 'audit'")


def _not_started(outcome: dict[str, Any], stderr: str) -> None:
    assert outcome["run_id"] is None and outcome["steps"] == {} and outcome["summary"] == {}
    assert outcome["report"] is None
    assert f"asg-audit: error: {outcome['error']}" in stderr.splitlines()
    assert "Traceback" not in stderr


def test_finished_run_has_the_same_keys_and_a_null_error(job: dict[str, Path]) -> None:
    code, outcome, _ = _audit(job["config"])
    assert code == 0 and outcome["error"] is None
    assert outcome["run_id"] == _audit_runs(job["db"])[0][0]
    assert outcome["summary"]["tasks"] == 3 and outcome["steps"]["ingest"].startswith("ok")


def test_bad_config_prints_the_error_as_json_exit_2(job: dict[str, Path]) -> None:
    job["config"].write_text(job["config"].read_text() + "no_such_key = 1\n")
    code, outcome, stderr = _audit(job["config"])
    assert code == 2
    _not_started(outcome, stderr)
    assert "no_such_key" in outcome["error"]
    assert _audit_runs(job["db"]) == []


@pytest.mark.parametrize(
    "extra, words",
    [
        (("--wait", "nan"), "--wait must be"),
        (("--format", "pdf"), "--format"),
        (("--fail-on", "bogus"), "argument --fail-on: invalid choice"),  # refused by argparse
        (("--since", "yesterday-ish"), "argument --since"),
    ],
)
def test_bad_option_prints_the_error_as_json_exit_2(
    job: dict[str, Path], extra: tuple[str, ...], words: str
) -> None:
    code, outcome, stderr = _audit(job["config"], *extra)
    assert code == 2
    assert outcome["run_id"] is None and outcome["steps"] == {}
    assert words in outcome["error"] and words in stderr
    assert "Traceback" not in stderr
    assert _audit_runs(job["db"]) == []


def test_another_audit_holding_the_lock_prints_json_exit_3(job: dict[str, Path]) -> None:
    with audit_lock(job["db"]):
        code, outcome, stderr = _audit(job["config"])
    assert code == 3
    _not_started(outcome, stderr)
    assert "another audit run is in progress" in outcome["error"]
    assert _audit_runs(job["db"]) == []


def test_database_busy_prints_json_exit_3(job: dict[str, Path]) -> None:
    with open_store(job["db"]):  # this process writes to the store: the audit cannot open it
        code, outcome, stderr = _audit(job["config"])
    assert code == 3
    _not_started(outcome, stderr)
    assert "database busy" in outcome["error"]


def test_a_users_latest_folder_is_refused_before_any_step(job: dict[str, Path]) -> None:
    # `LATEST` (the pointer file every report writes) is the user's folder: refused before the
    # steps run (a long collect), as `report` refuses it, not by the report at the end
    (job["reports"] / "LATEST").mkdir(parents=True)
    code, outcome, stderr = _audit(job["config"])
    assert code == 2, stderr
    _not_started(outcome, stderr)
    assert "cannot point latest at the report" in outcome["error"]
    assert _audit_runs(job["db"]) == []
    assert query(job["db"], "SELECT count(*) FROM results")[0][0] == 0  # drop folder unread


def test_run_stopped_after_it_started_keeps_its_run_id_and_steps(job: dict[str, Path]) -> None:
    # the Gateway's first answer (the collect step's probe, once the run is recorded) makes
    # `LATEST` a folder of the user's: the report cannot be pointed at, an error after the run
    # started (exit 2, the run recorded failed)
    def answer(task_id: str, n: int) -> Answer:
        (job["reports"] / "LATEST").mkdir(parents=True, exist_ok=True)
        return 200, settled_body(task_id), {}

    job["config"].write_text(job["config"].read_text() + "collect_seconds = 5\n")
    with scripted_gateway(answer) as gateway:
        env = {"ASG_API_KEY": "sk_sandbox_outcome", "ASG_BASE_URL": gateway.url}
        code, outcome, stderr = _audit(job["config"], env=env)
    assert code == 2, stderr
    ((run_id, status),) = _audit_runs(job["db"])
    assert outcome["run_id"] == run_id and status == "failed"
    assert outcome["steps"]["ingest"].startswith("ok")
    assert outcome["steps"]["collect"].startswith("ok")
    assert "cannot point latest at the report" in outcome["error"]
    assert f"asg-audit: error: {outcome['error']}" in stderr.splitlines()
    assert "sk_sandbox_outcome" not in stderr + json.dumps(outcome)


def test_interrupted_while_waiting_for_the_lock_prints_json_exit_3(job: dict[str, Path]) -> None:
    with audit_lock(job["db"]):
        proc = subprocess.Popen(
            asg_audit("audit", "--config", str(job["config"]), "--json", "--wait", "120"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
        )
        time.sleep(4)  # started, and waiting for the lock we hold
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    outcome = json.loads(out)
    assert set(outcome) == KEYS
    assert outcome == {**outcome, "run_id": None, "exit_code": 3, "error": "interrupted"}
    assert err.splitlines() == ["asg-audit: interrupted"]
    assert _audit_runs(job["db"]) == []
