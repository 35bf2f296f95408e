"""Durability: kill -9 the receiver in the middle of a load, restart it, lose nothing acked."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import duckdb
import httpx
from _webhooks_server import free_port, payload, receiver_process, signed


async def _load(
    url: str, acked: dict[str, tuple[bytes, dict[str, str]]], stop_at: float, senders: int = 20
) -> None:
    counter = iter(range(1_000_000))

    async def sender(client: httpx.AsyncClient) -> None:
        while time.monotonic() < stop_at:
            task_id = f"tsk_k{next(counter):06d}"
            body, headers = signed(payload(task_id))
            try:
                r = await client.post(url, content=body, headers=headers)
            except httpx.HTTPError:
                return  # the receiver died under us
            if 200 <= r.status_code < 300:
                acked[task_id] = (body, headers)

    async with httpx.AsyncClient(timeout=5) as client:
        await asyncio.gather(*(sender(client) for _ in range(senders)))


def test_webhooks_kill_9_loses_no_acknowledged_delivery(tmp_path):
    db = tmp_path / "audit.duckdb"
    port = free_port()
    url = f"http://127.0.0.1:{port}/webhooks/asg"
    acked: dict[str, tuple[bytes, dict[str, str]]] = {}
    with receiver_process(db, port) as proc:

        async def load_then_kill() -> None:
            load = asyncio.create_task(_load(url, acked, time.monotonic() + 30))
            while len(acked) < 300:  # well into the load
                await asyncio.sleep(0.01)
            proc.send_signal(signal.SIGKILL)
            await load

        asyncio.run(load_then_kill())
        assert proc.wait(10) == -signal.SIGKILL
    assert len(acked) >= 300

    # Restart on the same file: the bodies a crash left un-normalised are normalised first,
    # and a retry of an acknowledged delivery is a duplicate.
    with receiver_process(db, port):
        body, headers = next(iter(acked.values()))  # the provider retries what it sent
        again = httpx.post(url, content=body, headers=headers)
        assert again.status_code == 200 and again.json()["outcome"] == "duplicate"
    con = duckdb.connect(str(db), read_only=True)
    try:
        delivered = {
            r[0]
            for r in con.execute(
                "SELECT task_id FROM webhook_deliveries WHERE outcome = 'stored'"
            ).fetchall()
        }
        observed = {
            r[0]
            for r in con.execute(
                "SELECT task_id FROM observations WHERE source = 'webhook'"
            ).fetchall()
        }
        per_task = con.execute("SELECT max(observation_count) FROM results").fetchone()[0]
        runs = con.execute("SELECT status, stats FROM runs ORDER BY started_at").fetchall()
    finally:
        con.close()
    assert set(acked) <= delivered
    assert set(acked) <= observed
    assert per_task == 1
    # the killed run is closed as abandoned when the restart starts its own
    assert [status for status, _ in runs] == ["abandoned", "finished"]
    assert json.loads(runs[1][1])["normalised"] > 0  # the restart normalised leftovers
