"""GatewayClient against a tiny Starlette app on 127.0.0.1: every answer is a typed outcome."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from email.utils import formatdate

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from asg_audit import gateway as gw
from asg_audit.errors import InputError

KEY = "sk_sandbox_0123456789abcdef"
SEEN_PATHS: list[str] = []


class _Dropped(Response):
    async def __call__(self, scope, receive, send) -> None:  # headers, then hang up
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"512")],
            }
        )


class _Huge(Response):
    async def __call__(self, scope, receive, send) -> None:  # claims 10 GB, sends a little
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-length", str(10**10).encode())],
            }
        )
        await send({"type": "http.response.body", "body": b"{" * 1024, "more_body": True})
        await asyncio.sleep(5)


async def _endless() -> AsyncIterator[bytes]:  # a chunked body of 8 MiB, twice the limit
    for _ in range(128):
        yield b" " * 65536


def _date(offset_s: float) -> str:
    return formatdate(time.time() + offset_s, usegmt=True)


async def _result(request: Request) -> Response:
    SEEN_PATHS.append(request.url.path)
    tid = request.path_params["task_id"]
    if request.headers.get("authorization") != f"Bearer {KEY}":
        # a careless server echoing the header it got: the client must not repeat it
        return JSONResponse({"error": f"bad key {request.headers.get('authorization')}"}, 401)
    answers = {
        "t202": lambda: JSONResponse({"status": "in_progress", "message": "x"}, 202),
        "t200": lambda: JSONResponse({"task_id": "t200", "status": "settled"}, 200),
        "t200s": lambda: JSONResponse(
            {"status": "settled", "settlement": {"settled_at": "2026-01-02T03:04:05Z"}}, 200
        ),
        "t200t": lambda: JSONResponse({"status": "settled", "settled_at": 1767323045}, 200),
        "t404": lambda: JSONResponse({"error": "task not found"}, 404),
        "t429s": lambda: JSONResponse({"error": "slow"}, 429, headers={"Retry-After": "7"}),
        "t429d": lambda: JSONResponse({"error": "slow"}, 429, headers={"Retry-After": _date(30)}),
        "t429p": lambda: JSONResponse({"error": "slow"}, 429, headers={"Retry-After": _date(-300)}),
        "t403": lambda: JSONResponse({"error": {"code": "FORBIDDEN", "message": "quota"}}, 403),
        "t503": lambda: JSONResponse({"error": "internal"}, 503),
        "t400": lambda: JSONResponse({"error": "bad"}, 400),
        "ttrunc": lambda: Response(b'{"task_id": "ttrunc", "sta', 200),
        "tlist": lambda: JSONResponse([1, 2], 200),
        "tdrop": lambda: _Dropped(),
        "thuge": lambda: _Huge(),
        "tendless": lambda: StreamingResponse(_endless(), 200),
    }
    if tid == "tslow":
        await asyncio.sleep(0.6)
    return answers.get(tid, answers["t404"])()


async def _anything(request: Request) -> Response:
    SEEN_PATHS.append(request.url.path)
    return JSONResponse({"error": "wrong path"}, 418)


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    app = Starlette(
        routes=[
            Route("/v1/tasks/{task_id}/result", _result),
            Route("/{rest:path}", _anything),
        ]
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="critical", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(5)


def _fetch(base_url: str, task_id: str, *, key: str = KEY, timeout_s: float = 5.0) -> gw.Outcome:
    async def go() -> gw.Outcome:
        async with gw.GatewayClient(base_url, key, timeout_s=timeout_s) as client:
            return await client.fetch_result(task_id)

    return asyncio.run(go())


@pytest.mark.parametrize(
    ("task_id", "kind", "status"),
    [
        ("t202", gw.Pending, 202),
        ("t200", gw.Ready, 200),
        ("t404", gw.NotFound, 404),
        ("t403", gw.AuthRefused, 403),
        ("t503", gw.ServerError, 503),
        ("t400", gw.UnexpectedStatus, 400),
    ],
)
def test_gateway_maps_each_status_to_its_outcome(base_url, task_id, kind, status) -> None:
    outcome = _fetch(base_url, task_id)
    assert isinstance(outcome, kind)
    assert outcome.http_status == status
    assert outcome.origin == f"GET /v1/tasks/{task_id}/result"


def test_gateway_ready_carries_the_body_and_its_status(base_url) -> None:
    outcome = _fetch(base_url, "t200")
    assert isinstance(outcome, gw.Ready)
    assert outcome.status == "settled"
    assert b'"task_id"' in outcome.body


def test_gateway_retry_after_in_seconds(base_url) -> None:
    outcome = _fetch(base_url, "t429s")
    assert isinstance(outcome, gw.RateLimited)
    assert outcome.retry_after_s == 7.0


def test_gateway_retry_after_as_an_http_date(base_url) -> None:
    outcome = _fetch(base_url, "t429d")
    assert isinstance(outcome, gw.RateLimited)
    assert outcome.retry_after_s is not None and 25 <= outcome.retry_after_s <= 31


def test_gateway_retry_after_in_the_past_is_zero(base_url) -> None:
    outcome = _fetch(base_url, "t429p")
    assert isinstance(outcome, gw.RateLimited)
    assert outcome.retry_after_s == 0.0


@pytest.mark.parametrize(
    ("task_id", "reason"), [("ttrunc", "invalid_json"), ("tlist", "not_object")]
)
def test_gateway_unusable_body_keeps_the_raw_bytes(base_url, task_id, reason) -> None:
    outcome = _fetch(base_url, task_id)
    assert isinstance(outcome, gw.UnusableBody)
    assert outcome.reason == reason
    assert outcome.raw


def test_gateway_dropped_connection_is_a_transport_failure(base_url) -> None:
    outcome = _fetch(base_url, "tdrop")
    assert isinstance(outcome, gw.TransportFailure)
    assert outcome.kind in ("protocol", "reset")


@pytest.mark.parametrize("task_id", ["thuge", "tendless"])
def test_gateway_oversized_answer_is_refused_unread(base_url, task_id) -> None:
    started = time.monotonic()
    outcome = _fetch(base_url, task_id, timeout_s=30)
    assert isinstance(outcome, gw.TransportFailure) and outcome.kind == "protocol"
    assert "over the 4,194,304-byte limit" in outcome.message
    assert time.monotonic() - started < 5  # refused, not read to the end or the timeout


def test_gateway_close_delimited_body_is_capped_too() -> None:
    async def read(size: int) -> bytes:
        reader = asyncio.StreamReader()
        reader.feed_data(b"x" * size)
        reader.feed_eof()
        return await gw._read_to_eof(reader)

    assert asyncio.run(read(gw.MAX_ANSWER_BYTES)) == b"x" * gw.MAX_ANSWER_BYTES
    with pytest.raises(gw._ProtocolError, match="close-delimited"):
        asyncio.run(read(gw.MAX_ANSWER_BYTES + 1))


def test_gateway_timeout_is_a_transport_failure(base_url) -> None:
    outcome = _fetch(base_url, "tslow", timeout_s=0.2)
    assert isinstance(outcome, gw.TransportFailure)
    assert outcome.kind == "timeout"


def test_gateway_refused_connection_is_a_transport_failure() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    outcome = _fetch(f"http://127.0.0.1:{port}", "t200")
    assert isinstance(outcome, gw.TransportFailure)
    assert outcome.kind == "connect"
    assert KEY not in outcome.message


def test_gateway_auth_refused_message_never_shows_the_key(base_url) -> None:
    wrong = "sk_live_supersecretvalue42"
    outcome = _fetch(base_url, "t200", key=wrong)
    assert isinstance(outcome, gw.AuthRefused)
    assert outcome.http_status == 401
    assert wrong not in outcome.message
    assert "***" in outcome.message


@pytest.mark.parametrize(
    "task_id", ["../admin", "a/../../x", "t200?x=1", "t200#frag", "t%2F..", "", " t200", "a" * 200]
)
def test_gateway_unsafe_task_ids_never_reach_the_server(base_url, task_id) -> None:
    before = len(SEEN_PATHS)
    with pytest.raises(InputError, match="unsafe task id"):
        _fetch(base_url, task_id)
    assert len(SEEN_PATHS) == before


def test_gateway_ready_carries_the_settlement_time_as_text(base_url) -> None:
    assert _fetch(base_url, "t200s").settled_at == "2026-01-02T03:04:05Z"
    assert _fetch(base_url, "t200t").settled_at is None  # not text: left to the normaliser
    assert _fetch(base_url, "t200").settled_at is None


def test_gateway_one_client_keeps_refusing_unsafe_ids_between_safe_polls(base_url) -> None:
    # the client remembers the paths of ids it has checked; an unsafe id is never remembered
    async def go() -> list[type]:
        kinds: list[type] = []
        async with gw.GatewayClient(base_url, KEY) as client:
            for task_id in ("t200", "../admin", "t200", "../admin", "t202"):
                try:
                    kinds.append(type(await client.fetch_result(task_id)))
                except InputError:
                    kinds.append(InputError)
        return kinds

    before = len(SEEN_PATHS)
    assert asyncio.run(go()) == [gw.Ready, InputError, gw.Ready, InputError, gw.Pending]
    assert SEEN_PATHS[before:] == ["/v1/tasks/t200/result"] * 2 + ["/v1/tasks/t202/result"]


def test_gateway_redact_masks_keys_and_bearer_tokens() -> None:
    text = f"Authorization: Bearer {KEY} and sk_live_abc123 and Bearer xyz"
    out = gw.redact(text, [KEY])
    assert KEY not in out and "sk_live_abc123" not in out and "xyz" not in out


def test_gateway_parse_retry_after_rejects_garbage() -> None:
    assert gw.parse_retry_after("soon", now=0.0) is None
    assert gw.parse_retry_after(None, now=0.0) is None
    assert gw.parse_retry_after("-3", now=0.0) == 0.0
