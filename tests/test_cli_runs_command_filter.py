"""`asg-audit runs --command NAME` lists the runs of one command (tester T8: an audit's steps
record runs of their own that start after it, so `runs --limit 1` showed a step, not the audit)."""

from __future__ import annotations

from pathlib import Path

from _audit_job import offline_job
from _hardening_procs import clean_env, run_asg_audit


def test_runs_of_one_command_and_a_command_never_run(tmp_path: Path) -> None:
    job = offline_job(tmp_path, 2)
    assert run_asg_audit("audit", "--config", str(job["config"]), env=clean_env()).returncode == 0
    db = str(job["db"])
    latest = run_asg_audit("runs", "--db", db, "--limit", "1", env=clean_env()).stdout
    assert " audit " not in latest  # the audit's ingest step started after it
    done = run_asg_audit("runs", "--db", db, "--command", "audit", "--limit", "1", env=clean_env())
    assert done.returncode == 0, done.stderr
    header, row = done.stdout.splitlines()
    assert header.startswith("run ") and " audit " in row and row.rstrip().endswith("ok")
    none = run_asg_audit("runs", "--db", db, "--command", "billing", env=clean_env())
    assert none.stdout.strip() == "no billing runs in the store (commands recorded: audit, ingest)"
