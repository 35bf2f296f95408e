"""`simulate`, `demo` and `serve-webhooks` refuse bad arguments with one line and exit 2.

Every case runs the real command line in a subprocess: the exit code and stderr are the contract.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asg_audit", *args],
        cwd=cwd,
        env={**os.environ, "ASG_WEBHOOK_SECRET": "whsec_args"},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("demo", "--tasks", "0"), "argument --tasks: must be at least 1, got 0"),
        (("demo", "--tasks", "-5"), "argument --tasks: must be at least 1, got -5"),
        (("simulate", "--tasks", "0"), "argument --tasks: must be at least 1, got 0"),
        (("demo", "--time-scale", "0"), "argument --time-scale: must be a positive number"),
        (("simulate", "--time-scale", "-1"), "argument --time-scale: must be a positive number"),
        (("simulate", "--time-scale", "nan"), "argument --time-scale: must be a positive number"),
        (("simulate", "--port", "99999"), "argument --port: must be from 0 (a free port) to 65534"),
        (("simulate", "--port", "65535"), "argument --port: must be from 0 (a free port) to 65534"),
        (("serve-webhooks", "--port", "70000"), "argument --port: must be from 0"),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, tuple) else None,
)
def test_cli_out_of_range_argument_is_a_usage_error(tmp_path, args, says):
    proc = _cli(*args, "--out", str(tmp_path / "out")) if args[0] != "serve-webhooks" else None
    if proc is None:
        proc = _cli(*args, "--db", str(tmp_path / "x.duckdb"))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert says in proc.stderr
    assert not (tmp_path / "out").exists()


def test_cli_simulate_busy_port_is_one_error_line(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _cli("simulate", "--tasks", "50", "--port", str(port), "--out", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"asg-audit: error: cannot listen on 127.0.0.1:{port} (in use)"
    assert proc.stdout == ""


def test_cli_demo_refuses_db_and_touches_nothing(tmp_path):
    store = tmp_path / "mine.duckdb"
    out = tmp_path / "demo"
    proc = _cli("demo", "--db", str(store), "--out", str(out))
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "asg-audit: error: demo takes no --db: it always works on a fresh store of its own,"
        f" {out / 'demo.duckdb'} (choose the folder with --out)"
    )
    assert not store.exists() and not out.exists()


def test_cli_demo_help_names_its_store_and_hides_db():
    proc = _cli("demo", "--help")
    assert proc.returncode == 0
    assert "--db" not in proc.stdout.replace("takes no --db", "")
    assert "demo.duckdb" in proc.stdout
