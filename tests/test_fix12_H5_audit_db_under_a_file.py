"""`audit --db afile/s.duckdb`, `afile` a regular file, says what every other writing command
says (store.open_store): "afile/s.duckdb: cannot be the store: afile is a file, not a folder",
exit 3. It said its audit lock "cannot be made (Not a directory)", naming the lock file rather
than the file in the way.

The real command in subprocesses, with the relative path a user types.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from _audit_job import offline_job
from _hardening_procs import asg_audit, clean_env


def _run(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        asg_audit(*args), capture_output=True, text=True, env=clean_env(), timeout=180, cwd=cwd
    )


@pytest.mark.parametrize("db", ["afile/s.duckdb", "afile/deeper/s.duckdb"])
def test_audit_names_the_file_in_the_way_as_ingest_does(tmp_path: Path, db: str) -> None:
    job = offline_job(tmp_path, 2)
    (tmp_path / "afile").write_text("not a folder\n")
    audit = _run(tmp_path, "audit", "--config", str(job["config"]), "--db", db)
    ingest = _run(tmp_path, "ingest", "--quiet", "--db", db, str(job["drop"]))
    expected = f"asg-audit: error: {db}: cannot be the store: afile is a file, not a folder"
    assert audit.stderr.splitlines() == [expected], audit.stderr[-3000:]
    assert audit.returncode == 3
    assert (ingest.returncode, ingest.stderr) == (audit.returncode, audit.stderr)
    assert (tmp_path / "afile").read_text() == "not a folder\n"


def test_audit_through_a_link_to_a_path_under_a_file_names_the_file(tmp_path: Path) -> None:
    job = offline_job(tmp_path, 2)
    (tmp_path / "afile").write_text("not a folder\n")
    (tmp_path / "link.duckdb").symlink_to(tmp_path / "afile" / "s.duckdb")
    audit = _run(tmp_path, "audit", "--config", str(job["config"]), "--db", "link.duckdb")
    (line,) = audit.stderr.splitlines()
    assert audit.returncode == 3
    assert line.startswith("asg-audit: error: link.duckdb: cannot be the store: ")
    assert line.endswith(f"{tmp_path / 'afile'} is a file, not a folder")
