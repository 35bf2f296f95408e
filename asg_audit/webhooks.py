"""The `task.settled` webhook receiver: a pure signature check and a Starlette ASGI app.

Order of the checks on `POST /webhooks/asg` (the raw body is never parsed before its signature
is verified)::

    body over max_body_bytes (Content-Length, or counted while streaming) -> 413, counted
    X-ASG-Signature missing, malformed or forged (any active secret)      -> 401, counted
    signed, not a JSON object, an object repeating a key (ambiguous), or
      nested deeper than MAX_JSON_DEPTH (unreadable to these checks)     -> 200, to `rejects`
    signed `timestamp` missing or outside the freshness window            -> 400, counted
    same event already stored (same body, or a redelivery that differs
      only in its `timestamp`)                                            -> 200, duplicate
    otherwise: normaliser -> observations/results, committed              -> 200, stored
    store cannot be written                                               -> 503 (provider retries)

A body cut off by the sender disconnecting is counted as `truncated` (nobody to answer). So is a
body still arriving when a stop's grace period (`graceful_shutdown_seconds`) ends, answered 503
(the provider retries), with no traceback. So is a body still arriving when the receiver closes
the connection itself (`request_timeout_seconds` over: answered 408; evicted by
`max_connections`: answered 503), its row saying so and with that status.
"Counted" means a `webhook_deliveries` row without the payload. 2xx is answered only after the
group commit that holds the delivery (`webhook_writer.DeliveryWriter`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import hashlib
import hmac
import ipaddress
import itertools
import json
import logging
import math
import os
import re
import secrets as _secrets
import signal
import socket
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any, Final
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from asg_audit import jsonload
from asg_audit.config import (
    read_secret_file,  # one bounded reader, re-exported here
    setting_problem,
)
from asg_audit.errors import ApiStatusError, ApiTransientError, AuthError, ConfigError
from asg_audit.redaction import (
    Secret,
    check_http_url,
    data_secrets,
    display_url,
    mask_secrets_bytes,
    redact,
    shown_setting,
)
from asg_audit.store import open_store
from asg_audit.webhook_writer import (
    DEFAULT_DEDUPE_MAX_EVENTS,
    DEFAULT_DEDUPE_WINDOW_SECONDS,
    Clock,
    Delivery,
    DeliveryWriter,
    DuplicateKeyError,
    Outcome,
    TooDeepError,
    duplicate_key_reject,
    load_json_object,
    utc_now,
)

__all__ = [
    "DEFAULT_FRESHNESS_SECONDS",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_REQUEST_TIMEOUT_SECONDS",
    "MAX_HEAD_BYTES",
    "SIGNATURE_HEADER",
    "WEBHOOK_PATH",
    "WebhookSettings",
    "check_callback_url",
    "create_webhook_app",
    "event_key",
    "parse_delivery_timestamp",
    "read_secret_file",
    "register_webhook",
    "serve_webhooks",
    "sign_body",
    "verify_signature",
]

SIGNATURE_HEADER: Final = "X-ASG-Signature"
WEBHOOK_PATH: Final = "/webhooks/asg"
DEFAULT_MAX_BODY_BYTES: Final = 65_536  # a task.settled payload is ~300 bytes
DEFAULT_FRESHNESS_SECONDS: Final = 300.0
# Slow clients. A request (head and body) must arrive whole within this many seconds of its
# first byte (of the connection's opening, for the first request); a delivery takes
# milliseconds. Without it a client sending half a request held its connection forever.
DEFAULT_REQUEST_TIMEOUT_SECONDS: Final = 20.0
# Connections held open at once; past it the one that has been receiving its request longest is
# closed (a slow client), so that a flood of them cannot make the receiver refuse deliveries.
DEFAULT_MAX_CONNECTIONS: Final = 1000
_SIGNATURE_RE: Final = re.compile(r"sha256=([0-9a-f]{64})")


# -- the pure part ------------------------------------------------------------------------------

# What the functions taking webhook secrets accept: one secret (a str or a Secret), or an
# iterable of them (several during a rotation).
WebhookSecrets = Secret | str | Iterable[Secret | str]


def _secret_key(secret: object, name: str) -> bytes:
    """Return one secret's HMAC key; TypeError/ValueError naming `name`, never the value."""
    if isinstance(secret, Secret):
        value = secret.reveal()
    elif isinstance(secret, str):
        value = secret
    else:
        raise TypeError(f"{name}: expected a str or a Secret, got {type(secret).__name__}")
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected a Secret holding a str, got {type(value).__name__}")
    if not value:
        raise ValueError(f"{name} is empty: anyone could sign with an empty secret")
    try:
        return value.encode()
    except UnicodeEncodeError:  # a lone surrogate; the codec's message would quote it
        raise ValueError(f"{name}: not encodable as UTF-8") from None


def _secret_keys(secrets: object, name: str = "secrets") -> tuple[bytes, ...]:
    """Return the HMAC keys of `secrets`: one str or Secret is ONE secret (a str is never read
    as a sequence of one-character secrets), else each item of an iterable, in order.

    TypeError for anything else (bytes, a mapping, a number) or an item that is not a str or a
    Secret, ValueError for an empty secret; messages name the argument, never a value.
    """
    if isinstance(secrets, str | Secret):
        return (_secret_key(secrets, name),)
    if isinstance(secrets, bytes | bytearray | memoryview | Mapping) or not isinstance(
        secrets, Iterable
    ):
        raise TypeError(
            f"{name}: expected a str, a Secret or a list of them, got {type(secrets).__name__}"
        )
    return tuple(_secret_key(secret, f"{name}[{i}]") for i, secret in enumerate(secrets))


def _check_body(body: object, caller: str) -> None:
    """Raise TypeError naming `caller`'s `body` unless it is the raw bytes of a body."""
    if not isinstance(body, bytes | bytearray | memoryview):
        raise TypeError(
            f"{caller} body: expected the raw request body as bytes, got {type(body).__name__}"
        )


def sign_body(body: bytes, secret: Secret | str) -> str:
    """Return the `X-ASG-Signature` value for a body: `sha256=` + hex HMAC-SHA256.

    `body` is bytes (the signature is over the bytes sent, not over text); another type, or a
    secret that is not a non-empty str or Secret, is a TypeError or ValueError naming it.
    """
    _check_body(body, "sign_body")
    return "sha256=" + hmac.new(_secret_key(secret, "secret"), body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, header: str | None, secrets: WebhookSecrets) -> int | None:
    """Return the index of the active secret that signed `body`, or None if none did.

    `secrets` is one secret (a str or a Secret: index 0) or a list of them. Compares in
    constant time over the raw bytes, and tries every secret (no early exit) so that the timing
    does not tell which secret matched. A header that is not exactly `sha256=<64 lowercase
    hex>` is refused without computing anything. An empty list verifies nothing. A `body`
    that is not bytes or a `header` that is not a str or None is a TypeError naming it.
    """
    _check_body(body, "verify_signature")
    if header is not None and not isinstance(header, str):
        raise TypeError(
            "verify_signature header: expected the X-ASG-Signature value as a str or None,"
            f" got {type(header).__name__}"
        )
    return _match_signature(body, header, _secret_keys(secrets))


def _match_signature(body: bytes, header: str | None, keys: tuple[bytes, ...]) -> int | None:
    """`verify_signature` over keys already checked (the receiver checks them once)."""
    if header is None:
        return None
    match = _SIGNATURE_RE.fullmatch(header.strip())
    if match is None:
        return None
    given = match.group(1).encode()
    found: int | None = None
    for index, key in enumerate(keys):
        expected = hmac.new(key, body, hashlib.sha256).hexdigest().encode()
        if hmac.compare_digest(expected, given) and found is None:
            found = index
    return found


def parse_delivery_timestamp(value: Any) -> datetime | None:
    """Return a payload `timestamp` (RFC 3339 string or epoch seconds) as UTC, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            return datetime.fromtimestamp(value, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("z", "Z"))
        except ValueError:
            return None
        if parsed.tzinfo is None:  # RFC 3339 requires an offset; a naive time is ambiguous
            return None
        return parsed.astimezone(UTC)
    return None


def event_key(payload: Mapping[str, Any]) -> str:
    """Return the identity of an event: a hash of the payload without its delivery `timestamp`.

    A redelivery of the same event (a retry with the same body, or a repeat rendered later with
    a new `timestamp`) has the same key; a settled result whose fields changed does not.
    """
    rest = {k: v for k, v in payload.items() if k != "timestamp"}
    canonical = json.dumps(rest, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    # surrogatepass: a str holding a lone surrogate (not from `load_json_object`, which refuses
    # one) still has a key; every other str encodes as UTF-8, so keys are unchanged.
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


# -- settings -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebhookSettings:
    """The `[webhooks]` section of the config; every value has a default."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    freshness_seconds: float = DEFAULT_FRESHNESS_SECONDS
    commit_max_batch: int = 512  # deliveries per group commit at most
    commit_max_wait_ms: float = 0.0  # linger for more deliveries; 0 = take what is queued
    normalise_interval_ms: float = 1000.0  # committed bodies reach observations this often
    path: str = WEBHOOK_PATH
    secret_file: str | None = None
    graceful_shutdown_seconds: float = 30.0
    forwarded_allow_ips: str | None = None  # proxies trusted for X-Forwarded-For (uvicorn)
    http: str = "auto"  # uvicorn's HTTP parser: auto (httptools when installed), h11, httptools
    # A redelivery is a duplicate if its event was committed within the window and is among the
    # most recent events (bounded memory: about 200 bytes an event).
    dedupe_window_seconds: float = DEFAULT_DEDUPE_WINDOW_SECONDS
    dedupe_max_events: int = DEFAULT_DEDUPE_MAX_EVENTS
    # a request (head and body) must arrive whole this soon after its first byte; connections
    # held at once (past it, the one receiving its request longest is closed)
    request_timeout_seconds: float = DEFAULT_REQUEST_TIMEOUT_SECONDS
    max_connections: int = DEFAULT_MAX_CONNECTIONS

    def __post_init__(self) -> None:
        for spec in fields(self):
            problem = _setting_problem(spec.name, getattr(self, spec.name))
            if problem is not None:
                raise _SettingError(spec.name, problem)

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> WebhookSettings:
        """Return settings from a `[webhooks]` table, refusing unknown keys and bad values."""
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ConfigError(f"unknown key(s) in [webhooks]: {', '.join(sorted(unknown))}")
        if "secret" in raw or "secrets" in raw:
            raise ConfigError("[webhooks]: secrets belong in ASG_WEBHOOK_SECRET or a secret_file")
        try:
            return cls(**dict(raw))
        except _SettingError as exc:
            raise ConfigError(f"webhooks.{exc.field}: {exc.problem}") from None


class _SettingError(ValueError):
    """A `WebhookSettings` value out of its range or of the wrong type (names the field)."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"WebhookSettings.{field}: {problem}")
        self.field = field
        self.problem = problem


_HTTP_PARSERS: Final = ("auto", "h11", "httptools")


def _setting_problem(name: str, value: Any) -> str | None:
    """Return what is wrong with one `WebhookSettings` value, by the config file's rules (its
    ranges, from `config.setting_problem`); never quotes a value that is not a number."""
    if name == "path":
        if not isinstance(value, str) or not value.startswith("/"):
            return "expected a path starting with /"
    elif name == "http":
        if not isinstance(value, str) or value not in _HTTP_PARSERS:
            return f"expected one of {', '.join(_HTTP_PARSERS)}"
    elif name == "forwarded_allow_ips":
        if value is not None and not isinstance(value, str):
            return f"expected a string or None, got {type(value).__name__}"
    elif name == "secret_file":
        if value is not None and not isinstance(value, str | os.PathLike):
            return f"expected a path or None, got {type(value).__name__}"
    else:
        return setting_problem("webhooks", name, value)
    return None


# -- the ASGI app -------------------------------------------------------------------------------


_ID_PREFIX: Final = _secrets.token_hex(3)
_ID_COUNTER: Final = itertools.count(1)


def _new_delivery_id() -> str:
    """Return a delivery id unique across restarts: a random per-process prefix and a counter."""
    return f"dlv_{_ID_PREFIX}{next(_ID_COUNTER):010x}"


def _answer(outcome: str, delivery_id: str, *, close: bool = False) -> Response:
    headers = {"Connection": "close"} if close else None
    return JSONResponse(
        {"outcome": outcome, "delivery_id": delivery_id},
        status_code=Outcome.status_of(outcome),
        headers=headers,
    )


# The `detail` of a delivery whose authenticated body quoted a secret (masked before storing).
_MASKED_NOTE: Final = "the body quoted a configured secret (masked as *** before storing)"


def _joined(*notes: str | None) -> str | None:
    return "; ".join(n for n in notes if n) or None


def _stale_detail(age_seconds: float, window_seconds: float) -> str:
    """Return the detail of a stale delivery: how far its `timestamp` is from now, and which
    way (`age_seconds` is now minus the timestamp: positive for a timestamp in the past)."""
    way = "in the past" if age_seconds >= 0 else "in the future"
    return f"timestamp {abs(age_seconds):.0f} s {way}, window {window_seconds:g} s"


class _CutOffError(Exception):
    """The body stopped before it was whole: the sender went away, or the receiver stopped."""

    def __init__(self, received: bytes, *, by_stop: bool = False) -> None:
        super().__init__(f"{len(received)} bytes received")
        self.received = received
        self.by_stop = by_stop


_STOP_CUT: Final = "the receiver stopped: graceful_shutdown_seconds is over"


class _BodyDrain:
    """The requests still reading their bodies, cut off when a stop's grace period ends.

    On a stop, Uvicorn lets requests in flight finish for its grace period, then cancels them,
    and logs a traceback for each. A sender still sending its body by then (a slow upload, a
    slowloris) would leave no `webhook_deliveries` row. Instead, `begin` (called when the
    server starts to shut down) cuts each such read off itself when the grace period ends,
    before Uvicorn's own deadline, so that the handler records it and answers.
    """

    def __init__(self) -> None:
        self.readers: set[asyncio.Task[Any]] = set()
        self.cut: set[asyncio.Task[Any]] = set()
        self.over = False

    def begin(self, grace_seconds: float) -> None:
        """Cut off every body still arriving `grace_seconds` from now (event loop thread)."""
        asyncio.get_running_loop().call_later(max(0.0, grace_seconds), self._cut_all)

    def enter(self) -> asyncio.Task[Any] | None:
        task = asyncio.current_task()
        if task is not None:
            self.readers.add(task)
            if self.over:  # started after the grace period: cut at its first wait
                asyncio.get_running_loop().call_soon(self._cut_one, task)
        return task

    def leave(self, task: asyncio.Task[Any] | None) -> bool:
        """Forget `task`; return whether this drain cancelled it (and undo that cancel)."""
        if task is None:
            return False
        self.readers.discard(task)
        if task in self.cut:
            self.cut.discard(task)
            task.uncancel()
            return True
        return False

    def _cut_all(self) -> None:
        self.over = True
        for task in list(self.readers):
            self._cut_one(task)

    def _cut_one(self, task: asyncio.Task[Any]) -> None:
        if task in self.readers and task not in self.cut and not task.done():
            self.cut.add(task)
            task.cancel(msg=_STOP_CUT)


async def _read_limited(
    request: Request, limit: int, chunks: list[bytes], drain: _BodyDrain | None = None
) -> bytes | None:
    """Return the body, or None as soon as it grows past `limit` (it is never read whole).

    Appends what arrives to `chunks`. Raises `_CutOffError` (with what arrived) when the sender
    disconnects mid-body, or when `drain` cuts the read off at the end of a stop's grace period.
    """
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.strip().isdigit() or int(declared) > limit):
        return None
    total = 0
    task = drain.enter() if drain is not None else None
    try:
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                return None
            chunks.append(chunk)
    except ClientDisconnect:
        raise _CutOffError(b"".join(chunks)) from None
    except asyncio.CancelledError:
        if drain is not None and drain.leave(task):
            raise _CutOffError(b"".join(chunks), by_stop=True) from None
        raise
    finally:
        if drain is not None:
            drain.leave(task)
    return b"".join(chunks)


# The scope key of the TCP peer's (host, port), set before X-Forwarded-For replaces the
# scope's `client` (`serve_webhooks` with `forwarded_allow_ips`).
_PEER: Final = "asg_audit.peer"
# An IPv6 zone (`fe80::1%eth0`): `ipaddress` takes any text after the `%`.
_ZONE_RE: Final = re.compile(r"[A-Za-z0-9_.-]{1,32}")


def _ip_text(host: object) -> str | None:
    """Return `host` if it is an IP address (an IPv6 zone of at most 32 plain characters),
    else None."""
    if not isinstance(host, str):
        return None
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    zone = getattr(address, "scope_id", None)
    if zone is not None and not _ZONE_RE.fullmatch(zone):
        return None
    return host


def _remote_addr(request: Request) -> tuple[str | None, str | None]:
    """Return the `remote_addr` of a request's row, and a note for its detail or None.

    The client is the TCP peer, or what a trusted proxy's X-Forwarded-For names: a proxy
    passes on whatever the sender wrote there, so anything but an IP address is not recorded
    (neither is any of it shown): the peer (the proxy) is, and the note says so.
    """
    host = request.client.host if request.client else None
    if host is None or _ip_text(host) is not None:
        return host, None
    peer = request.scope.get(_PEER)
    shown = _ip_text(peer[0]) if isinstance(peer, tuple) and peer else None
    return shown, (
        f"X-Forwarded-For names no IP address ({len(host)} characters, not shown): remote_addr"
        + (" is the proxy's" if shown else " not recorded")
    )


def create_webhook_app(
    db_path: str | Path,
    secrets: WebhookSecrets,
    *,
    settings: WebhookSettings | None = None,
    clock: Clock = utc_now,
    freshness_clock: Clock | None = None,
    duckdb_threads: int | None = None,
    freeze_gc: bool = False,
    other_secrets: Iterable[str | Secret | None] = (),
) -> Starlette:
    """Return the receiver as a Starlette app writing to the store at `db_path`.

    `secrets` are the active secrets: one (a str or a Secret) or a list of them (several during
    a rotation); TypeError/ValueError for anything else or an empty one. A signed body that
    quotes any of them, or any of `other_secrets` (the API key), in any form
    (`redaction.mask_secrets_bytes`) has it masked as `***` before it is read or stored: the
    signature is checked over the bytes received, everything after (the row's body, task id,
    the observation) sees the masked body, and the row's `detail` says so. `clock` gives the
    `received_at` of deliveries (their observations' `observed_at`); `freshness_clock` gives
    "now" for the freshness window on the body's `timestamp`, which a sender stamps with its
    wall clock (default: `clock`). The demo passes the simulator's scaled clock as `clock`, so
    that detection delays are measured in the simulated world's time, and the wall clock as
    `freshness_clock`, as the simulated Gateway stamps deliveries. `duckdb_threads` sets
    DuckDB's worker threads for the whole database instance, so leave it None when other code
    in the process uses the same file. The app's `state.writer` is the `DeliveryWriter`
    (counters, run id). `freeze_gc` moves every object alive after start-up (modules, the
    writer's warm-up) out of the garbage collector's view (`gc.freeze`): a full collection then
    no longer walks them, which otherwise stalls all requests for ~50 ms; set it only where the
    receiver has the process to itself.
    """
    active = _secret_keys(secrets)
    if not active:
        raise ConfigError("no webhook secret: set ASG_WEBHOOK_SECRET or webhooks.secret_file")
    # Every secret the process holds, masked in an authenticated body before it is kept
    # (but one too short to be told from data: `data_secrets`).
    masked_secrets = data_secrets(
        (*(key.decode() for key in active), *(s for s in other_secrets if s))
    )
    settings = settings or WebhookSettings()
    window = timedelta(seconds=settings.freshness_seconds)
    fresh_now = clock if freshness_clock is None else freshness_clock
    writer = DeliveryWriter(
        db_path,
        max_batch=settings.commit_max_batch,
        max_wait_seconds=settings.commit_max_wait_ms / 1000.0,
        normalise_interval_seconds=settings.normalise_interval_ms / 1000.0,
        duckdb_threads=duckdb_threads,
        dedupe_window_seconds=float(settings.dedupe_window_seconds),
        dedupe_max_events=settings.dedupe_max_events,
    )
    drain = _BodyDrain()

    def count_cut_off(
        delivery_id: str,
        received_at: datetime,
        remote: tuple[str | None, str | None],
        request: Request,
        received: bytes,
        how: str,
        http_status: int | None = None,
    ) -> None:
        # A partial body cannot be authenticated: only counted, never its payload.
        declared = request.headers.get("content-length")
        writer.submit(
            Delivery(
                delivery_id,
                received_at,
                remote[0],
                remote_note=remote[1],
                outcome=Outcome.TRUNCATED,
                body_sha256=hashlib.sha256(received).hexdigest(),
                body_bytes=len(received),
                http_status=http_status,
                detail=f"{how} after {len(received)} bytes"
                + (f" of {declared}" if declared else "")
                + "; not authenticated, payload not kept",
            )
        )

    async def receive(request: Request) -> Response:
        received_at = clock()
        delivery_id = _new_delivery_id()
        remote = _remote_addr(request)
        chunks: list[bytes] = []
        try:
            body = await _read_limited(request, settings.max_body_bytes, chunks, drain)
        except _CutOffError as cut:
            if cut.by_stop:
                # The sender is still there: 503 tells the provider to deliver it again.
                how = "the receiver stopped (graceful_shutdown_seconds over; answered 503)"
                count_cut_off(delivery_id, received_at, remote, request, cut.received, how, 503)
                return JSONResponse(
                    {"outcome": Outcome.TRUNCATED, "delivery_id": delivery_id},
                    status_code=503,
                    headers={"Connection": "close"},
                )
            closed = request.scope.get(_CLOSED_BY_RECEIVER)
            if closed is not None:
                # The receiver closed it (a slow sender, or one evicted by the connection cap),
                # having answered it itself when it could.
                why, status = closed
                said = f"answered {status}" if status else "its answer had begun"
                how = f"the receiver closed the connection ({why}; {said})"
                count_cut_off(delivery_id, received_at, remote, request, cut.received, how, status)
                return _answer(Outcome.TRUNCATED, delivery_id, close=True)
            # Nobody is left to answer.
            how = "the sender disconnected"
            count_cut_off(delivery_id, received_at, remote, request, cut.received, how)
            return _answer(Outcome.TRUNCATED, delivery_id, close=True)
        except asyncio.CancelledError:
            # Cancelled by the server itself (not through `drain`): still counted. The server
            # answers 500 to a request it cancels before its answer started.
            how = "the receiver was stopped (request cancelled; answered 500)"
            count_cut_off(delivery_id, received_at, remote, request, b"".join(chunks), how, 500)
            raise
        if body is None:
            writer.submit(
                Delivery(
                    delivery_id,
                    received_at,
                    remote[0],
                    remote_note=remote[1],
                    outcome=Outcome.TOO_LARGE,
                    detail=f"body over {settings.max_body_bytes} bytes",
                )
            )
            # The rest of the body is not read: close the connection instead.
            return _answer(Outcome.TOO_LARGE, delivery_id, close=True)
        digest = hashlib.sha256(body).hexdigest()
        header = request.headers.get(SIGNATURE_HEADER)
        secret_index = _match_signature(body, header, active)
        if secret_index is None:
            reason = (
                "no signature header"
                if header is None
                else "signature does not match any active secret"
                if _SIGNATURE_RE.fullmatch(header.strip())
                else "malformed signature header"
            )
            writer.submit(
                Delivery(
                    delivery_id,
                    received_at,
                    remote[0],
                    remote_note=remote[1],
                    outcome=Outcome.BAD_SIGNATURE,
                    body_sha256=digest,
                    body_bytes=len(body),
                    detail=reason,
                )
            )
            return _answer(Outcome.BAD_SIGNATURE, delivery_id)

        # Authentic from here on: parsing is safe. A secret it quotes is masked before anything
        # reads or keeps it (the same bytes, no copy, when it quotes none).
        masked = mask_secrets_bytes(body, masked_secrets)
        mask_note = None
        if masked is not body:
            # The row's hash and size are the stored body's: a hash of the bytes received
            # would let a reader of the store test guesses of the secret against it.
            mask_note, body = _MASKED_NOTE, masked
            digest = hashlib.sha256(body).hexdigest()
        reject: tuple[str | None, str] | None = None
        try:
            payload = load_json_object(body)
        except DuplicateKeyError as exc:
            # Read one way here and another by the normaliser: refused, like invalid JSON.
            payload, reject = None, duplicate_key_reject(body, exc)
        except TooDeepError as exc:
            # Not read here, so neither its timestamp nor its keys can be checked: refused
            # before the normaliser (which could read it), never an observation.
            payload, reject = None, (None, str(exc))
        except ValueError:
            payload = None
        delivery = Delivery(
            delivery_id,
            received_at,
            remote[0],
            remote_note=remote[1],
            body=body,
            body_sha256=digest,
            body_bytes=len(body),
            secret_index=secret_index,
            reject=reject,
            detail=_joined(None if reject is None else reject[1], mask_note),
            depth_checked=True,  # by `load_json_object`, whatever it raised
        )
        if isinstance(payload, dict):
            delivery.object_body = True
            task_id = payload.get("task_id")
            delivery.task_id = task_id if isinstance(task_id, str) else None
            delivered_at = parse_delivery_timestamp(payload.get("timestamp"))
            delivery.delivered_at = delivered_at
            now = received_at if freshness_clock is None else fresh_now()
            if delivered_at is None:
                stale = "no usable `timestamp`: freshness cannot be checked"
            elif abs(now - delivered_at) > window:
                stale = _stale_detail(
                    (now - delivered_at).total_seconds(), settings.freshness_seconds
                )
            else:
                stale = None
            if stale is not None:
                delivery.body, delivery.outcome = None, Outcome.STALE
                delivery.detail = _joined(stale, mask_note)
                writer.submit(delivery)
                return _answer(Outcome.STALE, delivery_id)
            delivery.event_key = event_key(payload)
        else:
            # Signed but not a JSON object: the normaliser quarantines it with a reason.
            delivery.event_key = digest
        waiter = writer.submit(delivery)
        assert waiter is not None
        outcome = await waiter
        return _answer(outcome, delivery_id)

    async def healthz(request: Request) -> Response:
        ok = writer.available
        return JSONResponse(
            {
                "status": "ok" if ok else "unavailable",
                "run_id": writer.run_id,
                "commits": writer.commits,
                "largest_commit": writer.largest_commit,
                "outcomes": dict(writer.counts),
                **({} if ok else {"error": writer.last_error}),
            },
            status_code=200 if ok else 503,
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await asyncio.to_thread(writer.start)
        if freeze_gc:
            gc.collect()
            gc.freeze()
        try:
            yield
        finally:
            # Uvicorn has already waited for the requests in flight; commit what they queued.
            await asyncio.to_thread(writer.stop)

    app = Starlette(
        routes=[
            Route(settings.path, receive, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    # `POST /webhooks/asg/` is an unknown path like any other (404, no row), not a redirect
    # built from the request's Host header to a URL the sender never registered.
    app.router.redirect_slashes = False
    app.state.writer = writer
    app.state.drain = drain
    return app


# The request line and headers of one request, whatever the HTTP parser. A delivery's are a few
# hundred bytes; nginx's default allows 4 lines of 8 KiB. Without a bound, httptools buffers an
# endless header line from an unauthenticated client (~1 byte of memory per byte sent).
MAX_HEAD_BYTES: Final = 64 * 1024

# The scope key telling the app that the receiver itself closed its request's connection while
# the body was arriving: (why, the status it was answered, or None when its answer had begun).
_CLOSED_BY_RECEIVER: Final = "asg_audit.closed_by_receiver"

_HEAD_TOO_LARGE: Final = b"Request header fields too large."
_TIMED_OUT: Final = b"Request not received in time."
_BUSY: Final = b"Too many connections."

# File descriptors kept for the rest: the store and its WAL, the listening socket, stdio.
_FD_RESERVE: Final = 64


class _ConnectionGuard:
    """One server's bounds on its connections, shared by all of them (one event loop).

    `receiving` holds the connections whose current request has not arrived whole, oldest
    first (a dict keeps the order of insertion): each has a timer that closes it at the
    deadline, and the oldest is the one closed to make room when a connection over `cap`
    arrives. A connection whose request is whole (the app is answering it) or that waits
    between requests (Uvicorn's keep-alive timeout closes it after 5 s) is not among them.

    Closed connections are logged on `uvicorn.error` without anything they sent: one line at
    once, then at most one a second counting those closed since (a flood is a few lines).
    """

    def __init__(self, timeout_s: float, cap: int) -> None:
        self.timeout_s = timeout_s
        self.cap = cap
        self.receiving: dict[Any, None] = {}
        self.closed: dict[str, int] = {}  # reason -> connections closed for it
        self._logger = logging.getLogger("uvicorn.error")
        self._unlogged: dict[str, tuple[int, str]] = {}  # reason -> (count, last client)
        self._last_log = -math.inf
        self._flush: asyncio.TimerHandle | None = None

    def note_closed(self, reason: str, client: Any) -> None:
        self.closed[reason] = self.closed.get(reason, 0) + 1
        n, _ = self._unlogged.get(reason, (0, ""))
        self._unlogged[reason] = (n + 1, _client_text(client))
        if self._flush is None:
            loop = asyncio.get_running_loop()
            wait = max(0.0, self._last_log + 1.0 - loop.time())
            self._flush = loop.call_later(wait, self._log)

    def _log(self) -> None:
        self._flush = None
        self._last_log = asyncio.get_running_loop().time()
        counts, self._unlogged = self._unlogged, {}
        for reason, (n, client) in counts.items():
            if n == 1:
                self._logger.warning("webhooks: connection from %s closed: %s", client, reason)
            else:
                self._logger.warning(
                    "webhooks: %d connections closed: %s (the last from %s)", n, reason, client
                )

    def summary(self) -> str:
        """Return e.g. `; 3 slow connections closed` for the stop line, or ''."""
        n = sum(self.closed.values())
        return f"; {n} slow connection{'s' if n != 1 else ''} closed" if n else ""


def _client_text(client: Any) -> str:
    if isinstance(client, tuple) and len(client) >= 2:
        host = str(client[0])
        return f"[{host}]:{client[1]}" if ":" in host else f"{host}:{client[1]}"
    return "an unknown address"


class _GuardedConnection(asyncio.Protocol):
    """What both HTTP protocols add to Uvicorn's: the request deadline and the connection cap.

    Uvicorn (0.54) has neither: `timeout_keep_alive` only closes a connection idle between
    requests, and `limit_concurrency` answers 503 to the request that completes its head past
    the limit, which under a flood of half-sent requests is the real delivery, while the slow
    connections keep their places. A subclass of each protocol is the only place that sees a
    connection open and its request's head and end arrive.

    The protocol classes tell when a request starts (`_request_started`) and ends
    (`_request_whole`) and whether its head is whole (`_head_whole`).
    """

    _guard: _ConnectionGuard
    _deadline: asyncio.TimerHandle | None = None
    # from Uvicorn's protocols
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    connections: set[Any]
    client: tuple[str, int] | None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._guard_connection()

    def connection_lost(self, exc: Exception | None) -> None:
        self._request_whole()
        super().connection_lost(exc)

    def _guard_connection(self) -> None:
        """At connection_made: count the connection; start the first request's deadline."""
        self._request_started()
        guard = self._guard
        if len(self.connections) <= guard.cap:
            return
        oldest = next((c for c in guard.receiving if c is not self), None)
        if oldest is not None:
            oldest._close_slow(
                f"still receiving its request when the receiver reached its limit of"
                f" {guard.cap} connections",
                _BUSY,
                b"503 Service Unavailable",
            )
        else:  # every other connection is being answered: this one waits its turn elsewhere
            self._close_slow(
                f"over the limit of {guard.cap} connections", _BUSY, b"503 Service Unavailable"
            )

    def _request_started(self) -> None:
        if self._deadline is None and not self.transport.is_closing():
            self._deadline = self.loop.call_later(self._guard.timeout_s, self._too_slow)
            self._guard.receiving[self] = None

    def _request_whole(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._guard.receiving.pop(self, None)

    def _too_slow(self) -> None:
        self._deadline = None
        part = "request" if self._head_whole() else "request head"
        self._close_slow(
            f"no whole {part} within {self._guard.timeout_s:g} s",
            _TIMED_OUT,
            b"408 Request Timeout",
        )

    def _close_slow(self, reason: str, text: bytes, status: bytes) -> None:
        """Answer `status` and close the connection.

        A request whose body is still arriving has reached the app: it is told why (the
        `_CLOSED_BY_RECEIVER` key of its scope) before it sees the connection end, so that its
        `truncated` row says the receiver closed it, and with what status, not that the sender
        went away. It is answered too, unless its answer has begun (then it is only closed).
        """
        self._request_whole()
        if self.transport.is_closing():
            return
        answer = not self._head_whole()
        if not answer:
            cycle = getattr(self, "cycle", None)
            if cycle is not None and not getattr(self, "pipeline", None):
                answer = not cycle.response_started
                cycle.scope[_CLOSED_BY_RECEIVER] = (reason, int(status[:3]) if answer else None)
        if answer:
            self.transport.write(
                b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
                b"content-length: " + str(len(text)).encode() + b"\r\n"
                b"connection: close\r\n\r\n" + text
            )
        # a body still arriving: the app sees the connection end and counts it `truncated`
        self.transport.close()
        self._guard.note_closed(reason, self.client)

    def _head_whole(self) -> bool:
        raise NotImplementedError

    # Bytes of the current request's head (request line, headers and the blank line that ends
    # them) received so far, while it is incomplete.
    _head_bytes = 0
    _refused = False

    def _feed_head(self, data: bytes, feed: Callable[[bytes], None]) -> None:
        """Give `data` to the parser (`feed`), a request head at most MAX_HEAD_BYTES long.

        While a head is incomplete, the parser gets only as many bytes as the head may still
        have: a head that has not ended after MAX_HEAD_BYTES is refused (431) before any more
        of it is read, whatever the sizes of the reads that brought it. The rest of a read
        that completed a head (its body, ...) is given whole.
        """
        while data and not self._refused and not self.transport.is_closing():
            if self._head_whole():
                feed(data)
                return
            room = MAX_HEAD_BYTES - self._head_bytes
            part, data = data[:room], data[room:]
            self._head_bytes += len(part)
            feed(part)
            if self._head_whole():
                self._head_bytes = 0
            elif self._head_bytes >= MAX_HEAD_BYTES:
                self._refuse_head()

    def send_400_response(self, msg: str) -> None:
        """Uvicorn's answer to what its parser refuses. With the head whole, that is the body:
        a malformed chunked encoding (a Content-Length body cannot be). The request is told
        so, that its `truncated` row says why, not that the sender went away."""
        cycle = getattr(self, "cycle", None) if self._head_whole() else None
        if (
            cycle is not None
            and not getattr(self, "pipeline", None)
            and not cycle.response_started
            and not self.transport.is_closing()
        ):
            cycle.scope.setdefault(
                _CLOSED_BY_RECEIVER, ("the request's chunked encoding is malformed", 400)
            )
        super().send_400_response(msg)  # type: ignore[misc]

    def _refuse_head(self) -> None:
        self._refused = True
        self._request_whole()
        if self.transport.is_closing():
            return
        logging.getLogger("uvicorn.error").warning(
            "Request header fields too large: connection closed."
        )
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: text/plain; charset=utf-8\r\n"
            b"content-length: " + str(len(_HEAD_TOO_LARGE)).encode() + b"\r\n"
            b"connection: close\r\n\r\n" + _HEAD_TOO_LARGE
        )
        self.transport.close()


def http_protocol(http: str, guard: _ConnectionGuard) -> type[asyncio.Protocol]:
    """Return Uvicorn's protocol for `[webhooks] http`, bounded in size, time and number.

    Each connection gets `_GuardedConnection`'s deadline, cap and head limit: the parser is
    given a request's head (request line, headers and the blank line that ends them) at most
    MAX_HEAD_BYTES at a time, and a head that has not ended by then is answered 431 and the
    connection closed (httptools has no limit of its own; h11's
    `h11_max_incomplete_event_size` only counts what is incomplete after a read, so a longer
    head arriving in one read passed both). The count costs one slice a read while a head is
    arriving, so the receiver keeps httptools' speed (h11 costs ~3x the CPU).
    """
    if http != "h11":
        try:
            from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
        except ImportError:
            if http == "httptools":
                raise ConfigError("webhooks.http is httptools, which is not installed") from None
        else:
            return _httptools_protocol(HttpToolsProtocol, guard)
    # what Uvicorn's own `auto` picks without httptools
    from uvicorn.protocols.http.h11_impl import H11Protocol

    return _h11_protocol(H11Protocol, guard)


def _httptools_protocol(base: type[Any], guard: _ConnectionGuard) -> type[asyncio.Protocol]:
    class GuardedHttpTools(_GuardedConnection, base):  # type: ignore[misc]
        """Uvicorn's httptools protocol: a head over MAX_HEAD_BYTES is refused (431), a
        request must arrive in time, connections are capped (`_GuardedConnection`)."""

        _guard = guard
        # Whether the parser is inside a request's head (or before one): `on_headers_complete`
        # ends it, `on_message_complete` starts the next request's.
        _in_head = True

        def data_received(self, data: bytes) -> None:
            self._feed_head(data, super().data_received)

        def on_message_begin(self) -> None:
            self._request_started()
            super().on_message_begin()

        def on_headers_complete(self) -> None:
            self._in_head = False
            self._head_bytes = 0
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._in_head = True  # a next request on this connection starts with its head
            self._request_whole()
            super().on_message_complete()

        def _head_whole(self) -> bool:
            return not self._in_head

    return GuardedHttpTools


def _h11_protocol(base: type[Any], guard: _ConnectionGuard) -> type[asyncio.Protocol]:
    import h11

    class GuardedH11(_GuardedConnection, base):  # type: ignore[misc]
        """Uvicorn's h11 protocol: a request must arrive in time, connections are capped
        (`_GuardedConnection`). h11 tells where a request is by its peer's state: IDLE (head
        not whole), SEND_BODY, DONE."""

        _guard = guard

        def data_received(self, data: bytes) -> None:
            self._request_started()  # bytes of a request: it has begun, if it had not
            self._feed_head(data, super().data_received)
            self._follow()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._follow()  # a request sent before the answer (pipelined) may start now

        def _follow(self) -> None:
            state = self.conn.their_state
            if state is h11.SEND_BODY or (state is h11.IDLE and self.conn.trailing_data[0]):
                self._request_started()
            else:  # whole (DONE), or nothing of the next request yet, or closing
                self._request_whole()

        def _head_whole(self) -> bool:
            return bool(self.conn.their_state is not h11.IDLE)

    return GuardedH11


def _fit_connection_cap(cap: int) -> int:
    """Return `cap`, after raising the open-file limit to hold it if needed and allowed;
    lower when the limit cannot be raised enough (said on stdout)."""
    import resource

    need = cap + _FD_RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    if soft != resource.RLIM_INFINITY and soft < need:
        fitted = max(1, soft - _FD_RESERVE)
        print(
            f"webhooks: at most {fitted} connections at once, not {cap}: the open-file limit"
            f" is {soft} (ulimit -n)",
            flush=True,
        )
        return fitted
    return cap


def serve_webhooks(
    db_path: str | Path,
    secrets: WebhookSecrets,
    *,
    host: str = "127.0.0.1",
    port: int = 8088,
    settings: WebhookSettings | None = None,
    other_secrets: Iterable[str | Secret | None] = (),
) -> None:
    """Serve the receiver with Uvicorn until SIGINT/SIGTERM; drain deliveries in flight.

    `secrets` and `other_secrets` (the API key: masked in stored bodies as the webhook
    secrets are) as for `create_webhook_app` (checked before anything is bound).

    A request (head and body) must arrive whole within `request_timeout_seconds` of its first
    byte, or the connection is answered 408 and closed (a body cut off is a `truncated` row
    with http_status 408). At most `max_connections` are held at once: one more closes the
    connection that has been receiving its request longest (answered 503, and so recorded).
    A `forwarded_allow_ips` proxy's X-Forwarded-For is recorded as `remote_addr` only when it
    is an IP address (else the proxy's address, with a note in `detail`). The open-file limit
    is raised to hold the connections if it is lower (else the cap is lowered, and that is
    said).
    """
    import uvicorn

    settings = settings or WebhookSettings()
    # Checked once, kept as text: an iterator of secrets is read only once, and the path is
    # shown with them masked.
    held = [key.decode() for key in _secret_keys(secrets)]
    secrets = held
    guard = _ConnectionGuard(float(settings.request_timeout_seconds), settings.max_connections)
    grace = float(settings.graceful_shutdown_seconds)
    # One DuckDB worker thread: the receiver's statements are small, and parallel scans would
    # only take CPU from the event loop answering deliveries. This process is the receiver's.
    app = create_webhook_app(
        db_path,
        secrets,
        settings=settings,
        duckdb_threads=1,
        freeze_gc=True,
        other_secrets=tuple(other_secrets),
    )
    # The receiver opens the store as a writer once it listens, and while it cannot it answers
    # 503 and tries again every second: right for a store lost while serving, endless for one
    # that another process holds from the start (a second receiver holds it as long as it
    # runs). So, the secrets checked, the store is opened once here as the receiver opens it
    # (a writer, no wait) and closed: another writer is StoreError "database busy" before
    # anything listens.
    with open_store(db_path):
        pass
    # The writer threads hand the GIL back and forth with the event loop around every DuckDB
    # call; at the default 5 ms switch interval each hand-back can cost a whole interval.
    sys.setswitchinterval(0.0005)
    served: Any = app
    if settings.forwarded_allow_ips:
        # Uvicorn's X-Forwarded-For handling, with the peer kept in the scope first: a
        # forwarded value that is no IP address is recorded as the peer (`_remote_addr`).
        from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

        starlette_app: Any = app  # an ASGI app (Starlette's and Uvicorn's types differ)
        proxied = ProxyHeadersMiddleware(starlette_app, trusted_hosts=settings.forwarded_allow_ips)

        async def served(scope: Any, receive: Any, send: Any) -> None:
            scope[_PEER] = scope.get("client")
            await proxied(scope, receive, send)

    config = uvicorn.Config(
        served,
        host=host,
        port=port,
        lifespan="on",
        # a request must arrive in time, the connections are capped (`_GuardedConnection`);
        # and a head over MAX_HEAD_BYTES is answered 431 with either parser; h11's own bound
        # (a 400) is only a backstop for what reaches it outside a head (pipelined requests).
        http=http_protocol(settings.http, guard),
        h11_max_incomplete_event_size=MAX_HEAD_BYTES,
        access_log=False,
        log_level="warning",
        # A backstop only: the drain below ends the body reads at `grace` itself.
        timeout_graceful_shutdown=math.ceil(grace) + 1,
        proxy_headers=False,  # `served` above does it
    )
    drain: _BodyDrain = app.state.drain

    class _Server(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            # Bodies still arriving when the grace period ends are cut off and counted.
            drain.begin(grace)
            await super().shutdown(sockets=sockets)

        signalled = False

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            # Only the first stop signal acts, as for every command: Uvicorn's second SIGINT
            # forces the exit, which cut the grace period short and answered the bodies still
            # arriving 500 (tester T1), and its last signal named the stop.
            if not self.signalled:
                self.signalled = True
                super().handle_exit(sig, frame)

    server = _Server(config)
    # Bind first, so that "listening" is only said once it is true (and names the real port).
    sock = _listen(host, port, backlog=config.backlog)
    guard.cap = _fit_connection_cap(guard.cap)
    bound = sock.getsockname()
    shown = f"[{bound[0]}]" if sock.family == socket.AF_INET6 else bound[0]
    # The path as a report shows it: a secret pasted into it is masked (`shown_setting`).
    path = shown_setting("path", settings.path, held)
    print(f"webhooks: listening on http://{shown}:{bound[1]}{path}", flush=True)
    # Uvicorn drains on SIGINT/SIGTERM, then raises the signal again for the handler it found
    # installed. A stop is how a service ends, not a failure: that handler only notes it, so
    # the command exits 0 after the drain (not -15).
    stops: list[int] = []
    previous = _note_stop_signals(stops)
    quiet = _QuietCancelled()
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addFilter(quiet)
    try:
        server.run(sockets=[sock])
    finally:
        uvicorn_log.removeFilter(quiet)
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    stats = app.state.writer.stats()
    by = f" by {signal.Signals(stops[0]).name}" if stops else ""
    # (an outcome no delivery had is not listed: `0 dropped_records` said nothing, tester T8)
    outcomes = ", ".join(f"{n} {k}" for k, n in sorted(stats["outcomes"].items()) if n) or "none"
    print(f"webhooks: stopped{by}; deliveries answered: {outcomes}{guard.summary()}", flush=True)


class _QuietCancelled(logging.Filter):
    """Drop Uvicorn's traceback of a task it cancelled as it stopped.

    A request cancelled at the end of a stop's grace period is recorded (a `truncated` row),
    and Uvicorn says once how many it cancelled; a 40-line traceback for each says nothing
    more. A second Ctrl-C cancels the app's lifespan task too, whose traceback Starlette hands
    Uvicorn as text ("lifespan.shutdown.failed"): the stop is said in our own last line.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, asyncio.CancelledError):
            return False
        try:
            text = record.getMessage()
        except (TypeError, ValueError):  # arguments that do not fit: logging's own to report
            return True
        return not (text.startswith("Traceback") and text.rstrip().endswith("CancelledError"))


def _listen(host: str, port: int, *, backlog: int) -> socket.socket:
    """Return a listening TCP socket on host:port; ConfigError when it cannot be had."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
    except (OSError, OverflowError) as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        reason = "in use" if exc.errno == errno.EADDRINUSE else exc.strerror or str(exc)
        raise ConfigError(f"cannot listen on {host}:{port} ({reason})") from None
    sock.set_inheritable(True)
    return sock


def _note_stop_signals(stops: list[int]) -> dict[int, Any]:
    """Install handlers that record SIGINT/SIGTERM in `stops`; return the previous handlers."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {
        sig: signal.signal(sig, lambda signum, _frame: stops.append(signum))
        for sig in (signal.SIGINT, signal.SIGTERM)
    }


def check_callback_url(url: str) -> str:
    """Return `url` if it is an absolute http(s) URL with a host; else raise ConfigError.

    The Gateway would refuse anything else (400); saying so locally is clearer and exits 2.
    """
    return check_http_url(url, "callback URL", "e.g. https://hooks.example.com/webhooks/asg")


def register_webhook(
    base_url: str,
    api_key: Secret | str,
    callback_url: str,
    secret: Secret | str,
    *,
    events: Sequence[str] = ("task.settled",),
    timeout: float = 10.0,
    mask: Iterable[str | Secret | None] = (),
) -> dict[str, Any]:
    """Register `callback_url` with the Gateway (`POST /v1/webhooks`); return its answer.

    What the answer or an error quotes has the key, the secret and the other secrets in
    `mask` (give every secret the process holds: `AuditConfig.all_secrets()`) masked as `***`.
    Before anything is sent: ConfigError for a `callback_url` that is not an absolute http(s)
    URL with a host, TypeError/ValueError for an `api_key` or `secret` that is not one
    non-empty str or Secret.
    """
    import httpx

    api_key = Secret(_secret_key(api_key, "api_key").decode())
    secret = Secret(_secret_key(secret, "secret").decode())
    check_callback_url(callback_url)

    url = base_url.rstrip("/") + "/v1/webhooks"
    shown = display_url(url)
    # Everything a message could echo that must not be shown: the key, the secret, and the
    # user, password or query of either URL (an answer's body may repeat the request).
    hidden: list[str | Secret | None] = [api_key, secret, *mask]
    for raw in (url, callback_url):
        with contextlib.suppress(ValueError):
            parts = urlsplit(raw)
            hidden += [parts.password, parts.query]
            # a user name is a name, but some services take a token there
            # (`https://<token>@host`); a short one is no token, and masking it would garble
            # every word holding it (`a`: `t***sk.settled`; tester T5)
            if parts.username and len(parts.username) >= _TOKEN_NAME_CHARS:
                hidden.append(parts.username)
    ordered = sorted((h for h in hidden if h), key=_secret_length, reverse=True)

    def say(text: str) -> str:
        for raw in (url, base_url, callback_url):
            text = text.replace(raw, display_url(raw, ordered))
        return redact(text, ordered)

    try:
        answer = httpx.post(
            url,
            json={"callback_url": callback_url, "secret": secret.reveal(), "events": list(events)},
            headers={"Authorization": f"Bearer {api_key.reveal()}"},
            timeout=timeout,
        )
    except httpx.HTTPError as exc:
        raise ApiTransientError(f"POST {shown}: {type(exc).__name__}: {say(str(exc))}") from None
    if answer.status_code in (401, 403):
        raise AuthError(
            f"POST {shown}: the API key was refused ({answer.status_code})",
            status_code=answer.status_code,
        )
    if answer.status_code == 429 or answer.status_code >= 500:
        raise ApiTransientError(f"POST {shown}: answered {answer.status_code}; try again later")
    if answer.status_code not in (200, 201):
        # Masked whole, then cut: a secret straddling the cut is never half shown.
        excerpt = say(answer.text)
        excerpt = excerpt[:200] + ("..." if len(excerpt) > 200 else "")
        raise ApiStatusError(
            f"POST {shown}: answered {answer.status_code}: {excerpt}",
            status_code=answer.status_code,
        )
    try:
        # parsed, then each string masked: what is printed of it (its callback_url) may quote
        # the secret or the key, in any form (`redact`); masked before parsing, a short
        # password could break the JSON itself (`tr***e`: "not JSON")
        result = _masked_json(jsonload.loads(answer.text), say)
    except ValueError:
        raise ApiStatusError(
            f"POST {shown}: the answer is not JSON", status_code=answer.status_code
        ) from None
    if not isinstance(result, dict):
        raise ApiStatusError(
            f"POST {shown}: the answer is not a JSON object", status_code=answer.status_code
        )
    return result


# A URL's user name this long may be a token (masked); a shorter one is a name.
_TOKEN_NAME_CHARS: Final = 8


def _masked_json(value: Any, say: Callable[[str], str]) -> Any:
    """Return a parsed JSON value with `say` applied to every string in it, keys included."""
    if isinstance(value, str):
        return say(value)
    if isinstance(value, list):
        return [_masked_json(v, say) for v in value]
    if isinstance(value, dict):
        return {say(k): _masked_json(v, say) for k, v in value.items()}
    return value


def _secret_length(value: str | Secret | None) -> int:
    """Sort key: mask longer secrets first, so that one inside another is not half masked."""
    if isinstance(value, Secret):
        return len(value.reveal())
    return len(value or "")
