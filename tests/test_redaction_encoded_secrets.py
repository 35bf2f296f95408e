"""A Gateway that quotes the API key and the webhook secret encoded: nothing shows either.

Tester T #5: the key and the secret were masked only as sent and JSON-escaped. A real HTTP
server on 127.0.0.1 quotes them percent-encoded (`quote`, lower-case hex, `quote_plus`, twice),
HTML-escaped (named, decimal and hex references), as JSON `\\uXXXX` escapes of every character
(either case), as Go's encoding/json writes them (`&` as `\\u0026`) and mixes of these, in the
raw bytes of its answers: a settled result (`collect`), the billing usage and invoices
(`billing`), and a 422 and a 201 to `webhooks register`. The real commands run as
subprocesses; afterwards no column of any table of the store (read with DuckDB) and no line of
stdout or stderr holds the key or the secret, decoded any of those ways, and the answers are
still stored and parsed.
"""

from __future__ import annotations

import html
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import quote, quote_plus, unquote, unquote_plus

import duckdb
import pytest
from _http_server import serve

from asg_audit.redaction import mask_secrets, mask_secrets_bytes, redact

# Printable ASCII (what a header carries), with characters each encoding changes.
KEY = "KEY9f+Zq/Lm&Q=<a>'%"
SECRET = 'whsec_Sx+Yz/9&Q="#?'
TASK = "tsk_fixt5"
MONTH = "2026-09"


def encoded_forms(value: str) -> dict[str, str]:
    """The ways a server or library commonly writes `value` (each valid inside a JSON string)."""
    pct = quote(value, safe="")
    go = json.dumps(value)[1:-1].replace("&", "\\u0026").replace("<", "\\u003c")
    return {
        "json": json.dumps(value)[1:-1],
        "quote": pct,
        "quote_lower_hex": re.sub("%[0-9A-F]{2}", lambda m: m[0].lower(), pct),
        "quote_path": quote(value),
        "quote_plus": quote_plus(value),
        "quote_twice": quote(pct, safe=""),
        "html_escape": html.escape(value),
        "html_decimal": "".join(f"&#{ord(c)};" for c in value),
        "html_hex": "".join(f"&#x{ord(c):X};" for c in value),
        "json_u_lower": "".join(f"\\u{ord(c):04x}" for c in value),
        "json_u_upper": "".join(f"\\u{ord(c):04X}" for c in value),
        "go_json": go.replace(">", "\\u003e"),
        "go_json_of_html": json.dumps(html.escape(value))[1:-1].replace("&", "\\u0026"),
        "url_of_html": quote(html.escape(value), safe=""),
        "json_in_json": json.dumps(json.dumps(value)[1:-1])[1:-1],
    }


def _json_unescape(text: str) -> str:
    text = re.sub(r"\\+u([0-9a-fA-F]{4})", lambda m: chr(int(m[1], 16)), text)
    return re.sub(r"\\+([\"'/\\])", r"\1", text)


def _views(text: str) -> set[str]:
    """`text` and the decodings that would give back a value written in any of the forms."""
    out = {text}
    for _ in range(2):
        for view in list(out):
            out |= {
                unquote(view),
                unquote_plus(view),
                html.unescape(view),
                _json_unescape(view),
            }
    return out


def leaks(text: str) -> list[str]:
    """Which of the key and the secret `text` holds, as is, in a form, or once decoded."""
    found = []
    for name, value in (("key", KEY), ("secret", SECRET)):
        forms = [value, *encoded_forms(value).values()]
        if any(f in text for f in forms) or any(value in v for v in _views(text)):
            found.append(name)
    return found


def _echo(which: str) -> dict[str, str]:
    """Placeholders for the forms of KEY or SECRET; `_raw_json` writes the forms there.

    Without the forms masked before (as sent, JSON-escaped): an answer holding one of those was
    masked whole, the other forms included.
    """
    return {n: f"@@{which}:{n}@@" for n in encoded_forms(KEY) if n not in ("json", "json_in_json")}


def _raw_json(obj: object) -> bytes:
    """JSON of `obj` with each placeholder replaced by its form as is (not escaped again)."""
    text = json.dumps(obj)
    for which, value in (("key", KEY), ("secret", SECRET)):
        for name, form in encoded_forms(value).items():
            text = text.replace(f"@@{which}:{name}@@", form)
    json.loads(text)  # still valid JSON: the forms are valid string content
    return text.encode()


def _settled(task_id: str) -> bytes:
    return _raw_json(
        {
            "task_id": task_id,
            "status": "settled",
            "consensus_label": "a",
            "confidence": 1.0,
            "worker_count": 3,
            "agreement_count": 3,
            "created_at": "2026-09-15T05:49:59Z",
            "settlement": {
                "bsv_txid": "ab" * 32,
                "total_cost_sats": 975,
                "settled_at": "2026-09-15T05:50:36Z",
            },
            "debug": {"key": _echo("key")},
        }
    )


def _usage() -> bytes:
    return _raw_json(
        {
            "month": MONTH,
            "customer_id": "cus_1",
            "tier": "standard",
            "tasks_settled": 1,
            "total_cost_sats": 975,
            "worker_payouts_sats": 975,
            "platform_fee_sats": 0,
            "daily_breakdown": [{"date": "2026-09-15", "tasks": 1, "cost_sats": 975}],
            "next": _echo("key"),
        }
    )


def _invoices() -> bytes:
    invoice = {
        "invoice_id": "inv_1",
        "month": MONTH,
        "status": "paid",
        "total_sats": 975,
        "pdf": _echo("key"),
    }
    return _raw_json({"invoices": [invoice]})


@contextmanager
def _echoing_gateway() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _reply(self, code: int, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path.startswith("/v1/billing/usage"):
                self._reply(200, _usage())
            elif self.path.startswith("/v1/billing/invoices"):
                self._reply(200, _invoices())
            elif self.path == f"/v1/tasks/{TASK}/result":
                self._reply(200, _settled(TASK))
            else:  # any other id (the collector's probes): a 404 that echoes too
                self._reply(404, _raw_json({"error": "not found", "key": _echo("key")}))

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            assert body["secret"] == SECRET
            if "fail" in body["callback_url"]:
                answer = {
                    "error": "invalid callback",
                    "secret": _echo("secret"),
                    "key": _echo("key"),
                }
                self._reply(422, _raw_json(answer))
            else:
                forms = encoded_forms(SECRET)
                answer = {
                    "webhook_id": "whk_" + "@@x@@",
                    "callback_url": "https://hooks.example/asg?s=" + "@@y@@",
                    "events": ["task.settled"],
                    "active": True,
                }
                text = json.dumps(answer)
                text = text.replace("@@x@@", forms["go_json"]).replace("@@y@@", forms["quote"])
                self._reply(201, text.encode())

        def log_message(self, *args: object) -> None:
            pass

    with serve(Handler) as base:
        yield base


def _run(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ASG_API_KEY", "API_KEY")}
    env.update(ASG_API_KEY=KEY, ASG_WEBHOOK_SECRET=SECRET, ASG_BASE_URL=url)
    done = subprocess.run(
        [sys.executable, "-m", "asg_audit", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert leaks(done.stdout) == [] and leaks(done.stderr) == [], (done.stdout, done.stderr)
    return done


def _stored_leaks(db: Path) -> list[tuple[str, str, list[str]]]:
    """(table, column, what) of every column of every table holding the key or the secret."""
    found = []
    with duckdb.connect(str(db), read_only=True) as con:
        columns = con.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = 'main' ORDER BY ALL"
        ).fetchall()
        for table, column in columns:
            values = con.execute(f'SELECT CAST("{column}" AS VARCHAR) FROM "{table}"').fetchall()
            for (value,) in values:
                if value and (what := leaks(value)):
                    found.append((table, column, what))
    return found


def _track(tmp_path: Path, url: str, db: Path) -> None:
    subs = tmp_path / "subs.csv"
    subs.write_text(
        "task_id,task_type,consensus_threshold,options,created_at\n"
        f"{TASK},cls,3,a|b,2026-09-15T05:49:59Z\n"
    )
    assert _run(tmp_path, url, "track", "--db", str(db), str(subs)).returncode == 0


def test_redaction_the_fake_gateway_echoes_every_form() -> None:
    # the control: the check sees each form of each secret, so its silence below means it
    for value in (KEY, SECRET):
        for name, form in encoded_forms(value).items():
            assert leaks(f"x{form}y"), name
    assert leaks(_settled(TASK).decode()) == ["key"]


def test_redaction_collect_stores_no_encoded_key(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    (tmp_path / "c.toml").write_text("[collector]\ndeadline_s = 30\nmax_rps = 50\n")
    with _echoing_gateway() as url:
        _track(tmp_path, url, db)
        done = _run(tmp_path, url, "collect", "--db", str(db), "--config", "c.toml")
    assert done.returncode == 0, done.stderr
    with duckdb.connect(str(db), read_only=True) as con:
        raw = con.execute(
            "SELECT CAST(raw AS VARCHAR) FROM observations WHERE source = 'poll'"
            " AND http_status = 200"
        ).fetchall()
        settled = con.execute("SELECT status FROM results WHERE task_id = ?", [TASK]).fetchall()
    assert raw and all('"debug"' in r and "***" in r for (r,) in raw)  # stored, masked
    assert settled == [("settled",)]  # and still normalised
    assert _stored_leaks(db) == []


def test_redaction_billing_stores_no_encoded_key(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    with _echoing_gateway() as url:
        _track(tmp_path, url, db)
        done = _run(tmp_path, url, "billing", "--db", str(db), "--month", MONTH)
    assert done.returncode in (0, 1), done.stderr  # findings or none: the fetch worked
    with duckdb.connect(str(db), read_only=True) as con:
        usage = con.execute(
            "SELECT total_cost_sats, CAST(raw AS VARCHAR) FROM billing_usage"
        ).fetchall()
        invoices = con.execute("SELECT count(*) FROM billing_invoices").fetchone()
    assert [u[0] for u in usage] == [975] and "***" in usage[0][1]  # parsed, masked
    assert invoices == (1,)
    assert _stored_leaks(db) == []


def test_redaction_webhooks_register_shows_no_encoded_secret(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    with _echoing_gateway() as url:
        failed = _run(
            tmp_path,
            url,
            "webhooks",
            "register",
            "--db",
            str(db),
            "--url",
            "https://fail.example/h",
        )
        done = _run(
            tmp_path, url, "webhooks", "register", "--db", str(db), "--url", "https://ok.example/h"
        )
    assert failed.returncode != 0 and "answered 422" in failed.stderr
    assert "***" in failed.stderr
    assert done.returncode == 0, done.stderr
    assert "webhook_id: whk_***" in done.stdout  # printed, masked
    assert "callback_url: https://hooks.example/asg?s=***" in done.stdout


@pytest.mark.parametrize("name", sorted(encoded_forms(KEY)))
def test_redaction_masks_each_form_in_text_and_bytes(name: str) -> None:
    for value in (KEY, SECRET):
        form = encoded_forms(value)[name]
        text = f"a {form} b {form}"
        assert redact(text, [value]) == "a *** b ***"
        assert mask_secrets_bytes(text.encode(), [value]) == b"a *** b ***"


def test_redaction_masks_mixed_and_non_ascii_forms() -> None:
    # one character escaped, the next not: a library with its own set of safe characters
    assert mask_secrets("x KEY9f%2BZq/Lm%26Q=%3Ca%3e'%25 y", [KEY]) == "x *** y"
    assert mask_secrets("KEY9f+Zq\\/Lm\\u0026Q=\\u003ca\\u003E&#39;%", [KEY]) == "***"
    secret = "clé+😀"
    for form in (secret, quote(secret), json.dumps(secret)[1:-1], ascii(secret)[1:-1]):
        assert mask_secrets(f"<{form}>", [secret]) == "<***>", form
        raw = f"<{form}>".encode()
        assert mask_secrets_bytes(raw, [secret]) == b"<***>", form


def test_redaction_bytes_without_a_secret_are_the_same_object() -> None:
    body = b'{"a": "KEY9f+Zq/Lm&Q", "b": "%2B&amp;\\u0026"}' * 100
    assert mask_secrets_bytes(body, [KEY, SECRET]) is body
