"""Output that cannot be written never stops the work; the command then exits 3.

A log on a full disk (the README's cron line `>> audit.log 2>&1`) made `audit` stop right after
its ingest step: collect, verify-chain and billing never ran, no report, the run recorded
`failed` with `OSError: [Errno 28] No space left on device`, and the exit code was 1 (findings,
which systemd's `SuccessExitStatus=0 1` takes for success) or 120/3; `runs > /dev/full` ended in
a traceback. /dev/full fails every write with ENOSPC, as a full disk does. The real command in a
subprocess, against the simulator on 127.0.0.1.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _hardening_procs import asg_audit, clean_env, query

from asg_audit.demo import _write_provider_export
from asg_audit.ingest_files import track_file
from asg_audit.sim import WorldConfig, generate_world, run_simulator
from asg_audit.store import open_store

LOST_LINE = "asg-audit: error: cannot write to standard output: No space left on device"
STEPS = ("ingest", "collect", "verify-chain", "billing")


@pytest.fixture(scope="module")
def sim() -> Iterator[Any]:
    # every anomaly kind planted: the audit finds failures, so it would exit 1
    world = generate_world(WorldConfig(seed=11, tasks=300, anomalies="all"))
    with run_simulator(world, time_scale=0.01) as running:
        running.world = world
        yield running


def _job(tmp_path: Path, sim: Any) -> tuple[Path, Path, Path]:
    """A store with the world's submissions tracked, a drop folder with the provider's export,
    and a config; return (store, config, reports folder)."""
    db = tmp_path / "audit.duckdb"
    track_file(db, sim.world.write_submissions(tmp_path / "subs.ndjson"))
    drop = tmp_path / "drop"
    _write_provider_export(sim.world, drop / "export.jsonl")
    reports = tmp_path / "reports"
    config = tmp_path / "asg_audit.toml"
    config.write_text(
        f'db = "{db}"\n[collector]\nmax_rps = 200\nconcurrency = 32\n[chain]\nrps = 200\n'
        f'[audit]\ndrop_folders = ["{drop}"]\nreport_dir = "{reports}"\ncollect_seconds = 2\n'
    )
    return db, config, reports


def _run(argv: list[str], sim: Any, *, stderr_full: bool) -> subprocess.CompletedProcess[str]:
    with open("/dev/full", "w") as full:
        return subprocess.run(
            argv,
            stdout=full,
            stderr=full if stderr_full else subprocess.PIPE,
            text=True,
            env=clean_env(
                ASG_API_KEY=sim.api_key, ASG_BASE_URL=sim.gateway_url, ASG_CHAIN_URL=sim.chain_url
            ),
            timeout=300,
        )


def _assert_audit_did_all_its_work(db: Path, reports: Path) -> None:
    [(run_id, status, stats)] = query(
        db, "SELECT run_id, status, stats FROM runs WHERE command = 'audit'"
    )
    steps = json.loads(stats)["steps"]
    assert set(STEPS) <= set(steps), steps
    for step in STEPS:
        assert not steps[step].startswith(("failed", "interrupted")), steps
    assert status == "ok" and json.loads(stats)["exit_code"] == 1, (status, stats)
    # the steps' own runs are in the history too: each one ran
    commands = {c for (c,) in query(db, "SELECT command FROM runs")}
    assert {"collect", "verify-chain", "billing"} <= commands, commands
    assert "running" not in {s for (s,) in query(db, "SELECT status FROM runs")}
    assert (reports / run_id / "index.html").stat().st_size > 0
    assert json.loads((reports / run_id / "summary.json").read_text())["run_id"] == run_id


@pytest.mark.parametrize("json_outcome", [False, True], ids=["lines", "json"])
def test_audit_with_stdout_on_a_full_disk_does_all_its_work_and_exits_3(
    tmp_path: Path, sim: Any, json_outcome: bool
) -> None:
    db, config, reports = _job(tmp_path, sim)
    argv = asg_audit("audit", "--config", str(config), *(["--json"] if json_outcome else []))
    done = _run(argv, sim, stderr_full=False)
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.splitlines()[-1] == LOST_LINE, done.stderr
    assert done.stderr.count("cannot write") == 1, done.stderr
    _assert_audit_did_all_its_work(db, reports)


def test_audit_with_stdout_and_stderr_on_a_full_disk_does_all_its_work_and_exits_3(
    tmp_path: Path, sim: Any
) -> None:
    # `>> audit.log 2>&1` on a full disk: nothing can be said, the exit code says it
    db, config, reports = _job(tmp_path, sim)
    done = _run(asg_audit("audit", "--config", str(config)), sim, stderr_full=True)
    assert done.returncode == 3
    _assert_audit_did_all_its_work(db, reports)


@pytest.mark.parametrize("command", [["runs"], ["db", "info"]], ids=["runs", "db-info"])
def test_a_command_whose_stdout_is_full_exits_3_with_one_line(
    tmp_path: Path, sim: Any, command: list[str]
) -> None:
    db, _, _ = _job(tmp_path, sim)
    done = _run(asg_audit(*command, "--db", str(db)), sim, stderr_full=False)
    assert done.returncode == 3, done.stderr
    assert done.stderr.splitlines() == [LOST_LINE], done.stderr
    both = _run(asg_audit(*command, "--db", str(db)), sim, stderr_full=True)
    assert both.returncode == 3


def test_runs_longer_than_a_buffer_on_a_full_disk_exits_3_with_one_line(tmp_path: Path) -> None:
    # more than the 8 KiB stdout buffer: the write fails inside print, not at the last flush
    db = tmp_path / "audit.duckdb"
    with open_store(db) as store:
        for _ in range(200):  # some 16 KiB of `runs` lines
            store.finish_run(store.start_run("track"), status="ok")
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            asg_audit("runs", "--db", str(db), "--limit", "1000"),
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
            timeout=120,
        )
    assert done.returncode == 3, done.stderr
    assert done.stderr.splitlines() == [LOST_LINE], done.stderr
