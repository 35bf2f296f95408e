"""`verify-chain` writes nothing but its summary lines to a standard output that is no terminal
(a file, a pipe). Its progress bar was started on standard output whatever it was: rich drew
nothing there, but wrote an empty line as the bar stopped, before the summary
(`verify-chain --db X 2>/dev/null | od -c` began `\\n t x i d s`); `--quiet` wrote none. The
bar is now drawn on standard error when that is a terminal (as `ingest` decides), else not at
all.

The real command in subprocesses, standard output a pipe; standard error a pipe, or a pseudo
terminal, which must receive the bar.
"""

from __future__ import annotations

import errno
import os
import pty
import re
import subprocess
from pathlib import Path

import pytest
from _hardening_procs import asg_audit, clean_env

from asg_audit.store import open_store

FIRST_LINE = "txids of settled tasks: "


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "s.duckdb"
    with open_store(path):
        pass
    return path


def _verify(db: Path, *extra: str, stderr: int) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        asg_audit("verify-chain", "--db", str(db), *extra),
        stdout=subprocess.PIPE,
        stderr=stderr,
        env=clean_env(TERM="xterm", COLUMNS="100"),
        timeout=180,
    )


def _summary(out: bytes) -> list[str]:
    """The lines, their timing figure made one (`in 0.1 s`)."""
    return [re.sub(r" in [0-9.]+ s$", " in _ s", x) for x in out.decode().split("\n")]


def _quiet_summary(db: Path) -> list[str]:
    quiet = _verify(db, "--quiet", stderr=subprocess.PIPE)
    assert quiet.returncode == 0, quiet.stderr
    return _summary(quiet.stdout)


def test_stdout_a_pipe_holds_exactly_the_summary(db: Path) -> None:
    done = _verify(db, stderr=subprocess.PIPE)
    assert done.returncode == 0, done.stderr
    assert done.stdout[:1] != b"\n", done.stdout[:80]
    assert done.stdout.startswith(FIRST_LINE.encode())
    assert _summary(done.stdout) == _quiet_summary(db)
    assert done.stderr == b""  # no bar on a standard error that is no terminal either


def _read_all(fd: int) -> bytes:
    got = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError as exc:  # EIO: the other end is closed and everything was read
            if exc.errno == errno.EIO:
                return got
            raise
        if not chunk:
            return got
        got += chunk


def test_stderr_a_terminal_gets_the_bar_and_stdout_only_the_summary(db: Path) -> None:
    master, slave = pty.openpty()
    try:
        done = _verify(db, stderr=slave)
        os.close(slave)
        slave = -1
        drawn = _read_all(master)
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    assert done.returncode == 0, drawn[-3000:]
    assert b"verifying txids" in drawn  # the bar, on the terminal
    assert done.stdout[:1] != b"\n", done.stdout[:80]
    assert _summary(done.stdout) == _quiet_summary(db)
