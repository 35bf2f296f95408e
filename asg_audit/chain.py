"""The chain index client (WhatsOnChain-compatible); `verify_chain` (in `chain_verify`) uses it.

The client sends bulk calls of at most 20 txids, paces itself to its own request rate
(default 3 requests/s, WoC's free tier) shared by its worker threads, and waits out a 429
(`Retry-After` as a floor) before asking again. Retry-After is read by the collector's parser
(`ratelimit.parse_retry_after`: seconds or an HTTP date); a wait longer than
`MAX_RETRY_AFTER_S` (300 s; `inf`, `1e999`, a date years away), alone or added to the 429
waits one request already had, is not waited: the call raises `ChainRateLimitedError` (exit 3),
and no request is sent until that time has passed. The key goes under both documented headers,
`Authorization` and `woc-api-key`, and is never logged or put in an error message; a note that
quotes the index's answer (stored in `chain_txs.note`) has it masked, should the index echo it.

One `POST /txs` per 20 txids gives the block fields and the decoded transaction. The decoded
JSON carries every serialised field, so the raw bytes are rebuilt and hashed: an answer whose
bytes do not hash to the txid that was asked for is refused (`IndexIntegrityError`, the txid
is stored as `refused` and asked again next run). When a decoded answer cannot be rebuilt
(a truncated script), its raw hex is fetched with `POST /txs/hex` and checked the same way.

Answers are paired with txids by the txid each one names, never by position (the spec does
not promise the request order). An answer that names no txid, or one that was not asked for, is
evidence about nothing: the txids left without an answer are asked once more, then `refused`.
Only an explicit `{txid, "error": "unknown"}` makes a txid `unknown`. Every block field is
checked before it is used (the hash is 64 hex characters; height and confirmations are
non-negative int64; the block time fits a block header, from the genesis block to 2106): an
answer that fails is `refused` with a note naming the field, never `confirmed`.

`chain_txs` is a cache: transactions confirmed to the configured depth are never fetched
again; unconfirmed and refused ones, and those stored as confirmed below a depth raised since,
are checked again on the next run; unknown ones once their back-off has run out
(`chain_verify.unknown_recheck_delay`). A changed block hash (a reorg) is kept in
`prev_block_hash`.

`ChainClient.stop()` ends the retries at once: the pauses between attempts wait on an event,
so a stop (SIGTERM, Ctrl-C) while the index is failing takes at most the request in flight.
A URL that can never work (no http(s) scheme, no host) is a `ConfigError`, not a glitch.
A 5xx, a 429 or a lost connection is asked again up to `max_retries` times (pauses of 0.5 s,
doubling, at most 30 s: about 90 s at the default 8); the `ApiTransientError` after the last
names the index (`display_url`: no user, password or query) and what every attempt got
(`503 Service Unavailable on every request (POST /txs, 9 attempts in 92 s)`).
"""

from __future__ import annotations

import dataclasses
import math
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final

import httpx

from asg_audit import jsonload
from asg_audit.apitrust import UNREACHABLE_AFTER_S, UNREACHABLE_MIN_FAILURES
from asg_audit.config import AuditConfig
from asg_audit.errors import (
    ApiStatusError,
    ApiTransientError,
    AuthError,
    ConfigError,
    IncompleteRunError,
)
from asg_audit.model import printable
from asg_audit.ratelimit import parse_retry_after
from asg_audit.rawtx import (
    ParsedTx,
    RawTxError,
    parse_raw_tx,
    serialise_decoded_tx,
)
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
    "DEFAULT_CHAIN_RPS",
    "MAX_BULK_TXIDS",
    "MAX_RETRY_AFTER_S",
    "ChainClient",
    "ChainRateLimitedError",
    "ChainStoppedError",
    "ChainTx",
    "IndexIntegrityError",
    "VerifySummary",
    "chain_client_from_config",
    "check_index_answer",
    "configured_depth",
    "fee_coverage",
    "fetch_parent_fees",
    "print_findings",
    "reconciliation_findings",
    "report_exit_code",
    "verify_chain",
]

MAX_BULK_TXIDS: Final = 20
DEFAULT_CHAIN_RPS: Final = 3.0
DEFAULT_CONCURRENCY: Final = 4
DEFAULT_CONFIRMATIONS: Final = 1
DEFAULT_MAX_RETRIES: Final = 8
DEFAULT_TIMEOUT_S: Final = 30.0
# The longest a 429 is waited out (its Retry-After, or those of one request's 429s added up):
# the index's per-second limits ask for a second or two; minutes mean a spent quota, and
# waiting longer would hold the store's lock (and an `audit` job) for as long.
MAX_RETRY_AFTER_S: Final = 300.0
# a Retry-After absent or unreadable (NaN, garbage) waits this long, as before
_RETRY_AFTER_DEFAULT_S: Final = 1.0
# Pace a hair under the limit: arrival jitter must not put one request too many in a window.
_RATE_MARGIN: Final = 0.99
_CHAIN_URL_HINT: Final = "for example https://api.whatsonchain.com/v1/bsv/main"
# A block's time is the header's 4-byte nTime, and no block is older than the genesis block
# (2009-01-03 18:15:05 UTC): anything outside is not a block time.
GENESIS_BLOCK_TIME: Final = 1_231_006_505
MAX_BLOCK_TIME: Final = 2**32 - 1
_INT64_MAX: Final = 2**63 - 1
_HASH_RE: Final = re.compile(r"[0-9a-fA-F]{64}")
# The error text of an answer that says "this index does not know the txid".
_NOT_FOUND_ERRORS: Final = frozenset({"unknown", "not found"})


class IndexIntegrityError(ApiStatusError):
    """The chain index answered bytes that do not hash to the txid that was asked for."""


class ChainStoppedError(IncompleteRunError):
    """The client was stopped (`ChainClient.stop`) before the call could finish."""


class ChainRateLimitedError(ChainStoppedError):
    """The index answered 429 with a Retry-After longer than the client waits: it stopped.

    A stop like `ChainClient.stop()`: what was fetched before is kept, and the command exits
    3. `retry_at` is the epoch time the index named (None when it named none a clock can show:
    `inf`, beyond the year 9999).
    """

    def __init__(self, message: str, *, retry_at: float | None) -> None:
        super().__init__(message)
        self.retry_at = retry_at


class _BadFieldError(ValueError):
    """A block field of an index answer has the wrong type or is out of range."""


@dataclass(frozen=True, slots=True)
class ChainTx:
    """What the index told us about one txid: status, block fields and the parsed transaction."""

    txid: str
    status: str  # confirmed | unconfirmed | unknown | refused
    block_hash: str | None = None
    block_height: int | None = None
    block_time: datetime | None = None
    confirmations: int | None = None
    parsed: ParsedTx | None = None
    raw_hex: str | None = None
    note: str | None = None


class _Pacer:
    """Keeps request starts under `rps` in every window of one second, across threads.

    At most `k = floor(rps)` starts in any `k / rps` seconds (a hair longer, see
    `_RATE_MARGIN`): the rule every windowed limiter (fixed or sliding) accepts. It is checked
    against the starts as they really happened, so a late wake-up (scheduler, GIL) is neither
    squeezed against the next request (a 429) nor carried over as lost time. A 429 pauses
    everyone.
    """

    def __init__(
        self,
        rps: float,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], None],
        stopped: threading.Event,
    ):
        if rps <= 0:
            raise ConfigError("chain.rps must be positive")
        self.interval = 1.0 / (rps * _RATE_MARGIN)
        self._k = max(1, int(rps))
        self._window = self._k * self.interval
        self._starts: deque[float] = deque(maxlen=self._k)
        self._clock, self._sleep, self._stopped = clock, sleep, stopped
        self._not_before = clock()
        self._lock = threading.Lock()

    def wait(self) -> None:
        """Return when the next request may start; raise ChainStoppedError once stopped."""
        with self._lock:  # sleeping here keeps the starts in order
            while True:
                if self._stopped.is_set():
                    raise ChainStoppedError("chain index client stopped")
                now = self._clock()
                ready = self._not_before
                if len(self._starts) == self._k:
                    ready = max(ready, self._starts[0] + self._window)
                if now >= ready:
                    break
                self._sleep(ready - now)
            self._starts.append(now)

    def pause(self, seconds: float) -> None:
        self._not_before = max(self._not_before, self._clock() + seconds)


class ChainClient:
    """A WhatsOnChain-compatible index client: bulk, paced, 429-aware. Safe across threads."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: Secret | None = None,
        rps: float = DEFAULT_CHAIN_RPS,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        max_retry_after_s: float = MAX_RETRY_AFTER_S,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] | None = None,
        transport: httpx.BaseTransport | None = None,
        mask: Iterable[Secret | str | None] = (),
    ) -> None:
        # `mask`: the process's other secrets (the API key, the webhook secrets:
        # `AuditConfig.all_secrets()`), masked in every answer as the WoC key is: an answer is
        # stored (`chain_txs.note`) and printed whichever secret it happens to echo.
        # a base, as config checks chain_url: a user:pass@ would go as Basic auth in place of
        # the WoC key's headers, and the paths would be appended inside a query or fragment
        check_http_url(base_url, "chain_url", _CHAIN_URL_HINT, base=True)
        headers = {"Accept": "application/json", "User-Agent": "asg-audit"}
        self._secrets: tuple[Secret, ...] = ()
        if api_key:
            # AuditConfig cleaned the key; one a header cannot carry fails here (naming the
            # setting, never the value), not as an httpx error quoting it
            key = clean_secret(api_key.reveal(), "WOC_API_KEY")
            self._secrets = (api_key, Secret(key))
            # WoC documents both header names (newer and older); send both.
            headers["Authorization"] = key
            headers["woc-api-key"] = key
        extra = (s.reveal() if isinstance(s, Secret) else s for s in mask)
        self._secrets += tuple(Secret(s.strip()) for s in extra if s)
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        # the index as messages name it: no user, password or query
        self.where = display_url(self.base_url, self._secrets)
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout_s, transport=transport
        )
        self._stopped = threading.Event()
        # By default a pause waits on the stop event, so `stop()` cuts it short.
        self._pacer = _Pacer(rps, clock=clock, sleep=sleep or self._pause, stopped=self._stopped)
        self._clock = clock
        self.max_retries = max_retries
        self.max_retry_after_s = max_retry_after_s
        # epoch seconds (HTTP dates in Retry-After); `clock` may be monotonic or simulated
        self._wall_clock = wall_clock
        # set by a Retry-After too long to wait: every call raises it until that time
        self._refused: ChainRateLimitedError | None = None
        self._count_lock = threading.Lock()
        self.requests = 0
        self.throttled = 0
        # whether the index ever answered (any HTTP status), and since when it has not
        self._answered = False
        self._unanswered = 0  # failures with no answer yet, the first at `_unanswered_since`
        self._unanswered_since = 0.0

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _pause(self, seconds: float) -> None:
        self._stopped.wait(seconds)

    def stop(self) -> None:
        """Make every call, in any thread, give up at its next pause or attempt.

        Calls then raise ChainStoppedError; a request already in flight ends by itself (at most
        `timeout_s`). Safe to call from any thread.
        """
        self._stopped.set()

    def resume(self) -> None:
        """Let calls run again after `stop()`."""
        self._stopped.clear()

    @property
    def stopped(self) -> bool:
        """Whether `stop()` was called (and not undone by `resume()`)."""
        return self._stopped.is_set()

    def __enter__(self) -> ChainClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ---------------------------------------------------------------------------

    def _request(self, method: str, path: str, *, json: Any = None) -> httpx.Response:
        waited_429 = 0.0  # this request's Retry-After waits so far
        got: list[str] = []  # what each attempt got, for the error once none was usable
        started = self._clock()
        for attempt in range(self.max_retries + 1):
            self._check_refused()
            self._pacer.wait()
            self._check_refused()
            with self._count_lock:
                self.requests += 1
            try:
                resp = self._http.request(method, path, json=json)
            except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
                # Asking again cannot help: the URL itself is wrong.
                raise ConfigError(
                    redact(
                        f"chain index URL {self.where} cannot be used: {exc}",
                        self._secrets,
                    )
                ) from None
            except httpx.TransportError as exc:
                # An error may quote a header (an illegal value): the key is masked.
                self._check_reachable(exc)
                got.append(type(exc).__name__)
                if attempt == self.max_retries:
                    raise self._gave_up(method, path, got, started, last=exc) from exc
                self._pacer.pause(min(30.0, 0.5 * 2**attempt))
                continue
            self._answered = True
            if resp.status_code == 429:
                with self._count_lock:
                    self.throttled += 1
                got.append(_status_text(resp.status_code))
                wait = self._retry_after(resp, waited_429)
                waited_429 += wait
                self._pacer.pause(wait + self._pacer.interval)
                if attempt == self.max_retries:
                    raise self._gave_up(method, path, got, started)
                continue
            if resp.status_code >= 500:
                got.append(_status_text(resp.status_code))
                if attempt == self.max_retries:
                    raise self._gave_up(method, path, got, started)
                self._pacer.pause(min(30.0, 0.5 * 2**attempt))
                continue
            if resp.status_code in (401, 403):
                raise AuthError(
                    f"the chain index at {self.where} refused the key"
                    f" ({resp.status_code}); check WOC_API_KEY",
                    status_code=resp.status_code,
                )
            return resp
        raise AssertionError("unreachable")  # pragma: no cover

    def _gave_up(
        self,
        method: str,
        path: str,
        got: Sequence[str],
        started: float,
        *,
        last: httpx.TransportError | None = None,
    ) -> ApiTransientError:
        """Return the error of a request no attempt of which had a usable answer.

        It names the index as messages show URLs (`display_url`: no user, password or query),
        the request, and what the attempts got (`503 Service Unavailable on every request`),
        how many there were and over how long: an index answering 503 to everything is retried
        `max_retries` times (about 90 s at the default 8), and the error must say where and why.
        """
        tries = (
            f"{method} {path}, {_plural(len(got), 'attempt')} in {self._clock() - started:.0f} s"
        )
        kinds = Counter(got)
        if len(kinds) == 1 and last is None:
            what = f"answered {got[0]} on every request ({tries})"
        elif (
            len(kinds) == 1
            and isinstance(last, httpx.TimeoutException)
            and not isinstance(last, httpx.ConnectTimeout)
        ):
            # reached (the connection was accepted, or the request sent), but too slow
            what = (
                f"did not answer within {self.timeout_s:g} s: {got[0]} on every request ({tries})"
            )
        elif len(kinds) == 1:
            what = f"could not be reached: {got[0]} on every request ({tries})"
        else:
            seen = ", ".join(f"{kind} ({n})" for kind, n in kinds.items())
            what = f"gave no usable answer: {seen} ({tries})"
        if last is not None and str(last):
            # masked, then cut (a secret cut in two would no longer be found)
            last_text = printable(redact(str(last), self._secrets), one_line=True)[:200]
            what += f"; last: {last_text}"
        return ApiTransientError(
            redact(
                f"the chain index at {self.where} {what}; run verify-chain again later",
                self._secrets,
            )
        )

    def _check_reachable(self, exc: httpx.TransportError) -> None:
        """Raise ApiTransientError once an index that never answered has had its chance.

        Retrying each request up to `max_retries` times with its full timeout held a store for
        minutes per batch against an index that accepts connections and never answers (or is
        not there): as `collect` does, the run stops after `UNREACHABLE_MIN_FAILURES` requests
        over `UNREACHABLE_AFTER_S` seconds with no answer at all.
        """
        if self._answered:
            return
        with self._count_lock:
            now = time.monotonic()
            if not self._unanswered:
                self._unanswered_since = now
            self._unanswered += 1
            failures, waited = self._unanswered, now - self._unanswered_since
        if failures >= UNREACHABLE_MIN_FAILURES and waited >= UNREACHABLE_AFTER_S:
            last = redact(f"{type(exc).__name__}: {exc}", self._secrets)
            if isinstance(exc, httpx.TimeoutException) and not isinstance(
                exc, httpx.ConnectTimeout
            ):
                # reached (the connection was accepted, or the request sent), but too slow
                raise ApiTransientError(
                    f"the chain index at {self.where} did not answer within"
                    f" {self.timeout_s:g} s: no answer to {failures:,} requests in"
                    f" {waited:.0f} s (last: {printable(last)}); run verify-chain again later"
                ) from exc
            raise ApiTransientError(
                f"cannot reach the chain index at {self.where}: no answer to"
                f" {failures:,} requests in {waited:.0f} s (last: {printable(last)}); check"
                " ASG_CHAIN_URL and the network"
            ) from exc

    def _retry_after(self, resp: httpx.Response, waited: float) -> float:
        """Return how long to wait after a 429; raise ChainRateLimitedError (and refuse every
        call until then) when it, added to this request's earlier 429 waits, is longer than
        `max_retry_after_s`."""
        raw = resp.headers.get("Retry-After")
        now = self._wall_clock()
        asked = parse_retry_after(raw, now=now)
        if asked is None:
            return _RETRY_AFTER_DEFAULT_S
        if asked + waited <= self.max_retry_after_s:
            return asked
        retry_at = now + asked if asked < _MAX_SHOWN_WAIT_S else None
        shown = f"Retry-After: {printable(redact(str(raw), self._secrets), one_line=True)[:60]}"
        if asked <= self.max_retry_after_s:
            why = f"429s to one request asking for {_seconds_text(asked + waited)} in all ({shown})"
        else:
            why = f"429 with {shown} ({_seconds_text(asked)})"
        again = _utc_text(retry_at)
        error = ChainRateLimitedError(
            f"verify-chain stopped: the chain index at {self.where} answered"
            f" {why}, longer than the {_seconds_text(self.max_retry_after_s)} it waits; what"
            " was verified is kept; run verify-chain again "
            + (f"after {again}" if again is not None else "later"),
            retry_at=retry_at,
        )
        with self._count_lock:
            # the first refusal stands: a later 429 of another thread does not shorten it
            if self._refused is None:
                self._refused = error
        raise error

    def _check_refused(self) -> None:
        """Raise the refusal a too-long Retry-After set, until the time it named has passed."""
        refused = self._refused
        if refused is None:
            return
        if refused.retry_at is not None and self._wall_clock() >= refused.retry_at:
            with self._count_lock:
                self._refused = None
            return
        raise ChainRateLimitedError(str(refused), retry_at=refused.retry_at)

    def _bulk(self, path: str, txids: Sequence[str]) -> list[dict[str, Any]]:
        if len(txids) > MAX_BULK_TXIDS:
            raise ValueError(f"at most {MAX_BULK_TXIDS} txids per bulk call")
        for attempt in range(self.max_retries + 1):
            resp = self._request("POST", path, json={"txids": list(txids)})
            if resp.status_code != 200:
                raise ApiStatusError(
                    f"the chain index at {self.where} answered"
                    f" {_status_text(resp.status_code)} to POST {path}",
                    status_code=resp.status_code,
                )
            try:
                body = jsonload.loads(self._mask_body(resp.content))
                break
            except ValueError:
                # A truncated or garbled 200 is a transport fault: ask again.
                if attempt == self.max_retries:
                    raise ApiTransientError(
                        f"the chain index at {self.where} answered POST {path} with a body that"
                        f" is not JSON ({_plural(attempt + 1, 'attempt')})"
                    ) from None
                self._pacer.pause(min(30.0, 0.5 * 2**attempt))
        if not isinstance(body, list):
            raise ApiStatusError(
                f"the chain index at {self.where} answered POST {path} with JSON that is not a list"
            )
        return [item for item in body if isinstance(item, dict)]

    # -- calls -------------------------------------------------------------------------------

    def decoded_txs(self, txids: Sequence[str]) -> list[dict[str, Any]]:
        """Return `POST /txs` answers (decoded transactions or `{txid, error}`), <= 20 txids."""
        return self._bulk("/txs", txids)

    def raw_txs(self, txids: Sequence[str]) -> list[dict[str, Any]]:
        """Return `POST /txs/hex` answers (`{txid, hex}` or `{txid, error}`), <= 20 txids."""
        return self._bulk("/txs/hex", txids)

    def tx_statuses(self, txids: Sequence[str]) -> list[dict[str, Any]]:
        """Return `POST /txs/status` answers (block fields, mempool or unknown), <= 20 txids."""
        return self._bulk("/txs/status", txids)

    def chain_info(self) -> dict[str, Any]:
        """Return `GET /chain/info` (tip height in `blocks`)."""
        resp = self._request("GET", "/chain/info")
        if resp.status_code != 200:
            raise ApiStatusError(
                f"the chain index at {self.where} answered {_status_text(resp.status_code)}"
                " to GET /chain/info",
                status_code=resp.status_code,
            )
        try:
            body = jsonload.loads(self._mask_body(resp.content))
        except ValueError:
            raise ApiStatusError(
                f"the chain index at {self.where} answered GET /chain/info with a body that is"
                " not JSON"
            ) from None
        return body if isinstance(body, dict) else {}

    def fetch(self, txids: Sequence[str], *, confirmations: int = 1) -> list[ChainTx]:
        """Return one ChainTx per txid (<= 20): one bulk call, plus raw hex when needed.

        Answers are matched to txids by the txid they name. A txid no answer names (after
        asking once more) is `refused`: silence is not evidence that the index lacks it.
        """
        answers = self._named_answers(self.decoded_txs, txids)
        out: dict[str, ChainTx] = {}
        need_hex: list[str] = []
        for txid in txids:
            answer = answers.get(txid)
            if answer is None:
                out[txid] = ChainTx(txid, "refused", note=_unpaired_note(txid, answers))
                continue
            if _has_error(answer):
                out[txid] = _error_answer(txid, answer)
                continue
            raw = serialise_decoded_tx(answer)
            if raw is None:
                need_hex.append(txid)
                continue
            out[txid] = _checked(txid, answer, raw, confirmations)
        if need_hex:
            hexes = self._named_answers(self.raw_txs, need_hex)
            for txid in need_hex:
                h = (hexes.get(txid) or {}).get("hex")
                try:
                    raw = bytes.fromhex(h) if isinstance(h, str) else None
                except ValueError:
                    raw = None
                if raw is None:
                    out[txid] = ChainTx(txid, "refused", note="no raw hex in the index answer")
                else:
                    out[txid] = _checked(txid, answers[txid] or {}, raw, confirmations)
        return [self._masked(out[t]) for t in txids]

    def _mask_body(self, body: bytes) -> bytes:
        """Return an answer's body with every secret of the client masked in any form it may
        be quoted in, before anything is read from it (and so before any part of it is cut
        short for a note): the same bytes, one search, when it holds none."""
        secrets = data_secrets(self._secrets)  # a short one would corrupt the data
        masked = mask_secrets_bytes(body, secrets)
        if masked is body:
            return body
        text = masked.decode("utf-8", "surrogateescape")
        return redact(text, secrets).encode("utf-8", "surrogateescape")

    def _masked(self, tx: ChainTx) -> ChainTx:
        """Return `tx` with the key masked in its note: a note quotes the index's answer (an
        error text, a block field), which may echo the request's headers, and is stored."""
        if tx.note is None:
            return tx
        note = redact(tx.note, self._secrets)
        return tx if note == tx.note else dataclasses.replace(tx, note=note)

    def _named_answers(
        self, call: Callable[[Sequence[str]], list[dict[str, Any]]], txids: Sequence[str]
    ) -> dict[str, dict[str, Any] | None]:
        """Return the answers of `call` by the txid they name, asking once more for the rest.

        A txid answered twice, differently, maps to None (contradictory: not evidence).
        """
        paired = _pair_answers(txids, call(txids))
        missing = [t for t in txids if t not in paired]
        if missing:
            paired.update(_pair_answers(missing, call(missing)))
        return paired


def _pair_answers(
    txids: Sequence[str], answers: list[dict[str, Any]]
) -> dict[str, dict[str, Any] | None]:
    """Return each asked txid's answer by the txid the answer names (None: contradictory).

    Never by position: the spec does not promise that a bulk answer keeps the request order,
    and an answer naming no txid, or one not asked for, says nothing about any txid.
    """
    asked = {t.lower() for t in txids}
    paired: dict[str, dict[str, Any] | None] = {}
    for answer in answers:
        named = answer.get("txid")
        if not isinstance(named, str) or named.lower() not in asked:
            continue
        named = named.lower()
        if named in paired and paired[named] != answer:
            paired[named] = None
        else:
            paired[named] = answer
    return paired


def _unpaired_note(txid: str, answers: Mapping[str, dict[str, Any] | None]) -> str:
    if txid in answers:
        return f"{txid}: the index answered twice for it, differently"
    return f"{txid}: no index answer names this txid (asked twice)"


def _has_error(answer: Mapping[str, Any]) -> bool:
    return answer.get("error") not in (None, "")


def _error_answer(txid: str, answer: Mapping[str, Any]) -> ChainTx:
    """Return `unknown` for the index's "not found" answer, `refused` for any other error."""
    error = answer["error"]
    if isinstance(error, str) and error.strip().lower() in _NOT_FOUND_ERRORS:
        return ChainTx(txid, "unknown", note=error)
    # cut after masking: the body was masked whole when it came in (`ChainClient._mask_body`)
    shown = repr(error)[:120]
    return ChainTx(txid, "refused", note=f"{txid}: the index answered an error: {shown}")


def _status_text(code: int) -> str:
    """Return an HTTP status for a message: `503 Service Unavailable`; the standard phrase,
    never the one the index sent (its text is not ours to print), or the bare code."""
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return str(code)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


# a Retry-After beyond this (about 3,000 years) names no time a message can show
_MAX_SHOWN_WAIT_S: Final = 1e11


def _seconds_text(seconds: float) -> str:
    """Return a wait for a message: `300 s`, `3,600 s`, `1e+11 s`, `an endless wait`."""
    if not math.isfinite(seconds):
        return "an endless wait"
    return f"{seconds:,.0f} s" if seconds < 1e9 else f"{seconds:.3g} s"


def _utc_text(at: float | None) -> str | None:
    """Return an epoch time as `2026-01-02T03:04:05Z`, or None when there is none to show."""
    if at is None:
        return None
    try:
        return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError, OSError):
        return None


def check_index_answer(txid: str, raw: bytes) -> ParsedTx:
    """Return the parsed transaction if `raw` hashes to `txid`; raise IndexIntegrityError if not."""
    try:
        parsed = parse_raw_tx(raw)
    except RawTxError as exc:
        raise IndexIntegrityError(f"{txid}: index bytes are not a transaction ({exc})") from None
    if parsed.txid != txid:
        raise IndexIntegrityError(f"{txid}: index bytes hash to {parsed.txid}")
    return parsed


def _checked(txid: str, answer: Mapping[str, Any], raw: bytes, depth: int) -> ChainTx:
    try:
        block_hash, height, block_time, confs = _block_fields(answer)
    except _BadFieldError as exc:
        return ChainTx(txid, "refused", note=f"{txid}: {exc}")
    try:
        parsed = check_index_answer(txid, raw)
    except IndexIntegrityError as exc:
        return ChainTx(txid, "refused", note=str(exc))
    mined = block_hash is not None and (confs or 0) >= max(1, depth)
    return ChainTx(
        txid,
        "confirmed" if mined else "unconfirmed",
        block_hash=block_hash,
        block_height=height,
        block_time=datetime.fromtimestamp(block_time, UTC) if block_time is not None else None,
        confirmations=confs if block_hash else 0,
        parsed=parsed,
        raw_hex=raw.hex(),
    )


def _block_fields(
    answer: Mapping[str, Any],
) -> tuple[str | None, int | None, int | None, int | None]:
    """Return (block hash, height, block time, confirmations) of an answer, each checked.

    Raise _BadFieldError naming the field when one has the wrong type or is out of range. An
    answer without a block hash (absent, null or "") is not mined: its other block fields may
    only be absent, null or 0 (the placeholders some indexes send for the mempool).
    """
    raw_hash = answer.get("blockhash")
    if raw_hash is None or raw_hash == "":
        for name in ("blockheight", "blocktime", "time", "confirmations"):
            value = answer.get(name)
            if value is not None and not (type(value) is int and value == 0):
                raise _BadFieldError(
                    f"index answer has no block hash but {name} {_shown(value)}: contradictory"
                )
        return None, None, None, None
    if not isinstance(raw_hash, str) or not _HASH_RE.fullmatch(raw_hash):
        raise _BadFieldError(
            f"index answer has blockhash {_shown(raw_hash)}: not 64 hex characters"
        )
    height = _checked_int(answer, "blockheight", 0, _INT64_MAX)
    confs = _checked_int(answer, "confirmations", 0, _INT64_MAX)
    block_time = _checked_int(answer, "blocktime", GENESIS_BLOCK_TIME, MAX_BLOCK_TIME)
    if block_time is None:
        block_time = _checked_int(answer, "time", GENESIS_BLOCK_TIME, MAX_BLOCK_TIME)
    return raw_hash.lower(), height, block_time, confs


def _checked_int(answer: Mapping[str, Any], name: str, low: int, high: int) -> int | None:
    """Return the answer's integer field `name` (None when absent or null), checked in range."""
    value = answer.get(name)
    if value is None:
        return None
    # JSON has one number type: a whole float (5.0) is the same number; bool is not one.
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if type(value) is not int:
        raise _BadFieldError(f"index answer has {name} {_shown(value)}: not an integer")
    if not low <= value <= high:
        raise _BadFieldError(
            f"index answer has {name} {_shown(value)}: outside {_range_text(name, low, high)}"
        )
    return value


def _range_text(name: str, low: int, high: int) -> str:
    if name in ("blocktime", "time"):
        first = datetime.fromtimestamp(low, UTC).date()
        last = datetime.fromtimestamp(high, UTC).date()
        return f"a block header's times ({first} .. {last})"
    return f"{low} .. {high}"


def _shown(value: Any) -> str:
    # cut after masking: the body was masked whole when it came in (`ChainClient._mask_body`)
    return repr(value)[:80]


def chain_client_from_config(config: AuditConfig, **kwargs: Any) -> ChainClient:
    """Return a ChainClient for the configured index, key and `[chain]` settings.

    That `chain_url` serves `chain_network` was checked when the AuditConfig was built
    (`config.chain_network_problem`), before any step ran.
    """
    url = config.chain_url.rstrip("/")
    chain = config.chain
    kwargs.setdefault("mask", config.all_secrets())
    return ChainClient(
        url,
        api_key=config.woc_api_key,
        rps=float(chain.get("rps", DEFAULT_CHAIN_RPS)),
        timeout_s=float(chain.get("timeout_seconds", DEFAULT_TIMEOUT_S)),
        max_retries=int(chain.get("max_retries", DEFAULT_MAX_RETRIES)),
        **kwargs,
    )


# Register the chain checks with the check registry (the registry imports this module).
from asg_audit import reconcile as _reconcile  # noqa: E402,F401

# The verification pipeline lives in `chain_verify` (split by concept); its names are part of
# this module's API, looked up when first used (PEP 562): `chain_verify` imports this module,
# so importing it here would fail whenever `chain_verify` is the first of the two imported.
_VERIFY_NAMES = frozenset(
    {
        "VerifySummary",
        "configured_depth",
        "fee_coverage",
        "fetch_parent_fees",
        "print_findings",
        "reconciliation_findings",
        "report_exit_code",
        "verify_chain",
    }
)


def __getattr__(name: str) -> Any:
    if name in _VERIFY_NAMES:
        from asg_audit import chain_verify

        return getattr(chain_verify, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if TYPE_CHECKING:
    from asg_audit.chain_verify import (
        VerifySummary,
        configured_depth,
        fee_coverage,
        fetch_parent_fees,
        print_findings,
        reconciliation_findings,
        report_exit_code,
        verify_chain,
    )
