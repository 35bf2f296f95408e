"""The chain index client against a small WoC-shaped server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from asg_audit.chain import MAX_BULK_TXIDS, ChainClient
from asg_audit.config import AuditConfig, Secret
from asg_audit.errors import AuthError, ConfigError
from asg_audit.rawtx import parse_raw_tx

DATA = json.loads((Path(__file__).parent / "data" / "mainnet_txs.json").read_text())
TXS = {t["txid"]: t for t in DATA["transactions"]}
KEY = "woc_test_key_0123456789"


class Index:
    """A WoC-shaped index serving the mainnet fixtures; knobs for 429s and tampering."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.throttle_next = 0
        self.garble_next = 0
        self.tamper: set[str] = set()
        self.hide_scripts: set[str] = set()  # decoded answer marked truncated: needs raw hex
        self.times: list[float] = []

    def decoded(self, txid: str) -> dict[str, Any]:
        raw = bytes.fromhex(TXS[txid]["hex"])
        if txid in self.tamper:
            raw = raw[:-12] + bytes([raw[-12] ^ 1]) + raw[-11:]  # one bit of an output value
        p = parse_raw_tx(raw)
        vin = [
            {"coinbase": i.script_sig.hex(), "sequence": i.sequence}
            if i.is_coinbase
            else {
                "txid": i.prev_txid,
                "vout": i.prev_vout,
                "scriptSig": {"hex": i.script_sig.hex()},
                "sequence": i.sequence,
            }
            for i in p.inputs
        ]
        vout = [
            {
                "value": o.value_sats / 1e8,
                "n": o.n,
                "scriptPubKey": {"hex": o.script.hex(), "isTruncated": txid in self.hide_scripts},
            }
            for o in p.outputs
        ]
        return {
            "txid": txid,
            "version": p.version,
            "locktime": p.locktime,
            "vin": vin,
            "vout": vout,
            "blockhash": "00" * 32,
            "blockheight": 1,
            "blocktime": 1231006505,
            "confirmations": 900_000,
        }

    def app(self) -> Starlette:
        async def bulk(request: Request) -> Response:
            self.times.append(time.monotonic())
            self.requests.append({"path": request.url.path, "headers": dict(request.headers)})
            if self.throttle_next:
                self.throttle_next -= 1
                return PlainTextResponse("Too Many Requests", 429, headers={"Retry-After": "1"})
            if self.garble_next:
                self.garble_next -= 1
                return PlainTextResponse('[{"txid": "trunc', 200)
            txids = json.loads(await request.body())["txids"]
            if len(txids) > MAX_BULK_TXIDS:
                return JSONResponse({"error": "too many"}, 400)
            out = []
            for t in txids:
                if t not in TXS:
                    out.append({"txid": t, "error": "unknown"})
                elif request.url.path.endswith("/hex"):
                    out.append({"txid": t, "hex": TXS[t]["hex"]})
                else:
                    out.append(self.decoded(t))
            return JSONResponse(out)

        async def refuse(request: Request) -> Response:
            return PlainTextResponse("Unauthorized", 401)

        return Starlette(
            routes=[
                Route("/v1/bsv/main/txs", bulk, methods=["POST"]),
                Route("/v1/bsv/main/txs/hex", bulk, methods=["POST"]),
                Route("/v1/bsv/bad/txs", refuse, methods=["POST"]),
            ]
        )


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Index, str]]:
    index = Index()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(index.app(), log_level="critical", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield index, f"http://127.0.0.1:{sock.getsockname()[1]}/v1/bsv"
    server.should_exit = True
    thread.join(5)


@pytest.fixture
def index(served: tuple[Index, str]) -> Index:
    idx = served[0]
    idx.requests.clear()
    idx.times.clear()
    idx.throttle_next = 0
    idx.garble_next = 0
    idx.tamper.clear()
    idx.hide_scripts.clear()
    return idx


def _client(served: tuple[Index, str], **kw: Any) -> ChainClient:
    return ChainClient(served[1] + "/main", api_key=Secret(KEY), rps=kw.pop("rps", 200), **kw)


def test_chain_client_sends_key_under_both_headers(served: Any, index: Index) -> None:
    with _client(served) as client:
        client.fetch(list(TXS)[:1])
    headers = index.requests[0]["headers"]
    assert headers["authorization"] == KEY
    assert headers["woc-api-key"] == KEY


def test_chain_client_fetch_parses_and_verifies(served: Any, index: Index) -> None:
    with _client(served) as client:
        got = client.fetch(list(TXS))
    assert [t.status for t in got] == ["confirmed"] * len(TXS)
    for t in got:
        assert t.parsed is not None and t.parsed.txid == t.txid
        assert [o.value_sats for o in t.parsed.outputs] == TXS[t.txid]["output_sats"]
    assert len(index.requests) == 1  # one bulk call for all of them


def test_chain_client_unknown_txid(served: Any, index: Index) -> None:
    with _client(served) as client:
        (got,) = client.fetch(["ab" * 32])
    assert got.status == "unknown"


def test_chain_client_refuses_tampered_bytes(served: Any, index: Index) -> None:
    txid = DATA["transactions"][2]["txid"]
    index.tamper.add(txid)
    with _client(served) as client:
        (got,) = client.fetch([txid])
    assert got.status == "refused"
    assert got.parsed is None and "hash to" in (got.note or "")


def test_chain_client_truncated_decoded_falls_back_to_raw_hex(served: Any, index: Index) -> None:
    txid = DATA["transactions"][1]["txid"]
    index.hide_scripts.add(txid)
    with _client(served) as client:
        (got,) = client.fetch([txid])
    assert got.status == "confirmed" and got.parsed is not None
    assert [r["path"] for r in index.requests] == ["/v1/bsv/main/txs", "/v1/bsv/main/txs/hex"]


def test_chain_client_rejects_more_than_20_txids(served: Any, index: Index) -> None:
    with _client(served) as client, pytest.raises(ValueError, match="20"):
        client.decoded_txs(["ab" * 32] * 21)


def test_chain_client_waits_out_429(served: Any, index: Index) -> None:
    index.throttle_next = 1
    with _client(served) as client:
        started = time.monotonic()
        (got,) = client.fetch(list(TXS)[:1])
        waited = time.monotonic() - started
    assert got.status == "confirmed"
    assert client.throttled == 1 and client.requests == 2
    assert waited >= 1.0  # Retry-After: 1 is a floor


def test_chain_client_paces_requests(served: Any, index: Index) -> None:
    with _client(served, rps=4) as client:
        for _ in range(9):
            client.decoded_txs(list(TXS)[:1])
    # At most 4 starts in any second: every 5th arrival is a second after the 1st of them
    # (minus the loopback's arrival jitter).
    spans = [b - a for a, b in zip(index.times, index.times[4:], strict=False)]
    assert min(spans) >= 0.95


def test_chain_client_auth_refused_without_leaking_key(served: Any, index: Index) -> None:
    client = ChainClient(served[1] + "/bad", api_key=Secret(KEY), rps=200)
    with client, pytest.raises(AuthError) as err:
        client.decoded_txs(["ab" * 32])
    assert KEY not in str(err.value) and KEY not in repr(err.value)


def test_chain_client_network_mismatch_refused() -> None:
    # refused when the config is built, before any step (no client is ever built from it)
    with pytest.raises(ConfigError, match="network"):
        AuditConfig(chain_url="https://api.whatsonchain.com/v1/bsv/test", chain_network="main")


def test_chain_fetch_parent_fees_from_parent_outputs(
    served: Any, index: Index, tmp_path: Path
) -> None:
    from datetime import UTC, datetime

    from asg_audit.chain import fetch_parent_fees
    from asg_audit.store import open_store

    child = DATA["transactions"][2]  # spends output 0 (100,000 sats) of transactions[1]
    now = datetime.now(UTC)
    with open_store(tmp_path / "fees.duckdb") as store, _client(served) as client:
        store.con.execute(
            "INSERT INTO chain_txs (txid, status, raw_hex, first_checked_at, fetched_at)"
            " VALUES (?, 'confirmed', ?, ?, ?)",
            [child["txid"], child["hex"], now, now],
        )
        assert fetch_parent_fees(store, client) == 1
        (fee,) = store.con.execute(
            "SELECT fee_sats FROM chain_txs WHERE txid = ?", [child["txid"]]
        ).fetchone() or (None,)
    assert fee == 100_000 - sum(child["output_sats"])


def test_chain_fetch_parent_fees_skips_stored_bytes_the_parser_now_refuses(
    served: Any, index: Index, tmp_path: Path
) -> None:
    """A transaction stored before a parser rule refused its bytes (no outputs) has no fee:
    skipped, not a crash of every later verify-chain run."""
    from datetime import UTC, datetime

    from asg_audit.chain import fetch_parent_fees
    from asg_audit.store import open_store

    child = DATA["transactions"][2]
    version, rest = child["hex"][:8], bytes.fromhex(child["hex"][8:])
    # the same inputs, no outputs: version | 1 input (41 bytes + script) | 0 outputs | locktime
    script_len = rest[37]
    no_outputs = version + rest[: 1 + 36 + 1 + script_len + 4].hex() + "00" + "00000000"
    now = datetime.now(UTC)
    with open_store(tmp_path / "fees.duckdb") as store, _client(served) as client:
        store.con.execute(
            "INSERT INTO chain_txs (txid, status, raw_hex, first_checked_at, fetched_at)"
            " VALUES ('ab' || repeat('0', 62), 'confirmed', ?, ?, ?),"
            " (?, 'confirmed', ?, ?, ?)",
            [no_outputs, now, now, child["txid"], child["hex"], now, now],
        )
        assert fetch_parent_fees(store, client) == 1  # the good one still gets its fee


def test_chain_client_retries_garbled_200(served: Any, index: Index) -> None:
    index.garble_next = 1
    with _client(served) as client:
        (got,) = client.fetch(list(TXS)[:1])
    assert got.status == "confirmed"
    assert client.requests == 2


@pytest.mark.parametrize(
    "url",
    ["ftp://user:s3cret@x/v1/bsv/main", "not a url", "http:///v1/bsv/main", "http://[::1/v1"],
)
def test_chain_client_unusable_url_is_config_error(url: str) -> None:
    with pytest.raises(ConfigError, match="chain_url") as err:
        ChainClient(url)
    assert "s3cret" not in str(err.value)


def test_chain_client_cli_unusable_url_exits_2_at_once(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from asg_audit.ingest_files import ingest_paths
    from asg_audit.sim import WorldConfig, generate_world
    from asg_audit.store import open_store

    world = generate_world(WorldConfig(seed=5, tasks=10, live_fraction=0.0, anomalies="none"))
    db = tmp_path / "audit.duckdb"
    ingest_paths(db, [world.write_results_export(tmp_path / "results.ndjson")])
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "asg_audit", "verify-chain", "--db", str(db), "--quiet"],
        env={**os.environ, "ASG_CHAIN_URL": "ftp://user:s3cret@x/v1/bsv/main"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert time.monotonic() - started < 20
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("asg-audit: error:") == 1 and "chain_url" in done.stderr
    assert "s3cret" not in done.stderr + done.stdout and "Traceback" not in done.stderr
    with open_store(db, read_only=True) as store:
        runs = store.con.execute("SELECT count(*) FROM runs WHERE command = 'verify-chain'")
        assert runs.fetchone() == (0,)


def test_verify_chain_names_a_bad_argument(tmp_path: Path) -> None:
    from asg_audit.chain_verify import verify_chain

    db = tmp_path / "missing.duckdb"
    for args, kwargs, name in (
        ((db, None), {}, "verify_chain config: expected an AuditConfig"),
        ((None, AuditConfig()), {}, "verify_chain db: expected a path"),
        (
            (db, AuditConfig()),
            {"client": "http://x"},
            "verify_chain client: expected a ChainClient",
        ),
    ):
        with pytest.raises(TypeError, match=name):
            verify_chain(*args, **kwargs)
    assert not db.exists()
