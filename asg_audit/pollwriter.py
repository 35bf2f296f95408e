"""The collector's settings, its summary, and the writer thread that owns the store.

`PollWriter` runs every store call on one dedicated thread (a Store belongs to one thread).
Each `flush` is one transaction: the answers through the normaliser (observations and
rejects) and the `poll_state` rows they follow from, so a killed run never keeps one without
the other.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from asg_audit import gateway as gw
from asg_audit.errors import ConfigError
from asg_audit.model import Source
from asg_audit.normalize import NormalisedBatch, RawRecord, normalise_records
from asg_audit.progress import ProgressReporter, ProgressSnapshot, log
from asg_audit.store import Store, collect_claim, open_store

__all__ = [
    "CollectProgress",
    "CollectProgressReporter",
    "CollectSummary",
    "CollectorSettings",
    "LoadedState",
    "PollWriter",
    "dt_utc",
    "epoch_of",
]


@dataclass(frozen=True, slots=True)
class CollectorSettings:
    """The `[collector]` section of the config; every key optional, defaults below."""

    schedule: str = "adaptive"  # fixed | documented | adaptive
    max_rps: float = 10.0  # global request budget (requests per second)
    concurrency: int = 16  # requests in flight at once
    # a task still pending this long after we first saw it (our clock) is `expired`
    deadline_s: float = 3600.0
    # 404s for this long (from our first 404 for the task) before a task is `not_found`
    not_found_grace_s: float = 60.0
    timeout_s: float = gw.DEFAULT_TIMEOUT_S  # per request (wall seconds)
    retry_floor_s: float = 1.0  # Retry-After of 0, absent or in the past becomes this
    retry_base_s: float = 5.0  # first backoff after a 5xx / transport error / bad body
    retry_cap_s: float = 60.0  # backoff cap
    batch_size: int = 500  # answers per write transaction (at most)
    # wall seconds between writes (or batch_size answers). A write has a fixed CPU cost of tens
    # of ms whatever its size; a crash loses at most this much, and those tasks are polled again
    # (the schedule learns settlements from the answers at once, not from the write)
    flush_interval_s: float = 10.0
    # fewer than batch_size / 10 answers wait up to this (at most 5 flush intervals)
    flush_max_interval_s: float = 30.0
    progress_interval_s: float = 10.0  # wall seconds between log lines without a terminal
    lock_wait_s: float = 10.0  # wait this long for another writer of the database

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any], **overrides: Any) -> CollectorSettings:
        """Return settings from a config section plus flag overrides (None = not given)."""
        known = set(cls.__dataclass_fields__)
        unknown = set(raw) - known
        if unknown:
            raise ConfigError(f"unknown key(s) in [collector]: {', '.join(sorted(unknown))}")
        values = {**raw, **{k: v for k, v in overrides.items() if v is not None}}
        try:
            settings = cls(**values)
        except TypeError as exc:
            raise ConfigError(f"[collector]: {exc}") from None
        if settings.schedule not in ("fixed", "documented", "adaptive"):
            raise ConfigError("collector.schedule must be fixed, documented or adaptive")
        positive = (
            "max_rps",
            "deadline_s",
            "timeout_s",
            "retry_floor_s",
            "retry_base_s",
            "retry_cap_s",
            "flush_interval_s",
            "flush_max_interval_s",
        )
        for name in positive:
            value = getattr(settings, name)
            if not _is_number(value) or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"collector.{name} must be a positive number, not {value!r}")
        for name in ("not_found_grace_s", "progress_interval_s", "lock_wait_s"):
            value = getattr(settings, name)
            if not _is_number(value) or not math.isfinite(value) or value < 0:
                raise ConfigError(f"collector.{name} must be a number >= 0, not {value!r}")
        if not isinstance(settings.concurrency, int) or settings.concurrency < 1:
            raise ConfigError("collector.concurrency must be a positive integer")
        if not isinstance(settings.batch_size, int) or settings.batch_size < 1:
            raise ConfigError("collector.batch_size must be a positive integer")
        return settings


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(slots=True)
class CollectSummary:
    """What one `collect` run did; `stats` is what `runs.stats` stores."""

    run_id: str
    # completed | partial (time budget ran out) | interrupted | auth_refused | failed (the API
    # was unreachable or down, or answered 404 to everything: see `failure`)
    status: str
    tracked: int = 0
    already_final: int = 0  # final (settled, failed) or resting until their recheck is due
    rechecked: int = 0  # of `tracked`: not found or expired before, polled again

    settled: int = 0
    # seen settled before (an export, a webhook), answered not settled now: `done`, the
    # reversal recorded as a conflict of the settled result
    reversed: int = 0
    failed: int = 0
    not_found: int = 0
    expired: int = 0
    pending: int = 0
    skipped_unsafe_ids: int = 0  # tracked ids (or --task-ids lines) not safe in a URL
    failure: str | None = None  # why a `failed` or `auth_refused` run stopped
    stats: dict[str, Any] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """Return the human-readable summary, one fact a line."""
        s = self.stats
        tasks = f"tasks: {self.tracked:,} polled, {self.already_final:,} already final"
        if self.rechecked:
            tasks += f" ({self.rechecked:,} polled again: not found or expired before)"
        if self.skipped_unsafe_ids:
            tasks += f", {self.skipped_unsafe_ids:,} unsafe ids skipped"
        elif not self.tracked and not self.already_final:
            # a first run on a new store polls nothing and says "completed" (tester T1)
            tasks += (
                " (nothing to poll: `asg-audit track FILE` records the submitted tasks, or"
                " give `--task-ids`)"
            )
        lines = [
            f"run {self.run_id}: {self.status}",
            tasks,
            f"settled {self.settled:,}, failed {self.failed:,}, not found {self.not_found:,}, "
            f"expired {self.expired:,}, still pending {self.pending:,}",
            *(
                [
                    f"settled before, not settled now: {self.reversed:,} (the settled result "
                    "kept, each recorded as a conflict)"
                ]
                if self.reversed
                else []
            ),
            f"requests {s.get('requests', 0):,}: 200 {s.get('http_200', 0):,}, "
            f"202 {s.get('http_202', 0):,}, 404 {s.get('http_404', 0):,}, "
            f"429 {s.get('http_429', 0):,}, 5xx {s.get('http_5xx', 0):,}, "
            f"transport errors {s.get('transport_errors', 0):,}, "
            f"unusable bodies {s.get('unusable_bodies', 0):,}, retries {s.get('retries', 0):,}"
            + _other_statuses(s),
        ]
        if self.failure:
            lines.append(f"failed: {self.failure}")
        return lines


def _other_statuses(stats: Mapping[str, Any]) -> str:
    """Return `, other statuses 1,800 (302: 1,800)` for the summary, or nothing."""
    n = stats.get("http_other", 0)
    if not n:
        return ""
    codes = stats.get("http_other_statuses") or {}
    shown = ", ".join(f"{code}: {k:,}" for code, k in sorted(codes.items(), key=lambda c: -c[1]))
    return f", other statuses {n:,}" + (f" ({shown})" if shown else "")


@dataclass(frozen=True, slots=True)
class CollectProgress(ProgressSnapshot):
    """A collector's progress: `settled` counts settled tasks only, as the summary does."""

    failed: int = 0
    transport_errors: int = 0
    server_errors: int = 0
    # wall seconds until the last pending task's next poll (None: not known)
    next_poll_in_s: float | None = None
    # of `pending`, the tasks left for the next run (past their deadline with no answer about
    # them): polled no more by this one, stored `pending` as the summary counts them
    parked: int = 0


class CollectProgressReporter(ProgressReporter):
    """The collector's progress line: the summary's categories, errors, a rate and an ETA
    (`pollprogress.collect_line`); without a terminal, a line whose counts did not change is
    logged only at a slow heartbeat (`pollprogress.LogGate`)."""

    _gate: Any = None

    def line(self, snap: ProgressSnapshot) -> str:
        """Return the line; the ETA is at least the wait for the last pending task's poll, and
        `?` (with what the pending tasks wait for) when no clock says when they end."""
        if not isinstance(snap, CollectProgress):
            return super().line(snap)
        from asg_audit.pollprogress import collect_line  # it imports this module

        now = time.monotonic()
        done = snap.settled + snap.failed + snap.not_found + snap.expired
        self._history.append((now, done))
        self._throttles.append(snap.throttled)
        t0, d0 = self._history[0]
        rate = (done - d0) / (now - t0) if now - t0 > 0.5 else 0.0
        return collect_line(snap, rate, snap.throttled > self._throttles[0])

    def update(self, snap: ProgressSnapshot) -> None:
        """Show a snapshot: on a terminal at once, else as a log line when `LogGate` says."""
        if self._live is not None or not isinstance(snap, CollectProgress):
            super().update(snap)
            return
        from asg_audit.pollprogress import LogGate

        text = self.line(snap)
        if self._gate is None:
            self._gate = LogGate(self.log_every_s)
        if self._gate.due(snap, time.monotonic()):
            log.info("collect: %s", text)


# a final answer the normaliser rejected: its task is polled again this much later
REJECTED_RETRY_S = 5.0


def _with_notes(
    batch: NormalisedBatch, notes: Mapping[tuple[str, datetime], str]
) -> NormalisedBatch:
    """Return `batch` with each note put before the detail of its record's reject."""
    keys = batch.rejects.select("origin", "observed_at").iter_rows()
    details = batch.rejects.get_column("detail").to_list()
    noted = []
    for key, detail in zip(keys, details, strict=True):
        note = notes.get(key)
        noted.append(detail if note is None else f"{note}: {detail}" if detail else note)
    rejects = batch.rejects.with_columns(pl.Series("detail", noted, dtype=pl.String))
    return replace(batch, rejects=rejects)


def _unfinal(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """Return a `done`/`failed` poll_state row as `pending`, due `REJECTED_RETRY_S` later."""
    task_id, _state, attempts, _next, status, first_404, updated = row
    due = updated + timedelta(seconds=REJECTED_RETRY_S)
    return (task_id, "pending", attempts, due, status, first_404, updated)


def dt_utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)


def epoch_of(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value)


@dataclass(frozen=True, slots=True)
class LoadedState:
    """What a run starts from: the tracked tasks, their poll state and what the store knows."""

    subs: pl.DataFrame  # task_id, task_type, consensus_threshold, created_at
    state: pl.DataFrame  # poll_state
    history: list[tuple[int | None, str | None, float]]  # settled (threshold, type, latency)
    first_seen: dict[str, float]  # unsettled task id -> first seen (epoch s, our clock)
    control_task_id: str | None  # a task seen settled by an earlier poll, or None
    # `done`/`failed` rows with no 200 answer stored for the task (a rejected final answer,
    # written `done` by an earlier version): polled again
    unproven_final: frozenset[str] = frozenset()
    # task id -> (answers about it stored from polls: 200, 202, 404; whether a 202 is one of
    # them), for tasks not final: poll_state.attempts also counts 429s, 5xx and transport errors
    answers: dict[str, tuple[int, bool]] = field(default_factory=dict)
    # tasks to poll whose result the store holds settled (an export, a webhook): an answer
    # that one is not settled is a reversal, recorded as a conflict
    seen_settled: frozenset[str] = frozenset()


class PollWriter:
    """Owns the store on one thread (`pool`); call every method through that pool."""

    def __init__(
        self, db_path: Path, lock_wait_s: float, *, stopped: Callable[[], bool] | None = None
    ) -> None:
        self.db_path = db_path
        self.lock_wait_s = lock_wait_s
        self.stopped = stopped  # a stop of the run ends its wait for the store
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="asg-collect-db")
        self._stack = contextlib.ExitStack()
        self.store: Store | None = None
        self.cpu_s = 0.0

    def open(self) -> None:
        # one collect run per store in this process too, as DuckDB's lock makes it across
        # processes; waited for as long as the lock
        self._stack.enter_context(
            collect_claim(Path(self.db_path), self.lock_wait_s, stopped=self.stopped)
        )
        self.store = self._stack.enter_context(
            open_store(self.db_path, wait_seconds=self.lock_wait_s, stopped=self.stopped)
        )

    def close(self) -> None:
        self._stack.close()

    def load(self, task_ids: list[str] | None) -> LoadedState:
        assert self.store is not None
        subs = self.store.frame("submissions").select(
            "task_id", "task_type", "consensus_threshold", "created_at"
        )
        state = self.store.frame("poll_state")
        if task_ids is not None:
            wanted = pl.DataFrame({"task_id": pl.Series(task_ids, dtype=pl.String)}).unique()
            subs = wanted.join(subs, on="task_id", how="left")
        con = self.store.con
        history = con.execute(
            """SELECT s.consensus_threshold, s.task_type,
                   epoch(r.settled_at) - epoch(coalesce(s.created_at, r.created_at))
               FROM results r LEFT JOIN submissions s USING (task_id)
               WHERE r.status = 'settled' AND r.settled_at IS NOT NULL
                 AND coalesce(s.created_at, r.created_at) IS NOT NULL
               ORDER BY r.settled_at DESC LIMIT 20000"""
        ).fetchall()
        # when we first saw each unsettled task (our clock): its deadline counts from there
        first_seen = con.execute(
            """SELECT task_id, epoch(min(first_seen_at)) FROM results
               WHERE first_seen_at IS NOT NULL AND coalesce(status, '') <> 'settled'
               GROUP BY task_id"""
        ).fetchall()
        # a task this store saw settle by polling: it must answer 200 at a right base URL
        control = con.execute(
            "SELECT task_id FROM poll_state WHERE state = 'done' ORDER BY updated_at DESC LIMIT 1"
        ).fetchall()
        # a `done` row is proven by a 200 from a poll, or by a poll's answer that the task is
        # not settled while its result is settled (a reversal: the result's conflict)
        unproven = con.execute(
            f"""SELECT p.task_id FROM poll_state p WHERE p.state IN ('done', 'failed')
               AND NOT EXISTS (SELECT 1 FROM observations o WHERE o.task_id = p.task_id
                   AND o.source = '{Source.POLL}' AND (o.http_status = 200
                       OR (p.state = 'done' AND o.status IS NOT NULL AND o.status <> 'settled'
                           AND EXISTS (SELECT 1 FROM results r WHERE r.task_id = p.task_id
                               AND r.status = 'settled'))))"""
        ).fetchall()
        con.register("_load_subs", subs.select("task_id"))
        try:
            seen_settled = con.execute(
                """SELECT r.task_id FROM results r
                   WHERE r.status = 'settled' AND r.task_id IN (SELECT task_id FROM _load_subs)"""
            ).fetchall()
        finally:
            con.unregister("_load_subs")
        answers = con.execute(
            f"""SELECT task_id, count(*) FILTER (WHERE http_status IN (200, 202, 404)),
                   coalesce(bool_or(http_status = 202), false)
               FROM observations
               WHERE source = '{Source.POLL}' AND task_id IN
                   (SELECT task_id FROM poll_state WHERE state NOT IN ('done', 'failed'))
               GROUP BY task_id"""
        ).fetchall()
        return LoadedState(
            subs=subs,
            state=state,
            history=[(r[0], r[1], float(r[2])) for r in history],
            first_seen={r[0]: float(r[1]) for r in first_seen},
            control_task_id=control[0][0] if control else None,
            unproven_final=frozenset(r[0] for r in unproven),
            answers={r[0]: (int(r[1]), bool(r[2])) for r in answers},
            seen_settled=frozenset(r[0] for r in seen_settled),
        )

    def start_run(self) -> str:
        assert self.store is not None
        return self.store.start_run("collect")

    def finish_run(self, run_id: str, status: str, stats: dict[str, Any]) -> None:
        assert self.store is not None
        self.store.finish_run(run_id, status=status, stats=stats)

    def flush(
        self,
        run_id: str,
        records: list[RawRecord],
        rows: list[tuple[Any, ...]],
        finals: Mapping[str, tuple[str, datetime]] | None = None,
        notes: Mapping[tuple[str, datetime], str] | None = None,
    ) -> tuple[list[tuple[str, float, float | None]], set[tuple[str, datetime]]]:
        """Write one batch in one transaction; return settled latencies and rejected origins.

        `finals` maps a task whose row is final (`done`, `failed`) to the (origin, observed_at)
        of the answer that made it final. When the normaliser rejects that answer, the row is
        written `pending` instead (polled again `REJECTED_RETRY_S` later), in the same
        transaction as the reject: a `done` row is never stored for a rejected answer.
        `notes` go before the detail of those records' rejects (`answered 302 (Location: …)`).
        """
        assert self.store is not None
        t0 = time.thread_time()
        batch = normalise_records(records) if records else None
        rejected: set[tuple[str, datetime]] = set()
        if batch is not None:
            rejected = {
                (origin, observed_at)
                for origin, observed_at in batch.rejects.select("origin", "observed_at").iter_rows()
                if origin is not None
            }
        if batch is not None and notes and rejected & notes.keys():
            batch = _with_notes(batch, notes)
        if finals and rejected:
            rows = [_unfinal(row) if finals.get(row[0]) in rejected else row for row in rows]
        frame = pl.DataFrame(
            rows,
            schema={
                "task_id": pl.String,
                "state": pl.String,
                "attempts": pl.Int32,
                "next_poll_at": pl.Datetime("us", "UTC"),
                "last_http_status": pl.Int16,
                "first_404_at": pl.Datetime("us", "UTC"),
                "updated_at": pl.Datetime("us", "UTC"),
            },
            orient="row",
        )
        con = self.store.con
        with self.store.transaction():
            if batch is not None:
                self.store.write_batch(run_id, batch)
            if frame.height:
                con.register("_poll_rows", frame)
                try:
                    con.execute(
                        """INSERT INTO poll_state BY NAME SELECT * FROM _poll_rows
                        ON CONFLICT (task_id) DO UPDATE SET state = excluded.state,
                            attempts = excluded.attempts, next_poll_at = excluded.next_poll_at,
                            last_http_status = excluded.last_http_status,
                            first_404_at = excluded.first_404_at,
                            updated_at = excluded.updated_at"""
                    )
                finally:
                    con.unregister("_poll_rows")
        latencies: list[tuple[str, float, float | None]] = []
        if batch is not None:
            settled = batch.accepted.filter(
                (pl.col("status") == "settled") & pl.col("settled_at").is_not_null()
            ).select(
                "task_id",
                pl.col("settled_at").dt.epoch("ms") / 1000.0,
                pl.col("created_at").dt.epoch("ms") / 1000.0,
            )
            latencies = [(r[0], r[1], r[2]) for r in settled.iter_rows()]
        self.cpu_s += time.thread_time() - t0
        return latencies, rejected
