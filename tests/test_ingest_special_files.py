"""Named pipes, sockets and devices: never opened when found in a folder, read once as a
stream when named on their own (`<(...)`, `mkfifo`)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pytest

from asg_audit.errors import InputError
from asg_audit.ingest_files import expand_paths


def rec(task_id: str) -> str:
    return json.dumps({"task_id": task_id, "status": "pending", "note": "n" * 60})


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asg_audit", "ingest", "--quiet", *args],
        capture_output=True,
        text=True,
        timeout=timeout,  # the old code blocked for ever opening the pipe
    )


def task_ids(db: Path) -> list[str]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return [r[0] for r in con.execute("SELECT task_id FROM observations ORDER BY 1").fetchall()]
    finally:
        con.close()


@contextmanager
def fed_pipe(path: Path, content: Path) -> Iterator[Path]:
    """A named pipe at `path` that a writer process fills with `content` once it is opened."""
    os.mkfifo(path)
    writer = subprocess.Popen(["sh", "-c", 'cat "$1" > "$2"', "sh", str(content), str(path)])
    try:
        yield path
    finally:
        writer.kill()
        writer.wait()


def test_ingest_folder_with_a_pipe_and_a_socket_fails_them_by_name_and_reads_the_rest() -> None:
    # A short folder: a socket's path is limited to about 100 bytes.
    with tempfile.TemporaryDirectory(dir="/tmp") as tmp:
        folder = Path(tmp, "in")
        folder.mkdir()
        Path(folder, "a.jsonl").write_text(rec("a1") + "\n")
        os.mkfifo(folder / "b.jsonl")
        Path(folder, "c.json").write_text(rec("c1") + "\n")
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(folder / "d.jsonl"))
        try:
            db = Path(tmp, "audit.duckdb")
            done = cli("--db", str(db), str(folder), timeout=30)
        finally:
            sock.close()
        assert done.returncode == 2, done.stderr
        assert f"{folder / 'b.jsonl'}: a named pipe (FIFO), not a file: not read" in done.stderr
        assert f"{folder / 'd.jsonl'}: a socket, not a file: not read" in done.stderr
        assert task_ids(db) == ["a1", "c1"]
        con = duckdb.connect(str(db), read_only=True)
        try:
            assert con.execute("SELECT status FROM runs").fetchall() == [("failed",)]
        finally:
            con.close()


def test_expand_paths_without_a_handler_names_the_pipe_in_a_folder(tmp_path: Path) -> None:
    (tmp_path / "a.jsonl").write_text(rec("a1") + "\n")
    os.mkfifo(tmp_path / "b.jsonl")
    with pytest.raises(InputError, match=r"b\.jsonl: a named pipe \(FIFO\), not a file"):
        expand_paths([tmp_path])


def test_ingest_pipe_named_on_its_own_is_read_whole_once(tmp_path: Path) -> None:
    # More than a group of small files holds (4 MiB): the old code read 4 MiB of the pipe to
    # try it as a small file, then opened it again and stored only what was left of it.
    content = tmp_path / "content.jsonl"
    content.write_text("".join(rec(f"t{i:05d}") + "\n" for i in range(60_000)))
    assert content.stat().st_size > 4 << 20
    db = tmp_path / "audit.duckdb"
    with fed_pipe(tmp_path / "pipe", content) as pipe:  # no suffix, like /dev/fd/63
        done = cli("--db", str(db), str(pipe))
    assert done.returncode == 0, done.stderr
    assert task_ids(db) == [f"t{i:05d}" for i in range(60_000)]


@pytest.mark.parametrize("indent", [None, 1], ids=["array", "pretty-array"])
def test_ingest_pipe_holding_a_json_array_is_read_whole_once(
    tmp_path: Path, indent: int | None
) -> None:
    content = tmp_path / "content.json"
    content.write_text(
        json.dumps([json.loads(rec(f"t{i:05d}")) for i in range(60_000)], indent=indent)
    )
    assert content.stat().st_size > 4 << 20
    db = tmp_path / "audit.duckdb"
    with fed_pipe(tmp_path / "pipe", content) as pipe:
        done = cli("--db", str(db), str(pipe))
    assert done.returncode == 0, done.stderr
    assert task_ids(db) == [f"t{i:05d}" for i in range(60_000)]
    # the same content as a file is the same content: already ingested
    again = cli("--db", str(db), str(content))
    assert again.returncode == 0, again.stderr
    assert len(task_ids(db)) == 60_000
    con = duckdb.connect(str(db), read_only=True)
    try:
        assert con.execute("SELECT count(*) FROM ingested_files").fetchall() == [(1,)]
    finally:
        con.close()
