"""A link planted at a store's write-ahead log or spill folder is refused, its target untouched.

DuckDB writes `<db>.wal` by name and follows a symbolic link there: a job run by root in a
folder others can write would overwrite (or create) the file the link points to.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from asg_audit.errors import StoreFileError
from asg_audit.store import open_store

RECORD = (
    '{"task_id": "t1", "status": "settled", "consensus_label": "cat", "confidence": 1.0,'
    ' "worker_count": 3, "agreement_count": 3, "bsv_txid": "' + "ab" * 32 + '",'
    ' "total_cost_sats": 975, "created_at": "2026-10-01T00:00:00Z",'
    ' "settled_at": "2026-10-01T00:00:40Z"}\n'
)


def _ingest(db: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    export = tmp_path / "r.ndjson"
    export.write_text(RECORD)
    return subprocess.run(
        [sys.executable, "-m", "asg_audit", "ingest", "--db", str(db), str(export)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_symbolic_link_at_the_wal_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    assert _ingest(db, tmp_path).returncode == 0  # an existing store
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"IMPORTANT DATA\n")
    before = victim.stat()
    os.symlink(victim, f"{db}.wal")
    done = _ingest(db, tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"{db}.wal: refusing to write the store's write-ahead log" in done.stderr
    assert "symbolic link" in done.stderr and "Traceback" not in done.stderr
    assert victim.read_bytes() == b"IMPORTANT DATA\n"
    assert victim.stat().st_mtime_ns == before.st_mtime_ns
    assert os.path.islink(f"{db}.wal")  # left for the user to look at


def test_a_dangling_link_at_the_wal_of_a_new_store_creates_nothing(tmp_path: Path) -> None:
    db = tmp_path / "new.duckdb"
    target = tmp_path / "elsewhere" / "made-by-duckdb"
    target.parent.mkdir()
    os.symlink(target, f"{db}.wal")
    with (
        pytest.raises(StoreFileError, match="write-ahead log: it is a symbolic link"),
        open_store(db),
    ):
        pass
    assert not target.exists() and not db.exists()


def test_a_hard_link_or_a_folder_at_the_wal_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    other = tmp_path / "other.txt"
    other.write_text("x")
    os.link(other, f"{db}.wal")
    with pytest.raises(StoreFileError, match="hard links"), open_store(db):
        pass
    os.unlink(f"{db}.wal")
    os.mkdir(f"{db}.wal")
    with pytest.raises(StoreFileError, match="not a file"), open_store(db):
        pass
    assert other.read_text() == "x"


def test_a_link_at_the_spill_folder_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    (tmp_path / "spill").mkdir()
    os.symlink(tmp_path / "spill", f"{db}.tmp")
    with pytest.raises(StoreFileError, match="spill folder: it is a symbolic link"), open_store(db):
        pass


def test_readers_and_a_store_of_its_own_wal_are_unaffected(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    assert _ingest(db, tmp_path).returncode == 0
    assert _ingest(db, tmp_path).returncode == 0  # DuckDB's own WAL and spill folder, if any
    with open_store(db, read_only=True) as store:
        assert store.con.execute("SELECT count(*) FROM results").fetchone() == (1,)


def test_a_link_at_the_wal_beside_the_real_file_of_a_linked_store_is_refused(
    tmp_path: Path,
) -> None:
    """DuckDB writes the log beside the file a `--db` link points to: checked there."""
    real, alias = tmp_path / "real", tmp_path / "alias"
    real.mkdir()
    alias.mkdir()
    assert _ingest(real / "s.duckdb", tmp_path).returncode == 0
    os.symlink(real / "s.duckdb", alias / "s.duckdb")
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious\n")
    os.symlink(victim, real / "s.duckdb.wal")
    done = _ingest(alias / "s.duckdb", tmp_path)
    assert done.returncode == 2, done.stderr
    assert f"{os.path.realpath(real / 's.duckdb')}.wal: refusing to write" in done.stderr
    assert victim.read_bytes() == b"precious\n"
