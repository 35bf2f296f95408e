"""`audit` whose audit lock file cannot be written (tester, CRASH).

On a full file system with no lock file yet, the pid written into the new lock file failed
(`OSError: [Errno 28] No space left on device` from `audit_lock`): a traceback and exit 1, the
"findings" code a systemd unit counts as success, no run recorded, and an empty lock file left.
Now it is one `asg-audit: error:` line naming the lock and the OS's words, exit 3, nothing run;
the lock file left behind (empty, or garbled by a write that failed half-way) does not stop or
break the next run, which writes its own pid over it.

The write that fails is a real one, without root: the command runs with its files limited to
0 bytes (RLIMIT_FSIZE, SIGXFSZ ignored: EFBIG, as a full disk gives ENOSPC). As root too: the
limit binds root as well.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from _audit_job import offline_job
from _hardening_procs import FSIZE_LIMITED, asg_audit, clean_env, query


def _audit(config: Path, *, limit: int | None = None) -> subprocess.CompletedProcess[str]:
    argv = asg_audit("audit", "--config", str(config))
    if limit is not None:
        argv = [sys.executable, "-c", FSIZE_LIMITED, str(limit), *argv[3:]]
    return subprocess.run(
        argv, capture_output=True, text=True, env=clean_env(), timeout=180, check=False
    )


def test_a_lock_file_that_cannot_be_written_is_one_error_line_and_exit_3(tmp_path: Path) -> None:
    job = offline_job(tmp_path, tasks=3)
    lock = Path(str(job["db"]) + ".audit-lock")
    assert not lock.exists()

    done = _audit(job["config"], limit=0)

    assert done.returncode == 3, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("asg-audit: error: ")
    assert "cannot write the audit lock" in lines[0]
    assert str(lock) in lines[0]
    assert "File too large" in lines[0]  # the OS's words (EFBIG)
    # nothing ran: no run recorded, no report
    assert query(job["db"], "SELECT count(*) FROM runs")[0][0] == 0
    assert not job["reports"].exists() or not any(job["reports"].iterdir())
    assert lock.exists() and lock.read_bytes() == b""

    # once there is room, the empty lock file left behind is no obstacle
    again = _audit(job["config"])
    assert again.returncode == 0, (again.stdout, again.stderr)
    assert lock.read_text().strip().isdigit()
    assert query(job["db"], "SELECT status FROM runs WHERE command = 'audit'") == [("ok",)]


@pytest.mark.parametrize(
    "content",
    [b"", b"\xff\xfe\x00garbled", b"12", b"99999999999999999999\n" * 500],
    ids=["empty", "garbled", "short", "long"],
)
def test_a_lock_file_left_empty_or_garbled_does_not_stop_the_next_run(
    tmp_path: Path, content: bytes
) -> None:
    job = offline_job(tmp_path, tasks=2)
    lock = Path(str(job["db"]) + ".audit-lock")
    lock.write_bytes(content)

    done = _audit(job["config"])

    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr and "asg-audit: error" not in done.stderr
    assert lock.read_text() == f"{lock.read_text().strip()}\n"
    assert lock.read_text().strip().isdigit()
