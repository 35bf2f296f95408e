"""A store file cut short, a disk that fills, a creation interrupted (tester X).

- A truncated store (a copy or download that stopped) is refused by every command with one line
  naming it damaged, exit 2, the file unchanged; it used to fail half-way with a traceback and
  exit 1, or, cut only at its tail, to be written to.
- A write that fails on a full disk says so: the clean-up after it no longer replaces that
  error with DuckDB's "transaction is aborted".
- A store whose creation was interrupted (an empty DuckDB file) is "no database here yet" for
  readers and becomes a store for writers.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from _hardening_procs import clean_env, ingest_limited
from _records import settled_export

from asg_audit.audit import analyze
from asg_audit.errors import EXIT_USAGE, StoreFileError
from asg_audit.ingest_files import ingest
from asg_audit.store import open_store

# creates the store at argv[1], with a real SIGINT delivered to itself in the middle of the
# first migration (after its fourth statement)
INTERRUPTED_CREATION = (
    "import os, signal, sys\n"
    "from asg_audit.store import open_store\n"
    "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
    "calls = 0\n"
    "def hook(frame, event, arg):\n"
    "    global calls\n"
    "    if event == 'c_call' and frame.f_code.co_name == 'migrate':\n"
    "        calls += 1\n"
    "        if calls == 4:\n"
    "            sys.setprofile(None)\n"
    "            os.kill(os.getpid(), signal.SIGINT)\n"
    "sys.setprofile(hook)\n"
    "try:\n"
    "    with open_store(sys.argv[1]):\n"
    "        pass\n"
    "except KeyboardInterrupt:\n"
    "    sys.exit(130)\n"
    "sys.exit(0)\n"
)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asg_audit", *args], capture_output=True, text=True, timeout=120
    )


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def good_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store of a few MB (many DuckDB blocks, none free)."""
    folder = tmp_path_factory.mktemp("good")
    db = folder / "good.duckdb"
    ingest(db, settled_export(folder / "a.ndjson", 60_000))
    return db


def cut_copy(good: Path, folder: Path, keep: int) -> Path:
    db = folder / "cut.duckdb"
    db.write_bytes(good.read_bytes()[:keep])
    return db


@pytest.mark.parametrize("where", ["headers", "first block", "middle", "tail"])
def test_store_truncated_is_refused_by_every_command_untouched(
    good_store: Path, tmp_path: Path, where: str
) -> None:
    size = good_store.stat().st_size
    keep = {"headers": 5_000, "first block": 20_000, "middle": size // 3, "tail": size - 1}
    db = cut_copy(good_store, tmp_path, keep[where])
    before = digest(db)
    more = settled_export(tmp_path / "more.ndjson", 10, prefix="m")
    subs = tmp_path / "subs.csv"
    subs.write_text(
        "task_id,task_type,consensus_threshold,options,created_at\n"
        "m0000000,image,3,cat|dog,2026-10-01T00:00:00Z\n"
    )
    reports = tmp_path / "reports"
    for args in (
        ["db", "info"],
        ["runs"],
        ["ingest", str(more)],
        ["track", str(subs)],
        ["report", "--out", str(reports)],
    ):
        proc = cli(*args, "--db", str(db))
        assert proc.returncode == EXIT_USAGE, (args, proc.stderr)
        lines = proc.stderr.splitlines()
        assert len(lines) == 1, (args, proc.stderr)
        assert lines[0].startswith(f"asg-audit: error: {db}: a damaged database file: truncated")
        assert "Traceback" not in proc.stderr
    assert digest(db) == before
    assert not Path(f"{db}.wal").exists()


def test_store_truncated_is_refused_by_the_library_for_readers_and_writers(
    good_store: Path, tmp_path: Path
) -> None:
    db = cut_copy(good_store, tmp_path, good_store.stat().st_size - 100_000)
    before = digest(db)
    for read_only in (True, False):
        with (
            pytest.raises(StoreFileError, match="damaged database file: truncated"),
            open_store(db, read_only=read_only),
        ):
            pass
    assert digest(db) == before


def test_store_whole_opens_even_when_duckdb_shortened_it_by_its_free_blocks(
    tmp_path: Path,
) -> None:
    # DuckDB drops the free blocks at the end of the file, while its header still counts
    # them: a file shorter than the blocks counted is whole when those are free.
    db = tmp_path / "a.duckdb"
    ingest(db, settled_export(tmp_path / "a.ndjson", 200))
    con = duckdb.connect(str(db))
    con.execute(
        "CREATE TABLE scratch AS SELECT range AS i, md5(range::VARCHAR) AS s FROM range(300000)"
    )
    con.execute("CHECKPOINT")
    con.execute("DROP TABLE scratch")
    con.execute("CHECKPOINT")
    con.close()
    con = duckdb.connect(str(db), read_only=True)
    block_size, total, free = con.execute(
        "SELECT block_size, total_blocks, free_blocks FROM pragma_database_size()"
    ).fetchone()
    con.close()
    assert free > 0 and db.stat().st_size < 3 * 4096 + block_size * total  # the case at hand
    proc = cli("db", "info", "--db", str(db))
    assert proc.returncode == 0, proc.stderr
    with open_store(db) as store:
        assert store.count("results") == 200


def test_store_full_disk_during_a_write_names_the_full_disk(tmp_path: Path) -> None:
    db = tmp_path / "a.duckdb"
    # More records than a row group: DuckDB writes them to the file while they are stored.
    export = settled_export(tmp_path / "a.ndjson", 130_000)
    proc = ingest_limited(db, export, 2_000_000)
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"asg-audit: error: {db}: cannot write the database")
    assert "File too large" in lines[0]  # the first error, as the OS says it
    assert "transaction is aborted" not in proc.stderr
    assert cli("ingest", "--db", str(db), str(export)).returncode == 0  # room again: all in


def test_store_creation_interrupted_is_no_store_yet_for_readers_and_a_store_for_writers(
    tmp_path: Path,
) -> None:
    db = tmp_path / "new.duckdb"
    proc = subprocess.run(
        [sys.executable, "-c", INTERRUPTED_CREATION, str(db)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 130, proc.stderr  # the interrupt landed inside the migration
    assert db.exists()  # DuckDB made the file before the migration began
    for args in (["runs"], ["db", "info"]):
        done = cli(*args, "--db", str(db))
        assert done.returncode == EXIT_USAGE, done.stderr
        assert done.stderr == (
            f"asg-audit: error: {db}: no database here yet (an empty DuckDB file, not an"
            " asg_audit store until `asg-audit ingest` or `collect` writes to it)\n"
        )
    done = cli("ingest", "--db", str(db), str(settled_export(tmp_path / "a.ndjson", 5)))
    assert done.returncode == 0, done.stderr
    runs = cli("runs", "--db", str(db))
    assert runs.returncode == 0, runs.stderr
    assert [line.split()[1] for line in runs.stdout.splitlines()[1:]] == ["ingest"]


def rotten_copy(good: Path, folder: Path) -> Path:
    """A copy with 8 KiB in the middle overwritten: a block of the results' data, whose
    checksum fails only when a query reads it (the checks at open pass)."""
    data = bytearray(good.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 8192] = b"\xa5" * 8192
    db = folder / "rotten.duckdb"
    db.write_bytes(bytes(data))
    return db


def test_store_block_damaged_inside_is_one_line_and_exit_2_when_read(
    good_store: Path, tmp_path: Path
) -> None:
    """Tester T1: `report`, `verify-chain`, `billing` and `collect` ended with DuckDB's
    traceback and exit 1 (the code of findings); `analyze` raised DuckDB's own error."""
    db = rotten_copy(good_store, tmp_path)
    with open_store(db, read_only=True):  # the checks at open do not see it
        pass
    # `collect` reads the store on a writer thread of its own, outside an open_store block
    # (review); nothing is polled: the Gateway, a closed port, is never asked
    gateway = {"ASG_API_KEY": "sk_sandbox_rotten", "ASG_BASE_URL": "http://127.0.0.1:9"}
    for args, env in (
        (["report", "--out", str(tmp_path / "reports")], {}),
        (["collect"], gateway),
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "asg_audit", *args, "--db", str(db)],
            env=clean_env(**env),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == EXIT_USAGE, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
        lines = proc.stderr.splitlines()
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith(
            f"asg-audit: error: {db}: a damaged database file: DuckDB: Corrupt database file:"
        )
    with pytest.raises(StoreFileError, match="a damaged database file: DuckDB: Corrupt"):
        analyze(db)


def test_an_error_quoting_duckdbs_words_is_no_damaged_store(good_store: Path) -> None:
    """Review: a conversion error of a value reading "Corrupt database file" was called a
    damaged store."""
    with pytest.raises(duckdb.ConversionException), open_store(good_store, read_only=True) as s:
        s.con.execute("SELECT 'Corrupt database file'::INTEGER")
