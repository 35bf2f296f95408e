"""The group-commit writer of the webhook receiver, in two stages on two threads.

Stage 1, the **inbox** (thread `webhook-writer`): deliveries queued by the ASGI handlers are taken
together (up to `max_batch`), duplicates are decided, and one transaction appends their
`webhook_deliveries` rows, with the raw body of authenticated ones. Only after that commit are the
handlers woken to answer 2xx: an acknowledged delivery is durable. This stage only appends to its
own table, so it does not take the store's per-file write lock: a long analysis-side write (the
normaliser stage below) never stalls acknowledgements.

Stage 2, the **normaliser** (thread `webhook-normaliser`): committed bodies go through the one
normaliser in larger batches into `observations`/`results`/`rejects` (source `webhook`), through
`Store.write_batch`. Its fixed cost (tens of milliseconds a batch) is paid off the ack path. On
start, bodies that a crash left committed but not yet normalised are normalised first.

When the store cannot be opened or written, waiting deliveries are answered 503 (the provider
retries) and the writer tries to open the store again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import polars as pl
import pyarrow as pa

from asg_audit.jsonload import MAX_JSON_DEPTH, TooDeepError, nesting_depth_over
from asg_audit.model import UTC_DATETIME, RejectReason, Source
from asg_audit.normalize import (
    NormalisedBatch,
    RawRecord,
    normalise_batch,
    normalise_records,
    raw_frame,
)
from asg_audit.recent_keys import RecentKeys
from asg_audit.store import Store, open_store

__all__ = [
    "DELIVERIES_SCHEMA",
    "MAX_JSON_DEPTH",
    "Delivery",
    "DeliveryWriter",
    "DuplicateKeyError",
    "Outcome",
    "TooDeepError",
    "duplicate_key_reject",
    "load_json_object",
    "nesting_depth_over",
    "repeated_key_path",
]

log = logging.getLogger("asg_audit.webhooks")


class Outcome:
    """The outcome of one delivery and the HTTP status it is answered with."""

    STORED = "stored"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"  # authentic sender, unusable content: kept in `rejects`
    BAD_SIGNATURE = "bad_signature"
    STALE = "stale"
    TOO_LARGE = "too_large"
    UNAVAILABLE = "unavailable"  # the store could not be written: the provider retries
    # The sender disconnected before the whole body arrived: counted, never answered.
    TRUNCATED = "truncated"

    # The answers a sender can receive (the OpenAPI description lists exactly these).
    STATUS: Final[dict[str, int]] = {
        STORED: 200,
        DUPLICATE: 200,
        REJECTED: 200,
        BAD_SIGNATURE: 401,
        STALE: 400,
        TOO_LARGE: 413,
        UNAVAILABLE: 503,
    }
    # Outcomes nobody receives an answer for, with the status recorded in `webhook_deliveries`
    # (what the receiver would have answered had the sender stayed).
    UNANSWERED: Final[dict[str, int]] = {TRUNCATED: 400}

    @classmethod
    def status_of(cls, outcome: str) -> int:
        """Return the HTTP status of an outcome (answered or only recorded)."""
        return cls.STATUS.get(outcome) or cls.UNANSWERED[outcome]


DELIVERIES_SCHEMA: Final[dict[str, pl.DataType]] = {
    "delivery_id": pl.String(),
    "run_id": pl.String(),
    "received_at": UTC_DATETIME,
    "outcome": pl.String(),
    "http_status": pl.Int16(),
    "body_sha256": pl.String(),
    "body_bytes": pl.Int64(),
    "event_key": pl.String(),
    "task_id": pl.String(),
    "delivered_at": UTC_DATETIME,
    "secret_index": pl.Int16(),
    "remote_addr": pl.String(),
    "detail": pl.String(),
}
_DELIVERY_COLUMNS: Final = ", ".join(DELIVERIES_SCHEMA)
# The Arrow form of a group commit's rows (DELIVERIES_SCHEMA plus the raw body). The inbox builds
# a pyarrow RecordBatch column by column: DuckDB scans it with a couple of GIL hand-offs, where a
# polars frame (converted to Arrow on the way in) cost ten times as many, each one a wait for the
# event loop to give the GIL back.
_UTC_US: Final = pa.timestamp("us", tz="UTC")
_ARROW_SCHEMA: Final = pa.schema(
    [
        ("delivery_id", pa.string()),
        ("run_id", pa.string()),
        ("received_at", _UTC_US),
        ("outcome", pa.string()),
        ("http_status", pa.int16()),
        ("body_sha256", pa.string()),
        ("body_bytes", pa.int64()),
        ("event_key", pa.string()),
        ("task_id", pa.string()),
        ("delivered_at", _UTC_US),
        ("secret_index", pa.int16()),
        ("remote_addr", pa.string()),
        ("detail", pa.string()),
        ("body", pa.binary()),
    ]
)
assert _ARROW_SCHEMA.names == [*DELIVERIES_SCHEMA, "body"]
_INSERT_SQL: Final = (
    f"INSERT INTO webhook_deliveries ({_DELIVERY_COLUMNS}, body)"
    f" SELECT {_DELIVERY_COLUMNS}, body FROM rows"
)


class DuplicateKeyError(ValueError):
    """A JSON object names the same key twice: parsers disagree on which value counts."""

    def __init__(self, key: str) -> None:
        super().__init__(f"duplicate key {key!r}")
        self.key = key


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKeyError(key)
            seen.add(key)
    return obj


def load_json_object(body: bytes) -> Any:
    """Return the parsed body; raise `DuplicateKeyError` if any object repeats a key.

    The body is read as UTF-8 only, as the normaliser reads it: bytes that are not UTF-8 raise
    UnicodeDecodeError, and a byte order mark or UTF-16/32 text is invalid JSON. (Given bytes,
    `json.loads` guesses UTF-16/32 from NUL bytes and skips a UTF-8 BOM: it read bodies the
    normaliser refuses, and raised UnicodeDecodeError on a wrong guess.)
    Python keeps the last of repeated keys, DuckDB's JSON functions (the normaliser) the first:
    such a body would be recorded as one task and stored as another, so it is refused instead.
    A body nesting deeper than `MAX_JSON_DEPTH` raises `TooDeepError` (never RecursionError).
    Other invalid JSON raises `json.JSONDecodeError`; every error is a ValueError.
    """
    depth = nesting_depth_over(body)
    if depth is not None:
        raise TooDeepError(depth)
    text = body.decode("utf-8")
    try:
        doc = json.loads(text, object_pairs_hook=_unique_pairs, parse_int=_json_int)
    except RecursionError:  # not expected below the limit; refused the same way all the same
        raise TooDeepError(None) from None
    if "\\u" in text and _SURROGATE_ESCAPE.search(text):
        _refuse_lone_surrogates(doc, text)
    return doc


_SURROGATE_ESCAPE: Final = re.compile(r"\\u[dD][89a-fA-F]")


def _refuse_lone_surrogates(doc: Any, text: str) -> None:
    """Raise JSONDecodeError if a string of `doc` holds a surrogate escape not in a pair.

    `\\ud800` alone is no character: DuckDB's JSON functions (the normaliser) refuse it as
    invalid JSON, and a Python string holding it cannot be encoded (stored, hashed, printed).
    """
    todo: list[Any] = [doc]
    while todo:
        node = todo.pop()
        if isinstance(node, dict):
            todo.extend(node)
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)
        elif isinstance(node, str) and not node.isascii():
            try:
                node.encode("utf-8")
            except UnicodeEncodeError as exc:
                escape = f"\\u{ord(node[exc.start]):04x}"
                found = re.search(re.escape(escape), text, re.IGNORECASE)
                raise json.JSONDecodeError(
                    f"lone surrogate {escape}: not a character", text, found.start() if found else 0
                ) from None


def _json_int(digits: str) -> int:
    """Return a JSON integer. One too long for Python's int (over `sys.get_int_max_str_digits`,
    4,300 digits) is beyond any float too (infinity is no JSON number): a ValueError, so the body
    is invalid JSON (int() raised a bare ValueError of its own before)."""
    try:
        return int(digits)
    except ValueError:
        raise ValueError(f"an integer of {len(digits):,} digits, beyond any number") from None


def duplicate_key_detail(key: str) -> str:
    """Return the reject detail of a body whose object repeats `key`."""
    return (
        f"duplicate key {json.dumps(key, ensure_ascii=False)}: the object can be read two"
        " ways (first or last value), so it is not used"
    )


def duplicate_key_reject(body: bytes, exc: DuplicateKeyError) -> tuple[str, str]:
    """Return the (field, detail) of a delivery refused for a repeated key: the field is the
    key's path (`settlement.bsv_txid`), as the normaliser names the fields it reads."""
    return repeated_key_path(body, exc.key), duplicate_key_detail(exc.key)


class _Members(list[tuple[str, Any]]):
    """An object's members in order, repeated keys kept (to find where a key repeats)."""


_PLAIN_KEY: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def repeated_key_path(raw: bytes, key: str) -> str:
    """The path (`label_spec.options`, `items[2].id`) of the key `load_json_object` found
    repeated: in the first object, in the order the parser closes them (inner ones first), that
    repeats a key. `key` itself when it is not found."""
    try:
        doc = json.loads(raw.decode("utf-8"), object_pairs_hook=_Members, parse_int=_json_int)
    except (ValueError, RecursionError):
        return key
    todo: list[tuple[Any, tuple[str | int, ...], bool]] = [(doc, (), False)]
    while todo:  # post-order, in document order: the order the parser closes objects
        node, path, closed = todo.pop()
        if isinstance(node, _Members):
            if closed:
                seen: set[str] = set()
                for name, _ in node:
                    if name in seen:
                        return _path_text((*path, name))
                    seen.add(name)
                continue
            todo.append((node, path, True))
            todo.extend((value, (*path, name), False) for name, value in reversed(node))
        elif isinstance(node, list):
            todo.extend((value, (*path, i), False) for i, value in reversed(list(enumerate(node))))
    return key


def _path_text(path: tuple[str | int, ...]) -> str:
    parts: list[str] = []
    for step in path:
        if isinstance(step, int):
            parts.append(f"[{step}]")
        elif _PLAIN_KEY.fullmatch(step):
            parts.append(f".{step}" if parts else step)
        else:
            parts.append(f"[{json.dumps(step, ensure_ascii=False)}]")
    return "".join(parts)


def _preset_reject(body: bytes) -> tuple[str | None, str] | None:
    """Return (field, detail) when a committed body must be refused before the normaliser.

    These are the bodies the normaliser would read differently from the receiver's checks:
    an object repeating a key, and a body nested too deep for those checks to read at all.
    """
    try:
        load_json_object(body)
    except DuplicateKeyError as exc:
        return duplicate_key_reject(body, exc)
    except TooDeepError as exc:
        return None, str(exc)
    except ValueError:
        return None  # the normaliser says why
    return None


@dataclass(slots=True)
class Delivery:
    """One delivery on its way to the store.

    `outcome` is already decided for deliveries that are only counted (bad signature, stale,
    too large); it is None for authenticated ones, which the writer classifies. `body` is set
    only for authenticated deliveries: an unauthenticated payload is never stored.
    """

    delivery_id: str
    received_at: datetime
    remote_addr: str | None
    outcome: str | None = None
    body: bytes | None = None
    body_sha256: str | None = None
    body_bytes: int | None = None
    event_key: str | None = None
    task_id: str | None = None
    delivered_at: datetime | None = None
    secret_index: int | None = None
    detail: str | None = None
    object_body: bool = False  # the body parsed as a JSON object (else it will be a reject)
    # A reject decided before the normaliser (field, detail): a body it would misread.
    reject: tuple[str | None, str] | None = None
    # `body` went through `load_json_object` (its nesting depth is known, and a body too deep
    # has `reject` set): the normaliser need not scan it for depth again.
    depth_checked: bool = False
    # The HTTP status recorded when it differs from the outcome's usual one: a body cut off by
    # the receiver's own stop is `truncated` but answered 503 (the provider retries).
    http_status: int | None = None
    # Why `remote_addr` is not the client a proxy named (its X-Forwarded-For is no IP
    # address): added to the row's detail.
    remote_note: str | None = None
    # Set by the writer when the delivery is classified; the handler waits on `done`.
    waiter: asyncio.Future[str] | None = field(default=None, repr=False)
    loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)


_STOP: Final = object()
# A redelivery is recognised as a duplicate if its event was committed within this window and
# is among this many most recent events. The provider retries within 21 s (1 s, 4 s, 16 s);
# an older repeat is stored again: one more identical observation, no result changes.
DEFAULT_DEDUPE_WINDOW_SECONDS: Final = 86_400.0
DEFAULT_DEDUPE_MAX_EVENTS: Final = 500_000


class DeliveryWriter:
    """Two threads that own the store: the inbox (group commit, acks) and the normaliser."""

    def __init__(
        self,
        db_path: str | Path,
        *,
        max_batch: int = 512,
        max_wait_seconds: float = 0.0,
        max_queue: int = 50_000,
        normalise_interval_seconds: float = 1.0,
        normalise_max_batch: int = 5_000,
        open_wait_seconds: float = 0.0,
        reopen_interval_seconds: float = 1.0,
        duckdb_threads: int | None = None,
        command: str = "serve-webhooks",
        dedupe_window_seconds: float = DEFAULT_DEDUPE_WINDOW_SECONDS,
        dedupe_max_events: int = DEFAULT_DEDUPE_MAX_EVENTS,
    ) -> None:
        self.db_path = Path(db_path)
        self.max_batch = max_batch
        self.max_wait_seconds = max_wait_seconds
        self.max_queue = max_queue
        self.normalise_interval_seconds = normalise_interval_seconds
        self.normalise_max_batch = normalise_max_batch
        self.open_wait_seconds = open_wait_seconds
        self.reopen_interval_seconds = reopen_interval_seconds
        self.duckdb_threads = duckdb_threads
        self.command = command
        self.counts: Counter[str] = Counter()  # outcomes answered, plus `dropped_records`
        self.commits = 0
        self.largest_commit = 0  # deliveries in the largest group commit so far
        self.normalised = 0
        self._recovered = False  # the bodies a crash left unnormalised are queued (first open)
        self.run_id: str | None = None
        self.last_error: str | None = None
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._pending: queue.SimpleQueue[Any] = queue.SimpleQueue()  # committed, to normalise
        self._thread = threading.Thread(target=self._run, name="webhook-writer", daemon=True)
        self._normaliser = threading.Thread(
            target=self._normalise_loop, name="webhook-normaliser", daemon=True
        )
        self._store: Store | None = None
        self._exit: contextlib.ExitStack | None = None
        # Event keys committed recently: a redelivery of one is a duplicate (bounded memory).
        self._seen = RecentKeys(dedupe_max_events, dedupe_window_seconds)
        self._next_open_at = 0.0
        self._ready = threading.Event()

    # -- called from the event loop -------------------------------------------------------------

    def start(self, *, wait_seconds: float = 5.0) -> None:
        """Start the threads and wait (briefly) for the first attempt to open the store."""
        self._thread.start()
        self._normaliser.start()
        self._ready.wait(wait_seconds)

    @property
    def available(self) -> bool:
        """Whether the store is open for writing right now."""
        return self._store is not None

    def submit(self, delivery: Delivery) -> asyncio.Future[str] | None:
        """Queue a delivery. Return a future resolved with its outcome once committed.

        Counted-only deliveries (outcome already set) get no future: nothing about them has to
        be durable before the answer. They are dropped (and counted) when the queue is full,
        so a flood of forged requests cannot grow memory without bound.
        """
        if delivery.outcome is not None:
            self.counts[delivery.outcome] += 1
            if self._queue.qsize() >= self.max_queue:
                self.counts["dropped_records"] += 1
                return None
            self._queue.put(delivery)
            return None
        loop = asyncio.get_running_loop()
        delivery.loop = loop
        delivery.waiter = loop.create_future()
        self._queue.put(delivery)
        return delivery.waiter

    def stop(self, *, timeout: float = 30.0) -> None:
        """Commit and normalise what is queued, record the end of the run, close the store."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join(timeout)

    def stats(self) -> dict[str, Any]:
        """Return the counters of this receiver: outcomes, commits, normalised bodies."""
        return {
            "outcomes": dict(self.counts),
            "commits": self.commits,
            "largest_commit": self.largest_commit,
            "normalised": self.normalised,
        }

    # -- stage 1: the inbox --------------------------------------------------------------------

    def _run(self) -> None:
        self._try_open()
        self._ready.set()
        stopping = False
        while not stopping:
            try:
                first = self._queue.get(timeout=self.reopen_interval_seconds)
            except queue.Empty:
                if self._store is None:
                    self._try_open()
                continue
            batch: list[Delivery] = []
            if first is _STOP:
                stopping = True
            else:
                batch.append(first)
            deadline = time.monotonic() + self.max_wait_seconds
            while len(batch) < self.max_batch:
                try:
                    remaining = deadline - time.monotonic()
                    item = (
                        self._queue.get(timeout=remaining)
                        if remaining > 0 and not stopping
                        else self._queue.get_nowait()
                    )
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    continue
                batch.append(item)
            if batch:
                self._commit(batch)
        # Anything queued after the stop marker (late handlers) is committed too.
        rest: list[Delivery] = []
        with contextlib.suppress(queue.Empty):
            while True:
                item = self._queue.get_nowait()
                if item is not _STOP:
                    rest.append(item)
        if rest:
            self._commit(rest)
        self._pending.put(_STOP)
        self._normaliser.join()
        self._close(status="finished")

    def _try_open(self) -> None:
        if self._store is not None or time.monotonic() < self._next_open_at:
            return
        stack = contextlib.ExitStack()
        try:
            store = stack.enter_context(
                open_store(self.db_path, wait_seconds=self.open_wait_seconds)
            )
            if self.duckdb_threads is not None:
                # Instance-wide: set only where the receiver has the process to itself.
                store.con.execute(f"SET threads = {int(self.duckdb_threads)}")
            self.run_id = self.run_id or store.start_run(self.command)
            seen = self._seen
            # The most recent events within the window, oldest first, with their ages.
            rows = store.con.execute(
                "SELECT event_key, age FROM (SELECT event_key,"
                " epoch(CAST(? AS TIMESTAMPTZ) - min(received_at)) AS age"
                " FROM webhook_deliveries WHERE event_key IS NOT NULL"
                " AND outcome IN ('stored', 'rejected') GROUP BY event_key"
                " HAVING age <= ? ORDER BY age LIMIT ?) ORDER BY age DESC",
                [utc_now(), seen.max_age_seconds, seen.max_keys],
            ).fetchall()
            # Bodies committed before a crash but never normalised: normalise them first. Only
            # at the first open: a reopen (after a write failed) finds the bodies the normaliser
            # of this process still holds, which it would then store twice (tester T8: 8
            # copies of each delivery after 7 failed writes on a full disk).
            leftovers = [] if self._recovered else store.con.execute(_LEFTOVERS_SQL).fetchall()
        except Exception as exc:
            stack.close()
            self.last_error = str(exc)
            self._next_open_at = time.monotonic() + self.reopen_interval_seconds
            log.warning("webhook store unavailable: %s", exc)
            return
        for key, age in rows:
            self._seen.add((key,), age_seconds=max(0.0, float(age)))
        _warm_up(store.con)
        for delivery_id, received_at, body, digest in leftovers:
            self._pending.put(
                Delivery(
                    delivery_id,
                    received_at,
                    None,
                    outcome=Outcome.STORED,
                    body=bytes(body),
                    body_sha256=digest,
                    reject=_preset_reject(bytes(body)),
                    depth_checked=True,
                )
            )
        self._store, self._exit = store, stack
        self._recovered = True
        self.last_error = None

    def _close(self, *, status: str) -> None:
        if self._store is not None and self._exit is not None:
            with contextlib.suppress(Exception):
                if self.run_id:
                    self._store.finish_run(self.run_id, status=status, stats=self.stats())
            with contextlib.suppress(Exception):
                self._exit.close()
        self._store, self._exit = None, None

    def _commit(self, batch: list[Delivery]) -> None:
        self._try_open()
        store = self._store
        if store is None:
            self.counts["dropped_records"] += sum(1 for d in batch if d.waiter is None)
            self._answer([d for d in batch if d.waiter is not None], Outcome.UNAVAILABLE)
            return
        fresh: set[str] = set()
        to_normalise: list[Delivery] = []
        for d in batch:
            if d.outcome is not None:
                continue
            assert d.event_key is not None
            if d.event_key in self._seen or d.event_key in fresh:
                d.outcome = Outcome.DUPLICATE
            else:
                fresh.add(d.event_key)
                # A body that is not a JSON object is quarantined for sure; an object may still
                # be (bad field types): the normaliser stage then corrects the outcome.
                d.outcome = Outcome.STORED if d.object_body else Outcome.REJECTED
                to_normalise.append(d)
        con = store.con
        try:
            rows = _deliveries_arrow(batch, self.run_id)  # noqa: F841 - read by name in SQL
            # Appends to this table only: no store lock (see the module docstring). One
            # statement in auto-commit mode is one transaction, and few GIL hand-offs.
            con.execute(_INSERT_SQL)
        except Exception as exc:
            # one line, not a traceback per failed commit (a full disk fails many in a row)
            log.warning("webhook store write failed; answering 503: %s", _one_line(exc))
            self.last_error = str(exc)
            for d in batch:
                if d.waiter is not None:
                    d.outcome = None
            self._close(status="failed")
            self._next_open_at = time.monotonic() + self.reopen_interval_seconds
            self._answer([d for d in batch if d.waiter is not None], Outcome.UNAVAILABLE)
            return
        self.commits += 1
        self.largest_commit = max(self.largest_commit, len(batch))
        self._seen.add(fresh)
        for d in to_normalise:
            self._pending.put(d)
        waiting = [d for d in batch if d.waiter is not None]
        for d in waiting:
            assert d.outcome is not None
            self.counts[d.outcome] += 1
        self._wake(waiting)

    def _answer(self, deliveries: list[Delivery], outcome: str) -> None:
        for d in deliveries:
            d.outcome = outcome
            self.counts[outcome] += 1
        self._wake(deliveries)

    @staticmethod
    def _wake(deliveries: list[Delivery]) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[str], str]]] = {}
        for d in deliveries:
            if d.waiter is not None and d.loop is not None and d.outcome is not None:
                by_loop.setdefault(d.loop, []).append((d.waiter, d.outcome))
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody is waiting
                loop.call_soon_threadsafe(_resolve, items)

    # -- stage 2: the normaliser ---------------------------------------------------------------

    def _normalise_loop(self) -> None:
        stack = contextlib.ExitStack()
        store: Store | None = None
        waiting: list[Delivery] = []
        stopping = False
        failed = False  # the last attempt failed: its writes may have landed all the same
        with contextlib.suppress(Exception):  # first-time set-up now, not under the first load
            normalise_records(
                [
                    RawRecord(
                        body=_SAMPLE_BODY,
                        source=Source.WEBHOOK,
                        origin="webhook:warm-up",
                        observed_at=utc_now(),
                    )
                ]
            )
        try:
            while not stopping or waiting:
                deadline = time.monotonic() + self.normalise_interval_seconds
                while not stopping and len(waiting) < self.normalise_max_batch:
                    try:
                        item = self._pending.get(timeout=max(0.0, deadline - time.monotonic()))
                    except queue.Empty:
                        break
                    if item is _STOP:
                        stopping = True
                    else:
                        waiting.append(item)
                if stopping:  # take everything that is left
                    with contextlib.suppress(queue.Empty):
                        while True:
                            item = self._pending.get_nowait()
                            if item is not _STOP:
                                waiting.append(item)
                if not waiting:
                    continue
                try:
                    if store is None:
                        store = stack.enter_context(open_store(self.db_path, wait_seconds=1.0))
                    todo = waiting[: self.normalise_max_batch]
                    if failed:
                        # DuckDB may report a commit failed (the WAL could not be written: a
                        # full disk) and keep its rows in the database all the same; what is
                        # stored already is not written again (tester T8: each retry stored
                        # every body once more, 8 copies of 1,244 deliveries)
                        todo = self._not_normalised(store, todo)
                    if todo:
                        self._normalise(store, todo)
                    del waiting[: self.normalise_max_batch]
                    failed = False
                except Exception as exc:
                    log.warning("normalising webhook bodies failed; will retry: %s", _one_line(exc))
                    failed = True
                    stack.close()
                    store = None
                    if stopping:
                        break
                    time.sleep(self.reopen_interval_seconds)
        finally:
            stack.close()

    def _not_normalised(self, store: Store, deliveries: list[Delivery]) -> list[Delivery]:
        """Return the deliveries with neither an observation nor a reject stored (the others
        count as normalised)."""
        origins = [f"webhook:{d.body_sha256}" for d in deliveries]
        done = {
            origin
            for (origin,) in store.con.execute(
                "SELECT origin FROM observations WHERE source = 'webhook' AND origin IN"
                " (SELECT unnest($o)) UNION SELECT origin FROM rejects WHERE source = 'webhook'"
                " AND origin IN (SELECT unnest($o))",
                {"o": origins},
            ).fetchall()
        }
        self.normalised += sum(1 for o in origins if o in done)
        return [d for d, o in zip(deliveries, origins, strict=True) if o not in done]

    def _normalise(self, store: Store, deliveries: list[Delivery]) -> None:
        read = [d for d in deliveries if d.reject is None]
        records = [
            RawRecord(
                body=d.body or b"",
                source=Source.WEBHOOK,
                origin=f"webhook:{d.body_sha256}",
                observed_at=d.received_at,
            )
            for d in read
        ]
        # Each body's nesting depth was scanned once, at receipt (`load_json_object`): one too
        # deep is a preset reject and not among `read`. `normalise_records` would scan them
        # all again; only a delivery that came another way is left to it.
        if all(d.depth_checked for d in read):
            batch = normalise_batch(raw_frame(records))
        else:
            batch = normalise_records(records)
        preset = [d for d in deliveries if d.reject is not None]
        if preset:
            batch = NormalisedBatch(
                accepted=batch.accepted,
                rejects=pl.concat([batch.rejects, _preset_rejects(preset, batch.rejects.schema)]),
            )
        rejected = batch.rejects.get_column("origin").str.strip_prefix("webhook:")
        with store.transaction() as con:
            store.write_batch(self.run_id or "", batch)
            if rejected.len():
                con.register("_rejected", pl.DataFrame({"sha": rejected}))
                try:
                    con.execute(
                        "UPDATE webhook_deliveries SET outcome = 'rejected'"
                        " WHERE outcome = 'stored' AND body_sha256 IN (SELECT sha FROM _rejected)"
                    )
                finally:
                    con.unregister("_rejected")
        self.normalised += len(deliveries)


def _one_line(exc: BaseException) -> str:
    """Return the first line of an error's message, with its type (for a log line)."""
    text = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


_SAMPLE_BODY: Final = (
    b'{"event": "task.settled", "task_id": "tsk_warm_up", "consensus_label": "cat",'
    b' "confidence": 1.0, "settled_at": "2025-01-01T00:00:00Z",'
    b' "timestamp": "2025-01-01T00:00:00Z"}'
)

_LEFTOVERS_SQL: Final = """
SELECT d.delivery_id, d.received_at, d.body, d.body_sha256
FROM webhook_deliveries d
WHERE d.body IS NOT NULL AND d.outcome IN ('stored', 'rejected')
  AND NOT EXISTS (SELECT 1 FROM observations o
                  WHERE o.source = 'webhook' AND o.origin = 'webhook:' || d.body_sha256)
  AND NOT EXISTS (SELECT 1 FROM rejects r
                  WHERE r.source = 'webhook' AND r.origin = 'webhook:' || d.body_sha256)
ORDER BY d.received_at
"""


def _preset_rejects(deliveries: list[Delivery], schema: Any) -> pl.DataFrame:
    """Return the reject rows of deliveries refused before the normaliser, in `schema`."""
    rows: dict[str, list[Any]] = {name: [] for name in schema}
    for d in deliveries:
        assert d.reject is not None
        field_, detail = d.reject
        row = {
            "source": Source.WEBHOOK.value,
            "observed_at": d.received_at,
            "origin": f"webhook:{d.body_sha256}",
            "origin_line": None,
            "reason": RejectReason.INVALID_JSON.value,
            "field": field_,
            "detail": detail,
            "raw": d.body,
        }
        for name in rows:
            rows[name].append(row[name])
    return pl.DataFrame(rows, schema=schema)


def _warm_up(con: Any) -> None:
    """Run a group commit's statement once and roll it back, so that the first deliveries do not
    pay for DuckDB's and pyarrow's first-time set-up (tens of milliseconds, partly under the GIL).
    """
    probe = Delivery(
        "dlv_warm_up", utc_now(), None, outcome=Outcome.STORED, body=b"{}", delivered_at=utc_now()
    )
    rows = _deliveries_arrow([probe], None)  # noqa: F841 - read by name in SQL
    with contextlib.suppress(Exception):
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(_INSERT_SQL)
        finally:
            con.execute("ROLLBACK")


def _resolve(items: list[tuple[asyncio.Future[str], str]]) -> None:
    for fut, outcome in items:
        if not fut.done():  # the client may have gone away
            fut.set_result(outcome)


def _deliveries_arrow(batch: list[Delivery], run_id: str | None) -> Any:
    """Return the `webhook_deliveries` rows of a group commit as a pyarrow RecordBatch."""
    cols: list[list[Any]] = [[] for _ in _ARROW_SCHEMA.names]
    (
        delivery_id,
        run,
        received_at,
        outcome_,
        http_status,
        body_sha256,
        body_bytes,
        event_key,
        task_id,
        delivered_at,
        secret_index,
        remote_addr,
        detail,
        body,
    ) = cols
    for d in batch:
        outcome = d.outcome or Outcome.UNAVAILABLE
        delivery_id.append(d.delivery_id)
        run.append(run_id)
        received_at.append(d.received_at)
        outcome_.append(outcome)
        http_status.append(d.http_status or Outcome.status_of(outcome))
        body_sha256.append(d.body_sha256)
        body_bytes.append(d.body_bytes)
        event_key.append(d.event_key)
        task_id.append(d.task_id)
        delivered_at.append(d.delivered_at)
        secret_index.append(d.secret_index)
        remote_addr.append(d.remote_addr)
        detail.append("; ".join(n for n in (d.detail, d.remote_note) if n) or None)
        # The raw body only of a delivery to be normalised: never an unauthenticated payload.
        keep = d.body is not None and outcome in (Outcome.STORED, Outcome.REJECTED)
        body.append(d.body if keep else None)
    return pa.RecordBatch.from_arrays(
        [pa.array(values, type=f.type) for values, f in zip(cols, _ARROW_SCHEMA, strict=True)],
        schema=_ARROW_SCHEMA,
    )


def utc_now() -> datetime:
    """Return the wall-clock time in UTC (the receiver's default clock)."""
    return datetime.now(UTC)


Clock = Callable[[], datetime]
