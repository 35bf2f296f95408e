"""Credentials in configured URLs never reach a report, the runs table, the output or the alert.

A real `asg-audit audit` in a subprocess, offline (no API key, no chain step), with an
`[audit] alert_url` holding a user, a password and a `?token=` query, and a real HTTP listener
behind that URL that receives the alert. Every file of the report folder, the stored runs, the
command's output and the alert body are searched for the credentials.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from _audit_job import RESULT_LINE
from _hardening_procs import asg_audit, clean_env, query
from _recorder import Request, recording_server

from asg_audit.config import AuditConfig
from asg_audit.report.content import config_rows
from asg_audit.store import open_store

_CREDENTIALS = ("alertuser", "ALERTPASS", "QTOKEN", "BASEPASS", "CHAINTOKEN", "PATHTOKEN")


@pytest.fixture
def listener() -> Iterator[tuple[int, list[Request]]]:
    with recording_server() as served:
        yield served


def test_audit_report_runs_and_alert_hold_no_url_credentials(
    tmp_path: Path, listener: tuple[int, list[Request]]
) -> None:
    port, received = listener
    db = tmp_path / "audit.duckdb"
    with open_store(db):
        pass
    drop = tmp_path / "drop"
    drop.mkdir()
    lines = [RESULT_LINE.format(i=i, status="settled") for i in range(1, 9)]
    lines.append(
        RESULT_LINE.format(i=9, status="exploded")
    )  # an undocumented status: a fail finding
    (drop / "export.ndjson").write_text("".join(lines))
    reports = tmp_path / "reports"
    alert_url = f"http://alertuser:ALERTPASS@127.0.0.1:{port}/hook/PATHTOKEN?token=QTOKEN"
    config = tmp_path / "asg_audit.toml"
    config.write_text(
        f'db = "{db}"\n'
        # base_url and chain_url cannot hold credentials or a query (refused as config)
        'base_url = "https://gateway.example/api"\n'
        'chain_url = "https://chain.example/v1/bsv/main"\n'
        f'[audit]\ndrop_folders = ["{drop}"]\nreport_dir = "{reports}"\n'
        f'verify_chain = false\nalert_url = "{alert_url}"\nalert_on = "info"\n'
    )
    done = subprocess.run(
        asg_audit("audit", "--config", str(config)),
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=180,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    # the alert did reach the listener, at the URL as configured (query and all) ...
    assert [(method, path) for method, path, _ in received] == [
        ("POST", "/hook/PATHTOKEN?token=QTOKEN")
    ]
    alert = received[0][2].decode()
    assert json.loads(alert)["findings"]["fail"] >= 1
    # ... and the report shows the URLs, without their credentials
    html = next(reports.glob("*/index.html")).read_text()
    assert f"http://127.0.0.1:{port}/…" in html  # an alert webhook's path is its secret (Slack)
    assert "https://gateway.example/api" in html
    assert "https://chain.example/v1/bsv/main" in html
    report_files = [p for p in reports.rglob("*") if p.is_file()]
    assert {p.name for p in report_files} >= {"index.html", "report.md", "summary.json"}
    stored = json.dumps(query(db, "SELECT * FROM runs"), default=str)
    places = {str(p): p.read_bytes().decode(errors="replace") for p in report_files}
    places |= {"runs": stored, "stdout": done.stdout, "stderr": done.stderr, "alert": alert}
    for where, text in places.items():
        for secret in _CREDENTIALS:
            assert secret not in text, f"{secret} in {where}"


def test_config_rows_show_every_url_without_credentials_and_mask_keys() -> None:
    config = AuditConfig(
        base_url="https://gw.example/x",
        audit={
            "alert_url": "https://hooks.example/services/T0/B0/PATHTOKEN?token=QTOKEN",
            "drop_folders": ["/srv/drop", "sftp://alertuser:ALERTPASS@host/in"],
            "report_dir": "sk_live_CHAINTOKEN",  # a key pasted in the wrong place
        },
    )
    rows = dict(config_rows(config))
    assert rows["base_url"] == "https://gw.example/x"
    assert rows["audit.alert_url"] == "https://hooks.example/…"
    assert rows["audit.drop_folders"] == "[/srv/drop, sftp://host/in]"
    assert rows["audit.report_dir"] == "***"
    for secret in _CREDENTIALS:
        assert secret not in json.dumps(rows)
