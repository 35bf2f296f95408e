"""`audit --compare previous` (the README's scheduled command line) on a reports folder with no
report yet runs and compares with nothing, saying so; the next run compares with it. It exited 2
before any step, recorded no run and wrote no report, so every later run failed the same way.
A run id that names no report is still an error (exit 2).

Real stores; the real command in subprocesses, offline (no API key, no chain step).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from _audit_job import offline_job
from _audit_job import run_audit_json as _audit
from _hardening_procs import asg_audit, clean_env, query


def test_compare_previous_with_no_earlier_report_runs_and_says_so(tmp_path: Path) -> None:
    job = offline_job(tmp_path, 3)
    out = tmp_path / "fresh-reports"
    code, first, stderr = _audit(job["config"], "--out", str(out), "--compare", "previous")
    assert code == 0, stderr[-3000:]
    assert first["error"] is None and first["run_id"]
    assert first["steps"]["compare"].startswith("skipped (no earlier report to compare with")
    assert "compare       skipped (no earlier report to compare with" in stderr
    summary = json.loads((out / first["run_id"] / "summary.json").read_text())
    assert "compare" not in summary
    # the next run compares with the first
    code, second, stderr = _audit(job["config"], "--out", str(out), "--compare", "previous")
    assert code == 0, stderr[-3000:]
    assert "compare" not in second["steps"]
    summary = json.loads((out / second["run_id"] / "summary.json").read_text())
    assert summary["compare"]["previous_run_id"] == first["run_id"]
    runs = query(job["db"], "SELECT run_id, status FROM runs WHERE command = 'audit' ORDER BY 1")
    assert runs == [(first["run_id"], "ok"), (second["run_id"], "ok")]


def test_compare_with_a_run_id_that_names_no_report_is_still_exit_2(tmp_path: Path) -> None:
    job = offline_job(tmp_path, 3)
    out = tmp_path / "fresh-reports"
    code, outcome, stderr = _audit(job["config"], "--out", str(out), "--compare", "nosuchrun")
    assert code == 2 and outcome["run_id"] is None
    assert "--compare: no report 'nosuchrun'" in stderr
    assert query(job["db"], "SELECT count(*) FROM runs WHERE command = 'audit'")[0][0] == 0


def test_report_compare_previous_with_no_earlier_report_is_still_exit_2(tmp_path: Path) -> None:
    # `report` is run by hand: asking it to compare with nothing stays a usage error
    job = offline_job(tmp_path, 3)
    done = subprocess.run(
        asg_audit(
            "report", "--db", str(job["db"]), "--out", str(tmp_path / "r"), "--compare", "previous"
        ),
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=180,
    )
    assert done.returncode == 2 and "--compare previous: no earlier report" in done.stderr
