"""`--compare ''` (a cron line's `--compare "$PREV"` with PREV unset) is a usage error, exit 2.

It used to be taken as "no comparison": exit 0, a report without its diff, nothing said.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from _hardening_procs import REPO, asg_audit, clean_env


@pytest.mark.parametrize("command", ["report", "audit"])
@pytest.mark.parametrize("value", ["", "  "])
def test_compare_empty_is_a_usage_error_naming_the_option(
    tmp_path: Path, command: str, value: str
) -> None:
    out = tmp_path / "reports"
    proc = subprocess.run(
        asg_audit(
            command, "--db", str(tmp_path / "a.duckdb"), "--out", str(out), "--compare", value
        ),
        cwd=tmp_path,
        env=clean_env(PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert (
        "error: argument --compare: expected a run id or 'previous', got an empty value"
        in proc.stderr
    )
    assert not out.exists()  # no report was written
    assert not (tmp_path / "a.duckdb").exists()
