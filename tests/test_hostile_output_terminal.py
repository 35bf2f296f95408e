"""No command prints a raw terminal control sequence that came from the data or the user.

A clear-screen (`ESC [2J`), an OSC 8 hyperlink (a clickable "CLICK" pointing elsewhere), a C1
CSI and U+202E (right-to-left override) arrive escaped (`\\x1b[2J`, `\\u202e`) in: `billing` notes
(the provider's invoice ids), `webhooks register` (the Gateway's answer), `audit` step lines and
warnings (drop-folder file names), the paths printed by `report` and `db info`, and the findings
printed by `print_findings`. The commands run as real subprocesses against a real HTTP server on
127.0.0.1 and real DuckDB stores.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from _hardening_procs import REPO, asg_audit, clean_env
from _http_server import serve

from asg_audit.chain import print_findings
from asg_audit.store import open_store

CLEAR = "\x1b[2J"
# an OSC 8 hyperlink without a slash, so that it fits in a file name
LINK = "\x1b]8;;https:evil.example\x07CLICK\x1b]8;;\x07"
RLO = "\u202e"
C1_CSI = "\u009b31m"
HOSTILE = f"{CLEAR}{LINK}{RLO}RLO{C1_CSI}"
ESCAPED = ("\\x1b[2J", "\\x1b]8;;https:evil.example\\x07CLICK\\x1b]8;;\\x07", "\\u202e", "\\x9b")
# what a terminal acts on: C0 controls but newline and tab, DEL, C1, bidi controls
TERMINAL_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
API_KEY = "sk_test_HOSTILEOUT"


def _assert_escaped(text: str, *, times: int = 1) -> None:
    assert not TERMINAL_UNSAFE.search(text), repr(text)
    for escaped in ESCAPED:
        assert text.count(escaped) >= times, (escaped, text)


def _run(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        asg_audit(*args),
        cwd=cwd,
        env=clean_env(PYTHONPATH=str(REPO), **env),
        capture_output=True,
        text=True,
        timeout=120,
    )


class _HostileGateway:
    """A real HTTP server answering the Gateway's billing and webhook routes with hostile text."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path.startswith("/v1/billing/invoices"):
                    invoice = {
                        "invoice_id": f"inv{HOSTILE}",
                        "month": "2026-09",
                        "status": "closed",
                        "tasks_settled": -2,
                        "total_cost_sats": 975,
                    }
                    self._send(200, {"invoices": [invoice]})
                elif self.path.startswith("/v1/billing/usage"):
                    self._send(
                        200,
                        {
                            "customer_id": "c1",
                            "month": "2026-09",
                            "tier": "standard",
                            "tasks_settled": 1,
                            "total_cost_sats": 975,
                        },
                    )
                else:
                    self._send(404, {"error": "not found"})

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._send(
                    201,
                    {
                        "webhook_id": f"whk_{HOSTILE}",
                        "callback_url": HOSTILE,
                        "events": [HOSTILE],
                        "active": HOSTILE,
                    },
                )

        self._served = ExitStack()
        self.url = self._served.enter_context(serve(Handler))

    def close(self) -> None:
        self._served.close()


@pytest.fixture
def gateway() -> Iterator[_HostileGateway]:
    gw = _HostileGateway()
    try:
        yield gw
    finally:
        gw.close()


def test_billing_escapes_the_providers_invoice_id(tmp_path: Path, gateway: _HostileGateway) -> None:
    db = tmp_path / "audit.duckdb"
    with open_store(db):
        pass
    done = _run(
        "billing",
        "--db",
        str(db),
        "--month",
        "2026-09",
        cwd=tmp_path,
        ASG_BASE_URL=gateway.url,
        ASG_API_KEY=API_KEY,
    )
    assert done.returncode in (0, 1), done.stderr
    _assert_escaped(done.stdout + done.stderr)
    assert "note: invoice inv\\x1b[2J" in done.stdout


def test_webhooks_register_escapes_the_gateways_answer(
    tmp_path: Path, gateway: _HostileGateway
) -> None:
    done = _run(
        "webhooks",
        "register",
        "--url",
        "https://hooks.example.com/webhooks/asg",
        cwd=tmp_path,
        ASG_BASE_URL=gateway.url,
        ASG_API_KEY=API_KEY,
        ASG_WEBHOOK_SECRET="whsec_hostile_output",
    )
    assert done.returncode == 0, done.stderr
    _assert_escaped(done.stdout + done.stderr, times=4)  # webhook_id, callback_url, events, active
    assert "webhook_id: whk_\\x1b[2J" in done.stdout


def test_audit_escapes_drop_folder_file_names(tmp_path: Path) -> None:
    db = tmp_path / "audit.duckdb"
    with open_store(db):
        pass
    drop = tmp_path / "drop"
    drop.mkdir()
    # a named pipe: refused by name (never opened), so the name is in the step line and warning
    os.mkfifo(drop / f"f{CLEAR}{RLO}{C1_CSI}.ndjson")
    os.mkfifo(drop / f"g{LINK}.ndjson")
    config = tmp_path / "a.toml"
    config.write_text(
        f'[audit]\ndrop_folders = ["{drop}"]\nreport_dir = "{tmp_path / "reports"}"\n'
        "verify_chain = false\nbilling = false\n"
    )
    done = _run("audit", "--db", str(db), "--config", str(config), cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    _assert_escaped(done.stdout + done.stderr)
    step = next(line for line in done.stdout.splitlines() if line.startswith("ingest "))
    assert "f\\x1b[2J\\u202e\\x9b31m.ndjson" in step
    assert "warning: unreadable input: " in done.stdout


def test_report_escapes_the_paths_it_prints(tmp_path: Path) -> None:
    db = tmp_path / "audit.duckdb"
    with open_store(db):
        pass
    out = tmp_path / f"r{HOSTILE}"
    done = _run("report", "--db", str(db), "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    _assert_escaped(done.stdout, times=3)  # index.html, report.md, summary.json
    assert len(done.stdout.splitlines()) == 3


def test_db_info_refuses_a_store_path_of_control_characters_without_printing_them(
    tmp_path: Path,
) -> None:
    # a store name holding control characters is refused (a CRLF env file's `\r` made and
    # audited a new empty store: tester T8); the refusal prints none of them
    folder = tmp_path / f"d{LINK}"
    folder.mkdir(parents=True)
    db = folder / f"e{CLEAR}{RLO}{C1_CSI}.duckdb"
    with open_store(db):
        pass
    done = _run("db", "info", "--db", str(db), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert not TERMINAL_UNSAFE.search(done.stdout + done.stderr), repr(done.stderr)
    assert "the database path holds control characters (\\x1b, \\x07, \\x9b)" in done.stderr


def test_print_findings_escapes_check_entity_ids_and_messages(
    capsys: pytest.CaptureFixture[str],
) -> None:
    findings = pl.DataFrame(
        {
            "check_id": [f"billing.x{CLEAR}"],
            "severity": ["warn"],
            "entity_type": ["invoice"],
            "entity_id": [f"inv{HOSTILE}"],
            "message": [f"total {LINK}{RLO}{C1_CSI}"],
            "proves": ["observed"],
        }
    )
    print_findings(findings)
    _assert_escaped(capsys.readouterr().out)
