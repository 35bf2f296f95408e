"""`collect` on a store with nothing tracked says what to do (tester T1: a first run on a new
store printed "0 polled, 0 already final", completed, and no word of `track`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from _hardening_procs import clean_env


def test_collect_with_nothing_tracked_says_how_to_track(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    proc = subprocess.run(
        [sys.executable, "-m", "asg_audit", "collect", "--db", str(db)],
        # nothing is polled: the Gateway (a closed port) is never asked
        env=clean_env(ASG_API_KEY="sk_sandbox_nothing", ASG_BASE_URL="http://127.0.0.1:9"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        "tasks: 0 polled, 0 already final (nothing to poll: `asg-audit track FILE` records the"
        " submitted tasks, or give `--task-ids`)"
    ) in proc.stdout
    assert "requests 0:" in proc.stdout
