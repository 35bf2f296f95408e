"""SIGTERM and SIGINT stop `audit` and `verify-chain` cleanly: one line, exit 3, every run
recorded `interrupted`, none left `running`. The real command against the simulator."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _hardening_procs import asg_audit, clean_env, query

from asg_audit.ingest_files import ingest_paths, track_file
from asg_audit.sim import WorldConfig, generate_world, run_simulator


@pytest.fixture(scope="module")
def sim() -> Iterator[Any]:
    world = generate_world(WorldConfig(seed=7, tasks=1500, anomalies="none"))
    # a slow chain index (1 request per simulated second at scale 1) keeps verify-chain busy
    with run_simulator(world, time_scale=1.0, chain_rps=1) as running:
        running.world = world
        yield running


def _store(tmp_path: Path, sim: Any) -> Path:
    db = tmp_path / "audit.duckdb"
    track_file(db, sim.world.write_submissions(tmp_path / "subs.ndjson"))
    ingest_paths(db, [sim.world.write_results_export(tmp_path / "results.ndjson")])
    return db


def _env(sim: Any) -> dict[str, str]:
    return clean_env(
        ASG_API_KEY=sim.api_key, ASG_BASE_URL=sim.gateway_url, ASG_CHAIN_URL=sim.chain_url
    )


def _chain_requests(sim: Any) -> int:
    by_endpoint = sim.stats().get("chain", {}).get("by_endpoint", {})
    return sum(n for k, n in by_endpoint.items() if "/txs" in k)


def _wait_for_chain_lookups(sim: Any, before: int, timeout: float = 90.0) -> None:
    """Wait until the command is looking txids up (the store is held by its writer)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _chain_requests(sim) > before:
            return
        time.sleep(0.2)
    raise AssertionError("no chain lookup started")


def _stop(argv: list[str], sim: Any, sig: int) -> tuple[int, str, str]:
    before = _chain_requests(sim)
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(sim), text=True
    )
    try:
        _wait_for_chain_lookups(sim, before)
        time.sleep(1.0)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, out, err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_verify_chain_stop_signal_records_interrupted_and_exits_3(
    tmp_path: Path, sim: Any, sig: int
) -> None:
    db = _store(tmp_path, sim)
    argv = asg_audit("verify-chain", "--db", str(db), "--quiet", "--rps", "1")
    code, _, err = _stop(argv, sim, sig)
    assert code == 3, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "asg-audit: interrupted"
    assert query(db, "SELECT status FROM runs WHERE command = 'verify-chain'") == [("interrupted",)]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_audit_stop_signal_records_every_run_interrupted_and_exits_3(
    tmp_path: Path, sim: Any, sig: int
) -> None:
    db = _store(tmp_path, sim)
    config = tmp_path / "asg_audit.toml"
    config.write_text(
        f'db = "{db}"\n[chain]\nrps = 1\n[collector]\nmax_rps = 200\n'
        f'[audit]\nreport_dir = "{tmp_path / "reports"}"\ncollect_seconds = 2\n'
    )
    argv = asg_audit("audit", "--config", str(config))
    code, _, err = _stop(argv, sim, sig)
    assert code == 3, err
    assert "Traceback" not in err and err.strip().splitlines()[-1] == "asg-audit: interrupted"
    runs = dict(query(db, "SELECT command, status FROM runs WHERE command <> 'ingest'"))
    assert runs.get("audit") == "interrupted"
    assert runs.get("verify-chain") == "interrupted"
    assert "running" not in query(db, "SELECT list(status) FROM runs")[0][0]
