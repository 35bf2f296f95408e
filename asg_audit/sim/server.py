"""Run the Gateway and the chain index with Uvicorn in a background thread."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn

from asg_audit.errors import InputError
from asg_audit.model import path_text, printable
from asg_audit.sim.chain_app import CHAIN_PREFIX, build_chain_app
from asg_audit.sim.clock import SimClock
from asg_audit.sim.faults import FaultConfig, resolve_faults
from asg_audit.sim.gateway_app import build_gateway_app, snapshot
from asg_audit.sim.state import SimState
from asg_audit.sim.world import World

__all__ = ["ListenError", "RunningSimulator", "run_simulator"]

STARTUP_TIMEOUT_S = 15.0


@dataclass
class RunningSimulator:
    """A running simulator: where it listens, its credentials, its clock and counters."""

    gateway_url: str
    chain_url: str
    api_key: str
    webhook_secret: str
    clock: SimClock
    world: World
    state: SimState

    def stats(self) -> dict[str, Any]:
        """Return the server counters (the same JSON as GET /_sim/stats)."""
        return snapshot(self.state)


class ListenError(OSError):
    """The simulator cannot listen where it was asked to (port in use, bad host or port)."""


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # accepted sockets inherit this; without it small answers wait on delayed ACKs (~40 ms)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except (OSError, OverflowError) as exc:
        sock.close()
        reason = "in use" if getattr(exc, "errno", None) == errno.EADDRINUSE else str(exc)
        raise ListenError(f"cannot listen on {host}:{port} ({reason})") from None
    sock.setblocking(False)
    return sock


@contextlib.contextmanager
def run_simulator(
    world: World,
    *,
    time_scale: float = 1.0,
    faults: str | FaultConfig = "none",
    host: str = "127.0.0.1",
    port: int = 0,
    chain_rps: float | None = None,
    gateway_rps_limit: float | None = None,
) -> Iterator[RunningSimulator]:
    """Serve `world` until the block exits; yield where and how to reach it.

    `port=0` picks free ports for both apps; otherwise the Gateway listens on `port` and the
    chain index on `port + 1` (`ListenError` when either cannot be had). Simulated time starts
    at `world.now_at`; webhook deliveries are stamped with the wall clock (see `sim.clock`).
    """
    fault_config = resolve_faults(faults, gateway_rps=gateway_rps_limit, chain_rps=chain_rps)
    gw_sock = _bind(host, port)
    try:
        ch_sock = _bind(host, 0 if port == 0 else port + 1)
    except ListenError:
        gw_sock.close()
        raise
    clock = SimClock(world.now_at, time_scale=time_scale)
    state = SimState(world, clock, fault_config)
    servers = [
        uvicorn.Server(
            uvicorn.Config(
                app,
                log_level="critical",
                access_log=False,
                lifespan="on",
                timeout_graceful_shutdown=2,
            )
        )
        for app in (build_gateway_app(state), build_chain_app(state))
    ]
    failure: list[BaseException] = []

    def run() -> None:
        async def main() -> None:
            await asyncio.gather(
                servers[0].serve(sockets=[gw_sock]), servers[1].serve(sockets=[ch_sock])
            )

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported to the caller's thread below
            failure.append(exc)

    thread = threading.Thread(target=run, name="asg-sim", daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not all(s.started for s in servers):
        if failure or not thread.is_alive() or time.monotonic() > deadline:
            for s in servers:
                s.should_exit = True
            thread.join(5)
            raise RuntimeError(f"simulator failed to start: {failure[:1]!r}")
        time.sleep(0.01)
    gw_port, ch_port = gw_sock.getsockname()[1], ch_sock.getsockname()[1]
    try:
        yield RunningSimulator(
            gateway_url=f"http://{host}:{gw_port}",
            chain_url=f"http://{host}:{ch_port}{CHAIN_PREFIX}",
            api_key=state.api_key,
            webhook_secret=state.webhook_secret,
            clock=clock,
            world=world,
            state=state,
        )
    finally:
        for s in servers:
            s.should_exit = True
        thread.join(10)
        for sock in (gw_sock, ch_sock):
            sock.close()


def serve_simulator(
    *,
    seed: int,
    tasks: int,
    time_scale: float,
    faults: str,
    port: int,
    out_dir: str | None,
    anomalies: str = "all",
    host: str = "127.0.0.1",
) -> int:
    """Generate a world, write its submissions and ground truth, serve until SIGINT/SIGTERM.

    Prints the five lines `asg-audit simulate` documents, then blocks; returns 0.
    """
    import signal
    import tempfile
    from pathlib import Path

    from asg_audit.sim.generate import generate_world
    from asg_audit.sim.world import WorldConfig

    folder = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="asg-sim-"))
    try:  # before the world is generated: a wrong --out is said at once
        folder.mkdir(parents=True, exist_ok=True)
        world = generate_world(WorldConfig(seed=seed, tasks=tasks, anomalies=anomalies))
        submissions = world.write_submissions(folder / "submissions.ndjson")
        world.write_ground_truth(folder / "ground_truth.json")
    except OSError as exc:
        raise InputError(
            f"--out {printable(path_text(folder), one_line=True)}: cannot write the simulator's"
            f" files there: {exc.strerror or exc}"
            f" ({printable(path_text(exc.filename or folder), one_line=True)})"
        ) from None
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)
    }
    try:
        with run_simulator(
            world, time_scale=time_scale, faults=faults, host=host, port=port
        ) as sim:
            print(f"gateway: {sim.gateway_url}")
            print(f"chain: {sim.chain_url}")
            print(f"api key: {sim.api_key}")
            print(f"webhook secret: {sim.webhook_secret}")
            # a name as the user gave it, escaped (no terminal control from a hostile --out)
            print(f"submissions: {printable(path_text(submissions), one_line=True)}", flush=True)
            while not stop.wait(0.2):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
