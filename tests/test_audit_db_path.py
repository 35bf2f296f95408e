"""`audit` with a `--db` it cannot use (its folder missing, a file, or read-only) is one
`asg-audit: error:` line and exit 3, as `ingest` gives, with the one `--json` line; it crashed
with a traceback in `audit_lock` and exit 1, the "findings" code a scheduler counts as success.

`audit --db afile/s.duckdb`, `afile` a regular file, says what every other writing command
says (store.open_store): "afile/s.duckdb: cannot be the store: afile is a file, not a folder",
exit 3. It said its audit lock "cannot be made (Not a directory)", naming the lock file rather
than the file in the way (checked with the relative path a user types).

The real command in subprocesses; the read-only folder is made immutable (`chattr +i`) when the
tests run as root, who ignores permission bits, and `chmod 555` otherwise.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from _audit_job import offline_job
from _hardening_procs import clean_env, read_only, run_asg_audit

KEYS = {"run_id", "exit_code", "steps", "report", "summary", "error"}


def _run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run_asg_audit(*args, cwd=cwd, env=clean_env())


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


@pytest.mark.parametrize("db", ["afile/s.duckdb", "afile/deeper/s.duckdb"])
def test_audit_names_the_file_in_the_way_as_ingest_does(tmp_path: Path, db: str) -> None:
    job = offline_job(tmp_path, 2)
    (tmp_path / "afile").write_text("not a folder\n")
    audit = _run("audit", "--config", str(job["config"]), "--db", db, cwd=tmp_path)
    ingest = _run("ingest", "--quiet", "--db", db, str(job["drop"]), cwd=tmp_path)
    expected = f"asg-audit: error: {db}: cannot be the store: afile is a file, not a folder"
    assert audit.stderr.splitlines() == [expected], audit.stderr[-3000:]
    assert audit.returncode == 3
    assert (ingest.returncode, ingest.stderr) == (audit.returncode, audit.stderr)
    assert (tmp_path / "afile").read_text() == "not a folder\n"


def test_audit_through_a_link_to_a_path_under_a_file_names_the_file(tmp_path: Path) -> None:
    job = offline_job(tmp_path, 2)
    (tmp_path / "afile").write_text("not a folder\n")
    (tmp_path / "link.duckdb").symlink_to(tmp_path / "afile" / "s.duckdb")
    audit = _run("audit", "--config", str(job["config"]), "--db", "link.duckdb", cwd=tmp_path)
    (line,) = audit.stderr.splitlines()
    assert audit.returncode == 3
    assert line.startswith("asg-audit: error: link.duckdb: cannot be the store: ")
    assert line.endswith(f"{tmp_path / 'afile'} is a file, not a folder")
