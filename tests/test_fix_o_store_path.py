"""`audit` with a `--db` it cannot use (its folder missing, a file, or read-only) is one
`asg-audit: error:` line and exit 3, as `ingest` gives, with the one `--json` line; it crashed
with a traceback in `audit_lock` and exit 1, the "findings" code a scheduler counts as success.

The real command in subprocesses; the read-only folder is made immutable (`chattr +i`) when the
tests run as root, who ignores permission bits, and `chmod 555` otherwise.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from _audit_job import offline_job
from _hardening_procs import asg_audit, clean_env, read_only

KEYS = {"run_id", "exit_code", "steps", "report", "summary", "error"}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        asg_audit(*args), capture_output=True, text=True, env=clean_env(), timeout=180
    )


def _check_one_error(done: subprocess.CompletedProcess[str], db: Path, words: str) -> None:
    assert done.returncode == 3, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("asg-audit: error:"), done.stderr
    assert str(db) in lines[0] and words in lines[0]
    (line,) = done.stdout.splitlines()
    outcome = json.loads(line)
    assert set(outcome) == KEYS
    assert outcome["exit_code"] == 3 and outcome["run_id"] is None and outcome["steps"] == {}
    assert f"asg-audit: error: {outcome['error']}" == lines[0]


def test_audit_db_in_a_missing_folder_is_one_error_exit_3(tmp_path: Path) -> None:
    job = offline_job(tmp_path, 2)
    db = tmp_path / "nosuchfolder" / "x.duckdb"
    done = _run("audit", "--config", str(job["config"]), "--db", str(db), "--json")
    _check_one_error(done, db, "does not exist")
    # what `ingest` says for the same --db
    ingest = _run("ingest", "--quiet", "--db", str(db), str(job["drop"]))
    assert ingest.returncode == done.returncode
    assert not (tmp_path / "nosuchfolder").exists()


def test_audit_db_under_a_file_is_one_error_exit_3(tmp_path: Path) -> None:
    job = offline_job(tmp_path, 2)
    db = job["drop"] / "export.ndjson" / "x.duckdb"
    done = _run("audit", "--config", str(job["config"]), "--db", str(db), "--json")
    _check_one_error(done, db, "cannot be the store: ")
    assert f"{job['drop'] / 'export.ndjson'} is a file, not a folder" in done.stderr
    ingest = _run("ingest", "--quiet", "--db", str(db), str(job["drop"]))
    assert ingest.returncode == done.returncode


def test_audit_db_in_a_read_only_folder_is_one_error_exit_3(tmp_path: Path) -> None:
    job = offline_job(tmp_path, 2)
    store_dir = tmp_path / "ro"
    store_dir.mkdir()
    db = store_dir / "st.duckdb"
    db.write_bytes(job["db"].read_bytes())
    before = db.read_bytes()
    with read_only(store_dir):
        done = _run("audit", "--config", str(job["config"]), "--db", str(db), "--json")
        ingest = _run("ingest", "--quiet", "--db", str(db), str(job["drop"]))
    _check_one_error(done, db, "cannot open the database")
    assert ingest.returncode == done.returncode
    assert db.read_bytes() == before
    assert sorted(p.name for p in store_dir.iterdir()) == ["st.duckdb"]


@pytest.mark.parametrize("as_json", [False, True])
def test_audit_db_error_without_json_prints_nothing_on_stdout(
    tmp_path: Path, as_json: bool
) -> None:
    job = offline_job(tmp_path, 2)
    db = tmp_path / "missing" / "x.duckdb"
    done = _run("audit", "--config", str(job["config"]), "--db", str(db), *(["--json"] * as_json))
    assert done.returncode == 3 and "Traceback" not in done.stderr
    assert len(done.stdout.splitlines()) == (1 if as_json else 0)
