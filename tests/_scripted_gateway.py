"""A Gateway on 127.0.0.1 answering `GET /v1/tasks/{id}/result` as a test's script says.

`script(task_id, n)` gives (status, body, headers) for the n-th request (1-based) about a task;
every answer is logged as (monotonic time, task id, status).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from _http_server import serve

from asg_audit.ingest_files import track_file

Answer = tuple[int, bytes, dict[str, str]]
Script = Callable[[str, int], Answer]


def settled_body(
    task_id: str,
    created_at: str = "2026-10-01T00:00:00Z",
    settled_at: str = "2026-10-01T00:00:40Z",
) -> bytes:
    """A settled result of `task_id` as the Gateway sends it."""
    return json.dumps(
        {
            "task_id": task_id,
            "status": "settled",
            "consensus_label": "a",
            "confidence": 1.0,
            "worker_count": 3,
            "agreement_count": 3,
            "bsv_txid": "c" * 64,
            "created_at": created_at,
            "settled_at": settled_at,
            "cost_sats": 650,
        }
    ).encode()


def tracked_store(folder: Path, ids: Iterable[str], *, options: str = "cat|dog") -> Path:
    """Return a new store `folder/a.duckdb` tracking `ids` (T=3, created 2026-10-01) for a
    collect run to poll."""
    db = folder / "a.duckdb"
    subs = folder / "subs.csv"
    subs.write_text(
        "task_id,task_type,consensus_threshold,options,created_at\n"
        + "".join(f"{i},image,3,{options},2026-10-01T00:00:00Z\n" for i in ids)
    )
    track_file(db, subs)
    return db


def pending_body(task_id: str) -> bytes:
    return json.dumps({"task_id": task_id, "status": "pending"}).encode()


@dataclass
class ScriptedGateway:
    url: str
    script: Script
    # (wall time, task id, status) of every answer, in order
    log: list[tuple[float, str, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answers(self, task_id: str) -> list[tuple[float, int]]:
        with self.lock:
            return [(at, code) for at, tid, code in self.log if tid == task_id]

    def codes(self, task_id: str) -> list[int]:
        return [code for _, code in self.answers(task_id)]

    def asked(self) -> set[str]:
        with self.lock:
            return {tid for _, tid, _ in self.log}


@contextmanager
def scripted_gateway(script: Script) -> Iterator[ScriptedGateway]:
    """Serve `script` on 127.0.0.1 for the block."""
    gateway = ScriptedGateway("", script)
    counts: dict[str, int] = {}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            task_id = self.path.split("/")[3]
            with gateway.lock:
                counts[task_id] = counts.get(task_id, 0) + 1
                code, body, headers = gateway.script(task_id, counts[task_id])
                gateway.log.append((time.monotonic(), task_id, code))
            self.send_response(code)
            for name, value in headers.items():
                self.send_header(name, value)
            if "Content-Type" not in headers:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    with serve(Handler) as base:
        gateway.url = base
        yield gateway
