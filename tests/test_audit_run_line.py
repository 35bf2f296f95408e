"""The line an audit run ends with says every severity it counted and the tracked tasks it has
no status of (tester T8: with `--fail-on info` an audit printed "0 tasks, 0 settled; findings
fail 0, warn 0" and exited 1, for an info finding about 2 tracked tasks the line never named).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _audit_job import offline_job
from _hardening_procs import clean_env, run_asg_audit


def test_the_run_line_names_info_findings_and_tracked_tasks_not_collected(tmp_path: Path) -> None:
    job = offline_job(tmp_path, 3)
    subs = tmp_path / "subs.csv"
    subs.write_text(
        "task_id,task_type,consensus_threshold,options,created_at\n"
        + "".join(f"t{i},image,3,cat|dog,2026-04-08T21:00:00Z\n" for i in (1, 2))
    )
    tracked = run_asg_audit("track", "--db", str(job["db"]), str(subs), env=clean_env())
    assert tracked.returncode == 0, tracked.stderr
    done = run_asg_audit(
        "audit", "--config", str(job["config"]), "--fail-on", "info", env=clean_env()
    )
    assert done.returncode == 1, (done.stdout, done.stderr)  # task.not_collected: info
    (line,) = [s for s in done.stdout.splitlines() if s.startswith("run ")]
    assert line.endswith(
        ": 3 tasks (and 2 tracked, not collected), 3 settled; findings fail 0, warn 0, info 1"
    ), line


@pytest.mark.parametrize(
    ("billing", "said"), [(True, "collect and billing are"), (False, "collect is")]
)
def test_the_no_api_key_warning_names_only_the_steps_it_skips(
    tmp_path: Path, billing: bool, said: str
) -> None:
    # tester T8: it said billing was skipped with `[audit] billing = false` too
    job = offline_job(tmp_path, 1)
    if not billing:
        job["config"].write_text(job["config"].read_text() + "billing = false\n")
    done = run_asg_audit("audit", "--config", str(job["config"]), env=clean_env())
    assert done.returncode == 0, done.stderr
    assert (
        f"asg-audit: warning: no ASG_API_KEY (or API_KEY) in the environment: {said} skipped,"
        in done.stderr
    ), done.stderr
