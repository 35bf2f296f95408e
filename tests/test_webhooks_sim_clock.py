"""Standalone `asg-audit simulate` + `serve-webhooks` + `webhooks register`, default settings.

The simulator's world has fixed, simulated dates (its span ends in October 2026) while a receiver
checks a delivery's `timestamp` against its own wall clock: the simulated Gateway must stamp
deliveries with the wall-clock time of sending, or every one of them is refused as stale.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

import duckdb
import httpx
from _webhooks_server import REPO, free_port, receiver_process

from asg_audit.sim import WorldConfig, generate_world
from asg_audit.sim.clock import SimClock, parse_ts

LIVE_TASKS = 12


def _start_simulator(tmp_path) -> tuple[subprocess.Popen[str], dict[str, str]]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "asg_audit",
            "simulate",
            "--seed",
            "3",
            "--tasks",
            "300",
            "--time-scale",
            "0.02",
            "--faults",
            "none",
            "--port",
            "0",
            "--out",
            str(tmp_path / "sim"),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    lines = [proc.stdout.readline().rstrip("\n") for _ in range(5)]
    return proc, dict(line.split(": ", 1) for line in lines)


def _submit_live(gateway: str, api_key: str) -> None:
    spec = {
        "task_type": "sentiment",
        "consensus_threshold": 3,
        "label_spec": {"options": ["positive", "negative"]},
    }
    r = httpx.post(
        gateway + "/v1/tasks/batch",
        json={"tasks": [spec] * LIVE_TASKS},
        headers={"Authorization": f"Bearer {api_key}"},
    )
    assert r.status_code == 202


def test_simulate_and_serve_webhooks_deliveries_are_fresh_with_default_window(tmp_path):
    db = tmp_path / "audit.duckdb"
    port = free_port()
    sim, values = _start_simulator(tmp_path)
    secret = values["webhook secret"]
    try:
        with receiver_process(db, port, secrets=secret):
            env = {
                **os.environ,
                "ASG_BASE_URL": values["gateway"],
                "ASG_API_KEY": values["api key"],
                "ASG_WEBHOOK_SECRET": secret,
            }
            hook = f"http://127.0.0.1:{port}/webhooks/asg"
            reg = subprocess.run(
                [sys.executable, "-m", "asg_audit", "webhooks", "register", "--url", hook],
                env=env,
                cwd=REPO,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert reg.returncode == 0, reg.stderr
            started = datetime.now(UTC)
            _submit_live(values["gateway"], values["api key"])
            deadline = time.monotonic() + 40
            answered: dict[str, int] = {}
            while time.monotonic() < deadline:
                answered = httpx.get(f"http://127.0.0.1:{port}/healthz").json()["outcomes"]
                if answered.get("stored", 0) + answered.get("stale", 0) >= LIVE_TASKS:
                    break
                time.sleep(0.1)
            assert answered.get("stale", 0) == 0, answered
            assert answered.get("stored", 0) >= LIVE_TASKS, answered
    finally:
        sim.send_signal(signal.SIGINT)
        sim.communicate(timeout=30)
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute(
            "SELECT received_at, delivered_at FROM webhook_deliveries WHERE outcome = 'stored'"
        ).fetchall()
    finally:
        con.close()
    # `timestamp` is the wall-clock time of sending (whole seconds), not the world's time
    for received_at, delivered_at in rows:
        assert abs((received_at - delivered_at).total_seconds()) < 10
        assert delivered_at >= started.replace(microsecond=0)


def test_sim_clock_wall_now_is_the_wall_clock_while_now_is_the_world():
    world = generate_world(WorldConfig(seed=5, tasks=50))
    clock = SimClock(world.now_at, time_scale=0.01, wall_clock=lambda: 1_900_000_000.0)
    assert clock.wall_now() == 1_900_000_000.0
    assert abs(clock.now() - world.now_at) < 100  # the world keeps its fixed dates
    assert world.now_at == parse_ts("2026-10-14T23:50:00Z")
