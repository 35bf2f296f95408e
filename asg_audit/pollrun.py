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

The run's parts: the tasks and their poll_state states are `asg_audit.polltask`; the 404
rules `asg_audit.pollnotfound`; the clock probe `asg_audit.pollclock`; the progress line and
the summary's stats `asg_audit.pollprogress`.

A run never believes 404s alone, and stops as `failed` when the API never answers: see
`asg_audit.apitrust`, which holds that state. It also stops as `failed` when the Gateway is
down, and so does a run that ends with tasks left pending during such an outage, or without a
single usable answer, or one rate-limited for longer than its deadline: see
`asg_audit.polloutage`.

The deadline bounds a run: a task's polls (retries after errors too) are planned no later
than its deadline, and a task past it whose last request got no answer about it is left
pending for the next run (not expired: nothing showed it pending), so a run lasts about its
deadline after its last first poll, not backoffs past it. A 200 without a status (an error
body) is no final status: an unusable answer, retried and kept.

A task the store saw settled (an ingested export, a webhook) that answers it is not settled
(a 202, a 200 with another status) is `done` at once: the answer is stored and counted as a
conflict of its settled result (`asg_audit.results_sql`), never polled again for it.

Tasks tracked with a `created_at` in our future: the earliest is asked at once, before any
other poll, to learn whether the API's clock is ahead of ours (`asg_audit.pollclock`).

Rate limits: a 429 closes the request gate for its Retry-After (when that stops the run: see
`asg_audit.polloutage`). A poll falling due while the gate is closed waits for it, except that
a task whose deadline passes meanwhile is `expired` then, when an answer had shown it pending
(a task never answered stays pending and is polled when the gate reopens). A 429 to the
control-task probe closes the gate like any other. The progress ETA is never less than the
wait for the gate.
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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, Literal

from asg_audit import gateway as gw
from asg_audit import storefile
from asg_audit.apitrust import ApiTrust
from asg_audit.clock import Clock
from asg_audit.config import AuditConfig
from asg_audit.errors import ApiError, AuthError, StoreError
from asg_audit.pollbuffer import RecordKey, WriteBuffer
from asg_audit.pollclock import ClockProbe, not_created
from asg_audit.polllearn import LatencyLearner
from asg_audit.pollnotfound import judge_404, kept_back
from asg_audit.polloutage import Outage, Throttle, end_failure
from asg_audit.pollprogress import (
    PendingWait,
    new_stats,
    pending_wait,
    snapshot,
    summary_stats,
)
from asg_audit.polltask import (
    FINAL_STATES,
    RESTING_STATES,
    PollTask,
    load_tasks,
    policy_next,
    rest_until,
    summary_key,
)
from asg_audit.pollwriter import (
    CollectorSettings,
    CollectProgress,
    CollectSummary,
    LoadedState,
    PollWriter,
)
from asg_audit.progress import ProgressReporter
from asg_audit.ratelimit import TokenBucket
from asg_audit.redaction import error_text
from asg_audit.schedule import SchedulePolicy, TaskFacts

__all__ = ["CollectorRun", "policy_next"]

log = logging.getLogger("asg_audit.collector")

_CONTINUE_STATUSES: Final = frozenset({"pending", "in_progress", "verified"})
# the dispatcher's longest sleep (clock seconds) with nothing in flight: how soon it notices a
# stop request or the end of `run_for_s`
TICK_S: Final = 1.0
# polls falling due this close (clock seconds) after the last send go out together, and an
# arrived answer waits unread at most this long for the dispatcher's next wake-up
BATCH_S: Final = 0.05
SLEEP_PAD_S: Final = 0.002
# a final answer (a 200 that made its task done or failed) waits at most this long (wall
# seconds) for the write that brings the normaliser's verdict, however few answers keep it
# company: a rejected one is polled again with its backoff, not after the next slow write
VERDICT_WAIT_S: Final = 1.0


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
        self.tasks: dict[str, PollTask] = {}
        self.heap: list[tuple[float, int, str]] = []
        self.pending = 0
        self.parked = 0  # tasks left pending for the next run (see `polltask`)
        self.buffer = WriteBuffer()  # answers and poll_state rows for the next write
        self.stats = new_stats()  # the run's request counts (`runs.stats`)
        self._judging = False  # a write under way holds 200s awaiting the normaliser's verdict
        self._poll_bug: Exception | None = None  # what failed inside a poll's own task
        self._rejected_verdict = False  # a write's 200s all rejected by the normaliser
        self.stop_reason: str | None = None
        self.auth_error: AuthError | None = None
        # why the run gave up on the API (unreachable, 404 for everything): status `failed`
        self.failure: ApiError | None = None
        # the same error saying how many tasks stay pending, for the count as the run ends
        # (`_recount_failure`)
        self._recount: Callable[[int], ApiError] | None = None
        # whether 404s are believed yet, and whether the API answers at all
        self.api = ApiTrust(config.base_url)
        # errors since the last usable answer: whether the Gateway is down
        self.outage = Outage()
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
        # the settled tasks' latencies the schedule is to learn
        self.learner = LatencyLearner(policy)
        # the 429s: when they stop the run (nothing but 429s, a Retry-After past the deadline)
        self.throttle = Throttle(config.base_url, settings.deadline_s, self._clock0)
        # a task created in our future, asked at once
        self.probe = ClockProbe()
        # a write the store refused (a full disk, a lost file): the run stops at once as
        # `failed` (`_write_failed`); the answers of that batch and those after it are not
        # stored, and their tasks are polled again by the next run
        self.write_error: StoreError | None = None
        self._unwritten = 0

    # -- setup -----------------------------------------------------------------------------------

    def _load(self, loaded: LoadedState, now: float) -> None:
        self.tasks = load_tasks(loaded, now, self.policy, self.s.deadline_s, self.summary)
        for t in self.tasks.values():
            self._push(t)
        self.pending = len(self.tasks)
        probe = self.probe.plan(self.tasks.values(), now)
        if probe is not None:
            self._push(probe)
        self.summary.tracked = len(self.tasks)
        self.api.control_task_id = loaded.control_task_id
        self.seen_settled = loaded.seen_settled

    def _clock_probe_answered(self, t: PollTask, outcome: gw.Outcome, sent_at: float) -> bool:
        """The answer to the clock probe: True when it was a 404 of a task not created yet,
        which is then polled as planned (see `asg_audit.pollclock`)."""
        now = self.clock.now()
        verdict = self.probe.answered(t, outcome, sent_at, now, self.tasks.values(), self.policy)
        if verdict == "ahead":
            self._replan(now)
        if verdict != "not_created":
            return False
        self.stats["requests"] += 1
        self.stats["http_404"] += 1
        self.api.answered = True
        self.throttle.last_answer_at = now
        not_created(t, outcome.http_status, now, self.policy)
        self._row(t, now)
        self._push(t)
        return True

    def _push(self, t: PollTask) -> None:
        t.version += 1
        at = self.probe.heap_at(t, self.clock.now())  # the clock probe before every other
        heapq.heappush(self.heap, (at, t.version, t.facts.task_id))

    # -- the loop ----------------------------------------------------------------------------------

    async def run(self) -> CollectSummary:
        loop = asyncio.get_running_loop()
        writer = PollWriter(self.config.db_path, self.s.lock_wait_s, stopped=self._stop_asked)
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
            self.throttle.started_at = started_at
            self._load(loaded, started_at)
            status = "completed"
            async with gw.GatewayClient(
                self.config.base_url,
                self.config.api_key,
                timeout_s=self.s.timeout_s,
                max_connections=self.s.concurrency,
                clock=self.clock,
                transport=self.transport,
                # every secret of the process is masked in what is stored, not the key alone
                mask=self.config.all_secrets(),
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
                if status in ("completed", "partial") and self.stop_reason is None:
                    # the last writes may have put back final answers the normaliser rejected
                    self._judge_end(self.clock.now())
                self._recount_failure()
                if self._poll_bug is not None:
                    raise self._poll_bug  # the run is recorded failed with it (below)
                if status in ("completed", "partial") and self.stop_reason is not None:
                    # a signal (or a failure found by the last write) while the run was ending
                    status = self._stopped_status()
            if self.write_error is not None:
                status = "failed"
                # polled, not stored (`settled` and the others count what the run saw)
                self.stats["unwritten_answers"] = self._unwritten + len(self.buffer.records)
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
                # a bug or a store failure: the run is not left `running`; a cancel (a
                # notebook's interrupt cancels the task awaiting collect) or a Ctrl-C is a
                # stop, recorded as one, not as a failure (tester T10)
                stopped = isinstance(exc, KeyboardInterrupt | asyncio.CancelledError)
                stats = (
                    dict(self.stats) if stopped else {**self.stats, "error": self._error_text(exc)}
                )
                try:
                    await loop.run_in_executor(
                        writer.pool,
                        writer.finish_run,
                        run_id,
                        "interrupted" if stopped else "failed",
                        stats,
                    )
                except StoreError as record_exc:
                    if isinstance(exc, StoreError):
                        raise _unrecorded(exc, record_exc) from None
                except Exception:  # noqa: S110  (the first error is the one to report)
                    pass
            # the store is read and written on the writer's thread, outside open_store's
            # block: a block damaged inside the file is said here as open_store says it
            if (damaged := storefile.damaged_in_use(Path(self.config.db_path), exc)) is not None:
                raise damaged from exc
            raise
        finally:
            if self.progress is not None:
                self.progress.stop()
            # Shielded: a second cancel while the writer still waits to open the store (for
            # the file, or for this process's collect claim) would otherwise cancel the queued
            # close, and the claim and the connection would be held for the process's life.
            await asyncio.shield(loop.run_in_executor(writer.pool, writer.close))
            writer.pool.shutdown(wait=True)
        if self.write_error is not None:
            raise self.write_error
        if self.auth_error is not None:
            raise self.auth_error
        if self.failure is not None:
            raise self.failure
        return self.summary

    def _stop_asked(self) -> bool:
        """Whether a stop was asked for (a signal, the external `stop_event`): read by the
        writer thread while it waits for the store."""
        return self.stop_reason is not None or (
            self.external_stop is not None and self.external_stop.is_set()
        )

    def _take_stop(self) -> bool:
        """Take a stop asked through `stop_event` as the run's own (on the run's thread);
        return whether the run is stopping."""
        if self.stop_reason is None and self._stop_asked():
            self.stop("stop requested")
        return self.stop_reason is not None

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

    def _fail(self, error: ApiError, recount: Callable[[int], ApiError] | None = None) -> None:
        """Stop the run as `failed`: the API cannot be used as configured (`error` says why).

        `recount` gives the same error for another count of tasks left pending, when `error`
        says how many: the run's last writes can still put back final answers the normaliser
        rejects, and the message must say what poll_state holds (`_recount_failure`).
        """
        if self.failure is None and self.auth_error is None:
            self.failure = error
            self._recount = recount
            self.summary.failure = str(error)
            self.stop_reason = self.stop_reason or "failed"
            self._wake_on_stop()

    def _recount_failure(self) -> None:
        """Say in the failure's message how many tasks are left pending as the run ends."""
        if self.failure is not None and self._recount is not None:
            self.failure = self._recount(self._left())
            self.summary.failure = str(self.failure)

    def _judge_end(self, now: float) -> None:
        """A run that ends (every task final or parked, or its time budget spent) with tasks
        left pending is `failed` when the Gateway let it down (`polloutage.end_failure`)."""
        outage, stats, base_url = self.outage.copy(), dict(self.stats), self.config.base_url
        failure = end_failure(outage, base_url, stats, self._left(), now)
        if failure is not None:

            def recount(left: int) -> ApiError:
                return end_failure(outage, base_url, stats, left, now) or failure

            self._fail(failure, recount)

    def _count_other(self, http_status: int) -> None:
        """Count an answer in `http_other` and its status in `http_other_statuses`."""
        self.stats["http_other"] += 1
        codes = self.stats["http_other_statuses"]
        codes[str(http_status)] = codes.get(str(http_status), 0) + 1

    def _left(self) -> int:
        """Return how many tasks are left pending (parked ones too)."""
        return sum(1 for t in self.tasks.values() if t.state in ("pending", "parked"))

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
        lost = self._unwritten + len(self.buffer.records)
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
            if self._take_stop():
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
            if t.attempts == 0 and task_id != self.probe.task_id:
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
                if until is not None and self.clock.now() >= until:
                    # the run's time ran out while it waited: no poll goes out after it
                    slots.release()
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
                if self._take_stop():
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
            if self.probe.first(t):
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
            heap.append((-math.inf if self.probe.first(t) else t.next_poll_at, t.version, task_id))
        heapq.heapify(heap)
        self.heap = heap

    def _wait_for_gate(self, t: PollTask, now: float, gate: float) -> None:
        """A poll due while the gate is closed: wait for the gate, or expire at the deadline.

        A task past its deadline whose last answer showed it pending (not a 404) is expired
        now; one never answered has no evidence either way and is polled when the gate opens.
        """
        if now >= t.deadline_at and t.polls > 0 and t.first_404_at is None:
            return self._finish(t, "expired", now)
        t.next_poll_at = t.deadline_at if now < t.deadline_at < gate else gate
        self._push(t)
        return None

    async def _poll(self, t: PollTask, slots: asyncio.Semaphore) -> None:
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
    ) -> RecordKey:
        key = self.buffer.record(body, origin, task_id, code, at)
        if len(self.buffer.records) >= self.s.batch_size:
            self._flush_wanted.set()
        return key

    def _handle(self, t: PollTask, outcome: gw.Outcome, sent_at: float) -> None:
        outcome = _without_status_unusable(outcome)
        if isinstance(outcome, gw.Ready | gw.Pending | gw.NotFound):
            self.outage.usable()
        if self.probe.is_probe(t) and self._clock_probe_answered(t, outcome, sent_at):
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
            self.throttle.last_answer_at = now
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
            self.buffer.ready_keys.add(t.final_key)
            if outcome.status == "settled":
                self._finish(t, "done", now)
                return self.learner.from_answer(t, outcome.settled_at)
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
            self._count_other(outcome.http_status)
            t.attempts -= 1  # the run stops; this task was not really polled
            if self.auth_error is None:
                self.auth_error = AuthError(
                    f"the Gateway refused the API key ({outcome.http_status}: "
                    f"{outcome.message}); check ASG_API_KEY",
                    status_code=outcome.http_status,
                )
                # recorded as every run's error (`runs` shows it): the line stderr shows
                self.summary.failure = self._error_text(self.auth_error)
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
            self._count_other(outcome.http_status)
            detail = f"answered {outcome.http_status}"
            if outcome.location is not None:
                detail += f" (Location: {outcome.location})"
            key = self._record(outcome.body, outcome.origin, task_id, outcome.http_status, now)
            self.buffer.notes[key] = detail
            self._unusable(outcome.http_status, detail, now)
        st["retries"] += 1
        t.errors += 1
        if now >= t.deadline_at:
            # past its deadline, and its last request got no answer about it, so not expired:
            # leave it pending for the next run (retries before the deadline are planned no
            # later than it, so a run lasts about its deadline, not backoffs past it)
            t.state = "parked"
            self.pending -= 1
            self.parked += 1
            self.api.held.discard(task_id)
            self._row(t, now)
            return None
        backoff = min(self.s.retry_cap_s, self.s.retry_base_s * 2 ** min(t.errors - 1, 20))
        at = max(now + backoff * self.rng.uniform(0.8, 1.2), sent_at + 5.0)
        return self._schedule(t, now, at=at, answered=False)

    def _check_down(self, now: float, http_status: int | None, detail: str) -> None:
        """A request got no answer or a 5xx: stop the run once the Gateway is down."""
        self.outage.failed(now, http_status, detail)
        if self.outage.down(now) and self.failure is None:
            outage, base_url = self.outage.copy(), self.config.base_url

            def recount(left: int) -> ApiError:
                return outage.error(base_url, now, left)

            self._fail(recount(self._left()), recount)

    def _reversal(self, t: PollTask, now: float) -> None:
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
        undecided = (bool(self.buffer.ready_keys) or self._judging) and not self._rejected_verdict
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
        asked = outcome.retry_after_s
        retry_max_s = self.bucket.retry_max_s
        # the counters, not `_left()` (a walk over every task, at each 429: review); the
        # message is counted again after the last write (`recount`)
        left = self.pending + self.parked
        failure = self.throttle.throttled(asked, resume, now, left, retry_max_s)
        if failure is not None:
            self._fail(failure, self.throttle.recount)
        return resume

    def _not_found(self, t: PollTask, outcome: gw.NotFound, sent_at: float, now: float) -> None:
        """A 404: `not_found` once its grace window is over and the run trusts 404s; until
        then the task waits (see `asg_audit.pollnotfound`)."""
        self.stats["http_404"] += 1
        task_id = t.facts.task_id
        trusted = self.api.trusted
        verdict = judge_404(t, sent_at, now, self.s.not_found_grace_s, trusted)
        if verdict.store:
            if trusted:
                self._record(outcome.body, outcome.origin, task_id, 404, now)
            else:
                # kept back: if the base URL is wrong these 404s are no evidence about the task
                self.api.deferred.append(kept_back(outcome, task_id, now))
        if verdict.not_found:
            return self._finish(t, "not_found", now)
        if verdict.held:
            self.api.held.add(task_id)
        if self.api.suspicious(self.stats["http_404"], self.pending):
            failure = self.api.suspect(self.stats["http_404"])
            if failure is not None:
                self._fail(failure)
        at = policy_next(self.policy, t, now)
        if now < verdict.grace_end:
            at = min(at, verdict.grace_end)
        return self._schedule(t, now, at=at, answered=False)

    def _trust(self) -> None:
        """The API knows our tasks (a 200/202): its 404s are evidence from now on."""
        self.buffer.records.extend(self.api.trust())

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
        self.buffer.records.extend(records)
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
        self, t: PollTask, now: float, *, at: float | None = None, answered: bool = True
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

    def _finish(self, t: PollTask, state: str, now: float) -> None:
        t.state = state
        t.next_poll_at = now
        if state in RESTING_STATES:
            t.next_poll_at = rest_until(t, now)
        self.pending -= 1
        self.api.held.discard(t.facts.task_id)
        if state in FINAL_STATES:
            if not self.unconfirmed and self._trickle():
                self._flush_wanted.set()  # the flush loop's wait is `VERDICT_WAIT_S` now
            self.unconfirmed.add(t.facts.task_id)
        self.learner.finished(t)
        key = summary_key(t)
        setattr(self.summary, key, getattr(self.summary, key) + 1)
        self._row(t, now)

    def _row(self, t: PollTask, now: float) -> None:
        self.buffer.row(t, now, self.api.trusted)

    # -- writing and progress ---------------------------------------------------------------

    def _error_text(self, exc: BaseException) -> str:
        """Return what `runs.stats.error` says of an error that ended the run (secrets masked)."""
        return error_text(exc, self.config.all_secrets())

    async def _flush_loop(self, writer: PollWriter, run_id: str) -> None:
        loop = asyncio.get_running_loop()
        last_at = time.monotonic()
        trickle_s = min(self.s.flush_max_interval_s, 5 * self.s.flush_interval_s)
        while True:
            wait_s = self.s.flush_interval_s
            if self.unconfirmed and self.buffer.rows and self._trickle():
                # final answers in a trickle wait `VERDICT_WAIT_S` at most for their verdict
                wait_s = min(wait_s, max(0.0, last_at + VERDICT_WAIT_S - time.monotonic()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flush_wanted.wait(), wait_s)
            self._flush_wanted.clear()
            stopping = getattr(self, "_stopping", False)
            # a write costs tens of ms of CPU whatever its size: a trickle of answers (the slow
            # tail of a run) waits a few intervals for company, unless it holds settlements
            # the schedule should learn from soon, or final answers whose verdict says whether
            # their tasks are polled again (those wait `VERDICT_WAIT_S` at most; in a busy run
            # they are in the write every `flush_interval_s`)
            since = time.monotonic() - last_at
            small = self._trickle() and not self.learner.unlearned and not self._flush_urgent
            small = small and not (self.unconfirmed and since >= VERDICT_WAIT_S)
            if small and not stopping and since < trickle_s:
                continue
            self._flush_urgent = False
            last_at = time.monotonic()
            if not self.buffer.empty():
                batch = self.buffer.take()
                records, rows = batch.records, list(batch.rows.values())
                done_ids = self.learner.take()
                # the answer each final row follows from: the writer stores the row `pending`
                # when the normaliser rejects that answer (same transaction)
                finals = {
                    row[0]: key
                    for row in rows
                    if row[1] in FINAL_STATES and (key := self.tasks[row[0]].final_key) is not None
                }
                self._judging = bool(batch.ready_keys)
                try:
                    latencies, rejected = await loop.run_in_executor(
                        writer.pool, writer.flush, run_id, records, rows, finals, batch.notes
                    )
                except StoreError as exc:
                    self._write_failed(exc, len(records))
                    return
                except Exception as exc:
                    # a bug: its traceback is kept (raised by `run`), but no more polling
                    self._write_failed(StoreError(self._error_text(exc)), len(records))
                    raise
                self._judging = False
                self._judge_200s(batch.ready_keys, rejected)
                self.unconfirmed.difference_update(r[0] for r in rows if r[1] in FINAL_STATES)
                self.learner.after_write(latencies, done_ids, self.tasks)
                self._reopen(rejected, batch.origins)
                self._flushed.set()
            if stopping:
                if self.buffer.empty():
                    return
                self._flush_wanted.set()  # what the last write put back: written at once

    def _trickle(self) -> bool:
        """Whether what waits for the next write is a trickle (fewer than `batch_size / 10`)."""
        buffered = len(self.buffer.records) + len(self.buffer.rows)
        return buffered < max(1, self.s.batch_size // 10)

    def _judge_200s(self, ready_keys: set[RecordKey], rejected: set[RecordKey]) -> None:
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

    def _reopen(self, rejected: set[RecordKey], origins: Mapping[RecordKey, str]) -> None:
        """A final answer the normaliser rejected is not evidence: poll that task again."""
        now = self.clock.now()
        for key in rejected:
            t = self.tasks.get(origins.get(key, ""))
            if t is None or t.state not in ("done", "failed") or t.final_key != key:
                continue
            counter = summary_key(t)
            setattr(self.summary, counter, getattr(self.summary, counter) - 1)
            t.reversed = False
            self.learner.take_back(t)
            # an unusable body like any other: retried with capped exponential backoff
            self.stats["unusable_bodies"] += 1
            self.stats["retries"] += 1
            t.rejected += 1
            t.state = "pending"
            if now >= t.deadline_at:
                # no usable answer about it by its deadline: left pending for the next run
                t.state = "parked"
                self.parked += 1
                self._row(t, now)
                continue
            self.pending += 1
            self.policy.observe_tracked(t.facts)
            backoff = min(self.s.retry_cap_s, self.s.retry_base_s * 2 ** min(t.rejected - 1, 20))
            # from the rejected answer, as any unusable body's: the verdict's wait is no part
            # of the backoff
            answered_at = now if t.last_poll_at is None else min(now, t.last_poll_at)
            at = max(now, answered_at + backoff * self.rng.uniform(0.8, 1.2))
            self._schedule(t, now, at=at, answered=False)

    def snapshot(self) -> CollectProgress:
        """Return the progress counts, in the summary's categories."""
        wait = self._pending_wait() if self.pending else None
        return snapshot(self.summary, self.stats, self.pending, wait, self.parked)

    def _pending_wait(self) -> PendingWait:
        """Return what the pending tasks wait for (their polls, a 404 grace, a closed gate)."""
        now = self.clock.now()
        bucket: TokenBucket | None = getattr(self, "bucket", None)
        gate = -math.inf if bucket is None else bucket.paused_until
        grace = self.s.not_found_grace_s
        return pending_wait(now, self._clock0, self._wall0, gate, self.heap, self.tasks, grace)

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
        s.pending = self._left()
        s.stats = summary_stats(s, self.stats, self.policy, self.s, self.bucket, cpu_s, wall_s)
        if self.progress is not None:
            self.progress.update(self.snapshot())


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
