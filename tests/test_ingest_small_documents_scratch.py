"""Small array and documents files of a group are split by DuckDB from the bytes already read,
through one scratch file; when the temporary folder has no room for it, each file is read
from where it is instead, and no export is blamed for the temporary folder."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

import asg_audit.ingest_files as ingest_module
from asg_audit.ingest_files import ingest_paths
from asg_audit.store import open_store


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "drop"
    folder.mkdir()
    for i in range(3):
        record = {"task_id": f"tsk_doc_{i}", "status": "pending"}
        (folder / f"doc-{i}.json").write_text(json.dumps(record, indent=2) + "\n")
        (folder / f"arr-{i}.json").write_text(json.dumps([{**record, "task_id": f"tsk_a_{i}"}]))
    return folder


def _task_ids(db: Path) -> set[str]:
    with open_store(db, read_only=True) as store:
        return {row[0] for row in store.con.execute("SELECT task_id FROM results").fetchall()}


def test_small_documents_are_split_through_the_scratch_file(tmp_path: Path) -> None:
    summary = ingest_paths(tmp_path / "s.duckdb", [_folder(tmp_path)])
    assert not summary.failed_files and summary.records == 6
    assert len(_task_ids(tmp_path / "s.duckdb")) == 6


def test_no_room_for_the_scratch_file_reads_each_file_instead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a temporary folder with no room for the scratch file's bytes (a full /tmp cannot be
    # made here): its write fails as it would
    def full(self: object, data: bytes) -> str:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ingest_module._SmallFiles, "_write_scratch", full)
    summary = ingest_paths(tmp_path / "s.duckdb", [_folder(tmp_path)])
    assert not summary.failed_files, summary.as_dict()
    assert summary.records == 6
    assert len(_task_ids(tmp_path / "s.duckdb")) == 6
