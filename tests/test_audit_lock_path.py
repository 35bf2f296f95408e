"""The audit lock never writes through a file planted at its path (tester, MEDIUM: security).

A symbolic link at `<db>.audit-lock` made the job open the link's target, truncate it and write
its pid there. The lock must refuse any lock path that is not a plain file of its own (a link,
a hard link, a folder, a pipe), naming the path, with the target untouched; and a run that
waited with --wait and still found the lock held says it waited, not "use --wait".
"""

from __future__ import annotations

import io
import os
import subprocess
import time
from pathlib import Path

import pytest
from _audit_job import offline_job
from _hardening_procs import asg_audit, clean_env, query

from asg_audit.errors import StoreBusyError, StoreFileError
from asg_audit.jobs import audit_lock

VICTIM_TEXT = "IMPORTANT DATA\nline2\n"


def _audit(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        asg_audit("audit", "--config", str(config), *extra),
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=180,
    )


def test_a_symlink_at_the_lock_path_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    job = offline_job(tmp_path, 3)
    victim = tmp_path / "victim.txt"
    victim.write_text(VICTIM_TEXT)
    before = victim.stat()
    lock = job["db"].with_name(job["db"].name + ".audit-lock")
    lock.symlink_to(victim)

    done = _audit(job["config"])

    assert victim.read_text() == VICTIM_TEXT
    assert victim.stat().st_mtime_ns == before.st_mtime_ns
    assert lock.is_symlink()  # left as found: the user decides
    errors = [line for line in done.stderr.splitlines() if line.startswith("asg-audit: error:")]
    assert len(errors) == 1, done.stderr
    assert str(lock) in errors[0] and "symbolic link" in errors[0], errors[0]
    assert done.returncode == 2, done.stdout + done.stderr
    # refused before anything ran: no run recorded, nothing ingested
    assert query(job["db"], "SELECT count(*) FROM runs WHERE command = 'audit'")[0][0] == 0
    assert query(job["db"], "SELECT count(*) FROM results")[0][0] == 0


def test_a_dangling_symlink_is_refused_and_creates_no_file(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    lock = tmp_path / "s.duckdb.audit-lock"
    target = tmp_path / "elsewhere" / "made-by-us"
    (tmp_path / "elsewhere").mkdir()
    lock.symlink_to(target)
    with pytest.raises(StoreFileError, match="symbolic link") as caught, audit_lock(db):
        pass
    assert str(lock) in str(caught.value)
    assert not target.exists()


def test_a_hard_link_a_folder_or_a_pipe_at_the_lock_path_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    lock = tmp_path / "s.duckdb.audit-lock"
    victim = tmp_path / "victim.txt"
    victim.write_text(VICTIM_TEXT)
    os.link(victim, lock)
    with pytest.raises(StoreFileError, match="hard link"), audit_lock(db):
        pass
    assert victim.read_text() == VICTIM_TEXT
    lock.unlink()

    lock.mkdir()
    with pytest.raises(StoreFileError, match="folder"), audit_lock(db):
        pass
    lock.rmdir()

    os.mkfifo(lock)
    started = time.monotonic()
    with pytest.raises(StoreFileError, match="not a regular file"), audit_lock(db):
        pass
    assert time.monotonic() - started < 5  # opening the pipe did not block
    lock.unlink()

    with audit_lock(db) as held:  # a plain file of our own still works, and holds the pid
        assert held == lock
        assert lock.read_text() == f"{os.getpid()}\n"


def test_a_lock_still_held_after_wait_says_it_waited(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    with audit_lock(db):
        with pytest.raises(StoreBusyError) as waited, audit_lock(db, wait_seconds=0.5):
            pass
        with pytest.raises(StoreBusyError) as not_waited, audit_lock(db):
            pass
    assert "waited 0.5 s and it is still running" in str(waited.value)
    assert "--wait" not in str(waited.value)
    assert "use --wait SECONDS (from Python: wait_seconds=) to wait for it" in str(not_waited.value)


def test_a_drop_folder_that_is_a_file_is_said_to_be_no_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from asg_audit.config import AuditConfig
    from asg_audit.jobs import run_audit

    job = offline_job(tmp_path, 3)
    (tmp_path / "a-file").write_text("not a folder\n")
    config = job["config"]
    config.write_text(config.read_text().replace(str(job["drop"]), str(tmp_path / "a-file")))
    done = _audit(config)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"{tmp_path / 'a-file'}: drop folder is not a folder" in done.stdout

    # a relative path (a config built in Python): the absolute path checked is shown
    monkeypatch.chdir(tmp_path)
    outcome = run_audit(
        AuditConfig(
            db_path=job["db"],
            audit={
                "drop_folders": ["a-file", "absent"],
                "report_dir": str(tmp_path / "r"),
                "verify_chain": False,
            },
        ),
        log=io.StringIO(),
    )
    assert outcome.input_errors == [
        f"a-file (checked {tmp_path / 'a-file'}): drop folder is not a folder",
        f"absent (checked {tmp_path / 'absent'}): drop folder does not exist",
    ]
