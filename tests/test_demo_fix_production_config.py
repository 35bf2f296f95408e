"""`asg-audit demo` in a folder whose `./asg_audit.toml` defines the production job never uses
that job's side effects: no alert to its `alert_url` (a real listener receives nothing), none of
its drop folders, and its step switches do not cut the demo short. Only `fail_on` of its
`[audit]` table is honoured. The real command in a subprocess, the real simulator."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from _hardening_procs import asg_audit, clean_env
from _recorder import Request, recording_server

from asg_audit.config import AuditConfig
from asg_audit.demo import demo_audit_settings


@pytest.fixture
def listener() -> Iterator[tuple[int, list[Request]]]:
    with recording_server() as served:
        yield served


def test_demo_sends_nothing_to_the_production_alert_url(
    tmp_path: Path, listener: tuple[int, list[Request]]
) -> None:
    port, received = listener
    production_drop = tmp_path / "production-drop"
    production_drop.mkdir()
    (tmp_path / "asg_audit.toml").write_text(
        "[audit]\n"
        f'alert_url = "http://127.0.0.1:{port}/ops-pager"\n'
        'alert_on = "info"\n'
        f'drop_folders = ["{production_drop}"]\n'
        f'report_dir = "{tmp_path / "production-reports"}"\n'
        "verify_chain = false\n"
        "billing = false\n"
        "require_api = true\n"
        'fail_on = "info"\n'
    )
    done = subprocess.run(
        asg_audit("demo", "--tasks", "200", "--out", str(tmp_path / "demo")),
        capture_output=True,
        text=True,
        cwd=tmp_path,  # ./asg_audit.toml is the production config
        env=clean_env(WOC_API_KEY="WOC-PRODUCTION-KEY"),
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert received == []  # no alert, though the demo's findings reach alert_on
    out = done.stdout
    assert "audit exit code would be 1" in out  # fail findings: an alert would have been due
    # by the fail_on the demo honours (its [audit] one), and the demo's own exit code
    assert "(1: findings at or above info; 3: incomplete); the demo exits 0" in out
    # the production job's switches do not cut the demo short, nor its folders get used
    for step in ("verify-chain", "billing"):
        line = next(line for line in out.splitlines() if line.startswith(step))
        assert line.split()[1] == "ok:", line
    assert not (tmp_path / "production-reports").exists()
    assert " 0 missed" in out


def test_demo_audit_settings_keep_only_fail_on() -> None:
    config = AuditConfig(
        audit={
            "alert_url": "http://127.0.0.1:9/hook",
            "alert_on": "info",
            "drop_folders": ["/srv/drop"],
            "report_dir": "/srv/reports",
            "collect_seconds": 5,
            "verify_chain": False,
            "billing": False,
            "require_api": True,
            "fail_on": "warn",
        }
    )
    settings = demo_audit_settings(config, Path("d/reports"), Path("d/drop"))
    assert settings == {"report_dir": "d/reports", "drop_folders": ["d/drop"], "fail_on": "warn"}
