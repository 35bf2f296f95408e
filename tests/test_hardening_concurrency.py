"""Concurrency and resources: readers while the collector writes, a second collector, a
read-only folder, an unwritable database path, a full disk.

Defined behaviour (DuckDB allows one writing process per file and no reader beside it): while
`collect` writes, `report` exits 3 with "database busy" and `analyze()` raises
`StoreBusyError` (after `wait_seconds` when given); nothing is corrupted, and both work as soon
as the writer is gone. A second collector exits 3 with "database busy". An unwritable place
or a full disk is one clear error line (exit 2 or 3, no traceback) and the store still opens with
everything committed before.
"""

from __future__ import annotations

import resource
import signal
import subprocess
import time
from pathlib import Path

import pytest
from _hardening_procs import (
    asg_audit,
    assert_store_opens_cleanly,
    clean_env,
    query,
    wait_store_open,
)

from asg_audit.audit import analyze
from asg_audit.errors import StoreBusyError
from asg_audit.ingest_files import track_file
from asg_audit.sim import WorldConfig, generate_world, run_simulator


@pytest.fixture(scope="module")
def collecting(tmp_path_factory: pytest.TempPathFactory):
    """A collector subprocess writing to a store (slowly: 20 requests/s), and the simulator."""
    tmp = tmp_path_factory.mktemp("collecting")
    world = generate_world(WorldConfig(seed=41, tasks=400, live_fraction=0.0, anomalies="none"))
    db = tmp / "audit.duckdb"
    track_file(db, world.write_submissions(tmp / "subs.ndjson"))
    with run_simulator(world) as sim:
        env = clean_env(ASG_API_KEY=sim.api_key, ASG_BASE_URL=sim.gateway_url)
        proc = subprocess.Popen(
            asg_audit("collect", "--db", str(db), "--max-rps", "20"),
            env=env,
            cwd=tmp,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        wait_store_open(proc, db)
        yield {"db": db, "proc": proc, "env": env, "tmp": tmp, "world": world}
        proc.terminate()
        proc.communicate(timeout=60)
    assert_store_opens_cleanly(db)


def test_hardening_report_while_collecting_is_a_clear_busy_error(collecting, tmp_path) -> None:
    assert collecting["proc"].poll() is None
    done = subprocess.run(
        asg_audit("report", "--db", str(collecting["db"]), "--out", str(tmp_path / "r")),
        env=collecting["env"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 3
    assert "database busy" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_hardening_notebook_analyze_while_collecting_waits_then_raises_busy(collecting) -> None:
    assert collecting["proc"].poll() is None
    started = time.monotonic()
    with pytest.raises(StoreBusyError, match="database busy"):
        analyze(collecting["db"])
    with pytest.raises(StoreBusyError, match=r"waited 1\.5 s"):
        from asg_audit.store import open_store

        with open_store(collecting["db"], read_only=True, wait_seconds=1.5):
            pass
    assert time.monotonic() - started >= 1.5


def test_hardening_second_collector_is_refused_with_exit_3(collecting, tmp_path) -> None:
    assert collecting["proc"].poll() is None
    done = subprocess.run(
        asg_audit("collect", "--db", str(collecting["db"])),
        env=collecting["env"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 3
    assert "database busy" in done.stderr and "Traceback" not in done.stderr
    assert collecting["proc"].poll() is None  # the first one goes on


def test_hardening_report_after_the_collector_sees_everything_committed(collecting, tmp_path):
    proc = collecting["proc"]
    proc.terminate()  # flushes what it has and stops (exit 3: interrupted)
    proc.communicate(timeout=60)
    committed = query(collecting["db"], "SELECT count(*) FROM observations")[0][0]
    assert committed > 0
    audit = analyze(collecting["db"])
    assert audit.summary()["settled"] == committed  # every committed answer, nothing torn


def _ingest(db: Path, files: list[Path], cwd: Path, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        asg_audit("ingest", *map(str, files), "--db", str(db)),
        env=clean_env(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        **kw,
    )


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    tmp = tmp_path_factory.mktemp("exports")
    world = generate_world(WorldConfig(seed=42, tasks=3000, anomalies="none"))
    lines = world.write_results_export(tmp / "all.ndjson").read_text().splitlines(keepends=True)
    files = []
    for i in range(3):
        files.append(tmp / f"part-{i}.ndjson")
        files[-1].write_text("".join(lines[i * 1000 : (i + 1) * 1000]))
    return files


def test_hardening_missing_folder_for_the_store_is_a_clear_error(tmp_path, exports) -> None:
    done = _ingest(tmp_path / "no" / "such" / "audit.duckdb", exports[:1], tmp_path)
    assert done.returncode in (2, 3)
    assert "does not exist" in done.stderr and "Traceback" not in done.stderr


def test_hardening_database_under_a_file_is_a_clear_error(tmp_path, exports) -> None:
    (tmp_path / "not-a-folder").write_text("x")
    done = _ingest(tmp_path / "not-a-folder" / "audit.duckdb", exports[:1], tmp_path)
    assert done.returncode in (2, 3)
    assert "asg-audit: error:" in done.stderr and "Traceback" not in done.stderr


def test_hardening_database_path_that_is_a_folder_is_a_clear_error(tmp_path, exports) -> None:
    db = tmp_path / "audit.duckdb"
    db.mkdir()  # unwritable as a file, whoever runs the test
    done = _ingest(db, exports[:1], tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"asg-audit: error: {db}: a folder, not a database file\n"


def _full_disk_at(limit: int):
    def apply() -> None:
        # Files may not grow past `limit` bytes: a full disk for the writer. SIGXFSZ would kill
        # it outright; ignored, the write fails with EFBIG as on a full disk.
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    return apply


def test_hardening_full_disk_is_a_clear_error_and_keeps_what_was_committed(tmp_path, exports):
    db = tmp_path / "audit.duckdb"
    assert _ingest(db, exports[:1], tmp_path).returncode == 0
    before = assert_store_opens_cleanly(db)
    done = _ingest(db, exports[1:], tmp_path, preexec_fn=_full_disk_at(16 * 1024))
    assert done.returncode in (2, 3), done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert "asg-audit: error:" in done.stderr
    after = assert_store_opens_cleanly(db)
    assert after["results"] >= before["results"]
    assert after["ingested_files"] >= before["ingested_files"]
    # once there is room again, the rest goes in
    assert _ingest(db, exports, tmp_path).returncode == 0
    assert assert_store_opens_cleanly(db)["ingested_files"] == len(exports)
