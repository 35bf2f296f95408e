"""An async client for the ASG Gateway that turns every answer into a typed outcome.

`GatewayClient.fetch_result(task_id)` never raises for what the network or the service does:
each answer is one of the outcome classes below, and raw httpx exceptions are translated here,
at this one choke point. It raises only for a task id that is not safe to put in a URL
(`InputError`). Task ids are validated (`asg_audit.model.is_safe_task_id`) and URL-encoded, so
an id such as `../admin` or one with `?`, `#` or `%2F` can never reach another path.

The API key travels only in the Authorization header; `redact` masks it (and any bearer token)
in every message this module builds, so no log line or error shows it. A Gateway (or a proxy)
that echoes the request's headers in an answer body would put the key in what the collector
stores (`observations.raw`, `error_message`, `rejects.raw`): every body is masked here, whatever
its status, before an outcome is built (`GatewayClient.mask_body`), so nothing downstream holds
the key. A body is searched for the key (a few byte-string checks) and copied only if it holds it.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, cast
from urllib.parse import quote, urlsplit

import httpx

from asg_audit import jsonload
from asg_audit.clock import Clock, SystemClock
from asg_audit.errors import InputError
from asg_audit.model import is_safe_task_id, printable
from asg_audit.ratelimit import parse_retry_after
from asg_audit.redaction import (
    Secret,
    check_http_url,
    clean_secret,
    data_secrets,
    display_url,
    mask_secrets_bytes,
    redact,
)

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "AuthRefused",
    "GatewayClient",
    "NotFound",
    "Outcome",
    "Pending",
    "RateLimited",
    "ReadHold",
    "Ready",
    "ServerError",
    "TransportFailure",
    "UnexpectedStatus",
    "UnusableBody",
    "display_url",
    "parse_retry_after",
    "redact",
    "result_path",
]

DEFAULT_TIMEOUT_S: Final = 10.0
_MAX_CACHED_PATHS: Final = 100_000


def result_path(task_id: str) -> str:
    """Return `/v1/tasks/<id>/result` for a safe id, URL-encoded; `InputError` otherwise."""
    if not isinstance(task_id, str) or not is_safe_task_id(task_id):
        shown = repr(task_id)[:80]
        raise InputError(f"unsafe task id {shown}: refusing to put it in a URL")
    return f"/v1/tasks/{quote(task_id, safe='')}/result"


# -- outcomes --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pending:
    """202: the task is still being labeled."""

    task_id: str
    origin: str
    body: bytes
    http_status: int = 202


@dataclass(frozen=True, slots=True)
class Ready:
    """200 with a JSON object: `status` is its status field (settled, verified, ...).

    `settled_at` is the text of `settlement.settled_at` (else `settled_at`) when it is a string:
    the collector's schedule may learn from it at once; the stored record is the normaliser's.
    """

    task_id: str
    origin: str
    body: bytes
    status: str | None
    http_status: int = 200
    settled_at: str | None = None


@dataclass(frozen=True, slots=True)
class NotFound:
    """404: unknown task (or not visible yet, or another tenant's)."""

    task_id: str
    origin: str
    body: bytes
    http_status: int = 404


@dataclass(frozen=True, slots=True)
class RateLimited:
    """429: `retry_after_s` from the Retry-After header (None when absent or unreadable)."""

    task_id: str
    origin: str
    retry_after_s: float | None
    http_status: int = 429


@dataclass(frozen=True, slots=True)
class ServerError:
    """5xx: worth retrying with backoff."""

    task_id: str
    origin: str
    http_status: int
    message: str


@dataclass(frozen=True, slots=True)
class AuthRefused:
    """401/403: the key was refused; the run stops."""

    task_id: str
    origin: str
    http_status: int
    message: str


@dataclass(frozen=True, slots=True)
class TransportFailure:
    """No usable HTTP answer: `kind` is timeout, connect, reset or protocol."""

    task_id: str
    origin: str
    kind: str
    message: str
    http_status: None = None


@dataclass(frozen=True, slots=True)
class UnusableBody:
    """An answer whose body cannot be used (truncated, not JSON, not an object): raw kept."""

    task_id: str
    origin: str
    http_status: int
    raw: bytes
    reason: str


@dataclass(frozen=True, slots=True)
class UnexpectedStatus:
    """Any other status (400, 405, 3xx, ...): terminal for this request.

    `location` is a redirect's Location header (user, password and query left out), or None.
    """

    task_id: str
    origin: str
    http_status: int
    body: bytes
    location: str | None = None


Outcome = (
    Pending
    | Ready
    | NotFound
    | RateLimited
    | ServerError
    | AuthRefused
    | TransportFailure
    | UnusableBody
    | UnexpectedStatus
)


def _error_message(body: bytes) -> str:
    """Return the `error` text of an error body (string or object form), else a short excerpt."""
    try:
        data = jsonload.loads(body)
    except ValueError:
        return body[:200].decode("utf-8", "replace")
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict):
            return str(err.get("message") or err.get("code") or err)
        if err is not None:
            return str(err)
    return str(data)[:200]


class ReadHold:
    """Answers that wait, unread, until the caller's next wake-up (fewer wake-ups a request).

    A request sent with a hold has its connection's reading paused after the request is
    written; `release` resumes them all. Each wake-up of an idle process costs tens of
    microseconds of CPU or more (a VM's much more), and an answer read as it arrives is one or
    two of them (uvicorn, for one, writes the head and the body separately): held answers are
    read during a wake-up the caller has anyway. The caller must release within a bounded time
    (the request timeout still runs while an answer is held).
    """

    __slots__ = ("_waiters", "active")

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[None]] = []
        # False while the caller cannot release (it waits on something else): answers are then
        # read as they arrive
        self.active = True

    def __len__(self) -> int:
        return len(self._waiters)

    async def wait(self) -> None:
        """Return once `release` is called (at once while the hold is not active)."""
        if not self.active:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        await waiter

    def release(self) -> None:
        """Let every held answer be read."""
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)


class GatewayClient:
    """One `httpx.AsyncClient` for the Gateway. Use as `async with GatewayClient(...) as gw:`."""

    def __init__(
        self,
        base_url: str,
        api_key: Secret | str | None,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_connections: int = 64,
        clock: Clock | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        mask: Iterable[Secret | str | None] = (),
    ) -> None:
        # `mask`: the process's other secrets (the webhook secrets, the WoC key:
        # `AuditConfig.all_secrets()`), masked in every answer as the API key is, since an
        # answer is stored and printed whichever secret it happens to echo.
        # as config checks base_url: an absolute http(s) URL that request paths can be appended
        # to (a user:pass@ would go as Basic auth in place of the Bearer key, and the Gateway
        # would blame the key; a query or fragment would hold every path); never shown
        check_http_url(
            base_url,
            "base_url",
            "set by ASG_BASE_URL or base_url in the config file, or GatewayClient's base_url",
            base=True,
        )
        raw = api_key.reveal() if isinstance(api_key, Secret) else api_key or ""
        # the same rule as the config's: no header can carry a CR or a non-ASCII key
        key = Secret(clean_secret(raw, "GatewayClient api_key"))
        self._key = key
        extra = (s.reveal() if isinstance(s, Secret) else s for s in mask)
        self._secrets: tuple[Secret, ...] = (key, *(Secret(s.strip()) for s in extra if s))
        # task id -> its validated, encoded path (a task is polled several times)
        self._paths: dict[str, str] = {}
        self._clock = clock or SystemClock()
        headers = {"Accept": "application/json", "User-Agent": "asg-audit collector"}
        if key:
            headers["Authorization"] = f"Bearer {key.reveal()}"
        # the hot path: a lean HTTP/1.1 keep-alive pool (httpx costs ~2 ms of CPU a request);
        # an injected transport (tests, proxies) goes through httpx
        self._fast: _KeepAlivePool | None = None
        if transport is None:
            self._fast = _KeepAlivePool.for_url(
                base_url, headers, timeout_s=timeout_s, max_connections=max_connections * 2
            )
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(timeout_s),
            limits=httpx.Limits(
                max_connections=max_connections * 2, max_keepalive_connections=max_connections * 2
            ),
            transport=transport,
            follow_redirects=False,
        )

    async def __aenter__(self) -> GatewayClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        if self._fast is not None:
            self._fast.close()
        await self._client.aclose()

    def redact(self, text: str) -> str:
        """Return `text` with this client's key, the secrets given as `mask` (and any bearer
        token) masked."""
        return redact(text, self._secrets)

    def mask_body(self, body: bytes) -> bytes:
        """Return `body` with this client's key and the secrets given as `mask` masked in any
        form they may be quoted in (as sent, JSON- or URL-encoded, HTML-escaped:
        `redaction.mask_secrets_bytes`): the same bytes, not a copy, when it holds none of
        them (the usual case: one search of one pattern for all of them)."""
        secrets = data_secrets(self._secrets)  # a short one would corrupt the data
        masked = mask_secrets_bytes(body, secrets)
        if masked is body:
            return body
        # then whatever `redact` masks besides (`Bearer <token>`, ASG keys); surrogateescape
        # gives back every byte that is not UTF-8 unchanged
        text = masked.decode("utf-8", "surrogateescape")
        return redact(text, secrets).encode("utf-8", "surrogateescape")

    async def fetch_result(self, task_id: str, hold: ReadHold | None = None) -> Outcome:
        """Return the outcome of `GET /v1/tasks/{id}/result`; never raises for network faults.

        With `hold`, the answer is read only once the hold is released (see `ReadHold`); an
        injected transport (httpx) ignores it.
        """
        path = self._paths.get(task_id) if isinstance(task_id, str) else None
        if path is None:
            path = result_path(task_id)  # raises InputError for an unsafe id: never cached
            if len(self._paths) >= _MAX_CACHED_PATHS:
                self._paths.clear()
            self._paths[task_id] = path
        origin = f"GET {path}"
        if self._fast is not None:
            return await self._fetch_fast(task_id, path, origin, hold)
        try:
            response = await self._client.get(path)
            body = response.content
        except httpx.TimeoutException as exc:
            return TransportFailure(task_id, origin, "timeout", self._describe(exc))
        except httpx.ConnectError as exc:
            return TransportFailure(task_id, origin, "connect", self._describe(exc))
        except (httpx.ReadError, httpx.WriteError, httpx.CloseError) as exc:
            return TransportFailure(task_id, origin, "reset", self._describe(exc))
        except httpx.HTTPError as exc:  # RemoteProtocolError (dropped mid-body) and the rest
            return TransportFailure(task_id, origin, "protocol", self._describe(exc))
        except OSError as exc:
            return TransportFailure(task_id, origin, "reset", self._describe(exc))
        return self._classify(task_id, origin, response.status_code, body, response.headers)

    async def _fetch_fast(
        self, task_id: str, path: str, origin: str, hold: ReadHold | None
    ) -> Outcome:
        assert self._fast is not None
        try:
            code, headers, body = await self._fast.get(path, hold)
        except TimeoutError as exc:
            return TransportFailure(task_id, origin, "timeout", self._describe(exc))
        except _ConnectFailedError as exc:
            return TransportFailure(
                task_id, origin, "connect", self._describe(exc.__cause__ or exc)
            )
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, _ProtocolError) as exc:
            return TransportFailure(task_id, origin, "protocol", self._describe(exc))
        except (OSError, EOFError) as exc:
            return TransportFailure(task_id, origin, "reset", self._describe(exc))
        return self._classify(task_id, origin, code, body, headers)

    def _describe(self, exc: BaseException) -> str:
        # an exception's text may quote the server's bytes (a bad status line): one line,
        # the secrets masked first, then cut short (a secret cut in two would not be found)
        text = printable(self.redact(f"{type(exc).__name__}: {exc}"), one_line=True)
        return text if len(text) <= _MAX_DESCRIBED else text[: _MAX_DESCRIBED - 1] + "…"

    def _message(self, body: bytes) -> str:
        """Return an error answer's text for a message: masked, on one line, every control
        character and bidi override escaped (it is the Gateway's, or a proxy's, text)."""
        return printable(self.redact(_error_message(body)), one_line=True)

    def _classify(
        self, task_id: str, origin: str, code: int, body: bytes, headers: Mapping[str, str]
    ) -> Outcome:
        # the one place a body enters: masked before any outcome (and so any store) holds it
        body = self.mask_body(body)
        if code == 200:
            # the normaliser's order and reasons: not UTF-8 (a gzip body the server did not
            # label), then not JSON (too deep for it counts: the normaliser refuses it too)
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                return UnusableBody(task_id, origin, code, body, "invalid_utf8")
            if jsonload.nesting_depth_over(body) is not None:
                return UnusableBody(task_id, origin, code, body, "invalid_json")
            try:
                data = jsonload.loads(text)
            except ValueError:
                return UnusableBody(task_id, origin, code, body, "invalid_json")
            if not isinstance(data, dict):
                return UnusableBody(task_id, origin, code, body, "not_object")
            status = data.get("status")
            settlement = data.get("settlement")
            settled_at = settlement.get("settled_at") if isinstance(settlement, dict) else None
            if settled_at is None:  # the normaliser's order: settlement.settled_at, settled_at
                settled_at = data.get("settled_at")
            return Ready(
                task_id,
                origin,
                body,
                status if isinstance(status, str) else None,
                settled_at=settled_at if isinstance(settled_at, str) else None,
            )
        if code == 202:
            return Pending(task_id, origin, body)
        if code == 404:
            return NotFound(task_id, origin, body)
        if code == 429:
            retry = parse_retry_after(headers.get("retry-after"), now=self._clock.now())
            return RateLimited(task_id, origin, retry)
        if code in (401, 403):
            return AuthRefused(task_id, origin, code, self._message(body))
        if 500 <= code < 600:
            return ServerError(task_id, origin, code, self._message(body))
        location = headers.get("location")
        shown = None
        if location is not None:
            # exact secrets masked before the generic key pattern, and before the cut
            shown = printable(display_url(location, self._secrets)[:200], one_line=True)
        return UnexpectedStatus(task_id, origin, code, body, shown)


# -- a lean HTTP/1.1 keep-alive client for GET ----------------------------------------------------


class _ProtocolError(Exception):
    """The server's answer is not HTTP/1.1 we can read (bad status line, bad framing)."""


class _StaleConnectionError(Exception):
    """A kept-alive connection was closed by the server before it answered anything."""


class _ConnectFailedError(Exception):
    """The TCP (or TLS) connection could not be opened."""


_Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]
_MAX_HEAD = 64 * 1024
# the longest description of a transport failure kept (cut after masking)
_MAX_DESCRIBED = 300
# A result or error answer is well under 10 kB: a larger body is refused unread (a broken or
# hostile server cannot make the collector buffer it).
MAX_ANSWER_BYTES: Final = 4 * 1024 * 1024
# 1xx interim answers read past before the final answer; more is a broken or hostile server
_MAX_INTERIM: Final = 16


class _KeepAlivePool:
    """GET over persistent HTTP/1.1 connections: one request per connection at a time.

    Only what the Gateway needs: Content-Length, chunked or close-delimited bodies; 1xx interim
    answers (100, 103) are read past to the final answer. A connection goes back to the pool
    only when its answer was read to the end, framed unambiguously, with nothing unread after
    it; otherwise it is closed (a close-delimited body, `Connection: close`, HTTP/1.0, a 204 or
    304 announcing a body, both Transfer-Encoding and Content-Length), so no answer can be read
    as another request's. A request on a reused connection the server has meanwhile closed is
    sent again once on a new one (GET is idempotent). Every exception is translated by
    `GatewayClient._fetch_fast`.
    """

    def __init__(
        self,
        host: str,
        port: int,
        prefix: str,
        head: bytes,
        *,
        tls: ssl.SSLContext | None,
        timeout_s: float,
        max_connections: int,
    ) -> None:
        self.host, self.port, self.prefix, self.head = host, port, prefix, head
        self.tls = tls
        self.timeout_s = timeout_s
        self.idle: list[_Conn] = []
        self.slots = asyncio.Semaphore(max_connections)
        self.opened = 0  # connections opened (reuse shows as few of them)

    @classmethod
    def for_url(
        cls, base_url: str, headers: Mapping[str, str], *, timeout_s: float, max_connections: int
    ) -> _KeepAlivePool | None:
        """Return a pool for an http(s) base URL, None for anything else."""
        parts = urlsplit(base_url.rstrip("/"))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return None  # httpx reports it, request by request
        tls = ssl.create_default_context() if parts.scheme == "https" else None
        port = parts.port or (443 if tls else 80)
        netloc = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
        lines = [f"Host: {netloc}"] + [f"{k}: {v}" for k, v in headers.items()]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return cls(
            parts.hostname,
            port,
            parts.path,
            head,
            tls=tls,
            timeout_s=timeout_s,
            max_connections=max_connections,
        )

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()
        self.idle.clear()

    async def get(
        self, path: str, hold: ReadHold | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        """Return (status, lower-cased headers, body) of `GET prefix + path`.

        With `hold`, the answer is left unread until the hold is released.
        """
        request = b"GET " + (self.prefix + path).encode("ascii") + b" HTTP/1.1\r\n" + self.head
        async with self.slots:
            async with asyncio.timeout(self.timeout_s):
                while self.idle:
                    conn = self.idle.pop()
                    if conn[0].at_eof() or _buffered(conn[0]):
                        # closed, or sent bytes nobody asked for while idle: not reusable
                        conn[1].close()
                        continue
                    try:
                        return await self._exchange(conn, request, hold, reused=True)
                    except _StaleConnectionError:
                        continue  # closed by the server while idle: not an answer, ask again
                try:
                    conn = await asyncio.open_connection(
                        self.host, self.port, ssl=self.tls, limit=_MAX_HEAD
                    )
                except OSError as exc:
                    raise _ConnectFailedError(f"cannot connect to {self.host}:{self.port}") from exc
                self.opened += 1
                return await self._exchange(conn, request, hold)

    async def _exchange(
        self, conn: _Conn, request: bytes, hold: ReadHold | None, *, reused: bool = False
    ) -> tuple[int, dict[str, str], bytes]:
        reader, writer = conn
        try:
            writer.write(request)
            if hold is not None and hold.active:
                transport = cast(asyncio.Transport, writer.transport)
                transport.pause_reading()
                try:
                    await hold.wait()
                finally:
                    if not transport.is_closing():
                        transport.resume_reading()
            code, headers, keep = await self._final_head(reader, reused=reused)
            body, framed = await _read_body(reader, code, headers)
            # back to the pool only when this answer was read to its end, framed one way only,
            # and nothing else came after it: anything left would be read as the next
            # request's answer (another task's)
            keep = keep and framed and not _buffered(reader)
        except BaseException:
            writer.close()
            raise
        if keep:
            self.idle.append(conn)
        else:
            writer.close()
        return code, headers, body

    async def _final_head(
        self, reader: asyncio.StreamReader, *, reused: bool
    ) -> tuple[int, dict[str, str], bool]:
        """Return (status, headers, keep-alive) of the final answer, skipping 1xx interim ones.

        RFC 9110 section 15.2: a client reads past 100 Continue, 103 Early Hints and any other
        1xx to the final answer (taking a 1xx for the answer left the real one unread, to be
        read as the next request's). 101 Switching Protocols was not asked for: the connection
        is no longer HTTP, a protocol error (the connection is closed).
        """
        for interim in range(_MAX_INTERIM + 1):
            try:
                raw = await reader.readuntil(b"\r\n\r\n")
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                nothing = not getattr(exc, "partial", b"")
                if reused and nothing and interim == 0:
                    raise _StaleConnectionError from exc
                raise
            code, headers, keep = _parse_head(raw)
            if code == 101:
                raise _ProtocolError("answered 101 Switching Protocols, which was not asked for")
            if not 100 <= code < 200:
                return code, headers, keep
        raise _ProtocolError(f"more than {_MAX_INTERIM} interim (1xx) answers before an answer")


def _parse_head(raw: bytes) -> tuple[int, dict[str, str], bool]:
    """Return (status, lower-cased headers, keep-alive) of a response head."""
    lines = raw.decode("latin-1").split("\r\n")
    status = lines[0].split(" ", 2)
    if len(status) < 2 or not status[0].startswith("HTTP/1.") or not status[1].isdigit():
        # whole (the head is at most _MAX_HEAD): `_describe` masks the secrets, then cuts
        raise _ProtocolError(f"bad status line {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise _ProtocolError("bad header line")
        name, value = name.strip().lower(), value.strip()
        # a repeated header is one comma-separated list (RFC 9110 section 5.3): two
        # Content-Lengths then show as "5, 7", refused, rather than the last one silently used
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    close = "close" in tokens or status[0] == "HTTP/1.0"
    return int(status[1]), headers, not close


async def _read_body(
    reader: asyncio.StreamReader, code: int, headers: Mapping[str, str]
) -> tuple[bytes, bool]:
    """Return (body, framed) of a final answer whose head was read.

    `framed` is False when the connection must not carry another request: a body delimited by
    the connection's close, or framing that a server and a proxy could read two ways (RFC 9112
    section 6.3): both Transfer-Encoding and Content-Length, a 204 or 304 (which has no body)
    announcing one. A Content-Length that is not one whole number (`-1`, `+5`, two different
    values) is a protocol error.
    """
    te = headers.get("transfer-encoding")
    cl = headers.get("content-length")
    if code in (204, 304):
        # no body, whatever the headers say; bytes sent anyway would be the next answer's
        announced = te is not None or (cl is not None and cl.strip() not in ("", "0"))
        return b"", not announced
    if te is not None:
        if te.strip().lower() == "chunked":
            # Transfer-Encoding wins over a Content-Length (RFC 9112 section 6.3)
            return await _read_chunked(reader), cl is None
        return await _read_to_eof(reader), False  # another coding: delimited by the close
    if cl is not None:
        length = _content_length(cl)
        if length > MAX_ANSWER_BYTES:
            raise _ProtocolError(_too_large(f"{length}-byte"))
        return (await reader.readexactly(length) if length > 0 else b""), True
    return await _read_to_eof(reader), False


def _content_length(value: str) -> int:
    """Return a Content-Length's value: digits only; repeated values must all be the same."""
    values = {v.strip() for v in value.split(",")}
    if len(values) != 1:
        raise _ProtocolError("bad Content-Length: different values")
    (text,) = values
    if not (text.isascii() and text.isdigit()):
        raise _ProtocolError(f"bad Content-Length {text!r}")
    return int(text)


def _buffered(reader: asyncio.StreamReader) -> bool:
    """Whether bytes the server sent wait unread on the connection (past the answer read).

    `StreamReader` has no public way to ask; its buffer is `_buffer` (CPython 3.8 to 3.13). A
    reader without one counts as clean: the checks of the answer's framing still hold.
    """
    return bool(getattr(reader, "_buffer", b""))


def _too_large(what: str) -> str:
    return f"{what} answer body is over the {MAX_ANSWER_BYTES:,}-byte limit; not read"


async def _read_to_eof(reader: asyncio.StreamReader) -> bytes:
    """Return a close-delimited body, refusing one over MAX_ANSWER_BYTES."""
    parts: list[bytes] = []
    size = 0
    while chunk := await reader.read(65536):
        size += len(chunk)
        if size > MAX_ANSWER_BYTES:
            raise _ProtocolError(_too_large("a close-delimited"))
        parts.append(chunk)
    return b"".join(parts)


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    total = 0
    while True:
        size_line = await reader.readuntil(b"\r\n")
        try:
            size = int(size_line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise _ProtocolError("bad chunk size") from None
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return b"".join(parts)
        total += size
        if total > MAX_ANSWER_BYTES:
            raise _ProtocolError(_too_large("a chunked"))
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)
