"""One collector run: polls every tracked task until it is settled, not found or expired.

One event loop, one `GatewayClient`, a heap of next-poll times, bounded concurrency and one
global request budget (`TokenBucket`). Schedules come from `asg_audit.schedule` (pure); time
from an injected clock, so the simulator and the benchmarks run it in scaled time. The entry
points (`collect`, `collect_sync`, the `collect` command) are in `asg_audit.collector`; the
store writer thread is `asg_audit.pollwriter`.

Durability: answers are buffered and written in micro-batches by one writer thread that owns
the store; each batch (observations through the normaliser, rejects, and the `poll_state` rows
they follow from) is one transaction. A run killed at any moment loses at most the unwritten
batch, whose tasks are simply polled again: `collect` again resumes from `poll_state`, nothing
lost and nothing duplicated. Repeated 202 answers are counted in `poll_state.attempts`; only
a task's first 202 ever is stored as an observation. `attempts` counts every request (429s,
5xx and transport errors too): a resumed run counts as answers only what the store holds from
polls (200, 202, 404), so a task that only ever got errors is still one never answered, and
its first 202 is still stored. A write the store refuses (a full disk, a file it may not grow)
stops the run at once, recorded `failed` with the error when the store can still record it:
no more polls (their answers could not be stored either), what was written before is kept, and
the tasks of the refused batch are polled again by the next run.

poll_state.state: `pending`, `done` (settled), `failed` (a final status other than settled),
`not_found` (404s from our first 404 for longer than the grace window), `expired` (still
pending `deadline_s` after we first saw it, on our clock). `done` and `failed` are final;
`not_found` and `expired` rest until `next_poll_at` (a cool-down of 1 h, doubling at each
recheck up to 24 h), then a later run polls them again.

A run never believes 404s alone, and stops as `failed` when the API never answers: see
`asg_audit.apitrust`, which holds that state. It also stops as `failed` when the Gateway is
down (`_Outage`: 10 s or more of requests getting no answer or a 5xx, at least 3, and no
usable answer since), and so does a run that ends with tasks left pending during such an
outage, or without a single usable answer (`_judge_end`): the `collect` command exits 3 for
it and `audit`'s collect step fails, one rule for both.

The deadline bounds a run: a task's polls (retries after errors too) are planned no later
than its deadline, and a task past it whose last request got no answer about it is left
pending for the next run (not expired: nothing showed it pending), so a run lasts about its
deadline after its last first poll, not backoffs past it. A 200 without a status (an error
body) is no final status: an unusable answer, retried and kept.

A task the store saw settled (an ingested export, a webhook) that answers it is not settled
(a 202, a 200 with another status) is `done` at once: the answer is stored and counted as a
conflict of its settled result (`asg_audit.results_sql`), never polled again for it.

Tasks tracked with a `created_at` in our future: the earliest is asked at once (the clock
probe), before any other poll and whatever a replan decides meanwhile; an error answer (429,
5xx, transport) asks it again with the usual backoff. An answer means the API's clock is ahead
of ours, so they all count as created now: every plan from then on (the replan at once, the
replans when Adaptive learns, the second look before a first poll) starts from that time,
while latencies are still learned on the API's clock (its `settled_at` minus its
`created_at`, `_Task.api_created_at`). A 404 means they are not created yet, and each is
polled from its `created_at` as planned.

Rate limits: a 429 closes the request gate for its Retry-After (at most
`ratelimit.MAX_RETRY_AFTER_S`). A Retry-After longer than `deadline_s` stops the run as
`failed` at once (an `ApiTransientError`, exit 3, saying when to come back): waiting would carry
every task past its deadline. A poll falling due while the gate is closed waits for it, except
that a task whose deadline passes meanwhile is `expired` then, when an answer had shown it
pending (a task never answered stays pending and is polled when the gate reopens). A run that
gets nothing but 429s (no 200, 202 or 404) for longer than `deadline_s` stops as `failed` the
same way: every pending task would be past its deadline, and a task never answered would be
polled for ever. A 429 to the control-task probe closes the gate like any other. A gate
closed for `GATE_ANNOUNCE_S` or more is logged with its reopening time, and the progress ETA
is never less than the wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import heapq
import logging
import math
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Final, Literal

from asg_audit import gateway as gw
from asg_audit.apitrust import UNREACHABLE_AFTER_S, UNREACHABLE_MIN_FAILURES, ApiTrust
from asg_audit.clock import Clock
from asg_audit.config import AuditConfig
from asg_audit.errors import ApiError, ApiTransientError, AuthError, StoreError
from asg_audit.model import Source, is_safe_task_id
from asg_audit.normalize import RawRecord
from asg_audit.pollwriter import (
    CollectorSettings,
    CollectProgress,
    CollectSummary,
    LoadedState,
    PollWriter,
    dt_utc,
    epoch_of,
)
from asg_audit.progress import ProgressReporter
from asg_audit.ratelimit import TokenBucket
from asg_audit.redaction import display_url, error_text
from asg_audit.schedule import SchedulePolicy, TaskFacts

__all__ = ["CollectorRun", "policy_next"]

log = logging.getLogger("asg_audit.collector")

FINAL_STATES: Final = frozenset({"done", "failed"})
# polled again by a later run once their cool-down (`next_poll_at`) has passed
RESTING_STATES: Final = frozenset({"not_found", "expired"})
RECHECK_BASE_S: Final = 3600.0
RECHECK_CAP_S: Final = 86400.0
# the progress line's ETA looks at every pending task's next poll only up to this many
ETA_SCAN_MAX: Final = 5000
_CONTINUE_STATUSES: Final = frozenset({"pending", "in_progress", "verified"})
# a tracked created_at this far in our future asks whether the API's clock is ahead of ours
CLOCK_AHEAD_MARGIN_S: Final = 5.0
# the dispatcher's longest sleep (clock seconds) with nothing in flight: how soon it notices a
# stop request or the end of `run_for_s`
TICK_S: Final = 1.0
# polls falling due this close (clock seconds) after the last send go out together, and an
# arrived answer waits unread at most this long for the dispatcher's next wake-up
BATCH_S: Final = 0.05
SLEEP_PAD_S: Final = 0.002
# a 429 closing the request gate for this long (clock seconds) or more is logged, with when
# it reopens
GATE_ANNOUNCE_S: Final = 10.0


@dataclass(slots=True)
class _Task:
    facts: TaskFacts  # created_at on our clock once the clock probe found the API's ahead
    # the created_at tracked (the API's clock): latencies are settled_at minus this one
    api_created_at: float | None = None
    deadline_at: float = math.inf  # first seen (or first polled) + deadline_s, our clock
    next_poll_at: float = 0.0
    state: str = "pending"
    attempts: int = 0  # requests sent (poll_state.attempts)
    polls: int = 0  # answers about the task (200/202/404): what schedules count
    last_poll_at: float | None = None
    last_http_status: int | None = None
    first_404_at: float | None = None
    stored_first_404_at: float | None = None  # what poll_state holds
    rest_s: float | None = None  # the last cool-down of a rechecked not_found/expired task
    errors: int = 0  # consecutive failed attempts
    rejected: int = 0  # final answers the normaliser rejected (their retries back off)
    stored_pending: bool = False
    final_key: tuple[str, datetime] | None = None  # the record that made the task final
    version: int = 0
    # made `done` by an answer that it is not settled although the store saw it settled (a
    # reversal, recorded as a conflict of its result): counted apart from the settled
    reversed: bool = False


@dataclass(slots=True)
class _Outage:
    """The requests since the Gateway's last usable answer (a 200 with a status, a 202 or a
    404) that got no HTTP answer or a 5xx: the one rule for when it counts as down.

    Down (`down`): at least `UNREACHABLE_MIN_FAILURES` such requests over
    `UNREACHABLE_AFTER_S` or more, and no usable answer since the first of them. 429s and
    unusable answers neither count nor end an outage (they have rules of their own). A run
    stops as `failed` the moment the Gateway is down; a run that ends (its deadline or time
    budget) with tasks left pending during an outage of that many requests, however short,
    is `failed` too (`ended_down`): its tasks are unresolved because the Gateway was away.
    """

    since: float | None = None  # when the first of them got its error (our clock)
    transport: int = 0
    server: Counter[int] = field(default_factory=Counter)  # 5xx status -> count
    last: str = ""
    ever_usable: bool = False  # a usable answer in this run at all

    def usable(self) -> None:
        self.since, self.transport, self.last, self.ever_usable = None, 0, "", True
        self.server.clear()

    def failed(self, now: float, http_status: int | None, detail: str) -> None:
        if self.since is None:
            self.since = now
        if http_status is None:
            self.transport += 1
        else:
            self.server[http_status] += 1
        self.last = detail

    def failures(self) -> int:
        return self.transport + self.server.total()

    def down(self, now: float) -> bool:
        return self.ended_down() and now - (self.since or now) >= UNREACHABLE_AFTER_S

    def ended_down(self) -> bool:
        return self.since is not None and self.failures() >= UNREACHABLE_MIN_FAILURES

    def describe(self) -> str:
        """Return `12 requests: 9 with no answer (last: …), 3 with a 5xx (503: 3)`."""
        n = self.failures()
        parts = []
        if self.transport:
            parts.append(f"{self.transport:,} with no answer (connection errors, timeouts)")
        if self.server:
            codes = ", ".join(f"{code}: {k:,}" for code, k in self.server.most_common())
            parts.append(f"{self.server.total():,} with a 5xx ({codes})")
        return f"{n:,} requests: " + ", ".join(parts) + f" (last: {self.last})"


class CollectorRun:
    """One run of the collector: `await run()` polls, writes and returns the summary."""

    def __init__(
        self,
        *,
        config: AuditConfig,
        settings: CollectorSettings,
        policy: SchedulePolicy,
        clock: Clock,
        task_ids: list[str] | None,
        run_for_s: float | None,
        progress: ProgressReporter | None,
        stop_event: threading.Event | None,
        transport: Any,
    ) -> None:
        self.config = config
        self.s = settings
        self.policy = policy
        self.clock = clock
        self.task_ids = task_ids
        self.run_for_s = run_for_s
        self.progress = progress
        self.external_stop = stop_event
        self.transport = transport
        self.rng = random.Random()
        self.tasks: dict[str, _Task] = {}
        self.heap: list[tuple[float, int, str]] = []
        self.pending = 0
        self.records: list[RawRecord] = []
        self.rows: dict[str, tuple[Any, ...]] = {}
        # (origin, observed_at) -> task id of each buffered record, to spot rejected final answers
        self.origins: dict[tuple[str, datetime], str] = {}
        self.stats: dict[str, Any] = {
            k: 0
            for k in (
                "requests",
                "http_200",
                "http_202",
                "http_404",
                "http_429",
                "http_5xx",
                "http_other",
                "transport_errors",
                "unusable_bodies",
                "retries",
                "reversals",
            )
        }
        self.stats["control_probes"] = 0
        self.stats["http_other_statuses"] = {}  # status -> count, of `http_other`
        # the 200 answers buffered, and a detail for the rejects of other statuses (by record)
        self.ready_keys: set[tuple[str, datetime]] = set()
        self._judging = False  # a write under way holds 200s awaiting the normaliser's verdict
        self._poll_bug: Exception | None = None  # what failed inside a poll's own task
        self._rejected_verdict = False  # a write's 200s all rejected by the normaliser
        self.notes: dict[tuple[str, datetime], str] = {}
        self.stop_reason: str | None = None
        self.auth_error: AuthError | None = None
        # why the run gave up on the API (unreachable, 404 for everything): status `failed`
        self.failure: ApiError | None = None
        # whether 404s are believed yet, and whether the API answers at all
        self.api = ApiTrust(config.base_url)
        # errors since the last usable answer: whether the Gateway is down (`_Outage`)
        self.outage = _Outage()
        # tasks the store saw settled (an ingested export, a webhook): an answer that one is
        # not settled is a reversal (`_reversal`)
        self.seen_settled: frozenset[str] = frozenset()
        # set by `stop` and `_fail`: wakes a dispatcher waiting for a free slot at once
        self._stop_wake = asyncio.Event()
        self._clock0, self._wall0 = clock.now(), time.monotonic()
        self.summary = CollectSummary(run_id="", status="running")
        self._flush_wanted = asyncio.Event()
        self._flush_urgent = False  # the next write goes now (no waiting for company)
        self._flushed = asyncio.Event()  # set after each write
        # tasks made final (done, failed) whose answer is not through the normaliser yet: the
        # run does not end before it is, since a rejected answer puts its task back
        self.unconfirmed: set[str] = set()
        self._hold = gw.ReadHold()
        self.settled_unlearned: set[str] = set()
        # settled tasks whose latency the schedule learned from the answer itself (task id ->
        # latency), so that learning does not wait for the write; taken back if the normaliser
        # rejects that answer
        self.learned_early: dict[str, float] = {}
        self._retract = getattr(policy, "retract_settled", None)
        self._gate_announced = -math.inf  # the reopening time of the last gate logged
        # our clock at the last answer about a task (200, 202 or 404): a run that gets
        # nothing but 429s for longer than the deadline stops (see `_throttled`)
        self._last_answer_at: float | None = None
        # a task created in our future, asked at once (`_plan_clock_probe`)
        self._clock_probe: str | None = None
        # a write the store refused (a full disk, a lost file): the run stops at once as
        # `failed` (`_write_failed`); the answers of that batch and those after it are not
        # stored, and their tasks are polled again by the next run
        self.write_error: StoreError | None = None
        self._unwritten = 0

    # -- setup -----------------------------------------------------------------------------------

    def _load(self, loaded: LoadedState, now: float) -> None:
        known = {r["task_id"]: r for r in loaded.state.iter_rows(named=True)}
        first_seen = loaded.first_seen
        for row in loaded.subs.iter_rows(named=True):
            task_id = row["task_id"]
            if not isinstance(task_id, str) or not is_safe_task_id(task_id):
                self.summary.skipped_unsafe_ids += 1
                continue
            if task_id in self.tasks:
                continue
            prior = known.get(task_id)
            rest_s = None
            if prior is not None and task_id in loaded.unproven_final:
                prior = {**prior, "state": "pending", "next_poll_at": None}
            if prior is not None and prior["state"] in FINAL_STATES:
                self.summary.already_final += 1
                continue
            if prior is not None and prior["state"] in RESTING_STATES:
                due = epoch_of(prior["next_poll_at"])
                if due is not None and due > now:
                    self.summary.already_final += 1  # resting: not due for a recheck yet
                    continue
                # due, or made final by a version without rechecks (no next_poll_at)
                if due is not None:
                    rest_s = due - (epoch_of(prior["updated_at"]) or due)
                self.summary.rechecked += 1
            created = epoch_of(row.get("created_at"))
            facts = TaskFacts(
                task_id, created, row.get("consensus_threshold"), row.get("task_type")
            )
            t = _Task(facts=facts, api_created_at=created, rest_s=rest_s)
            seen = first_seen.get(task_id)
            if seen is not None:
                t.deadline_at = seen + self.s.deadline_s
            if prior is not None:
                t.attempts = int(prior["attempts"] or 0)
                t.first_404_at = epoch_of(prior["first_404_at"])
                t.stored_first_404_at = t.first_404_at
                t.last_http_status = prior["last_http_status"]
                # only answers about the task count (attempts also counts 429s, 5xx and
                # transport errors): the answers stored (repeated 202s are not, so at least
                # one when the last request or a 404 was an answer); the first 202 is stored
                # unless one is already
                stored, t.stored_pending = loaded.answers.get(task_id, (0, False))
                answered = t.last_http_status in (200, 202, 404) or t.first_404_at is not None
                t.polls = max(stored, 1 if answered else 0)
                updated = epoch_of(prior["updated_at"])
                if t.attempts and updated is not None:
                    # never in our future (a clock set back): the next poll would wait for it
                    t.last_poll_at = min(updated, now)
                t.next_poll_at = epoch_of(prior["next_poll_at"]) or now
            else:
                t.next_poll_at = policy_next(self.policy, t, now)
            self.tasks[task_id] = t
            self.policy.observe_tracked(facts)
            self._push(t)
        self.pending = len(self.tasks)
        self._plan_clock_probe(now)
        self.summary.tracked = len(self.tasks)
        self.api.control_task_id = loaded.control_task_id
        self.seen_settled = loaded.seen_settled

    def _plan_clock_probe(self, now: float) -> None:
        """Tasks created in our future: ask the earliest of them at once.

        Either the API's clock is ahead of ours (the task exists: every such task was created
        by now on our clock, and waiting out the difference would delay them all), or the
        task is not created yet (a 404: the others keep their planned polls). See
        `_clock_probe_answered`.
        """
        ahead = [
            t
            for t in self.tasks.values()
            if t.facts.created_at is not None and t.facts.created_at > now + CLOCK_AHEAD_MARGIN_S
        ]
        if not ahead:
            return
        probe = min(ahead, key=lambda t: t.facts.created_at or 0.0)
        self._clock_probe = probe.facts.task_id
        probe.next_poll_at = now
        self._push(probe)

    def _probe_first(self, t: _Task) -> bool:
        """Whether `t` is the clock probe waiting to be asked at once (no error retry)."""
        return t.facts.task_id == self._clock_probe and t.errors == 0

    def _clock_probe_answered(self, t: _Task, outcome: gw.Outcome, sent_at: float) -> bool:
        """The answer to the clock probe: True when it was a 404 of a task not created yet,
        which is then polled as planned (its 404 starts no grace and no deadline).

        An error (429, 5xx, transport, an unusable body) says nothing about the clocks: the
        task stays the probe and is asked again after the usual backoff.
        """
        now = self.clock.now()
        if not isinstance(outcome, gw.Ready | gw.Pending | gw.NotFound):
            return False
        self._clock_probe = None
        if isinstance(outcome, gw.Ready | gw.Pending):
            # the API's clock is ahead: every task created in our future exists already
            for other in self.tasks.values():
                created = other.facts.created_at
                if other.state == "pending" and created is not None and created > now:
                    other.facts = replace(other.facts, created_at=now)
                    self.policy.observe_tracked(other.facts)
            self._replan(now)
            return False
        created = t.facts.created_at
        if created is None or created <= sent_at:
            return False
        self.stats["requests"] += 1
        self.stats["http_404"] += 1
        self.api.answered = True
        self._last_answer_at = now
        t.attempts += 1
        # the question was about the clocks, not the task: the schedule plans its first poll
        # from its created_at as if it was never asked (with `last_poll_at` set, a fallback
        # schedule polled it 5 s later and on, each a 404, and it went not_found when the
        # grace ran out, before the API had created it)
        t.last_poll_at = None
        t.last_http_status = outcome.http_status
        t.errors = 0
        t.deadline_at = math.inf
        t.next_poll_at = policy_next(self.policy, t, now)
        self._row(t, now)
        self._push(t)
        return True

    def _push(self, t: _Task) -> None:
        t.version += 1
        # the clock probe goes before every other poll due (a backlog of tasks due since their
        # created_at would otherwise go first, and a replan could move it meanwhile)
        at = t.next_poll_at
        if self._probe_first(t) and at <= self.clock.now():
            at = -math.inf
        heapq.heappush(self.heap, (at, t.version, t.facts.task_id))

    # -- the loop ----------------------------------------------------------------------------------

    async def run(self) -> CollectSummary:
        loop = asyncio.get_running_loop()
        writer = PollWriter(self.config.db_path, self.s.lock_wait_s)
        # CPU of the whole process (event loop, writer thread and DuckDB's own worker threads):
        # the thread clocks alone would miss the work DuckDB does on its threads
        cpu0, main0 = time.process_time(), time.thread_time()
        wall0 = time.monotonic()
        run_id: str | None = None
        recorded = False
        try:
            await loop.run_in_executor(writer.pool, writer.open)
            loaded = await loop.run_in_executor(writer.pool, writer.load, self.task_ids)
            for threshold, task_type, latency in loaded.history:
                self.policy.observe_settled(TaskFacts("", None, threshold, task_type), latency)
            run_id = await loop.run_in_executor(writer.pool, writer.start_run)
            self.summary.run_id = run_id
            started_at = self.clock.now()
            self._clock0, self._wall0 = started_at, time.monotonic()
            self._load(loaded, started_at)
            status = "completed"
            async with gw.GatewayClient(
                self.config.base_url,
                self.config.api_key,
                timeout_s=self.s.timeout_s,
                max_connections=self.s.concurrency,
                clock=self.clock,
                transport=self.transport,
            ) as client:
                self.client = client
                self.bucket = TokenBucket(
                    self.clock,
                    max_rps=self.s.max_rps,
                    retry_floor_s=self.s.retry_floor_s,
                    rng=self.rng,
                    burst=True,
                )
                flusher = asyncio.create_task(self._flush_loop(writer, run_id))
                ticker = asyncio.create_task(self._progress_loop())
                try:
                    status = await self._dispatch(started_at)
                    if status in ("completed", "partial") and self.stop_reason is None:
                        self._judge_end(self.clock.now())
                finally:
                    ticker.cancel()
                    self._stopping = True
                    self._flush_wanted.set()
                    await flusher
                if self._poll_bug is not None:
                    raise self._poll_bug  # the run is recorded failed with it (below)
                if status in ("completed", "partial") and self.stop_reason is not None:
                    # a signal (or a failure found by the last write) while the run was ending
                    status = self._stopped_status()
            if self.write_error is not None:
                status = "failed"
                # polled, not stored (`settled` and the others count what the run saw)
                self.stats["unwritten_answers"] = self._unwritten + len(self.records)
                self.write_error = self._write_failure_error(self.write_error)
                self.summary.failure = str(self.write_error)
            # the final flush happened in the flusher; record the run
            cpu_s = time.process_time() - cpu0
            self.stats["cpu_loop_s"] = round(time.thread_time() - main0, 4)
            self.stats["cpu_writer_s"] = round(writer.cpu_s, 4)
            self._finish_summary(status, cpu_s, time.monotonic() - wall0)
            recorded = True
            try:
                await loop.run_in_executor(
                    writer.pool, writer.finish_run, run_id, status, self.summary.stats
                )
            except StoreError as exc:
                if self.write_error is None:
                    raise
                raise _unrecorded(self.write_error, exc) from None
        except BaseException as exc:
            if run_id is not None and not recorded:
                # a bug or a store failure: the run is not left `running`
                stats = {**self.stats, "error": self._error_text(exc)}
                try:
                    await loop.run_in_executor(
                        writer.pool, writer.finish_run, run_id, "failed", stats
                    )
                except StoreError as record_exc:
                    if isinstance(exc, StoreError):
                        raise _unrecorded(exc, record_exc) from None
                except Exception:  # noqa: S110  (the first error is the one to report)
                    pass
            raise
        finally:
            if self.progress is not None:
                self.progress.stop()
            await loop.run_in_executor(writer.pool, writer.close)
            writer.pool.shutdown(wait=True)
        if self.write_error is not None:
            raise self.write_error
        if self.auth_error is not None:
            raise self.auth_error
        if self.failure is not None:
            raise self.failure
        return self.summary

    def stop(self, reason: str) -> None:
        """Ask the run to stop: in-flight requests are abandoned, buffered answers written."""
        if self.stop_reason is None:
            self.stop_reason = reason
            log.warning("collect: stopping (%s); writing what was collected", reason)
        self._wake_on_stop()

    def _wake_on_stop(self) -> None:
        """Wake a dispatcher waiting for a free slot (only from the run's own thread: another
        thread's `stop_event` is seen at the dispatcher's next tick)."""
        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop()
            self._stop_wake.set()

    def _fail(self, error: ApiError) -> None:
        """Stop the run as `failed`: the API cannot be used as configured (`error` says why)."""
        if self.failure is None and self.auth_error is None:
            self.failure = error
            self.summary.failure = str(error)
            self.stop_reason = self.stop_reason or "failed"
            self._wake_on_stop()

    def _judge_end(self, now: float) -> None:
        """A run that ends (every task final or parked, or its time budget spent) with tasks
        left pending is `failed` when the Gateway let it down: an outage still going on (see
        `_Outage`), or not one usable answer in the whole run."""
        left = sum(1 for t in self.tasks.values() if t.state in ("pending", "parked"))
        if not left:
            return
        if self.outage.ended_down():
            return self._fail(self._down_error(now, left))
        requests = self.stats["requests"]
        if requests and not self.outage.ever_usable:
            st = self.stats
            seen = [
                (st["http_429"], "429 (rate limited)"),
                (st["http_5xx"], "5xx"),
                (st["transport_errors"], "no answer"),
                (st["unusable_bodies"] + st["http_other"], "unusable"),
            ]
            shown = ", ".join(f"{what}: {n:,}" for n, what in seen if n)
            self._fail(
                ApiTransientError(
                    f"the Gateway at {display_url(self.config.base_url)} gave no usable answer "
                    f"(a 200, 202 or 404) to any of {requests:,} requests ({shown}): stopped, "
                    f"{_tasks_stay(left)} pending; run collect again later"
                )
            )
        return None

    def _down_error(self, now: float, left: int) -> ApiTransientError:
        o = self.outage
        since = o.since if o.since is not None else now
        when = _utc_text(since)
        return ApiTransientError(
            f"the Gateway at {display_url(self.config.base_url)} is down: no usable answer for "
            f"{_seconds_text(now - since)}" + (f" (since {when})" if when else "") + ", "
            f"{o.describe()}: stopped, {_tasks_stay(left)} pending; run collect again when "
            "it is back"
        )

    def _write_failed(self, exc: StoreError, unwritten: int) -> None:
        """The store refused a write: stop polling at once (the answers still to come could
        not be stored either), as `failed`. Nothing is written after it."""
        if self.write_error is None:
            self.write_error = exc
            self._unwritten = unwritten
            self.stop_reason = self.stop_reason or "store write failed"
        self._flushed.set()  # a dispatcher waiting for the write to confirm final answers
        self._wake_on_stop()

    def _write_failure_error(self, exc: StoreError) -> StoreError:
        """Return the one-line error of a run stopped by a refused write."""
        lost = self._unwritten + len(self.records)
        answers = "1 answer" if lost == 1 else f"{lost:,} answers"
        # the cause first (`runs` shows the start of the error): the OS's words at the end of
        # DuckDB's message, such as `No space left on device`
        cause = str(exc).rstrip().rsplit(": ", 1)[-1]
        known = {os.strerror(code) for code in errno.errorcode}
        because = f" ({cause})" if cause in known else ""
        return StoreError(
            f"collect stopped, the store cannot be written{because}: {exc}; the {answers} of "
            "its last polls are not stored (their tasks are polled again by the next run; what "
            "was stored before is kept)"
        )

    def _stopped_status(self) -> str:
        if self.write_error is not None:
            return "failed"
        if self.auth_error is not None:
            return "auth_refused"
        if self.failure is not None:
            return "failed"
        return "interrupted"

    async def _dispatch(self, started_at: float) -> str:
        slots = asyncio.Semaphore(self.s.concurrency)
        jobs: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._revision = getattr(self.policy, "revision", 0)
        hold = self._hold
        bucket = self.bucket
        last_sent_at = -float("inf")
        until = None if self.run_for_s is None else started_at + self.run_for_s
        status = "completed"
        while True:
            if self.external_stop is not None and self.external_stop.is_set():
                self.stop("stop requested")
            if self.stop_reason is not None:
                status = self._stopped_status()
                break
            if self.pending == 0 and not jobs:
                if not self.unconfirmed:
                    break
                # final answers not written yet: one the normaliser rejects is polled again
                self._flush_urgent = True
                self._flushed.clear()
                self._flush_wanted.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._flushed.wait(), 0.25)
                continue
            now = self.clock.now()
            if until is not None and now >= until:
                status = "partial"
                break
            if self.api.probe == "wanted" and not slots.locked() and bucket.free_at() <= now:
                await slots.acquire()  # free: does not wait
                bucket.reserve()
                last_sent_at = now
                self.api.probe = "sent"
                job = asyncio.create_task(self._probe_control(slots))
                jobs.add(job)
                job.add_done_callback(jobs.discard)
                continue
            # answers in flight are held until the next wake-up (`gateway.ReadHold`): at most
            # BATCH_S away while there are any
            nap = BATCH_S if jobs else TICK_S
            if not self.heap:
                await self.clock.sleep(nap)
                hold.release()
                continue
            due, version, task_id = self.heap[0]
            if due <= now < bucket.paused_until:
                # due, but a 429 closed the gate: it waits for the gate (or its deadline)
                heapq.heappop(self.heap)
                t = self.tasks[task_id]
                if t.version == version and t.state == "pending":
                    self._wait_for_gate(t, now, bucket.paused_until)
                continue
            if due > now:
                # polls falling due within BATCH_S of the last send wait for one another: one
                # wake-up sends them all (within the bucket's burst)
                due = max(due, last_sent_at + BATCH_S)
            # one wake-up for both waits: the next task's time and the request budget's slot
            # (when the bucket is what holds polls back, a full burst's worth of it: a backlog
            # goes out `burst_size` polls a wake-up, not one)
            free_at = bucket.free_at()
            if free_at > max(due, now):
                free_at = bucket.full_at()
            due = max(due, free_at)
            if due > now:
                # a little past it: an event loop's timers round to the millisecond, and waking
                # a fraction of one early means a busy second pass
                await self.clock.sleep(min(due - now + SLEEP_PAD_S, nap))
                hold.release()
                continue
            revision = getattr(self.policy, "revision", 0)
            if revision != self._revision:
                # a learned schedule replaces the fallback: decide every pending task again
                self._revision = revision
                self._replan(now)
                continue
            heapq.heappop(self.heap)
            t = self.tasks[task_id]
            if t.version != version or t.state != "pending":
                continue
            if t.attempts == 0 and task_id != self._clock_probe:
                # a first poll was planned when the task was loaded, maybe before anything was
                # learned; ask again with what is known now (it can only move later)
                again = policy_next(self.policy, t, now)
                if again > now + 0.01:
                    t.next_poll_at = again
                    self._push(t)
                    continue
            if slots.locked():
                # waiting for a slot is no wake-up of ours to read held answers at: read them
                # as they come until one is free
                hold.active = False
                hold.release()
                got = await self._acquire_or_stop(slots)
                hold.active = True
                if not got:  # a stop came first: the requests in flight are abandoned
                    self._push(t)
                    continue
                if bucket.free_at() > self.clock.now():  # a 429 may have closed the gate
                    slots.release()
                    self._push(t)
                    continue
            else:
                await slots.acquire()  # free: does not wait
            if self.stop_reason is not None:
                slots.release()
                self._push(t)
                continue
            bucket.reserve()
            last_sent_at = now
            job = asyncio.create_task(self._poll(t, slots))
            jobs.add(job)
            job.add_done_callback(jobs.discard)
        hold.active = False
        hold.release()
        if status == "completed" or status == "partial":
            if jobs:
                await asyncio.gather(*jobs, return_exceptions=True)
        else:
            for job in list(jobs):
                job.cancel()
            await asyncio.gather(*jobs, return_exceptions=True)
        return status

    async def _acquire_or_stop(self, slots: asyncio.Semaphore) -> bool:
        """Wait for a free slot; False (no slot taken) when the run is asked to stop first.

        Every slot may be held by a request that hangs until its timeout (up to an hour):
        a stop (a signal, `_fail`, the external `stop_event`) must not wait for it.
        """
        acquire = asyncio.ensure_future(slots.acquire())
        woken = asyncio.ensure_future(self._stop_wake.wait())
        try:
            while not acquire.done():
                if self.external_stop is not None and self.external_stop.is_set():
                    self.stop("stop requested")
                if self.stop_reason is not None:
                    break
                await asyncio.wait(
                    {acquire, woken}, timeout=TICK_S, return_when=asyncio.FIRST_COMPLETED
                )
        finally:
            woken.cancel()
            if not acquire.done():
                acquire.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await acquire
        got = acquire.done() and not acquire.cancelled() and acquire.exception() is None
        if got and self.stop_reason is not None:
            slots.release()
            return False
        return got

    def _replan(self, now: float) -> None:
        """Ask the policy again about every waiting task and rebuild the heap."""
        heap: list[tuple[float, int, str]] = []
        for _, version, task_id in self.heap:
            t = self.tasks[task_id]
            if t.version != version or t.state != "pending":
                continue
            if self._probe_first(t):
                # still to be asked at once: planned from its created_at, it would wait out
                # the clocks' difference, and with it every task created in our future
                t.next_poll_at = now
            elif t.errors == 0:  # a retry after a failure keeps its backoff
                at = policy_next(self.policy, t, now)
                if t.last_poll_at is not None:
                    at = max(at, t.last_poll_at + 5.0)
                if t.deadline_at > now:
                    at = min(at, t.deadline_at)
                t.next_poll_at = at
            t.version += 1
            heap.append((-math.inf if self._probe_first(t) else t.next_poll_at, t.version, task_id))
        heapq.heapify(heap)
        self.heap = heap

    def _wait_for_gate(self, t: _Task, now: float, gate: float) -> None:
        """A poll due while the gate is closed: wait for the gate, or expire at the deadline.

        A task past its deadline whose last answer showed it pending (not a 404) is expired
        now; one never answered has no evidence either way and is polled when the gate opens.
        """
        if now >= t.deadline_at and t.polls > 0 and t.first_404_at is None:
            return self._finish(t, "expired", now)
        t.next_poll_at = t.deadline_at if now < t.deadline_at < gate else gate
        self._push(t)
        return None

    async def _poll(self, t: _Task, slots: asyncio.Semaphore) -> None:
        sent_at = self.clock.now()
        try:
            try:
                outcome = await self.client.fetch_result(t.facts.task_id, self._hold)
            finally:
                slots.release()
            self._handle(t, outcome, sent_at)
        except Exception as exc:
            # a bug (or a schedule's own code failing): the task is neither final nor planned
            # again, so the run would wait for it for ever. It stops, and `run` raises this.
            if self._poll_bug is None:
                self._poll_bug = exc
            self.stop("failed")

    # -- outcomes ----------------------------------------------------------------------------------

    def _record(
        self, body: bytes, origin: str, task_id: str, code: int | None, at: float
    ) -> tuple[str, datetime]:
        observed_at = dt_utc(at)
        self.records.append(
            RawRecord(
                body=body,
                source=Source.POLL,
                origin=origin,
                observed_at=observed_at,
                task_id_hint=task_id,
                http_status=code,
            )
        )
        key = (origin, observed_at)
        self.origins[key] = task_id
        if len(self.records) >= self.s.batch_size:
            self._flush_wanted.set()
        return key

    def _handle(self, t: _Task, outcome: gw.Outcome, sent_at: float) -> None:
        outcome = _without_status_unusable(outcome)
        if isinstance(outcome, gw.Ready | gw.Pending | gw.NotFound):
            self.outage.usable()
        if t.facts.task_id == self._clock_probe and self._clock_probe_answered(t, outcome, sent_at):
            return None
        now = self.clock.now()
        st = self.stats
        st["requests"] += 1
        t.attempts += 1
        t.last_poll_at = sent_at
        t.last_http_status = outcome.http_status
        if t.deadline_at == math.inf:
            # first polled now: the deadline counts on our clock, never from the API's
            # created_at (the two clocks may disagree by weeks)
            t.deadline_at = sent_at + self.s.deadline_s
        if not isinstance(outcome, gw.TransportFailure):
            self.api.answered = True
        if isinstance(outcome, gw.Ready | gw.Pending | gw.NotFound):
            self._last_answer_at = now
        if isinstance(outcome, gw.Pending | gw.NotFound):
            self.api.usable = True  # a 200 is usable once the normaliser accepts it
        task_id = t.facts.task_id
        if isinstance(outcome, gw.Ready):
            st["http_200"] += 1
            self._trust()
            t.polls += 1
            t.errors = 0
            t.first_404_at = None
            t.final_key = self._record(outcome.body, outcome.origin, task_id, 200, now)
            self.ready_keys.add(t.final_key)
            if outcome.status == "settled":
                self._finish(t, "done", now)
                return self._learn_early(t, outcome.settled_at)
            if task_id in self.seen_settled:
                return self._reversal(t, now)
            if outcome.status not in _CONTINUE_STATUSES:
                return self._finish(t, "failed", now)
            return self._schedule(t, now)
        if isinstance(outcome, gw.Pending):
            st["http_202"] += 1
            self._trust()
            t.polls += 1
            t.errors = 0
            t.first_404_at = None
            if task_id in self.seen_settled:
                t.stored_pending = True
                t.final_key = self._record(outcome.body, outcome.origin, task_id, 202, now)
                return self._reversal(t, now)
            self.policy.observe_pending(t.facts, sent_at)
            if not t.stored_pending:
                t.stored_pending = True
                self._record(outcome.body, outcome.origin, task_id, 202, now)
            return self._schedule(t, now)
        if isinstance(outcome, gw.NotFound):
            return self._not_found(t, outcome, sent_at, now)
        if isinstance(outcome, gw.RateLimited):
            resume = self._rate_limited(outcome, now)
            at = max(resume + self.rng.uniform(0, 1.0), sent_at + 5.0)
            return self._schedule(t, now, at=at, answered=False)
        if isinstance(outcome, gw.AuthRefused):
            st["http_other"] += 1
            t.attempts -= 1  # the run stops; this task was not really polled
            self.auth_error = AuthError(
                f"the Gateway refused the API key ({outcome.http_status}: {outcome.message}); "
                "check ASG_API_KEY",
                status_code=outcome.http_status,
            )
            self.stop("auth refused")
            return None
        # everything else is retried with capped exponential backoff
        if isinstance(outcome, gw.ServerError):
            st["http_5xx"] += 1
            self._check_down(now, outcome.http_status, f"{outcome.http_status}: {outcome.message}")
        elif isinstance(outcome, gw.TransportFailure):
            st["transport_errors"] += 1
            self._check_reachable(outcome, now)
            self._check_down(now, None, f"{outcome.kind}, {outcome.message}")
        elif isinstance(outcome, gw.UnusableBody):
            st["unusable_bodies"] += 1
            self._record(outcome.raw, outcome.origin, task_id, outcome.http_status, now)
            detail = f"answered {outcome.http_status} with an unusable body ({outcome.reason})"
            self._unusable(outcome.http_status, detail, now)
        elif isinstance(outcome, gw.UnexpectedStatus):
            st["http_other"] += 1
            codes = st["http_other_statuses"]
            codes[str(outcome.http_status)] = codes.get(str(outcome.http_status), 0) + 1
            detail = f"answered {outcome.http_status}"
            if outcome.location is not None:
                detail += f" (Location: {outcome.location})"
            key = self._record(outcome.body, outcome.origin, task_id, outcome.http_status, now)
            self.notes[key] = detail
            self._unusable(outcome.http_status, detail, now)
        st["retries"] += 1
        t.errors += 1
        if now >= t.deadline_at:
            # past its deadline, and its last request got no answer about it, so not expired:
            # leave it pending for the next run (retries before the deadline are planned no
            # later than it, so a run lasts about its deadline, not backoffs past it)
            t.state = "parked"
            self.pending -= 1
            self.api.held.discard(task_id)
            self._row(t, now)
            return None
        backoff = min(self.s.retry_cap_s, self.s.retry_base_s * 2 ** min(t.errors - 1, 20))
        at = max(now + backoff * self.rng.uniform(0.8, 1.2), sent_at + 5.0)
        return self._schedule(t, now, at=at, answered=False)

    def _check_down(self, now: float, http_status: int | None, detail: str) -> None:
        """A request got no answer or a 5xx: stop the run once the Gateway is down."""
        self.outage.failed(now, http_status, detail)
        if self.outage.down(now):
            left = sum(1 for t in self.tasks.values() if t.state in ("pending", "parked"))
            self._fail(self._down_error(now, left))

    def _reversal(self, t: _Task, now: float) -> None:
        """The store saw `t` settled, and the Gateway now answers that it is not.

        Its answer (just recorded) is stored, and the result stays settled with the reversal
        counted as a conflict (spec §8.9: a settled result never changes; `results_sql`). The
        task is `done`: asking again would only repeat the contradiction.
        """
        self.stats["reversals"] += 1
        t.reversed = True
        self._finish(t, "done", now)

    def _unusable(self, http_status: int, detail: str, now: float) -> None:
        """An answer that is no task's result: stop the run when none was usable for a while.

        Not while 200s await the normaliser's verdict (buffered, or in the write under way): any
        of them may be usable, and a few bad bodies among answers not yet written are a flaky
        API, not a wrong base URL. Their verdict is asked for at once (`_judge_200s`).
        """
        # ... unless a verdict already came back with every 200 of its write rejected: then
        # the 200s are evidence like any other answer (it would otherwise wait for the next
        # write's verdict for ever while 200s keep arriving)
        undecided = (bool(self.ready_keys) or self._judging) and not self._rejected_verdict
        if undecided and not self.api.usable:
            self._flush_urgent = True
            self._flush_wanted.set()
        failure = self.api.unusable(http_status, detail, now, undecided=undecided)
        if failure is not None:
            self._fail(failure)

    def _rate_limited(self, outcome: gw.RateLimited, now: float) -> float:
        """A 429 closes the gate; return when it reopens."""
        self.stats["http_429"] += 1
        resume = self.bucket.on_throttled(outcome.retry_after_s)
        self._throttled(outcome.retry_after_s, resume, now)
        return resume

    def _throttled(self, asked: float | None, resume: float, now: float) -> None:
        """A 429 closed the gate until `resume`: stop the run when it asked for longer than the
        deadline or when nothing but 429s came for longer than the deadline, else log a long
        gate once with when it reopens."""
        only_429s = now - (self._clock0 if self._last_answer_at is None else self._last_answer_at)
        if only_429s > self.s.deadline_s:
            self._fail(
                ApiTransientError(
                    f"the Gateway at {display_url(self.config.base_url)} answered nothing but "
                    f"429 (rate limited) for {_seconds_text(only_429s)}, longer than the "
                    f"deadline ({_seconds_text(self.s.deadline_s)}): stopped, "
                    f"{_tasks_stay(self.pending)} pending; run collect again later, or with a "
                    "lower --max-rps"
                )
            )
            return
        if asked is not None and asked > self.s.deadline_s:
            back = _utc_text(now + asked)
            self._fail(
                ApiTransientError(
                    f"the Gateway at {display_url(self.config.base_url)} rate-limited the run "
                    f"(429) with a Retry-After of {_seconds_text(asked)}, longer than the "
                    f"deadline ({_seconds_text(self.s.deadline_s)}): stopped, "
                    f"{_tasks_stay(self.pending)} pending; run collect again "
                    + (f"after {back}" if back is not None else "later")
                )
            )
            return
        wait = resume - now
        if wait < GATE_ANNOUNCE_S or resume < self._gate_announced + GATE_ANNOUNCE_S:
            return
        self._gate_announced = resume
        capped = ""
        if asked is not None and asked > self.bucket.retry_max_s:
            capped = f" (Retry-After {_seconds_text(asked)}, capped)"
        log.warning(
            "collect: rate limited (429): no request for %s%s, until %s",
            _seconds_text(wait),
            capped,
            _utc_text(resume),
        )

    def _not_found(self, t: _Task, outcome: gw.NotFound, sent_at: float, now: float) -> None:
        """A 404: `not_found` after `not_found_grace_s` of 404s (two answers at least) once
        the run trusts 404s; until then the task waits (see the module docstring)."""
        self.stats["http_404"] += 1
        t.polls += 1
        t.errors = 0
        task_id = t.facts.task_id
        first = t.first_404_at is None
        if t.first_404_at is None:
            t.first_404_at = sent_at
        grace_end = t.first_404_at + self.s.not_found_grace_s
        if not first and now >= grace_end:
            if self.api.trusted:
                self._record_404(outcome, task_id, now)
                return self._finish(t, "not_found", now)
            self.api.held.add(task_id)
        elif first:
            self._record_404(outcome, task_id, now)
        if self.api.suspicious(self.stats["http_404"], self.pending):
            failure = self.api.suspect(self.stats["http_404"])
            if failure is not None:
                self._fail(failure)
        # the 404 state is decided by our first 404 and the grace window, not the deadline
        at = policy_next(self.policy, t, now)
        if now < grace_end:
            at = min(at, grace_end)
        return self._schedule(t, now, at=at, answered=False)

    def _record_404(self, outcome: gw.NotFound, task_id: str, now: float) -> None:
        if self.api.trusted:
            self._record(outcome.body, outcome.origin, task_id, 404, now)
            return
        # kept back: if the base URL is wrong these 404s are no evidence about the task
        self.api.deferred.append(
            RawRecord(
                body=outcome.body,
                source=Source.POLL,
                origin=outcome.origin,
                observed_at=dt_utc(now),
                task_id_hint=task_id,
                http_status=404,
            )
        )

    def _trust(self) -> None:
        """The API knows our tasks (a 200/202): its 404s are evidence from now on."""
        self.records.extend(self.api.trust())

    async def _probe_control(self, slots: asyncio.Semaphore) -> None:
        control_task_id = self.api.control_task_id
        assert control_task_id is not None
        try:
            outcome = await self.client.fetch_result(control_task_id, self._hold)
        finally:
            slots.release()
        outcome = _without_status_unusable(outcome)
        self.stats["requests"] += 1
        self.stats["control_probes"] += 1
        if not isinstance(outcome, gw.TransportFailure):
            self.api.answered = True
        if isinstance(outcome, gw.Ready | gw.Pending | gw.NotFound):
            self.outage.usable()
        if isinstance(outcome, gw.RateLimited):  # nothing may go before the gate reopens
            self._rate_limited(outcome, self.clock.now())
        kind: Literal["known", "not_found", "no_verdict"] = "no_verdict"
        if isinstance(outcome, gw.Ready | gw.Pending):
            kind = "known"
        elif isinstance(outcome, gw.NotFound):
            kind = "not_found"
        records, failure = self.api.probe_answered(kind, self.stats["http_404"])
        self.records.extend(records)
        if failure is not None:
            self._fail(failure)

    def _check_reachable(self, outcome: gw.TransportFailure, now: float) -> None:
        """Stop the run when no HTTP answer at all came for a while (`ApiTrust.unreachable`)."""
        failure = self.api.unreachable(
            self.stats["transport_errors"], now, f"{outcome.kind}, {outcome.message}"
        )
        if failure is not None:
            self._fail(failure)

    def _schedule(
        self, t: _Task, now: float, *, at: float | None = None, answered: bool = True
    ) -> None:
        if answered and now >= t.deadline_at:
            return self._finish(t, "expired", now)
        if at is None:
            at = policy_next(self.policy, t, now)
        at = max(at, (t.last_poll_at or now) + 5.0)
        if t.deadline_at > now:
            at = min(at, t.deadline_at)
        t.next_poll_at = at
        self._row(t, now)
        self._push(t)
        return None

    def _finish(self, t: _Task, state: str, now: float) -> None:
        t.state = state
        t.next_poll_at = now
        if state in RESTING_STATES:
            # a later run asks again (a stuck task may settle late, a 404 may have been ours)
            rest = RECHECK_BASE_S if t.rest_s is None else 2 * t.rest_s
            t.next_poll_at = now + min(RECHECK_CAP_S, max(RECHECK_BASE_S, rest))
        self.pending -= 1
        self.api.held.discard(t.facts.task_id)
        if state in FINAL_STATES:
            self.unconfirmed.add(t.facts.task_id)
        if state == "done" and not t.reversed:
            # stays in the policy's risk set until its latency is learned after the write
            self.settled_unlearned.add(t.facts.task_id)
        else:
            self.policy.observe_finished(t.facts)
        key = _summary_key(t)
        setattr(self.summary, key, getattr(self.summary, key) + 1)
        self._row(t, now)

    def _row(self, t: _Task, now: float) -> None:
        # a 404 the run does not believe yet (see `_trust`) does not reach the store
        first_404 = t.first_404_at if self.api.trusted else t.stored_first_404_at
        self.rows[t.facts.task_id] = (
            t.facts.task_id,
            "pending" if t.state == "parked" else t.state,
            t.attempts,
            None if t.state in FINAL_STATES else dt_utc(t.next_poll_at),
            t.last_http_status,
            None if first_404 is None else dt_utc(first_404),
            dt_utc(now),
        )

    # -- writing and progress ---------------------------------------------------------------

    def _error_text(self, exc: BaseException) -> str:
        """Return what `runs.stats.error` says of an error that ended the run (secrets masked)."""
        c = self.config
        return error_text(exc, [c.api_key, c.woc_api_key, *c.webhook_secrets])

    async def _flush_loop(self, writer: PollWriter, run_id: str) -> None:
        loop = asyncio.get_running_loop()
        last_at = time.monotonic()
        trickle_s = min(self.s.flush_max_interval_s, 5 * self.s.flush_interval_s)
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flush_wanted.wait(), self.s.flush_interval_s)
            self._flush_wanted.clear()
            stopping = getattr(self, "_stopping", False)
            # a write costs tens of ms of CPU whatever its size: a trickle of answers (the slow
            # tail of a run) waits a few intervals for company, unless it holds settlements
            # the schedule should learn from soon
            small = len(self.records) + len(self.rows) < max(1, self.s.batch_size // 10)
            small = small and not self.settled_unlearned and not self._flush_urgent
            if small and not stopping and time.monotonic() - last_at < trickle_s:
                continue
            self._flush_urgent = False
            last_at = time.monotonic()
            if self.records or self.rows:
                records, rows = self.records, list(self.rows.values())
                origins, done_ids = self.origins, self.settled_unlearned
                # the answer each final row follows from: the writer stores the row `pending`
                # when the normaliser rejects that answer (same transaction)
                finals = {
                    row[0]: key
                    for row in rows
                    if row[1] in FINAL_STATES and (key := self.tasks[row[0]].final_key) is not None
                }
                ready_keys, notes = self.ready_keys, self.notes
                self.records, self.rows, self.origins = [], {}, {}
                self.ready_keys, self.notes = set(), {}
                self.settled_unlearned = set()
                self._judging = bool(ready_keys)
                try:
                    latencies, rejected = await loop.run_in_executor(
                        writer.pool, writer.flush, run_id, records, rows, finals, notes
                    )
                except StoreError as exc:
                    self._write_failed(exc, len(records))
                    return
                except Exception as exc:
                    # a bug: its traceback is kept (raised by `run`), but no more polling
                    self._write_failed(StoreError(self._error_text(exc)), len(records))
                    raise
                self._judging = False
                self._judge_200s(ready_keys, rejected)
                self.unconfirmed.difference_update(r[0] for r in rows if r[1] in FINAL_STATES)
                self._learn(latencies, done_ids)
                self._reopen(rejected, origins)
                self._flushed.set()
            if stopping:
                if not self.records and not self.rows:
                    return
                self._flush_wanted.set()  # what the last write put back: written at once

    def _judge_200s(
        self, ready_keys: set[tuple[str, datetime]], rejected: set[tuple[str, datetime]]
    ) -> None:
        """A 200 the normaliser accepted is a usable answer; one it rejected is not."""
        if self.api.usable:
            return
        if ready_keys - rejected:
            self.api.usable = True
            return
        if ready_keys:
            self._rejected_verdict = True
        for _ in ready_keys:
            self._unusable(
                200, "answered 200 with a body the normaliser rejected", self.clock.now()
            )

    def _learn_early(self, t: _Task, settled_at: str | None) -> None:
        """Learn a settled task's latency from its answer now, instead of after the write.

        Only a timestamp with a UTC offset, read the way the normaliser reads it, and a known
        creation time; anything else is learned from the normalised record after the write.
        """
        if settled_at is None or t.api_created_at is None or self._retract is None:
            return
        try:
            when = datetime.fromisoformat(settled_at)
        except ValueError:
            return
        if when.tzinfo is None:
            return
        # both on the API's clock (facts.created_at may be on ours, see `_clock_probe_answered`)
        latency = when.timestamp() - t.api_created_at
        self.policy.observe_settled(t.facts, latency)
        self.learned_early[t.facts.task_id] = latency
        self.settled_unlearned.discard(t.facts.task_id)

    def _learn(
        self, latencies: Iterable[tuple[str, float, float | None]], done_ids: set[str]
    ) -> None:
        for task_id, settled_at, created_at in latencies:
            t = self.tasks.get(task_id)
            if t is None or self.learned_early.pop(task_id, None) is not None:
                continue  # learned from the answer already
            # the API's clock, as settled_at is (not facts.created_at, maybe moved to ours)
            created = t.api_created_at if t.api_created_at is not None else created_at
            if created is not None:
                self.policy.observe_settled(t.facts, settled_at - created)
                done_ids.discard(task_id)
        # settled without a usable latency: out of the risk sets
        for task_id in done_ids:
            t = self.tasks.get(task_id)
            if t is not None and t.state == "done":
                self.policy.observe_finished(t.facts)

    def _reopen(
        self, rejected: set[tuple[str, datetime]], origins: Mapping[tuple[str, datetime], str]
    ) -> None:
        """A final answer the normaliser rejected is not evidence: poll that task again."""
        now = self.clock.now()
        for key in rejected:
            t = self.tasks.get(origins.get(key, ""))
            if t is None or t.state not in ("done", "failed") or t.final_key != key:
                continue
            counter = _summary_key(t)
            setattr(self.summary, counter, getattr(self.summary, counter) - 1)
            t.reversed = False
            latency = self.learned_early.pop(t.facts.task_id, None)
            if latency is not None and self._retract is not None:
                self._retract(t.facts, latency)
            # an unusable body like any other: retried with capped exponential backoff
            self.stats["unusable_bodies"] += 1
            self.stats["retries"] += 1
            t.rejected += 1
            t.state = "pending"
            if now >= t.deadline_at:
                # no usable answer about it by its deadline: left pending for the next run
                t.state = "parked"
                self._row(t, now)
                continue
            self.pending += 1
            self.policy.observe_tracked(t.facts)
            backoff = min(self.s.retry_cap_s, self.s.retry_base_s * 2 ** min(t.rejected - 1, 20))
            at = now + backoff * self.rng.uniform(0.8, 1.2)
            self._schedule(t, now, at=at, answered=False)

    def snapshot(self) -> CollectProgress:
        """Return the progress counts, in the summary's categories."""
        s, st = self.summary, self.stats
        return CollectProgress(
            settled=s.settled,
            pending=self.pending,
            not_found=s.not_found,
            expired=s.expired,
            throttled=st["http_429"],
            requests=st["requests"],
            failed=s.failed,
            transport_errors=st["transport_errors"],
            server_errors=st["http_5xx"],
            next_poll_in_s=self._last_poll_in() if self.pending else None,
        )

    def _last_poll_in(self) -> float | None:
        """Return the wall seconds until the last pending task's next poll (a floor for the
        ETA: the slow tail waits for its polls whatever the rate), or None when not known.

        No poll goes before a closed gate reopens, so the gate is a floor too (also for a heap
        too big to scan).
        """
        now = self.clock.now()
        # clock seconds to wall seconds (a simulator's clock may run scaled)
        wall = time.monotonic() - self._wall0
        ratio = (now - self._clock0) / wall if wall > 1.0 else 1.0
        bucket: TokenBucket | None = getattr(self, "bucket", None)
        gate = -math.inf if bucket is None else bucket.paused_until
        latest = gate if gate > now else None
        if len(self.heap) <= ETA_SCAN_MAX:
            tasks = self.tasks
            grace = self.s.not_found_grace_s
            # a task answering 404 is not final before its grace window ends
            latest = max(
                (
                    at
                    if (t := tasks[task_id]).first_404_at is None
                    else max(at, t.first_404_at + grace)
                    for at, version, task_id in self.heap
                    if tasks[task_id].version == version and tasks[task_id].state == "pending"
                ),
                default=latest,
            )
            if latest is not None and gate > now:
                latest = max(latest, gate)
        if latest is None or ratio <= 0:
            return None
        return max(0.0, latest - now) / ratio

    async def _progress_loop(self) -> None:
        if self.progress is None:
            return
        self.progress.start()
        while True:
            self.progress.update(self.snapshot())
            await asyncio.sleep(0.5)

    def _finish_summary(self, status: str, cpu_s: float, wall_s: float) -> None:
        s = self.summary
        s.status = status
        s.pending = sum(1 for t in self.tasks.values() if t.state in ("pending", "parked"))
        s.stats = {
            **self.stats,
            "schedule": getattr(self.policy, "name", type(self.policy).__name__),
            "max_rps": self.s.max_rps,
            "concurrency": self.s.concurrency,
            "tracked": s.tracked,
            "already_final": s.already_final,
            "rechecked": s.rechecked,
            "skipped_unsafe_ids": s.skipped_unsafe_ids,
            "settled": s.settled,
            "reversed": s.reversed,
            "failed": s.failed,
            "not_found": s.not_found,
            "expired": s.expired,
            "pending": s.pending,
            "throttle_events": self.bucket.throttle_events,
            "final_rate": round(self.bucket.rate, 3),
            "cpu_s": round(cpu_s, 4),
            "wall_s": round(wall_s, 3),
        }
        if s.failure is not None:
            s.stats["error"] = s.failure  # what `asg-audit runs` shows
        if self.progress is not None:
            self.progress.update(self.snapshot())


def _summary_key(t: _Task) -> str:
    """Return the summary's counter of a finished task."""
    if t.reversed:
        return "reversed"
    return {"done": "settled", "failed": "failed", "not_found": "not_found"}.get(t.state, t.state)


def _without_status_unusable(outcome: gw.Outcome) -> gw.Outcome:
    """Return a 200 without a status (an error body such as `{"error": "internal error"}`,
    a `status` that is null, empty or not a string) as the unusable answer it is.

    No status is no final status: the task is not `failed` for it, but retried with backoff
    like any unusable body, and the body kept as evidence.
    """
    if isinstance(outcome, gw.Ready) and not (outcome.status or "").strip():
        return gw.UnusableBody(outcome.task_id, outcome.origin, 200, outcome.body, "no status")
    return outcome


def _unrecorded(error: StoreError, record_error: StoreError) -> StoreError:
    """Return `error`, saying that the run could not be recorded `failed` either."""
    return StoreError(
        f"{error}; the run could not be recorded as failed either ({record_error}): "
        "`asg-audit runs` shows it running until a later run records it abandoned"
    )


def _tasks_stay(n: int) -> str:
    return "1 task stays" if n == 1 else f"{n:,} tasks stay"


def _seconds_text(seconds: float) -> str:
    """Return a wait for a message: `3,600 s`, `1e+308 s`, `an endless wait`."""
    if not math.isfinite(seconds):
        return "an endless wait"
    return f"{seconds:,.0f} s" if seconds < 1e9 else f"{seconds:.3g} s"


def _utc_text(at: float) -> str | None:
    """Return a clock time as `2026-01-02T03:04:05Z`, or None past the year 9999."""
    try:
        return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError, OSError):
        return None


def policy_next(policy: SchedulePolicy, t: _Task, now: float) -> float:
    """Return the policy's next poll time for a task."""
    return policy.next_poll_at(t.facts, attempts=t.polls, last_poll_at=t.last_poll_at, now=now)
