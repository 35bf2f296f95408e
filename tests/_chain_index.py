"""A small chain index on 127.0.0.1 serving made-up mined transactions, for fee checks.

`FeeIndex.tx(outputs, spends=...)` makes a transaction (spending an earlier one, or a random
outpoint) and serves it unless told not to, so that a transaction's parent may be unknown to
the index; `settled_store` makes a store of settled results naming the txids.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from _http_server import serve

from asg_audit.ingest_files import ingest_paths
from asg_audit.sim.txbuild import TxOutput, _push, _serialise, decode_tx, p2pkh_script, txid_of

BLOCK_TIME = 1_790_000_000  # 2026-09-21


class FeeIndex:
    """Transactions the fake index serves (raw bytes by txid), all mined."""

    def __init__(self) -> None:
        self.rng = random.Random(12)
        self.txs: dict[str, bytes] = {}

    def _bytes(self, n: int) -> bytes:
        return bytes(self.rng.getrandbits(8) for _ in range(n))

    def tx(self, outputs: list[int], *, spends: str | None = None, serve: bool = True) -> str:
        prev = bytes.fromhex(spends)[::-1] if spends else self._bytes(32)
        script_sig = _push(self._bytes(71)) + _push(b"\x02" + self._bytes(32))
        outs = [TxOutput(v, p2pkh_script(self._bytes(20)), "payout") for v in outputs]
        raw = _serialise([(prev, 0, script_sig, 0xFFFFFFFF)], outs, 0)
        txid = txid_of(raw)
        if serve:
            self.txs[txid] = raw
        return txid

    def decoded(self, txid: str) -> dict[str, Any]:
        body = decode_tx(self.txs[txid])
        body.update(
            blockhash="00" * 4 + "ab" * 28,
            blockheight=900_000,
            blocktime=BLOCK_TIME,
            time=BLOCK_TIME,
            confirmations=10,
        )
        return body


@contextmanager
def fee_index() -> Iterator[tuple[FeeIndex, str]]:
    """A chain index on 127.0.0.1 serving a new `FeeIndex`; yields it and the chain URL."""
    state = FeeIndex()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            ids = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["txids"]
            unknown = [{"txid": t, "error": "unknown"} for t in ids if t not in state.txs]
            if self.path.endswith("/txs"):
                body = [state.decoded(t) for t in ids if t in state.txs] + unknown
            else:  # /txs/hex
                body = [{"txid": t, "hex": state.txs[t].hex()} for t in ids if t in state.txs]
                body += unknown
            self._send(200, body)

        def do_GET(self) -> None:
            self._send(200, {"blocks": 900_009}) if "chain/info" in self.path else self._send(
                404, {}
            )

        def _send(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    with serve(Handler) as url:
        yield state, url + "/v1/bsv/main"


def settled_store(tmp_path: Path, txids: dict[str, str]) -> Path:
    """A store of settled results (650 sats each), `txids` by task id, ingested from a file."""
    base = {
        "status": "settled", "consensus_label": "cat", "confidence": 2 / 3, "worker_count": 3,
        "agreement_count": 2, "cost_sats": 650, "created_at": "2026-09-21T14:10:40Z",
        "settled_at": "2026-09-21T14:11:20Z",
    }  # fmt: skip
    lines = [
        json.dumps({"task_id": task, "bsv_txid": txid, **base}) for task, txid in txids.items()
    ]
    export = tmp_path / "results.ndjson"
    export.write_text("\n".join(lines) + "\n")
    db = tmp_path / "fees.duckdb"
    ingest_paths(db, [export])
    return db
