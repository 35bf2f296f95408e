"""Tester V #1 and #3: HTTP answers the collector's pool and the chain client must read right.

#1: the collector's keep-alive pool (`gateway._KeepAlivePool`) read a 1xx interim answer
(`103 Early Hints`) as the answer and left the real one on the connection, read by the next
request: one task's answer was stored as another's. It now reads past 1xx answers, refuses
101, and puts a connection back only when its answer was read to the end and framed one way.
Raw socket servers on 127.0.0.1; `collect` as a subprocess.

#3: `verify-chain` crashed (OverflowError, exit 1) on a 429 with `Retry-After: inf`, `1e999`
or `99999999999`, slept an hour per 429 on `3600`, and read an HTTP date as 1 s. It now reads
Retry-After with the collector's parser (`ratelimit.parse_retry_after`) and stops at once
(exit 3, one error line, what was verified kept) when the wait is longer than
`chain.MAX_RETRY_AFTER_S`. A fake chain index on 127.0.0.1; `verify-chain` as a subprocess.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from _http_server import serve
from _records import settled_line

from asg_audit.gateway import GatewayClient, NotFound, Ready, TransportFailure
from asg_audit.ingest_files import ingest_paths, track_file
from asg_audit.store import open_store

KEY = "sk_sandbox_testkey123"

# -- a raw HTTP/1.1 server: answers written byte for byte ------------------------------------


def _answer(code: int, body: bytes, *headers: str, reason: str = "X") -> bytes:
    lines = [f"HTTP/1.1 {code} {reason}", *headers]
    if not any(h.lower().startswith(("content-length", "transfer-encoding")) for h in headers):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


EARLY_HINTS = b"HTTP/1.1 103 Early Hints\r\nLink: </x.css>; rel=preload\r\n\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def _settled(task_id: str) -> bytes:
    return settled_line(
        task_id,
        bsv_txid="a" * 63 + "1",
        cost_sats=650,
        created_at="2026-10-01T00:00:00Z",
        settled_at="2026-10-01T00:00:47Z",
    ).encode()


def _by_task(task_id: str) -> bytes:
    """Ids ending in 1 are settled (200), the others unknown (404), each after a 103."""
    if task_id.endswith("1"):
        return EARLY_HINTS + _answer(200, _settled(task_id))
    return EARLY_HINTS + _answer(404, b'{"error": "task not found"}')


@dataclass
class RawServer:
    url: str
    # per connection, the task ids it was asked for, in order
    connections: list[list[str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def asked(self) -> list[str]:
        with self.lock:
            return [t for c in self.connections for t in c]


@contextmanager
def raw_server(answer: Callable[[str], bytes]) -> Iterator[RawServer]:
    """Serve `GET .../tasks/<id>/result` with the bytes `answer(id)` gives, on 127.0.0.1."""
    sock = socket.create_server(("127.0.0.1", 0))
    server = RawServer(f"http://127.0.0.1:{sock.getsockname()[1]}")
    stop = threading.Event()

    def handle(conn: socket.socket) -> None:
        with server.lock:
            server.connections.append([])
            mine = server.connections[-1]
        buf = b""
        with conn:
            while not stop.is_set():
                while b"\r\n\r\n" not in buf:
                    try:
                        chunk = conn.recv(65536)
                    except OSError:
                        return
                    if not chunk:
                        return
                    buf += chunk
                head, buf = buf.split(b"\r\n\r\n", 1)
                path = head.split(b"\r\n")[0].split(b" ")[1].decode()
                task_id = path.split("/")[3]
                with server.lock:
                    mine.append(task_id)
                try:
                    conn.sendall(answer(task_id))
                except OSError:
                    return

    def accept() -> None:
        sock.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(5)
        sock.close()


def _fetch_all(url: str, task_ids: list[str]) -> tuple[list[object], int]:
    """Fetch each task in turn with one client; return the outcomes and connections opened."""

    async def go() -> tuple[list[object], int]:
        async with GatewayClient(url, KEY, timeout_s=5) as gw:
            out = [await gw.fetch_result(t) for t in task_ids]
            assert gw._fast is not None
            return out, gw._fast.opened

    return asyncio.run(go())


# -- #1 through the pool ---------------------------------------------------------------------


def test_http_1xx_interim_answers_are_read_past_on_one_connection() -> None:
    ids = ["tsk_a1", "tsk_b2", "tsk_c1", "tsk_d2", "tsk_e1"]
    with raw_server(_by_task) as server:
        outcomes, opened = _fetch_all(server.url, ids)
    assert opened == 1 and server.connections == [ids]  # one kept-alive connection
    for task_id, outcome in zip(ids, outcomes, strict=True):
        if task_id.endswith("1"):
            assert isinstance(outcome, Ready) and outcome.status == "settled"
            assert json.loads(outcome.body)["task_id"] == task_id
        else:
            assert isinstance(outcome, NotFound)


def test_http_several_interim_answers_then_the_answer() -> None:
    def answer(task_id: str) -> bytes:
        return CONTINUE + EARLY_HINTS + EARLY_HINTS + _answer(200, _settled(task_id))

    with raw_server(answer) as server:
        outcomes, opened = _fetch_all(server.url, ["tsk_a1", "tsk_b1"])
    assert opened == 1
    assert [json.loads(o.body)["task_id"] for o in outcomes if isinstance(o, Ready)] == [
        "tsk_a1",
        "tsk_b1",
    ]


def test_http_101_switching_protocols_is_no_answer_and_closes() -> None:
    def answer(task_id: str) -> bytes:
        if task_id == "tsk_a1":
            upgrade = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
            return upgrade + _answer(404, b'{"error": "task not found"}')
        return _answer(200, _settled(task_id))

    with raw_server(answer) as server:
        outcomes, opened = _fetch_all(server.url, ["tsk_a1", "tsk_b1"])
    first, second = outcomes
    assert isinstance(first, TransportFailure) and first.kind == "protocol"
    assert "101" in first.message
    assert isinstance(second, Ready) and json.loads(second.body)["task_id"] == "tsk_b1"
    assert opened == 2  # the upgraded connection was closed, not reused


# Answers after which the connection must not carry the next request: a new one is opened and
# the next task gets its own answer (on the old code, the bytes left over were read instead).
_NOT_REUSABLE = {
    "204 announcing a body": _answer(204, b"", "Content-Length: 5") + b"HELLO",
    "304 announcing a body": _answer(304, b"", "Content-Length: 12") + b"HTTP/1.1 404",
    "Connection: keep-alive, close": _answer(
        404, b'{"error": "task not found"}', "Connection: keep-alive, close"
    ),
    "both Transfer-Encoding and Content-Length": _answer(
        404, b"4\r\n{}  \r\n0\r\n\r\n", "Transfer-Encoding: chunked", "Content-Length: 3"
    ),
    "bytes after the answer": _answer(404, b'{"error": "task not found"}')
    + _answer(404, b'{"error": "task not found"}'),
}


@pytest.mark.parametrize("first", list(_NOT_REUSABLE.values()), ids=list(_NOT_REUSABLE))
def test_http_connection_left_unclean_is_closed(first: bytes) -> None:
    def answer(task_id: str) -> bytes:
        return first if task_id == "tsk_a2" else _answer(200, _settled(task_id))

    with raw_server(answer) as server:
        outcomes, opened = _fetch_all(server.url, ["tsk_a2", "tsk_b1", "tsk_c1"])
    assert [json.loads(o.body)["task_id"] for o in outcomes[1:] if isinstance(o, Ready)] == [
        "tsk_b1",
        "tsk_c1",
    ]
    assert opened == 2  # the first connection closed; the second one kept alive
    assert server.connections == [["tsk_a2"], ["tsk_b1", "tsk_c1"]]


@pytest.mark.parametrize(
    "length", ["-1", "+27", "2_7", "27, 30"], ids=["negative", "plus", "underscore", "two"]
)
def test_http_bad_content_length_is_a_protocol_error_and_closes(length: str) -> None:
    body = b'{"error": "task not found"}'  # 27 bytes

    def answer(task_id: str) -> bytes:
        if task_id == "tsk_a2":
            return _answer(404, body, f"Content-Length: {length}")
        return _answer(200, _settled(task_id))

    with raw_server(answer) as server:
        outcomes, opened = _fetch_all(server.url, ["tsk_a2", "tsk_b1"])
    first, second = outcomes
    assert isinstance(first, TransportFailure) and first.kind == "protocol"
    assert isinstance(second, Ready) and json.loads(second.body)["task_id"] == "tsk_b1"
    assert opened == 2


def test_http_204_without_a_body_keeps_the_connection() -> None:
    def answer(task_id: str) -> bytes:
        if task_id == "tsk_a2":
            return _answer(204, b"", "Content-Length: 0")
        return _answer(200, _settled(task_id))

    with raw_server(answer) as server:
        outcomes, opened = _fetch_all(server.url, ["tsk_a2", "tsk_b1"])
    assert isinstance(outcomes[1], Ready) and opened == 1


# -- #1 through `collect` ---------------------------------------------------------------------


def test_http_collect_early_hints_each_task_stores_its_own_answer(tmp_path: Path) -> None:
    ids = ["tsk_a1", "tsk_b2", "tsk_c1", "tsk_d2", "tsk_e1", "tsk_f2"]
    subs = tmp_path / "subs.csv"
    subs.write_text(
        "task_id,task_type,consensus_threshold,options,created_at\n"
        + "".join(f"{t},image,3,cat|dog,2026-10-01T00:00:00Z\n" for t in ids)
    )
    db = tmp_path / "audit.duckdb"
    track_file(db, subs)
    (tmp_path / "c.toml").write_text("[collector]\nnot_found_grace_s = 1.0\n")
    with raw_server(_by_task) as server:
        env = {k: v for k, v in os.environ.items() if k not in ("ASG_API_KEY", "API_KEY")}
        env.update(ASG_API_KEY=KEY, ASG_BASE_URL=server.url)
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "asg_audit",
                "collect",
                "--db",
                str(db),
                "--config",
                str(tmp_path / "c.toml"),
                "--concurrency",
                "1",
                "--deadline",
                "20",
            ],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        connections = [c for c in server.connections if c]
    assert "Traceback" not in done.stderr, done.stderr
    # several tasks went over one kept-alive connection
    assert max(len(set(c)) for c in connections) >= 2, connections
    with open_store(db, read_only=True) as store:
        observed = store.con.execute(
            "SELECT task_id, http_status, count(*) FROM observations"
            " WHERE source = 'poll' GROUP BY ALL ORDER BY ALL"
        ).fetchall()
        rejects = store.con.execute("SELECT reason, count(*) FROM rejects GROUP BY 1").fetchall()
        states = dict(store.con.execute("SELECT task_id, state FROM poll_state").fetchall())
        bodies = store.con.execute(
            "SELECT task_id, raw FROM observations WHERE http_status = 200"
        ).fetchall()
    # every stored observation is the task's own answer: 200 for ids ending in 1, 404 else
    assert {(t, s) for t, s, _ in observed} <= {(t, 200 if t.endswith("1") else 404) for t in ids}
    assert {t for t, _, _ in observed} == set(ids)
    assert all(json.loads(raw)["task_id"] == t for t, raw in bodies)
    assert rejects == []
    assert {t: s for t, s in states.items() if t.endswith("1")} == {
        "tsk_a1": "done",
        "tsk_c1": "done",
        "tsk_e1": "done",
    }
    assert done.returncode == 0, done.stdout + done.stderr


# -- #3: verify-chain and Retry-After ---------------------------------------------------------

_P2PKH = bytes.fromhex("76a914") + b"\x11" * 20 + bytes.fromhex("88ac")
_BLOCK = "00000000000000000" + "ab" * 23 + "c"
_SETTLED_AT = 1_790_000_000  # 2026-09-21


def _raw_tx(seed: str) -> bytes:
    """A one-input, one-output (650 sats, P2PKH) transaction, different for each seed."""
    prev = hashlib.sha256(seed.encode()).digest()
    tx = (1).to_bytes(4, "little") + b"\x01" + prev + (0).to_bytes(4, "little") + b"\x00"
    tx += b"\xff\xff\xff\xff" + b"\x01" + (650).to_bytes(8, "little")
    return tx + bytes([len(_P2PKH)]) + _P2PKH + (0).to_bytes(4, "little")


def _txid(raw: bytes) -> str:
    return hashlib.sha256(hashlib.sha256(raw).digest()).digest()[::-1].hex()


@dataclass
class FakeIndex:
    url: str
    txs: dict[str, bytes]
    # the /txs calls answered 200 before each later one is answered 429 (None: never 429)
    ok_calls: int | None = None
    # the 429's Retry-After (None: no header), or a function giving it when the 429 is sent
    retry_after: str | Callable[[], str] | None = None
    # (monotonic time, path, status) of every POST
    log: list[tuple[float, str, int]] = field(default_factory=list)

    def posts(self, path: str = "/v1/bsv/main/txs") -> list[tuple[float, int]]:
        return [(at, code) for at, p, code in self.log if p == path]


@contextmanager
def fake_index(count: int) -> Iterator[FakeIndex]:
    """A WoC-like index on 127.0.0.1 knowing `count` confirmed transactions."""
    raws = [_raw_tx(f"tx{i}") for i in range(count)]
    index = FakeIndex("", {_txid(r): r for r in raws})
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def send(self, code: int, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(code)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self.send(200, b'{"blocks": 900005}', {})

        def do_POST(self) -> None:
            asked = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["txids"]
            with lock:
                calls = len(index.posts(self.path))
                throttle = index.ok_calls is not None and calls >= index.ok_calls
                index.log.append((time.monotonic(), self.path, 429 if throttle else 200))
            if throttle:
                ra = index.retry_after() if callable(index.retry_after) else index.retry_after
                self.send(429, b'{"error": "rate"}', {} if ra is None else {"Retry-After": ra})
                return
            answers = [
                {
                    "txid": t,
                    "hex": index.txs[t].hex(),
                    "blockhash": _BLOCK[:64],
                    "blockheight": 900000,
                    "blocktime": _SETTLED_AT + 600,
                    "confirmations": 5,
                }
                for t in asked
            ]
            self.send(200, json.dumps(answers).encode(), {})

    with serve(Handler) as base:
        index.url = f"{base}/v1/bsv/main"
        yield index


def _store_of(tmp_path: Path, txids: list[str]) -> Path:
    """A store holding one settled task per txid (ingested from an export)."""
    export = tmp_path / "export.ndjson"
    with export.open("w") as f:
        for i, txid in enumerate(txids):
            f.write(
                json.dumps(
                    {
                        "task_id": f"tsk_chain_{i:03d}",
                        "status": "settled",
                        "consensus_label": "cat",
                        "confidence": 1.0,
                        "worker_count": 3,
                        "agreement_count": 3,
                        "bsv_txid": txid,
                        "cost_sats": 650,
                        "created_at": "2026-09-21T00:00:00Z",
                        "settled_at": "2026-09-21T00:00:47Z",
                    }
                )
                + "\n"
            )
    db = tmp_path / "chain.duckdb"
    ingest_paths(db, [export])
    return db


def _verify(db: Path, index: FakeIndex, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    (tmp_path / "chain.toml").write_text("[chain]\nconcurrency = 1\nrps = 1000\n")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "asg_audit",
            "verify-chain",
            "--db",
            str(db),
            "--quiet",
            "--config",
            str(tmp_path / "chain.toml"),
        ],
        env={**os.environ, "ASG_CHAIN_URL": index.url},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "retry_after",
    ["inf", "1e999", "99999999999", "3600", "301", "Wed, 21 Oct 2099 07:28:00 GMT"],
)
def test_http_verify_chain_retry_after_too_long_stops_at_once_exit_3(
    tmp_path: Path, retry_after: str
) -> None:
    with fake_index(45) as index:
        db = _store_of(tmp_path, sorted(index.txs))
        index.ok_calls, index.retry_after = 2, retry_after  # 40 txids answered, then 429
        started = time.monotonic()
        done = _verify(db, index, tmp_path)
        took = time.monotonic() - started
        posts = index.posts()
    assert done.returncode == 3, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("asg-audit: error:")]
    assert len(errors) == 1, done.stderr
    assert "verify-chain stopped: the chain index at" in errors[0]
    assert f"429 with Retry-After: {retry_after} (" in errors[0]
    assert "longer than the 300 s it waits" in errors[0]
    assert "run verify-chain again" in errors[0]
    if retry_after.startswith("Wed"):
        assert "after 2099-10-21T07:28:00Z" in errors[0]
    assert took < 30, f"took {took:.1f} s"  # stopped at once, no wait
    assert [code for _, code in posts] == [200, 200, 429]  # nothing asked after the 429
    with open_store(db, read_only=True) as store:
        kept = store.con.execute("SELECT status, count(*) FROM chain_txs GROUP BY 1").fetchall()
        runs = store.con.execute(
            "SELECT status FROM runs WHERE command = 'verify-chain'"
        ).fetchall()
    assert kept == [("confirmed", 40)]  # what was verified before the 429 is kept
    assert runs == [("failed",)]
    listed = subprocess.run(
        [sys.executable, "-m", "asg_audit", "runs", "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0
    (line,) = [row for row in listed.stdout.splitlines() if "verify-chain" in row]
    assert "failed  verify-chain stopped: the chain index at" in line


@pytest.mark.parametrize("kind", ["http-date", "unreadable"])
def test_http_verify_chain_retry_after_obeyed(tmp_path: Path, kind: str) -> None:
    with fake_index(25) as index:
        db = _store_of(tmp_path, sorted(index.txs))
        # the first call answered, the second 429 once, then answered
        index.ok_calls = 1
        if kind == "http-date":  # 3 to 4 s after the 429 (a date has whole seconds)
            index.retry_after = lambda: formatdate(time.time() + 4, usegmt=True)
        else:
            index.retry_after = "soon"

        def answered_after_one_429() -> None:
            while not any(code == 429 for _, code in index.posts()):
                time.sleep(0.01)
            index.ok_calls = None

        threading.Thread(target=answered_after_one_429, daemon=True).start()
        done = _verify(db, index, tmp_path)
        posts = index.posts()
    assert done.returncode in (0, 1), done.stdout + done.stderr
    assert [code for _, code in posts] == [200, 429, 200]
    gap = posts[2][0] - posts[1][0]
    if kind == "http-date":
        assert gap >= 2.5, f"an HTTP-date Retry-After about 3-4 s ahead waited {gap:.1f} s"
    else:
        assert 0.8 <= gap < 3, f"an unreadable Retry-After waited {gap:.1f} s, not 1 s"
    with open_store(db, read_only=True) as store:
        assert store.con.execute("SELECT count(*) FROM chain_txs").fetchone() == (25,)


def test_http_chain_client_429_waits_of_one_request_add_up_to_the_bound(
    tmp_path: Path,
) -> None:
    from asg_audit.chain import ChainClient, ChainRateLimitedError

    with fake_index(3) as index:
        index.ok_calls, index.retry_after = 0, "1.5"
        with ChainClient(index.url, rps=1000, max_retry_after_s=2.0) as client:
            started = time.monotonic()
            with pytest.raises(ChainRateLimitedError, match="3 s in all"):
                client.fetch(sorted(index.txs))
            took = time.monotonic() - started
            assert 1.4 < took < 5  # one wait of 1.5 s; the second would make 3 s > 2 s
            assert [code for _, code in index.posts()] == [429, 429]
            # the refusal holds for the whole client until its time has passed: nothing sent
            with pytest.raises(ChainRateLimitedError):
                client.fetch(sorted(index.txs))
            assert len(index.posts()) == 2
