"""Which files an ingest reads: folders that cannot be listed, suffixes in any case, and a byte
order mark at the start of a file."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from asg_audit.errors import InputError
from asg_audit.ingest_files import expand_paths, ingest_paths
from asg_audit.store import open_store

# The ways a file is read (conftest.read_path): small files in groups, or each streamed.
pytestmark = pytest.mark.usefixtures("read_path")

BOM = b"\xef\xbb\xbf"


def rec(task_id: str) -> dict[str, object]:
    return {
        "task_id": task_id,
        "status": "settled",
        "consensus_label": "cat",
        "bsv_txid": "ab" * 32,
        "settled_at": "2026-11-01T10:00:40Z",
    }


def ndjson(*task_ids: str) -> bytes:
    return "".join(json.dumps(rec(t)) + "\n" for t in task_ids).encode()


def stored(db: Path) -> tuple[list[tuple[str, str, int]], int]:
    """(task id, origin, line) of each observation, and the number of rejects."""
    with open_store(db, read_only=True) as store:
        obs = store.frame("observations").sort("obs_id")
        rows = obs.select("task_id", "origin", "origin_line").rows()
        return [(str(t), str(o), int(n)) for t, o, n in rows], store.count("rejects")


def unprivileged(cmd: list[str]) -> list[str]:
    """The command run without root's power to ignore permission bits."""
    if os.geteuid() != 0:
        return cmd
    return ["setpriv", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", "--", *cmd]


@contextlib.contextmanager
def no_permission(path: Path) -> Iterator[None]:
    path.chmod(0o000)
    try:
        yield
    finally:
        path.chmod(0o755)


def ingest_cli(db: Path, *paths: Path) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "asg_audit", "ingest", "--quiet", "--db", str(db)]
    return subprocess.run(
        unprivileged([*cmd, *map(str, paths)]), capture_output=True, text=True, timeout=120
    )


def test_a_folder_that_cannot_be_listed_fails_by_name_and_the_others_are_ingested(
    tmp_path: Path,
) -> None:
    top = tmp_path / "exports"
    locked = top / "b-locked"
    locked.mkdir(parents=True)
    (top / "a.jsonl").write_bytes(ndjson("t1"))
    (locked / "hidden.jsonl").write_bytes(ndjson("t2"))
    (top / "c.jsonl").write_bytes(ndjson("t3"))
    db = tmp_path / "audit.duckdb"
    with no_permission(locked):
        proc = ingest_cli(db, top)
        alone = ingest_cli(db, locked)  # named directly
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"{locked}: cannot list the folder: permission denied" in proc.stderr
    assert f"  failed            {locked}\n" in proc.stdout
    assert alone.returncode == 2 and f"{locked}: cannot list the folder" in alone.stderr
    rows, _ = stored(db)
    assert [t for t, _, _ in rows] == ["t1", "t3"]


def test_a_file_in_a_folder_that_cannot_be_searched_is_permission_denied(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    inside = locked / "a.jsonl"
    inside.write_bytes(ndjson("t1"))
    good = tmp_path / "good.jsonl"
    good.write_bytes(ndjson("t2"))
    db = tmp_path / "audit.duckdb"
    with no_permission(locked):
        proc = ingest_cli(db, inside, good)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"{inside}: permission denied; nothing stored" in proc.stderr
    assert [t for t, _, _ in stored(db)[0]] == ["t2"]


def test_expand_paths_without_an_error_handler_names_the_folder(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    code = (
        "import sys\n"
        "from asg_audit.errors import InputError\n"
        "from asg_audit.ingest_files import expand_paths\n"
        "try:\n"
        "    expand_paths([sys.argv[1]])\n"
        "except InputError as exc:\n"
        "    print(exc)\n"
    )
    with no_permission(locked):
        proc = subprocess.run(
            unprivileged([sys.executable, "-c", code, str(tmp_path)]),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.stdout == f"{locked}: cannot list the folder: permission denied; nothing stored\n"


def test_folders_take_suffixes_in_any_case(tmp_path: Path) -> None:
    top = tmp_path / "exports"
    top.mkdir()
    (top / "a.JSONL").write_bytes(ndjson("t1"))
    (top / "b.Json").write_bytes(ndjson("t2"))
    (top / "c.NDJSON.GZ").write_bytes(gzip.compress(ndjson("t3")))
    (top / "d.txt").write_bytes(ndjson("t4"))  # not an export
    db = tmp_path / "audit.duckdb"
    summary = ingest_paths(db, [top])
    assert [f.status for f in summary.files] == ["ingested"] * 3
    rows, rejects = stored(db)
    assert [t for t, _, _ in rows] == ["t1", "t2", "t3"] and rejects == 0


@pytest.mark.parametrize("gz", [False, True])
def test_a_byte_order_mark_at_the_start_is_not_part_of_the_first_record(
    tmp_path: Path, gz: bool
) -> None:
    pretty = "".join(json.dumps(rec(t), indent=2) + "\n" for t in ("p1", "p2")).encode()
    array = json.dumps([rec("a1"), rec("a2")]).encode()
    contents = {"lines.jsonl": ndjson("l1", "l2"), "pretty.json": pretty, "array.json": array}
    paths = []
    for name, body in contents.items():
        path = tmp_path / (name + (".gz" if gz else ""))
        path.write_bytes(gzip.compress(BOM + body) if gz else BOM + body)
        paths.append(path)
    db = tmp_path / "audit.duckdb"
    summary = ingest_paths(db, paths)
    assert summary.rejected == 0, summary.as_dict()
    rows, rejects = stored(db)
    assert rejects == 0
    assert [(t, n) for t, _, n in rows] == [
        ("l1", 1),
        ("l2", 2),
        ("p1", 1),
        ("p2", 2),
        ("a1", 1),
        ("a2", 2),
    ]


def test_a_byte_order_mark_after_the_start_is_a_reject(tmp_path: Path) -> None:
    path = tmp_path / "lines.jsonl"
    path.write_bytes(ndjson("l1") + BOM + ndjson("l2"))
    db = tmp_path / "audit.duckdb"
    ingest_paths(db, [path])
    rows, rejects = stored(db)
    assert [(t, n) for t, _, n in rows] == [("l1", 1)] and rejects == 1


def test_a_glob_that_matches_nothing_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no file matches"):
        expand_paths([str(tmp_path / "*.jsonl")])
