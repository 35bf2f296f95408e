"""A chain index on 127.0.0.1 that quotes the request's `woc-api-key` in its answers, and the
results export whose two settled tasks it is asked about (for the secret-masking tests)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from _http_server import serve
from _scripted_gateway import settled_body

# the txid whose answer is an error, and the one whose answer holds a block hash
TX_ERR, TX_HASH = "a" * 64, "b" * 64


@contextmanager
def echoing_index(error: Callable[[str], str], blockhash: Callable[[str], str]) -> Iterator[str]:
    """Yield the base URL of an index answering TX_ERR with the error `error(key)` and any other
    txid, once its hex is asked for (not a decoded transaction), with the block hash
    `blockhash(key)`, `key` being the request's `woc-api-key`."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            key = self.headers.get("woc-api-key", "")
            txids = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["txids"]
            answers: list[dict[str, object]] = []
            for txid in txids:
                if txid == TX_ERR:
                    answers.append({"txid": txid, "error": error(key)})
                elif self.path.endswith("/txs/hex"):
                    answers.append({"txid": txid, "hex": "00"})
                else:
                    answers.append({"txid": txid, "blockhash": blockhash(key), "confirmations": 3})
            body = json.dumps(answers).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with serve(Handler) as base:
        yield f"{base}/v1/bsv/main"


def chain_results(folder: Path) -> Path:
    """Write a results export of two settled tasks paid by TX_ERR and TX_HASH; return it."""
    lines = []
    for task_id, txid in (("tsk_chain_err", TX_ERR), ("tsk_chain_hash", TX_HASH)):
        result = json.loads(settled_body(task_id))
        result["bsv_txid"] = txid
        lines.append(json.dumps(result))
    path = folder / "results.ndjson"
    path.write_text("\n".join(lines) + "\n")
    return path
