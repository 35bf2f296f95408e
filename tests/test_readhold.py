"""gateway.ReadHold: answers wait unread until the caller releases them.

The hold on its own, then through `GatewayClient` against a small HTTP/1.1 server on 127.0.0.1
(in the test's own event loop, so the test knows when an answer has been written).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from asg_audit import gateway as gw

KEY = "sk_sandbox_0123456789abcdef"
# long enough for an answer already written to 127.0.0.1 to be read, if reading were not paused
SETTLE_S = 0.1

T = TypeVar("T")


def _run(main: Callable[[], Awaitable[T]]) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(10):
            return await main()

    return asyncio.run(bounded())


class _Server:
    """Answers `GET .../tasks/{id}/result` with 200 and `{"task_id": id}`, keep-alive."""

    def __init__(self, *, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.connections = 0
        self.client_ports: list[int] = []
        self.answered = 0
        self.all_answered = asyncio.Event()
        self.expected = 1
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> _Server:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()

    @property
    def base_url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.client_ports.append(writer.get_extra_info("peername")[1])
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1].decode()
                task_id = path.rstrip("/").split("/")[-2]
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                body = json.dumps({"task_id": task_id, "status": "settled"}).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n".encode()
                    + body
                )
                await writer.drain()
                self.answered += 1
                if self.answered >= self.expected:
                    self.all_answered.set()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


def _unread_bytes(client_port: int) -> int:
    """Return the bytes waiting in the kernel, unread, on the client's socket of that port."""
    local = f"0100007F:{client_port:04X}"  # 127.0.0.1, as a little-endian host writes it
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local:
            return int(fields[4].split(":")[1], 16)
    raise AssertionError(f"no socket on 127.0.0.1:{client_port}")


needs_proc_net = pytest.mark.skipif(
    not Path("/proc/net/tcp").exists(), reason="reads the socket's receive queue from /proc"
)


def _client(
    base_url: str, *, timeout_s: float = 10.0, transport: httpx.AsyncBaseTransport | None = None
) -> gw.GatewayClient:
    return gw.GatewayClient(base_url, KEY, timeout_s=timeout_s, transport=transport)


async def _until_held(hold: gw.ReadHold, n: int) -> None:
    while len(hold) < n:
        await asyncio.sleep(0.001)


def test_readhold_wait_returns_only_after_release() -> None:
    async def main() -> None:
        hold = gw.ReadHold()
        waiter = asyncio.create_task(hold.wait())
        await asyncio.sleep(SETTLE_S)
        assert not waiter.done() and len(hold) == 1
        hold.release()
        await asyncio.wait_for(waiter, 1.0)
        assert len(hold) == 0

    _run(main)


def test_readhold_inactive_hold_does_not_wait() -> None:
    async def main() -> None:
        hold = gw.ReadHold()
        hold.active = False
        await asyncio.wait_for(hold.wait(), 1.0)
        assert len(hold) == 0

    _run(main)


def test_readhold_one_release_frees_every_waiter_and_tolerates_a_cancelled_one() -> None:
    async def main() -> None:
        hold = gw.ReadHold()
        waiters = [asyncio.create_task(hold.wait()) for _ in range(5)]
        await _until_held(hold, 5)
        waiters[0].cancel()
        await asyncio.gather(waiters[0], return_exceptions=True)
        hold.release()
        await asyncio.wait_for(asyncio.gather(*waiters[1:]), 1.0)
        hold.release()  # nothing held: a no-op
        assert len(hold) == 0

    _run(main)


def test_readhold_answer_arrived_is_not_read_until_release() -> None:
    async def main() -> None:
        hold = gw.ReadHold()
        async with _Server() as server, _client(server.base_url) as client:
            fetch = asyncio.create_task(client.fetch_result("t1", hold))
            await server.all_answered.wait()
            await asyncio.sleep(SETTLE_S)
            assert not fetch.done() and len(hold) == 1
            hold.release()
            outcome = await asyncio.wait_for(fetch, 1.0)
        assert isinstance(outcome, gw.Ready) and outcome.task_id == "t1"
        assert json.loads(outcome.body)["task_id"] == "t1"

    _run(main)


@needs_proc_net
def test_readhold_leaves_the_answer_in_the_socket_until_release() -> None:
    async def main() -> None:
        hold = gw.ReadHold()
        async with _Server() as server, _client(server.base_url) as client:
            fetch = asyncio.create_task(client.fetch_result("t1", hold))
            await server.all_answered.wait()
            await asyncio.sleep(SETTLE_S)
            port = server.client_ports[0]
            assert _unread_bytes(port) > 0  # not even read into the client's buffer
            hold.release()
            await asyncio.wait_for(fetch, 1.0)
            assert _unread_bytes(port) == 0

    _run(main)


def test_readhold_inactive_hold_reads_answers_as_they_arrive() -> None:
    async def main() -> None:
        hold = gw.ReadHold()
        hold.active = False
        async with _Server() as server, _client(server.base_url) as client:
            outcome = await asyncio.wait_for(client.fetch_result("t1", hold), 1.0)
        assert isinstance(outcome, gw.Ready) and len(hold) == 0

    _run(main)


def test_readhold_one_release_reads_every_held_answer_each_its_own() -> None:
    async def main() -> None:
        hold = gw.ReadHold()
        ids = [f"t{i}" for i in range(8)]
        async with _Server() as server, _client(server.base_url) as client:
            server.expected = len(ids)
            fetches = [asyncio.create_task(client.fetch_result(i, hold)) for i in ids]
            await server.all_answered.wait()
            await asyncio.sleep(SETTLE_S)
            assert not any(f.done() for f in fetches) and len(hold) == len(ids)
            hold.release()
            outcomes = await asyncio.wait_for(asyncio.gather(*fetches), 1.0)
        assert [o.task_id for o in outcomes] == ids
        assert all(isinstance(o, gw.Ready) for o in outcomes)
        assert [json.loads(o.body)["task_id"] for o in outcomes if isinstance(o, gw.Ready)] == ids

    _run(main)


def test_readhold_released_before_the_answer_comes_does_not_lose_it() -> None:
    async def main() -> None:
        hold = gw.ReadHold()
        async with _Server(delay_s=SETTLE_S) as server, _client(server.base_url) as client:
            fetch = asyncio.create_task(client.fetch_result("t1", hold))
            await _until_held(hold, 1)
            hold.release()
            outcome = await asyncio.wait_for(fetch, 1.0)
            assert server.answered == 1
        assert isinstance(outcome, gw.Ready) and outcome.task_id == "t1"

    _run(main)


def test_readhold_keeps_the_connection_alive_for_the_next_request() -> None:
    async def main() -> None:
        hold = gw.ReadHold()
        async with _Server() as server, _client(server.base_url) as client:
            for i in range(3):
                fetch = asyncio.create_task(client.fetch_result(f"t{i}", hold))
                await _until_held(hold, 1)
                hold.release()
                assert isinstance(await asyncio.wait_for(fetch, 1.0), gw.Ready)
            assert server.connections == 1

    _run(main)


def test_readhold_never_released_answer_times_out_and_a_late_release_is_harmless() -> None:
    async def main() -> None:
        hold = gw.ReadHold()
        async with _Server() as server, _client(server.base_url, timeout_s=0.2) as client:
            outcome = await asyncio.wait_for(client.fetch_result("t1", hold), 2.0)
            assert isinstance(outcome, gw.TransportFailure) and outcome.kind == "timeout"
            hold.release()
            # the timed-out connection was not put back: the next request opens another
            hold.active = False
            again = await asyncio.wait_for(client.fetch_result("t2", hold), 1.0)
            assert isinstance(again, gw.Ready) and again.task_id == "t2"
            assert server.connections == 2

    _run(main)


def test_readhold_is_ignored_by_an_injected_transport() -> None:
    async def main() -> None:
        hold = gw.ReadHold()
        async with _Server() as server:
            transport = httpx.AsyncHTTPTransport()
            async with _client(server.base_url, transport=transport) as client:
                outcome = await asyncio.wait_for(client.fetch_result("t1", hold), 2.0)
        assert isinstance(outcome, gw.Ready) and len(hold) == 0

    _run(main)
