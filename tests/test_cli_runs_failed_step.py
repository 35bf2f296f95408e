"""`asg-audit runs` says why an audit run was incomplete: its first failed step.

An audit whose step failed (the Gateway unreachable) was recorded `incomplete` with the step's
error in `stats.steps` only: `runs` showed an empty error column, and with the collect probe
failing there was no `collect` run either, so `runs` alone could not tell why. The real command
in a subprocess, against a Gateway address where nothing listens.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from _audit_job import offline_job
from _hardening_procs import asg_audit, clean_env

SECRET = "PWSECRET0123456789"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_runs_shows_the_first_failed_step_of_an_incomplete_audit(tmp_path: Path) -> None:
    job = offline_job(tmp_path, 3)
    env = clean_env(
        ASG_API_KEY="sk_test_" + SECRET,
        ASG_BASE_URL=f"http://127.0.0.1:{_closed_port()}",
    )
    audit = subprocess.run(
        asg_audit("audit", "--config", str(job["config"])),
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert audit.returncode == 3, audit.stdout + audit.stderr
    runs = subprocess.run(
        asg_audit("runs", "--db", str(job["db"])),
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
    )
    assert runs.returncode == 0, runs.stderr
    line = next(x for x in runs.stdout.splitlines() if " audit " in x)
    assert " incomplete  collect failed: " in line, runs.stdout
    assert SECRET not in runs.stdout
    # the step's own words, as `audit` printed them on its collect line
    printed = next(x for x in audit.stdout.splitlines() if x.startswith("collect "))
    why = printed.split("failed: ", 1)[1].rsplit(" [", 1)[0]
    assert line.split("collect failed: ", 1)[1].rstrip(".") in why or why.startswith(
        line.split("collect failed: ", 1)[1].removesuffix("...")
    ), (line, printed)
