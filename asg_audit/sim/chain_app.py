"""The WhatsOnChain subset the auditor uses, as a Starlette app (mounted at /v1/bsv/main)."""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route

from asg_audit.sim.state import SimState

__all__ = ["CHAIN_PREFIX", "MAX_BULK_TXIDS", "build_chain_app"]

CHAIN_PREFIX = "/v1/bsv/main"
MAX_BULK_TXIDS = 20

Answer = tuple[int, Any]  # (status, JSON body | str for text | None for empty)


def build_chain_app(state: SimState) -> Starlette:
    """Return the chain index app serving `state`'s transactions in simulated time."""
    stats, clock, faults, rng = state.chain_stats, state.clock, state.faults, state.rng

    async def serve(
        endpoint: str, handler: Callable[[], Awaitable[Answer]], txid: str | None = None
    ) -> Response:
        now = clock.now()
        wait = state.chain_limiter.admit(now)
        if wait is not None:
            stats.faults["429"] += 1
            stats.count(endpoint, "429", now, task_id=txid)
            return PlainTextResponse(
                "Too Many Requests", 429, headers={"Retry-After": str(max(1, math.ceil(wait)))}
            )
        if rng.random() < faults.chain_5xx_rate:
            stats.faults["5xx"] += 1
            stats.count(endpoint, "503", now, task_id=txid)
            return PlainTextResponse("Service Unavailable", 503)
        status, body = await handler()
        stats.count(endpoint, str(status), now, task_id=txid)
        if body is None:
            return Response(b"", status)
        if isinstance(body, str):
            return PlainTextResponse(body, status)
        return JSONResponse(body, status)

    async def read_txids(request: Request) -> list[str] | str:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return "invalid JSON"
        txids = body.get("txids") if isinstance(body, dict) else None
        if not isinstance(txids, list) or not all(isinstance(t, str) for t in txids):
            return 'body must be {"txids": [...]}'
        if len(txids) > MAX_BULK_TXIDS:
            return f"at most {MAX_BULK_TXIDS} txids per request"
        return [t.lower() for t in txids]

    async def tx_hash(request: Request) -> Response:
        txid = request.path_params["txid"].lower()

        async def handle() -> Answer:
            now = clock.now()
            tx = state.tx(txid, now)
            return (404, None) if tx is None else (200, state.decoded(tx, now))

        return await serve("GET /tx/hash/{txid}", handle, txid)

    async def tx_hex(request: Request) -> Response:
        txid = request.path_params["txid"].lower()

        async def handle() -> Answer:
            tx = state.tx(txid, clock.now())
            return (404, None) if tx is None else (200, tx.raw.hex())

        return await serve("GET /tx/{txid}/hex", handle, txid)

    def bulk(
        endpoint: str, one: Callable[[str, float], dict[str, Any]]
    ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint_fn(request: Request) -> Response:
            async def handle() -> Answer:
                txids = await read_txids(request)
                if isinstance(txids, str):
                    return 400, {"error": txids}
                now = clock.now()
                return 200, [one(t, now) for t in txids]

            return await serve(endpoint, handle)

        return endpoint_fn

    def one_decoded(txid: str, now: float) -> dict[str, Any]:
        tx = state.tx(txid, now)
        return {"txid": txid, "error": "unknown"} if tx is None else state.decoded(tx, now)

    def one_status(txid: str, now: float) -> dict[str, Any]:
        tx = state.tx(txid, now)
        if tx is None:
            return {"txid": txid, "error": "unknown"}
        fields = state.block_fields(tx, now)
        fields.pop("time", None)
        return {"txid": txid, **fields}

    def one_hex(txid: str, now: float) -> dict[str, Any]:
        tx = state.tx(txid, now)
        return (
            {"txid": txid, "error": "unknown"}
            if tx is None
            else {"txid": txid, "hex": tx.raw.hex()}
        )

    async def chain_info(request: Request) -> Response:
        async def handle() -> Answer:
            blocks = state.world.blocks
            tip = blocks.tip_at(clock.now())
            return 200, {
                "chain": "main",
                "blocks": blocks.height_of(tip),
                "headers": blocks.height_of(tip),
                "bestblockhash": blocks.hash_of(tip),
                "mediantime": blocks.time_of(tip - 5),
            }

        return await serve("GET /chain/info", handle)

    routes = [
        Route("/tx/hash/{txid}", tx_hash, methods=["GET"]),
        Route("/tx/{txid}/hex", tx_hex, methods=["GET"]),
        Route("/txs", bulk("POST /txs", one_decoded), methods=["POST"]),
        Route("/txs/status", bulk("POST /txs/status", one_status), methods=["POST"]),
        Route("/txs/hex", bulk("POST /txs/hex", one_hex), methods=["POST"]),
        Route("/chain/info", chain_info, methods=["GET"]),
    ]

    async def sim_stats(request: Request) -> Response:
        from asg_audit.sim.gateway_app import snapshot

        return JSONResponse(snapshot(state))

    return Starlette(
        routes=[
            Mount(CHAIN_PREFIX, routes=routes),
            Route("/_sim/stats", sim_stats, methods=["GET"]),
        ]
    )
