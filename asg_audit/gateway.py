"""An async client for the ASG Gateway that turns every answer into a typed outcome.

`GatewayClient.fetch_result(task_id)` never raises for what the network or the service does:
each answer is one of the outcome classes below, and raw httpx exceptions are translated here,
at this one choke point. It raises only for a task id that is not safe to put in a URL
(`InputError`). Task ids are validated (`asg_audit.model.is_safe_task_id`) and URL-encoded, so
an id such as `../admin` or one with `?`, `#` or `%2F` can never reach another path.

The API key travels only in the Authorization header; `redact` masks it (and any bearer token)
in every message this module builds, so no log line or error shows it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Final
from urllib.parse import quote

import httpx

from asg_audit.clock import Clock, SystemClock
from asg_audit.config import Secret
from asg_audit.errors import InputError
from asg_audit.model import is_safe_task_id

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "AuthRefused",
    "GatewayClient",
    "NotFound",
    "Outcome",
    "Pending",
    "RateLimited",
    "Ready",
    "ServerError",
    "TransportFailure",
    "UnexpectedStatus",
    "UnusableBody",
    "parse_retry_after",
    "redact",
    "result_path",
]

DEFAULT_TIMEOUT_S: Final = 10.0
_BEARER_RE = re.compile(r"(?i)(bearer\s+)[^\s'\",;]+")
_KEY_RE = re.compile(r"\bsk_(?:sandbox|live|test)_[A-Za-z0-9_]+")


def redact(text: str, secrets: Iterable[str | Secret | None] = ()) -> str:
    """Return `text` with the given secrets, bearer tokens and ASG-style keys masked."""
    for secret in secrets:
        value = secret.reveal() if isinstance(secret, Secret) else secret
        if value:
            text = text.replace(value, "***")
    text = _BEARER_RE.sub(r"\1***", text)
    return _KEY_RE.sub("***", text)


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
    """200 with a JSON object: `status` is its status field (settled, verified, ...)."""

    task_id: str
    origin: str
    body: bytes
    status: str | None
    http_status: int = 200


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
    """Any other status (400, 405, 3xx, ...): terminal for this request."""

    task_id: str
    origin: str
    http_status: int
    body: bytes


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


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Return the seconds a Retry-After header asks for (delta-seconds or an HTTP date).

    A past date gives 0; an unreadable value gives None. `now` is epoch seconds (the clock's,
    so a simulated server's dates compare with simulated time).
    """
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when: datetime = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def _error_message(body: bytes) -> str:
    """Return the `error` text of an error body (string or object form), else a short excerpt."""
    try:
        data = json.loads(body)
    except ValueError:
        return body[:200].decode("utf-8", "replace")
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, dict):
            return str(err.get("message") or err.get("code") or err)
        if err is not None:
            return str(err)
    return str(data)[:200]


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
    ) -> None:
        key = api_key if isinstance(api_key, Secret) else Secret(api_key or "")
        self._key = key
        self._clock = clock or SystemClock()
        headers = {"Accept": "application/json", "User-Agent": "asg-audit collector"}
        if key:
            headers["Authorization"] = f"Bearer {key.reveal()}"
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
        await self._client.aclose()

    def redact(self, text: str) -> str:
        """Return `text` with this client's key (and any bearer token) masked."""
        return redact(text, [self._key])

    async def fetch_result(self, task_id: str) -> Outcome:
        """Return the outcome of `GET /v1/tasks/{id}/result`; never raises for network faults."""
        path = result_path(task_id)
        origin = f"GET {path}"
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

    def _describe(self, exc: BaseException) -> str:
        return self.redact(f"{type(exc).__name__}: {exc}")

    def _classify(
        self, task_id: str, origin: str, code: int, body: bytes, headers: httpx.Headers
    ) -> Outcome:
        if code == 200:
            try:
                data = json.loads(body)
            except ValueError:
                return UnusableBody(task_id, origin, code, body, "invalid_json")
            if not isinstance(data, dict):
                return UnusableBody(task_id, origin, code, body, "not_object")
            status = data.get("status")
            return Ready(task_id, origin, body, status if isinstance(status, str) else None)
        if code == 202:
            return Pending(task_id, origin, body)
        if code == 404:
            return NotFound(task_id, origin, body)
        if code == 429:
            retry = parse_retry_after(headers.get("retry-after"), now=self._clock.now())
            return RateLimited(task_id, origin, retry)
        if code in (401, 403):
            return AuthRefused(task_id, origin, code, self.redact(_error_message(body)))
        if 500 <= code < 600:
            return ServerError(task_id, origin, code, self.redact(_error_message(body)))
        return UnexpectedStatus(task_id, origin, code, body)
