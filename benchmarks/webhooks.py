"""Benchmark the webhook receiver: signed deliveries over loopback from a separate load process.

    .venv/bin/python benchmarks/webhooks.py [--count 20000] [--seconds 20] [--concurrency 50]

The parent starts `asg-audit serve-webhooks` (a subprocess, fresh store in a temp folder), then a
separate load process (this file with `--load`) that sends signed `task.settled` deliveries with
`--concurrency` senders, each on its own keep-alive connection, until `--count` deliveries are
sent or `--seconds` pass. The load process reports what it measured; the parent stops the
receiver (SIGTERM: graceful) and counts what the store holds.

Prints sustained deliveries/s, p50 and p99 latency (request written -> answer read), and stored
vs acknowledged. Targets: >= 1,000/s, p99 <= 50 ms, stored == acknowledged.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SECRET = "whsec_benchmark_" + os.urandom(8).hex()
TARGET_RATE = 1000.0
TARGET_P99_MS = 50.0


# -- the load process ---------------------------------------------------------------------------


def _request(host: str, port: int, path: str, index: int, secret: str) -> bytes:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = json.dumps(
        {
            "event": "task.settled",
            "task_id": f"tsk_bench_{index:08d}",
            "consensus_label": "cat",
            "confidence": 0.6666666666666666,
            "bsv_txid": hashlib.sha256(str(index).encode()).hexdigest(),
            "settled_at": now,
            "timestamp": now,
        }
    ).encode()
    sig = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nX-ASG-Signature: {sig}\r\n\r\n"
    )
    return head.encode() + body


async def _sender(host: str, port: int, path: str, secret: str, state: dict[str, Any]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while state["next"] < state["count"] and time.monotonic() < state["deadline"]:
            index = state["next"]
            state["next"] += 1
            request = _request(host, port, path, index, secret)
            started = time.perf_counter()
            if state["rate"]:
                # Open loop: delivery i is due at t0 + i / rate. Latency counts from when it
                # was due, so a sender that falls behind is charged for it (no coordinated
                # omission).
                due = state["t0"] + index / state["rate"]
                if due > started:
                    await asyncio.sleep(due - started)
                started = due
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            state["latencies"].append(time.perf_counter() - started)
            state["statuses"][status] = state["statuses"].get(status, 0) + 1
            if 200 <= status < 300:
                state["acked"].append(index)
    except (ConnectionError, asyncio.IncompleteReadError) as exc:
        state["errors"].append(type(exc).__name__)
    finally:
        writer.close()


async def _load(
    url: str, count: int, seconds: float, concurrency: int, secret: str, rate: float = 0.0
) -> dict[str, Any]:
    rest = url.split("://", 1)[1]
    hostport, _, path = rest.partition("/")
    host, _, port = hostport.partition(":")
    state: dict[str, Any] = {
        "next": 0,
        "count": count,
        "deadline": time.monotonic() + seconds,
        "latencies": [],
        "statuses": {},
        "acked": [],
        "errors": [],
        "rate": rate,
        "t0": time.perf_counter(),
    }
    started = time.perf_counter()
    await asyncio.gather(
        *(_sender(host, int(port), "/" + path, secret, state) for _ in range(concurrency))
    )
    elapsed = time.perf_counter() - started
    lat = sorted(state["latencies"])

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] * 1000 if lat else float("nan")

    return {
        "sent": len(lat),
        "acknowledged": len(state["acked"]),
        "elapsed_s": elapsed,
        "rate_per_s": len(lat) / elapsed if elapsed else 0.0,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": lat[-1] * 1000 if lat else None,
        "statuses": state["statuses"],
        "errors": state["errors"],
    }


# -- the parent ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_healthy(url: str, proc: subprocess.Popen[bytes]) -> None:
    import httpx

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("receiver exited early")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit("receiver did not become healthy")


def _count_stored(db: Path) -> tuple[int, int]:
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        deliveries = con.execute(
            "SELECT count(*) FROM webhook_deliveries WHERE outcome = 'stored'"
        ).fetchone()
        observations = con.execute(
            "SELECT count(DISTINCT task_id) FROM observations WHERE source = 'webhook'"
        ).fetchone()
    finally:
        con.close()
    return int(deliveries[0]) if deliveries else 0, int(observations[0]) if observations else 0


def _measure(args: argparse.Namespace, rate: float) -> dict[str, Any]:
    """Run one load against a fresh receiver; return what the load and the store saw."""
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.duckdb"
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "ASG_WEBHOOK_SECRET": SECRET}
        receiver = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "asg_audit",
                "serve-webhooks",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--db",
                str(db),
                *(["--config", args.config] if args.config else []),
            ],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        try:
            _wait_healthy(url, receiver)
            import psutil

            proc = psutil.Process(receiver.pid)
            cpu_before = sum(proc.cpu_times()[:2])
            load = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--load",
                    url + "/webhooks/asg",
                    "--count",
                    str(args.count),
                    "--seconds",
                    str(args.seconds),
                    "--concurrency",
                    str(args.concurrency),
                    "--rate",
                    str(rate),
                ],
                env={**os.environ, "BENCH_WEBHOOK_SECRET": SECRET},
                capture_output=True,
                text=True,
                check=True,
            )
            result: dict[str, Any] = json.loads(load.stdout)
            result["cpu_ms"] = (
                (sum(proc.cpu_times()[:2]) - cpu_before) * 1000 / max(1, result["sent"])
            )
        finally:
            receiver.send_signal(signal.SIGTERM)
            receiver.wait(60)
        result["stored"], result["observed"] = _count_stored(db)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=20_000, help="deliveries at most, per phase")
    parser.add_argument("--seconds", type=float, default=20.0, help="load duration at most")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument(
        "--rate",
        type=float,
        default=1100.0,
        help="open-loop rate of the second phase (deliveries/s)",
    )
    parser.add_argument("--config", metavar="FILE", help="receiver config (a [webhooks] table)")
    parser.add_argument("--load", metavar="URL", help=argparse.SUPPRESS)  # the load process
    args = parser.parse_args()

    if args.load:
        secret = os.environ["BENCH_WEBHOOK_SECRET"]
        result = asyncio.run(
            _load(args.load, args.count, args.seconds, args.concurrency, secret, args.rate)
        )
        print(json.dumps(result))
        return 0

    load_before = os.getloadavg()[0]
    capacity = _measure(args, 0.0)  # closed loop: every sender sends as soon as answered
    paced = _measure(args, args.rate)  # open loop at the target rate
    load_after = os.getloadavg()[0]
    print(f"webhook receiver, {args.concurrency} concurrent senders, {os.cpu_count()} cores")
    print(
        f"{'load':<34}{'deliv/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'acked':>8}{'stored':>8}"
        f"{'observ.':>8}{'CPU ms':>8}"
    )
    ok = True
    for name, r in (
        ("closed loop (capacity)", capacity),
        (f"open loop at {args.rate:,.0f}/s", paced),
    ):
        stored_ok = r["stored"] == r["acknowledged"] == r["observed"]
        ok = ok and stored_ok
        print(
            f"{name:<34}{r['rate_per_s']:>9,.0f}{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}"
            f"{r['acknowledged']:>8,}{r['stored']:>8,}{r['observed']:>8,}{r['cpu_ms']:>8.2f}"
        )
    print(
        f"targets: sustained >= {TARGET_RATE:,.0f}/s: {capacity['rate_per_s'] >= TARGET_RATE}"
        f" ({capacity['rate_per_s'] / TARGET_RATE:.2f}x);"
        f" p99 <= {TARGET_P99_MS:.0f} ms at {args.rate:,.0f}/s:"
        f" {paced['p99_ms'] <= TARGET_P99_MS}"
        f" ({paced['p99_ms'] / TARGET_P99_MS:.2f}x the limit; at capacity"
        f" {capacity['p99_ms'] / TARGET_P99_MS:.2f}x); stored == acknowledged: {ok}"
    )
    print(f"machine load average (1 min) before/after: {load_before:.1f} / {load_after:.1f}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
