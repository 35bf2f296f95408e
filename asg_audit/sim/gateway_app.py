"""The ASG Gateway as a Starlette app: results, status, submit, webhooks, billing, faults."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import hmac
import json
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from email.utils import formatdate
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from asg_audit.sim.clock import format_ts
from asg_audit.sim.state import SimState, Webhook
from asg_audit.sim.world import render_result, render_webhook

__all__ = ["build_gateway_app", "sign_body"]

IN_PROGRESS_BODY = {"status": "in_progress", "message": "Task is still being labeled."}
NOT_FOUND = "task not found"
MONTH_RE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
WEBHOOK_RETRIES_S = (1, 4, 16)
MAX_BATCH = 1000

Answer = tuple[int, Any, dict[str, str]]


def sign_body(body: bytes, secret: str) -> str:
    """Return the `X-ASG-Signature` value: `sha256=` + hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class _DroppedResponse(Response):
    """Send the headers, then close the connection without the promised body."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"512")],
            }
        )
        # returning without the body makes Uvicorn close the connection mid-response


def _json_bytes(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def build_gateway_app(state: SimState) -> Starlette:
    """Return the Gateway app serving `state`."""
    faults = state.faults
    rng = state.rng
    stats = state.gateway_stats
    clock = state.clock

    def error(status: int, message: str, code: str, **details: Any) -> Answer:
        if rng.random() < faults.error_object_rate:
            return status, {"error": {"code": code, "message": message, "details": details}}, {}
        return status, {"error": message}, {}

    async def serve(
        request: Request,
        endpoint: str,
        handler: Callable[[], Awaitable[Answer]],
        task_id: str | None = None,
    ) -> Response:
        if faults.latency_s:
            await clock.sleep(rng.uniform(0, faults.latency_s))
        now = clock.now()
        wait = state.gateway_limiter.admit(now)
        if wait is not None:
            stats.faults["429"] += 1
            status, body, headers = error(429, "rate limit exceeded", "RATE_LIMITED")
            if rng.random() < faults.retry_after_date_rate:
                headers = {"Retry-After": formatdate(math.ceil(now + wait), usegmt=True)}
            else:
                headers = {"Retry-After": str(max(1, math.ceil(wait)))}
        elif request.headers.get("authorization") != f"Bearer {state.api_key}":
            missing = not request.headers.get("authorization")
            status, body, headers = error(
                401, "missing api key" if missing else "invalid api key", "UNAUTHORIZED"
            )
        elif rng.random() < faults.error_5xx_rate:
            stats.faults["5xx"] += 1
            status = rng.choice((500, 502, 503))
            body, headers = {"error": "internal server error"}, {}
        else:
            status, body, headers = await handler()
            if status == 200 and body is not None:
                roll = rng.random()
                if roll < faults.drop_rate:
                    stats.faults["dropped"] += 1
                    stats.count(endpoint, "dropped", now, task_id=task_id)
                    return _DroppedResponse()
                roll -= faults.drop_rate
                if roll < faults.truncate_rate:
                    stats.faults["truncated"] += 1
                    raw = _json_bytes(body)
                    stats.count(endpoint, str(status), now, task_id=task_id)
                    return Response(raw[: len(raw) // 2], 200, media_type="application/json")
                roll -= faults.truncate_rate
                if roll < faults.malformed_rate:
                    stats.faults["malformed"] += 1
                    stats.count(endpoint, str(status), now, task_id=task_id)
                    bad = _json_bytes(body).replace(b'"', b"'", 4) + b",}"
                    return Response(bad, 200, media_type="application/json")
        stats.count(endpoint, str(status), now, task_id=task_id)
        return Response(_json_bytes(body), status, headers=headers, media_type="application/json")

    async def get_result(request: Request) -> Response:
        task_id = request.path_params["task_id"]

        async def handle() -> Answer:
            task = state.task(task_id)
            now = clock.now()
            if task is None or task.status_at(now) is None:
                return error(404, NOT_FOUND, "NOT_FOUND", task_id=task_id)
            body = render_result(task, now)
            if body is None:
                return 202, dict(IN_PROGRESS_BODY), {}
            return 200, body, {}

        return await serve(request, "GET /v1/tasks/{id}/result", handle, task_id)

    async def get_status(request: Request) -> Response:
        task_id = request.path_params["task_id"]

        async def handle() -> Answer:
            task = state.task(task_id)
            now = clock.now()
            status = None if task is None else task.status_at(now)
            if task is None or status is None:
                return error(404, NOT_FOUND, "NOT_FOUND", task_id=task_id)
            return (
                200,
                {
                    "task_id": task.task_id,
                    "status": status,
                    "task_type": task.task_type,
                    "data_url": task.data_url,
                    "created_at": format_ts(task.created_at),
                },
                {},
            )

        return await serve(request, "GET /v1/tasks/{id}", handle, task_id)

    def validate(spec: Any) -> dict[str, Any] | str:
        if not isinstance(spec, dict):
            return "task must be a JSON object"
        task_type = spec.get("task_type", spec.get("type"))
        if not isinstance(task_type, str) or not task_type:
            return "task_type is required"
        options = (spec.get("label_spec") or {}).get("options")
        if (
            not isinstance(options, list)
            or not options
            or not all(isinstance(o, str) and o for o in options)
        ):
            return "label_spec.options must be a non-empty list of strings"
        threshold = spec.get("consensus_threshold", 3)
        if (
            not isinstance(threshold, int)
            or isinstance(threshold, bool)
            or not 2 <= threshold <= 10
        ):
            return "consensus_threshold must be an integer from 2 to 10"
        return {
            "task_type": task_type,
            "options": options,
            "consensus_threshold": threshold,
            "data_url": spec.get("data_url"),
            "idempotency_key": spec.get("idempotency_key"),
        }

    async def read_json(request: Request) -> Any:
        try:
            return json.loads(await request.body())
        except ValueError:
            return None

    async def post_task(request: Request) -> Response:
        async def handle() -> Answer:
            spec = validate(await read_json(request))
            if isinstance(spec, str):
                return error(400, spec, "VALIDATION_ERROR")
            key = spec["idempotency_key"]
            if key is not None and str(key) in state.idempotency:
                task = state.task(state.idempotency[str(key)])
                assert task is not None
                return (
                    200,
                    {
                        "task_id": task.task_id,
                        "status": task.status_at(clock.now()),
                        "created_at": format_ts(task.created_at),
                        "idempotent": True,
                    },
                    {},
                )
            task = state.submit(spec, clock.now())
            if key is not None:
                state.idempotency[str(key)] = task.task_id
            return (
                202,
                {
                    "task_id": task.task_id,
                    "status": "pending",
                    "created_at": format_ts(task.created_at),
                },
                {},
            )

        return await serve(request, "POST /v1/tasks", handle)

    async def post_batch(request: Request) -> Response:
        async def handle() -> Answer:
            body = await read_json(request)
            items = body.get("tasks") if isinstance(body, dict) else None
            if not isinstance(items, list) or not 1 <= len(items) <= MAX_BATCH:
                return error(
                    400, f"tasks must be a list of 1 to {MAX_BATCH} tasks", "VALIDATION_ERROR"
                )
            specs = [validate(item) for item in items]
            bad = [(i, s) for i, s in enumerate(specs) if isinstance(s, str)]
            if bad:
                return error(
                    400, f"task {bad[0][0]}: {bad[0][1]}", "VALIDATION_ERROR", index=bad[0][0]
                )
            now = clock.now()
            for spec in specs:
                assert isinstance(spec, dict)
                state.submit(spec, now)
            batch_id = f"bat_{state.rng.getrandbits(64):016x}"
            return 202, {"batch_id": batch_id, "task_count": len(specs), "status": "accepted"}, {}

        return await serve(request, "POST /v1/tasks/batch", handle)

    async def post_webhook(request: Request) -> Response:
        async def handle() -> Answer:
            body = await read_json(request)
            url = body.get("callback_url") if isinstance(body, dict) else None
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                return error(400, "callback_url must be an http(s) URL", "VALIDATION_ERROR")
            assert isinstance(body, dict)
            events = body.get("events") or ["task.settled"]
            hook = Webhook(
                webhook_id=f"whk_{state.rng.getrandbits(64):016x}",
                callback_url=url,
                secret=str(body.get("secret") or state.webhook_secret),
                events=list(events),
                registered_at=clock.now(),
            )
            state.webhooks.append(hook)
            return (
                201,
                {
                    "webhook_id": hook.webhook_id,
                    "callback_url": url,
                    "events": hook.events,
                    "active": True,
                },
                {},
            )

        return await serve(request, "POST /v1/webhooks", handle)

    async def get_usage(request: Request) -> Response:
        async def handle() -> Answer:
            month = request.query_params.get("month", "")
            if not MONTH_RE.match(month):
                return error(400, "month must be YYYY-MM", "VALIDATION_ERROR")
            from asg_audit.sim.billing import compute_usage

            return (
                200,
                compute_usage(
                    state.world, month, as_of=clock.now(), extra_tasks=state.live_tasks.values()
                ),
                {},
            )

        return await serve(request, "GET /v1/billing/usage", handle)

    async def get_invoices(request: Request) -> Response:
        async def handle() -> Answer:
            from asg_audit.sim.billing import compute_invoices

            return (
                200,
                {
                    "invoices": compute_invoices(
                        state.world, as_of=clock.now(), extra_tasks=state.live_tasks.values()
                    )
                },
                {},
            )

        return await serve(request, "GET /v1/billing/invoices", handle)

    async def sim_stats(request: Request) -> Response:
        return JSONResponse(snapshot(state))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        client = httpx.AsyncClient(timeout=5.0)
        dispatcher = asyncio.create_task(_dispatch_webhooks(state, client))
        try:
            yield
        finally:
            dispatcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await dispatcher
            await client.aclose()

    routes = [
        Route("/v1/tasks/{task_id}/result", get_result, methods=["GET"]),
        Route("/v1/tasks/batch", post_batch, methods=["POST"]),
        Route("/v1/tasks/{task_id}", get_status, methods=["GET"]),
        Route("/v1/tasks", post_task, methods=["POST"]),
        Route("/v1/webhooks", post_webhook, methods=["POST"]),
        Route("/v1/billing/usage", get_usage, methods=["GET"]),
        Route("/v1/billing/invoices", get_invoices, methods=["GET"]),
        Route("/_sim/stats", sim_stats, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def snapshot(state: SimState) -> dict[str, Any]:
    """Return both apps' counters and the simulated clock."""
    return {
        "now": format_ts(state.clock.now()),
        "time_scale": state.clock.time_scale,
        "gateway": state.gateway_stats.snapshot(),
        "chain": state.chain_stats.snapshot(),
    }


async def _dispatch_webhooks(state: SimState, client: httpx.AsyncClient) -> None:
    """Fire a delivery to every registered webhook for each task as it settles."""
    pending: set[asyncio.Task[None]] = set()
    try:
        while True:
            now = state.clock.now()
            while state.settle_events and state.settle_events[0][0] <= now:
                settled_at, task_id = heapq.heappop(state.settle_events)
                task = state.task(task_id)
                for hook in state.webhooks:
                    if task is None or hook.registered_at > settled_at:
                        continue
                    if "task.settled" not in hook.events:
                        continue
                    job = asyncio.create_task(_deliver(state, client, hook, task_id))
                    pending.add(job)
                    job.add_done_callback(pending.discard)
            await asyncio.sleep(0.02)
    finally:
        for job in pending:
            job.cancel()


async def _deliver(
    state: SimState,
    client: httpx.AsyncClient,
    hook: Webhook,
    task_id: str,
    *,
    body: bytes | None = None,
) -> None:
    """POST one signed delivery, retrying after 1, 4 and 16 simulated seconds on failure."""
    stats, rng, clock = state.gateway_stats.webhooks, state.rng, state.clock
    # a random delivery delay lets close settlements arrive out of order
    duplicate = body is not None
    await clock.sleep(rng.uniform(1, 5) if duplicate else rng.uniform(0.5, 2.5))
    if body is None:
        task = state.task(task_id)
        assert task is not None
        # `timestamp` is when the delivery is sent, read by the receiver against its own wall
        # clock (a freshness window): the wall clock, not the world's simulated time.
        body = _json_bytes(render_webhook(task, clock.wall_now()))
    headers = {"Content-Type": "application/json", "X-ASG-Signature": sign_body(body, hook.secret)}
    for attempt, backoff in enumerate((*WEBHOOK_RETRIES_S, None)):
        stats["attempts"] += 1
        ok = False
        if attempt == 0 and rng.random() < state.faults.webhook_failure_rate:
            stats["lost"] += 1
        else:
            try:
                answer = await client.post(hook.callback_url, content=body, headers=headers)
                ok = 200 <= answer.status_code < 300
            except httpx.HTTPError:
                ok = False
        if ok:
            stats["delivered"] += 1
            break
        stats["failed_attempts"] += 1
        if backoff is None:
            stats["gave_up"] += 1
            return
        await clock.sleep(backoff)
    if not duplicate and rng.random() < state.faults.webhook_duplicate_rate:
        stats["duplicates"] += 1
        await _deliver(state, client, hook, task_id, body=body)
