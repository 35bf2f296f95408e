"""`collect --task-ids FILE` reads FILE with a bound (64 MiB, `TASK_ID_FILE_MAX_BYTES`).

(Named after the clock-ahead tests only because of the file names its fixer may create.)

`/dev/zero` given by mistake used to be read until memory ran out: a MemoryError traceback under
an address-space limit, gigabytes of RSS without one. Now it is one error line naming the file,
exit 2, and no run is started. The subprocess runs under an address-space limit, so that a
regression fails the test instead of eating the machine's memory.
"""

from __future__ import annotations

import os
import resource
import subprocess
from pathlib import Path

import pytest
from _hardening_procs import asg_audit, clean_env

from asg_audit.collector import TASK_ID_FILE_MAX_BYTES, read_task_id_file
from asg_audit.errors import InputError

_AS_LIMIT = 3 << 30  # bytes of address space the child may map: far below what /dev/zero takes


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (_AS_LIMIT, _AS_LIMIT))


def test_collect_task_ids_from_dev_zero_is_one_error_line_exit_2(tmp_path: Path) -> None:
    proc = subprocess.run(
        asg_audit("collect", "--db", str(tmp_path / "a.duckdb"), "--task-ids", "/dev/zero"),
        cwd=tmp_path,
        env=clean_env(ASG_API_KEY="sk_sandbox_x", ASG_BASE_URL="http://127.0.0.1:1"),
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_limit_memory,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines() == [
        "asg-audit: error: /dev/zero: task id file is larger than 64 MiB (is it the right file?): "
        "not read"
    ], proc.stderr[-2000:]


def test_task_id_file_past_the_bound_is_refused_and_one_at_it_is_read(tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    line = b"tsk_" + b"a" * 59 + b"\n"  # 64 bytes
    with big.open("wb") as fh:
        fh.write(line * (TASK_ID_FILE_MAX_BYTES // len(line)))
    listed = read_task_id_file(big)
    assert len(listed.ids) == TASK_ID_FILE_MAX_BYTES // len(line) and not listed.skipped
    with big.open("ab") as fh:
        fh.write(b"\n")
    with pytest.raises(InputError, match=r"big\.txt: task id file is larger than 64 MiB"):
        read_task_id_file(big)


def test_task_id_fifo_writing_without_end_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "ids.fifo"
    os.mkfifo(fifo)
    # the writer: ids without end, until the reader closes the pipe (SIGPIPE)
    writer = subprocess.Popen(["sh", "-c", 'exec yes tsk_0123456789 > "$0"', str(fifo)])
    try:
        with pytest.raises(InputError, match="task id file is larger than 64 MiB"):
            read_task_id_file(fifo)
    finally:
        writer.kill()
        writer.wait(timeout=30)
