"""A stop signal once a command's run is recorded leaves its output and exit code (tester X).

`billing` stopped by SIGTERM after its run was recorded `ok` exited 3 "interrupted" with its
findings not printed, while `runs` showed `billing ok`. The signal here lands at a known
moment: the command's standard output is a pipe that is already full, so its first line (printed
after the run is recorded) blocks until the test reads; the SIGTERM comes while it waits.
Real commands in subprocesses, a real simulator for `billing` and `verify-chain`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _chain_sim import Scenario, scenario
from _hardening_procs import clean_env, query
from _scripted_gateway import scripted_gateway, settled_body

from asg_audit.ingest_files import ingest_paths, track_file

F_SETPIPE_SZ = 1031
PIPE_BYTES = 4096  # the smallest pipe Linux makes (one page)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    with scenario(tmp_path_factory.mktemp("world"), seed=5, tasks=300) as sc:
        yield sc


def _blocked_on_output(pid: int) -> bool:
    """Whether the process's main thread waits to write to its full output pipe (Linux: where
    the kernel says it waits, or the system call it is in: write, on fd 1, on x86-64).

    The store is not read meanwhile: a reader would make the command's store busy.
    """
    with contextlib.suppress(OSError):
        if "pipe_write" in Path(f"/proc/{pid}/wchan").read_text():
            return True
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/syscall").read_text().startswith("1 0x1 ")
    return False


def _stopped_while_printing(argv: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """Run `argv` with a full pipe as its output; SIGTERM it once it waits to print, after its
    run is recorded; return its exit code, output and error output."""
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, F_SETPIPE_SZ, PIPE_BYTES)
    os.write(write_end, b"#" * PIPE_BYTES)  # full: the command's first write waits
    env = {**env, "PYTHONUNBUFFERED": "1"}  # each line is written as it is printed
    proc = subprocess.Popen(
        [sys.executable, "-m", "asg_audit", *argv],
        stdout=write_end,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    os.close(write_end)
    chunks: list[bytes] = []
    try:
        deadline = time.monotonic() + 120
        while not _blocked_on_output(proc.pid):
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the command never reached its output"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)  # the signal is delivered while the write still waits
        reader = threading.Thread(target=_drain, args=(read_end, chunks))
        reader.start()
        _, err = proc.communicate(timeout=120)
        reader.join(timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        with contextlib.suppress(OSError):
            os.close(read_end)
    out = b"".join(chunks).decode()
    assert out.startswith("#" * PIPE_BYTES)
    return proc.returncode, out[PIPE_BYTES:], err


def _drain(fd: int, chunks: list[bytes]) -> None:
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)


def _copy(sc: Scenario, tmp_path: Path) -> Path:
    db = tmp_path / "audit.duckdb"
    shutil.copy(sc.db, db)
    return db


def _sim_env(sc: Scenario) -> dict[str, str]:
    return clean_env(
        ASG_BASE_URL=sc.config.base_url,
        ASG_CHAIN_URL=str(sc.config.chain_url),
        ASG_API_KEY=sc.sim.api_key,
    )


def _assert_finished(code: int, out: str, err: str, db: Path, command: str, status: str) -> None:
    assert "interrupted" not in err, err
    assert "Traceback" not in err, err
    rows = query(db, "SELECT status FROM runs WHERE command = ?", [command])
    assert [r[0] for r in rows] == [status]
    assert out.strip(), "the output is printed whole"


def test_billing_stopped_once_its_run_is_recorded_prints_its_findings_and_keeps_its_exit(
    world: Scenario, tmp_path: Path
) -> None:
    db = _copy(world, tmp_path)
    code, out, err = _stopped_while_printing(["billing", "--db", str(db)], _sim_env(world))
    _assert_finished(code, out, err, db, "billing", "ok")
    assert "findings:" in out  # the planted billing anomalies, printed after the signal
    assert code == 1, (code, err)  # findings at `fail`: the exit code they give


def test_verify_chain_stopped_once_its_run_is_recorded_prints_its_findings(
    world: Scenario, tmp_path: Path
) -> None:
    db = _copy(world, tmp_path)
    code, out, err = _stopped_while_printing(
        ["verify-chain", "--db", str(db), "--quiet", "--rps", "1000"], _sim_env(world)
    )
    _assert_finished(code, out, err, db, "verify-chain", "ok")
    assert "findings:" in out
    assert code == 1, (code, err)


def _export(tmp_path: Path) -> Path:
    data = tmp_path / "in.jsonl"
    data.write_text(
        "".join(
            f'{{"task_id": "tsk_{i}", "status": "settled", "consensus_label": "cat",'
            ' "confidence": 1, "worker_count": 3, "agreement_count": 3}\n'
            for i in range(20)
        )
    )
    return data


def test_ingest_stopped_once_its_run_is_recorded_prints_its_summary(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    ingest_paths(db, [_export(tmp_path)])
    more = tmp_path / "more.jsonl"
    more.write_text(_export(tmp_path).read_text().replace("tsk_", "tsk_more_"))
    code, out, err = _stopped_while_printing(
        ["ingest", "--db", str(db), "--quiet", str(more)], clean_env()
    )
    rows = query(db, "SELECT status FROM runs WHERE command = 'ingest'")
    assert [r[0] for r in rows] == ["ok", "ok"]
    assert "interrupted" not in err, err
    assert code == 0, (code, err)
    assert "more.jsonl" in out


def test_track_stopped_once_its_run_is_recorded_prints_its_summary(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    ingest_paths(db, [_export(tmp_path)])
    subs = tmp_path / "subs.csv"
    subs.write_text(
        "task_id,task_type,consensus_threshold,options,created_at\n"
        "tsk_1,image,3,cat|dog,2026-10-01T00:00:00Z\n"
    )
    code, out, err = _stopped_while_printing(["track", "--db", str(db), str(subs)], clean_env())
    _assert_finished(code, out, err, db, "track", "ok")
    assert code == 0, (code, err)
    assert "1 new task" in out


def test_collect_stopped_once_its_run_is_recorded_prints_its_summary(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    subs = tmp_path / "subs.csv"
    subs.write_text(
        "task_id,task_type,consensus_threshold,options,created_at\n"
        "tsk_1,image,3,cat|dog,2026-10-01T00:00:00Z\n"
    )
    track_file(db, subs)
    with scripted_gateway(lambda task_id, n: (200, settled_body(task_id), {})) as gateway:
        env = clean_env(ASG_API_KEY="sk_sandbox_fixd", ASG_BASE_URL=gateway.url)
        code, out, err = _stopped_while_printing(["collect", "--db", str(db)], env)
    # asyncio had reset SIGTERM to its default: the signal killed the process (-15)
    assert code == 0, (code, err)
    _assert_finished(code, out, err, db, "collect", "completed")
    assert "settled 1," in out
