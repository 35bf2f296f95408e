"""`asg-audit collect` as a subprocess against the simulator on 127.0.0.1 (real time)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from asg_audit.ingest_files import track_file
from asg_audit.sim import WorldConfig, generate_world, run_simulator
from asg_audit.store import open_store

REPO = Path(__file__).resolve().parents[1]


def _env(sim) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ASG_API_KEY", "API_KEY")}
    env.update(ASG_API_KEY=sim.api_key, ASG_BASE_URL=sim.gateway_url)
    return env


def test_collector_cli_collects_every_settled_task(tmp_path: Path) -> None:
    world = generate_world(WorldConfig(seed=21, tasks=80, live_fraction=0.0, anomalies="none"))
    db = tmp_path / "audit.duckdb"
    track_file(db, world.write_submissions(tmp_path / "subs.ndjson"))
    with run_simulator(world) as sim:
        done = subprocess.run(
            [sys.executable, "-m", "asg_audit", "collect", "--db", str(db), "--max-rps", "200"],
            env=_env(sim),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 0, done.stderr
    assert "settled 80," in done.stdout
    assert sim.api_key not in done.stdout + done.stderr
    with open_store(db) as store:
        assert store.con.execute("SELECT DISTINCT state FROM poll_state").fetchall() == [("done",)]


def test_collector_cli_sigterm_writes_prints_a_summary_and_exits_3(tmp_path: Path) -> None:
    world = generate_world(WorldConfig(seed=22, tasks=60, live_fraction=0.9, anomalies="none"))
    db = tmp_path / "audit.duckdb"
    track_file(db, world.write_submissions(tmp_path / "subs.ndjson"))
    with run_simulator(world) as sim:  # real time: live tasks stay pending for a while
        child = subprocess.Popen(
            [sys.executable, "-m", "asg_audit", "collect", "--db", str(db), "--deadline", "1e9"],
            env=_env(sim),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 30
        while sim.stats()["gateway"]["requests"] < 40:
            assert child.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.5)  # let a batch or two be written
        child.send_signal(signal.SIGTERM)
        out, err = child.communicate(timeout=30)
    assert child.returncode == 3, err
    assert "interrupted" in out
    with open_store(db) as store:
        states = dict(
            store.con.execute("SELECT state, count(*) FROM poll_state GROUP BY 1").fetchall()
        )
        runs = store.con.execute("SELECT status FROM runs WHERE command = 'collect'").fetchall()
    assert states.get("pending", 0) > 0
    assert runs == [("interrupted",)]


def test_collector_cli_refused_key_exits_3(tmp_path: Path) -> None:
    world = generate_world(WorldConfig(seed=23, tasks=20, live_fraction=0.0, anomalies="none"))
    db = tmp_path / "audit.duckdb"
    track_file(db, world.write_submissions(tmp_path / "subs.ndjson"))
    with run_simulator(world) as sim:
        env = _env(sim)
        env["ASG_API_KEY"] = "sk_live_not_the_right_one"
        done = subprocess.run(
            [sys.executable, "-m", "asg_audit", "collect", "--db", str(db)],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 3
    assert "refused the API key" in done.stderr
    assert "sk_live_not_the_right_one" not in done.stdout + done.stderr
