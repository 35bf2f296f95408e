"""A Gateway that echoes the API key in its answers: `collect` stores and prints no key.

A real HTTP server on 127.0.0.1 puts the request's `Authorization` header (`Bearer <key>`) in a
400, a 202, a 404, a 200 that is not JSON and a settled 200 (there with the slash JSON-escaped,
`\\/`); `collect` runs as the CLI does. Afterwards no text or blob column of any table, no byte
of the DuckDB file and no line of stdout or stderr holds the key, or any part of it; the echoed
200 is still normalised (a settled result), with `***` where the key was.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from _chain_echo import TX_ERR, TX_HASH, chain_results, echoing_index
from _http_server import serve
from _scripted_gateway import settled_body

from asg_audit.gateway import GatewayClient
from asg_audit.store import open_store

# Not shaped like an ASG key (`sk_live_...`), so only the exact-secret masking can catch it; the
# slash lets a JSON encoder escape it as `\/`.
KEY_HEAD, KEY_TAIL = "ek_live_Q7dZ", "SECRETcore9"
KEY = f"{KEY_HEAD}/{KEY_TAIL}"
IDS = ["tsk_e400", "tsk_e202", "tsk_e404", "tsk_ebad", "tsk_e200"]


def _first_answer(task_id: str, auth: str) -> tuple[int, bytes]:
    """The echoing first answer about a task (the next ones settle it)."""
    if task_id == "tsk_e400":
        return 400, json.dumps({"error": f"bad key {auth}, try again"}).encode()
    if task_id == "tsk_e202":
        body = {"task_id": task_id, "status": "in_progress", "message": f"labeling. key={auth}"}
        return 202, json.dumps(body).encode()
    if task_id == "tsk_ebad":
        return 200, f"<html>proxy error for {auth}</html>".encode()
    if task_id == "tsk_e200":
        return 200, _settled_echo(task_id, auth)
    return 404, json.dumps({"error": {"code": "not_found", "message": f"none for {auth}"}}).encode()


def _settled_echo(task_id: str, auth: str) -> bytes:
    body = json.loads(settled_body(task_id))
    body["debug"] = {"authorization": auth}
    return json.dumps(body).replace("/", "\\/").encode()  # `\/`: JSON's optional escape


@contextmanager
def _echoing_gateway() -> Iterator[tuple[str, list[int]]]:
    """Serve the echoing answers on 127.0.0.1; yield (URL, statuses answered)."""
    counts: dict[str, int] = {}
    codes: list[int] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            task_id = self.path.split("/")[3]
            auth = self.headers.get("Authorization", "")
            with lock:
                counts[task_id] = n = counts.get(task_id, 0) + 1
            # the first answer, or any answer about an id nobody has (the collector's probes)
            if n == 1 or task_id not in IDS:
                code, body = _first_answer(task_id, auth)
            else:
                code, body = 200, _settled_echo(task_id, auth)
            with lock:
                codes.append(code)
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with serve(Handler) as base:
        yield base, codes


def _leaks(text: str) -> list[str]:
    """The parts of the key found in `text` (any part: the key may be escaped around `/`)."""
    return [part for part in (KEY_HEAD, KEY_TAIL) if part in text]


def _stored_leaks(db: Path) -> list[tuple[str, str, int]]:
    """(table, column, rows) of every column of every table holding a part of the key."""
    found = []
    with open_store(db) as store:
        con = store.con
        columns = con.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = 'main' ORDER BY ALL"
        ).fetchall()
        for table, column in columns:
            for part in (KEY_HEAD, KEY_TAIL):
                (rows,) = con.execute(
                    f'SELECT count(*) FROM "{table}" WHERE CAST("{column}" AS VARCHAR)'
                    " LIKE '%' || ? || '%'",
                    [part],
                ).fetchone() or (0,)
                if rows:
                    found.append((table, column, rows))
    return found


def test_collect_masks_the_key_echoed_in_every_answer_body(tmp_path: Path) -> None:
    db = tmp_path / "a.duckdb"
    (tmp_path / "ids.txt").write_text("\n".join(IDS) + "\n")
    (tmp_path / "c.toml").write_text("[collector]\ndeadline_s = 60\nmax_rps = 50\n")
    env = {k: v for k, v in os.environ.items() if k not in ("ASG_API_KEY", "API_KEY")}
    with _echoing_gateway() as (url, codes):
        env.update(ASG_API_KEY=KEY, ASG_BASE_URL=url)
        proc = subprocess.run(
            [
                *(sys.executable, "-m", "asg_audit", "collect", "--db", str(db)),
                *("--config", str(tmp_path / "c.toml"), "--task-ids", str(tmp_path / "ids.txt")),
            ],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 0, proc.stderr
    # every kind of echo was answered (and so could have been stored)
    assert {400, 202, 404, 200} <= set(codes)
    assert _leaks(proc.stdout) == [] and _leaks(proc.stderr) == []
    assert _stored_leaks(db) == []
    with open_store(db) as store:
        con = store.con
        settled = con.execute("SELECT count(*) FROM results WHERE status = 'settled'").fetchone()
        assert settled == (len(IDS),)  # the masked 200 bodies are still normalised
        # the echoes were stored, masked: the 400, the 202, the 404 and the body that is not JSON
        for code in (400, 202, 404):
            raws = con.execute(
                "SELECT CAST(raw AS VARCHAR) FROM observations WHERE http_status = ?", [code]
            ).fetchall()
            assert raws and all("Bearer ***" in r for (r,) in raws), (code, raws)
        (rejected,) = con.execute(
            "SELECT CAST(raw AS VARCHAR) AS r FROM rejects WHERE r LIKE '%proxy error%'"
        ).fetchone() or ("",)
        assert "proxy error for Bearer ***" in rejected
        (error,) = con.execute(
            "SELECT error_message FROM observations WHERE http_status = 400"
        ).fetchone() or ("",)
        assert error == "bad key Bearer ***, try again"
    # nor in the file's bytes (the WAL folded in at close), escaped or not
    files = [p for p in tmp_path.iterdir() if p.name.startswith("a.duckdb")]
    for path in files:
        data = path.read_bytes()
        assert KEY_HEAD.encode() not in data and KEY_TAIL.encode() not in data, path.name


_K = KEY.encode()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"x": "Bearer ' + _K + b'", "y": 1}', b'{"x": "Bearer ***", "y": 1}'),
        (b'{"x": "' + KEY.replace("/", "\\/").encode() + b'"}', b'{"x": "***"}'),
        (json.dumps(json.dumps({"k": _K.decode()})).encode(), b'"{\\"k\\": \\"***\\"}"'),
        (b"\xff\xfe not UTF-8 " + _K + b" \xc3\xa9 " + _K, b"\xff\xfe not UTF-8 *** \xc3\xa9 ***"),
    ],
)
def test_mask_body_masks_every_form_and_keeps_every_other_byte(
    body: bytes, expected: bytes
) -> None:
    client = GatewayClient("http://127.0.0.1:9", KEY)
    assert client.mask_body(body) == expected


def test_mask_body_leaves_a_body_without_the_key_as_it_is() -> None:
    client = GatewayClient("http://127.0.0.1:9", KEY)
    body = settled_body("tsk_plain") + b" Bearer someone-elses-token sk_live_other"
    assert client.mask_body(body) is body
    keyless = GatewayClient("http://127.0.0.1:9", None)
    assert keyless.mask_body(body) is body


# -- the chain index: a note quoting its answer ----------------------------------------------------

WOC_HEAD, WOC_TAIL = "woc_Zr4e", "SECRETchain7"
WOC_KEY = f"{WOC_HEAD}-{WOC_TAIL}"


def test_verify_chain_masks_the_woc_key_an_index_answer_echoes(tmp_path: Path) -> None:
    db = tmp_path / "c.duckdb"
    results = chain_results(tmp_path)
    cli = (sys.executable, "-m", "asg_audit")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASG_", "WOC_"))}
    ingest = subprocess.run(
        [*cli, "ingest", "--db", str(db), str(results)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ingest.returncode == 0, ingest.stderr
    with echoing_index(
        error=lambda key: f"key {key} is over its quota", blockhash=lambda key: f"auth {key}"
    ) as url:
        env.update(WOC_API_KEY=WOC_KEY, ASG_CHAIN_URL=url)
        proc = subprocess.run(
            [*cli, "verify-chain", "--db", str(db)],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert proc.returncode == 3, proc.stderr  # refused txids: incomplete, asked again next run
    assert "refused" in proc.stdout
    for text in (proc.stdout, proc.stderr):
        assert WOC_HEAD not in text and WOC_TAIL not in text
    with open_store(db) as store:
        notes = dict(store.con.execute("SELECT txid, note FROM chain_txs").fetchall())
    # both refused, each note quoting the answer with the key masked
    assert "key *** is over its quota" in notes[TX_ERR]
    assert "blockhash 'auth ***'" in notes[TX_HASH]
    with open_store(db) as store:
        for table, column in store.con.execute(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = 'main'"
        ).fetchall():
            for part in (WOC_HEAD, WOC_TAIL):
                (rows,) = store.con.execute(
                    f'SELECT count(*) FROM "{table}" WHERE CAST("{column}" AS VARCHAR)'
                    " LIKE '%' || ? || '%'",
                    [part],
                ).fetchone() or (0,)
                assert rows == 0, (table, column, part)
