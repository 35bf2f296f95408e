"""The scheduled audit: collect, ingest, verify, reconcile, analyse, check, report, exit code.

One run does only new work: drop-folder files already ingested are skipped, only tasks that are
not final are polled, only txids not yet confirmed are looked up. A lock file beside the
database keeps overlapping runs apart: the second one exits 3 (or waits `wait_seconds`).

Exit codes (DESIGN.md): 0 ok; 1 findings at or above `fail_on`; 2 a bad option or config, found
before any step runs, or unreadable input (a drop-folder file that cannot be read, a drop folder
that does not exist: every step still runs), or a store that is damaged or from a newer asg_audit
(refused at the start: no run; found by a step or the findings write: that step is `refused`,
the rest still runs); 3 the run is incomplete (an API was unreachable or refused the key, the
chain index served an answer that failed its checks (`refused N`, as `verify-chain` exits 3
for it), the database was busy, the run was interrupted by SIGINT or SIGTERM). When several
apply the highest wins: 3, then 2, then 1. A run whose collection failed still analyses
and reports what the store holds, and still exits 3. A run that an error stops (a report that cannot
be written, a bug) is recorded as `failed` (or `interrupted`) with a one-line error, never left
`running`; a bug exits 3, not 1, which a scheduler would read as "findings". A run that ends
with exit 2 (unreadable input) is recorded `failed` too, its error naming the input; exit 3 is
`incomplete`, exit 0 and 1 `ok`. Output that cannot be written (the log on a full disk, a closed
stream) never stops a run, from the command line or from Python: the run exits 3 instead of 0
or 1 (`AuditOutcome.output_lost` says what was lost).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any, TextIO, cast

import httpx

from asg_audit import aio, storefile
from asg_audit.audit_outcome import outcome_json
from asg_audit.config import AuditConfig, check_wait_seconds
from asg_audit.errors import (
    EXIT_FINDINGS,
    EXIT_INCOMPLETE,
    EXIT_OK,
    EXIT_USAGE,
    ApiError,
    AuditError,
    ConfigError,
    IncompleteRunError,
    StoreBusyError,
    StoreError,
    StoreFileError,
)
from asg_audit.guarded_output import STDERR, STDOUT, GuardedStream, guarded_stderr
from asg_audit.interrupts import is_interrupt
from asg_audit.model import new_run_id, printable
from asg_audit.redaction import display_origin, display_url, error_text
from asg_audit.stopsignals import (
    in_main_thread,
    kept_signal_handlers,
    raise_if_stopped,
    sigterm_interrupts,
)
from asg_audit.store import open_store
from asg_audit.storefile import not_a_folder_above

__all__ = ["AuditOutcome", "audit_lock", "outcome_json", "run_audit", "send_alert"]

_SEVERITY_RANK = {"info": 0, "warn": 1, "fail": 2}
DEFAULT_COLLECT_SECONDS = 300.0
# How long recording how a run ended waits for a store another process has open (a notebook,
# another tool), also without --wait: a run left `running` reads as a process that died.
END_RECORD_WAIT_S = 10.0
# The note of a step `[audit]` turns off (`verify_chain = false`, `billing = false`).
DISABLED = "skipped (disabled in [audit])"


@dataclass(slots=True)
class AuditOutcome:
    """What one audit run did and how it ended."""

    run_id: str
    exit_code: int = EXIT_OK
    steps: dict[str, str] = field(default_factory=dict)  # step -> ok | skipped (why) | failed (why)
    summary: dict[str, Any] = field(default_factory=dict)
    report_dir: Path | None = None
    report_paths: dict[str, Path] = field(default_factory=dict)  # format -> file written
    alert_sent: bool = False
    # input the run could not read (drop-folder files, missing drop folders): the run exits 2
    input_errors: list[str] = field(default_factory=list)
    # the store refused this run's writes for good (a damaged store, or one from a newer
    # asg_audit), found by a step after the run started: the run exits 2, as when it is found
    # at the start (retrying will not help)
    store_refused: str | None = None
    # output the run could not write ({"the log": "No space left on device"}): it never stops
    # the run, which then exits 3 instead of 0 or 1, as the command line does
    output_lost: dict[str, str] = field(default_factory=dict)

    @property
    def incomplete(self) -> bool:
        """Return whether a step could not be done (the run exits 3)."""
        return any(v.startswith("failed") for v in self.steps.values())


@contextlib.contextmanager
def audit_lock(db_path: Path, *, wait_seconds: float = 0.0) -> Iterator[Path]:
    """Hold the audit lock of a database (a file beside it, the file a link points to) for the
    duration of the block.

    Raises StoreBusyError when another audit holds it after `wait_seconds`, and StoreError
    (exit 3, as a writer of the store gets) when the lock file cannot be made: the store's
    folder is missing, is a file, or cannot be written (read-only media). A lock path that is
    not a plain file of its own (a symbolic link, a hard link to another file, a folder, a
    pipe) is refused with StoreFileError (exit 2: retrying will not help) and never opened
    through, truncated or written: the pid written into the lock must not overwrite the file a
    planted link points to.
    """
    # Beside the file itself, not a symbolic link to it: every name of one store (a link, a
    # path through a linked folder) shares one audit lock, as DuckDB's own lock and WAL do.
    real = Path(os.path.realpath(db_path))
    lock_path = real.with_name(real.name + ".audit-lock")
    # A file on the way to the store is named as every other writer names it (open_store):
    # the lock file under it could only fail with "Not a directory", naming the lock. The
    # path as given first (its own words), then the one a link points to.
    for path in (Path(db_path), real):
        if (problem_above := not_a_folder_above(path)) is not None:
            raise StoreError(f"{db_path}: cannot be the store: {problem_above}")
    folder = real.parent
    if not folder.exists():
        raise StoreError(f"{db_path}: folder {folder} does not exist")
    fd = _open_lock_file(db_path, lock_path)
    deadline = time.monotonic() + wait_seconds
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    advice = (
                        f"waited {wait_seconds:g} s and it is still running"
                        if wait_seconds
                        else "use --wait SECONDS (from Python: wait_seconds=) to wait for it"
                    )
                    raise StoreBusyError(
                        f"{db_path}: another audit run is in progress (lock {lock_path}); " + advice
                    ) from None
                time.sleep(0.2)
        _write_lock_pid(db_path, lock_path, fd)
        yield lock_path
    finally:
        os.close(fd)  # closing releases the flock


def _write_lock_pid(db_path: Path, lock_path: Path, fd: int) -> None:
    """Write this process's id into the held lock file, in place of what it held.

    The id is for a human looking at the file: nothing reads it back, the flock alone keeps
    runs apart, so a lock file left empty or garbled (a write that failed half-way) neither
    blocks nor breaks a later run, which writes its own id over it. A write the file system
    refuses (a full disk, a quota, an I/O error, a file size limit) is a StoreError (exit 3,
    as the store itself would give on that disk), before anything runs; the file is left
    empty rather than half-written where it can be.
    """
    pid = f"{os.getpid()}\n".encode()
    try:
        os.ftruncate(fd, 0)
        if os.write(fd, pid) != len(pid):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # frees what a short write took; never makes it worse
        raise StoreError(
            f"{db_path}: cannot write the audit lock {lock_path}"
            f" ({exc.strerror or type(exc).__name__}): nothing was run; free some space"
            " (or fix the file system) and run again"
        ) from None


def _open_lock_file(db_path: Path, lock_path: Path) -> int:
    """Open (or create) the audit lock file and return its descriptor.

    `O_NOFOLLOW` refuses a symbolic link at the lock path, `O_NONBLOCK` keeps a named pipe
    planted there from blocking the open; what was opened must be a regular file with no other
    name (a hard link would let the pid overwrite another file). Anything else is refused,
    naming the path, before a byte is written.
    """
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC

    def refused(what: str) -> StoreFileError:
        return StoreFileError(
            f"{db_path}: refusing to use the audit lock {lock_path}: {what}; nothing was"
            " written to it. Remove it (asg-audit creates the lock file itself) and run again"
        )

    try:
        fd = os.open(lock_path, flags, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP or os.path.islink(lock_path):
            try:
                target = f" (to {os.readlink(lock_path)})"
            except OSError:
                target = ""
            raise refused(f"it is a symbolic link{target}, not a file") from None
        if exc.errno == errno.EISDIR:
            raise refused("it is a folder, not a file") from None
        raise StoreError(
            f"{db_path}: cannot open the database: its audit lock {lock_path} cannot be made"
            f" ({exc.strerror or type(exc).__name__})"
        ) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise refused("it is not a regular file")
        if info.st_nlink > 1:
            raise refused(f"it is a hard link: the file has {info.st_nlink} names")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def send_alert(url: str, payload: dict[str, Any], *, timeout: float = 10.0) -> None:
    """POST the JSON summary of a run to an alert URL (one message per run).

    `timeout` bounds the whole request: connecting, sending, and the answer's status line and
    headers (its body is not read). httpx's timeout applies to each read only, so an endpoint
    that answers one byte every few seconds would otherwise hold the job, and its lock, for
    ever. The request runs on a worker thread with its own event loop (this may be called from
    a notebook's running loop); the deadline cancels it there, which closes the connection.
    """
    outcome: list[int | BaseException] = []

    def post() -> None:
        try:
            outcome.append(aio.run(_post_alert(url, payload, timeout)))
        except BaseException as exc:  # handed to the caller's thread
            outcome.append(exc)

    worker = threading.Thread(target=post, name="asg-audit-alert", daemon=True)
    worker.start()
    # the worker ends itself at the deadline; the margin covers only a loop that fails to
    # stop in time
    worker.join(timeout + 5.0)
    result = outcome[0] if outcome else TimeoutError()
    origin = display_origin(url)
    if isinstance(result, TimeoutError):
        raise ApiError(
            f"alert to {origin} failed: no complete answer within {timeout:g} s"
            " (the deadline of the whole request)"
        )
    if isinstance(result, httpx.HTTPError):
        raise ApiError(f"alert to {origin} failed: {type(result).__name__}")
    if isinstance(result, BaseException):
        raise result
    if result >= 300:
        raise ApiError(f"alert to {origin} answered {result}")


async def _post_alert(url: str, payload: dict[str, Any], timeout: float) -> int:
    """Return the HTTP status of the alert POST, within `timeout` seconds overall."""
    async with (
        asyncio.timeout(timeout),
        httpx.AsyncClient(timeout=timeout) as client,
        client.stream("POST", url, json=payload) as response,
    ):
        return response.status_code


def _step(
    outcome: AuditOutcome, name: str, fn: Callable[[], str], log: IO[str], config: AuditConfig
) -> Exception | None:
    """Run one step; record ok/skipped, or failed with the reason; return what failed it.

    Any exception but an interrupt fails only its step: an API that let us down, a busy
    store, or a bug (recorded with its type and message, the secrets masked). The other steps
    and the report still run, and the run exits 3. A store that refuses the step for good (a
    damaged store, one from a newer asg_audit: `_store_refused`) is recorded `refused: ...`
    and makes the run exit 2, as it does when found at the start.
    """
    started = time.monotonic()
    failure: Exception | None = None
    try:
        note = fn()
    except (KeyboardInterrupt, BrokenPipeError):  # a stop, or the reader of the log gone
        outcome.steps[name] = "interrupted"
        raise
    except Exception as exc:  # an AuditError (an API, the store) or a bug
        if is_interrupt(exc):
            # A stop signal that landed inside a DuckDB statement comes out as DuckDB's
            # `RuntimeError: Query interrupted`, or as its error for the scan of a registered
            # frame the signal broke, the handler's KeyboardInterrupt consumed: the run is
            # stopped, not a step failed.
            outcome.steps[name] = "interrupted"
            raise KeyboardInterrupt(f"{name} interrupted") from exc
        reason = _failure(exc, config)[1]
        if _store_refused(exc):
            outcome.steps[name] = f"refused: {reason}"
            outcome.store_refused = outcome.store_refused or f"{name}: {reason}"
        else:
            outcome.steps[name] = f"failed: {reason}"
        failure = exc
    else:
        outcome.steps[name] = note or "ok"
    # a step's note may quote a drop-folder file name: its control characters are escaped
    line = f"{name:<13} {outcome.steps[name]} [{time.monotonic() - started:.1f} s]"
    print(printable(line, one_line=True), file=log)
    return failure


@dataclass(slots=True)
class _Verdicts:
    """What this run's steps found out that spares the later steps a futile try.

    `store`: the store refused a write (a full disk, a file it may not grow): the later steps
    that write (collect, verify-chain, billing) are skipped, not run to fetch what they could
    not store (a paid chain index quota included). `gateway`: the Gateway is unreachable or
    down: billing, which asks the same Gateway, fails with that reason instead of retrying.
    """

    store: str | None = None
    gateway: str | None = None

    def learn(self, step: str, exc: Exception | None, config: AuditConfig) -> None:
        if exc is None:
            return
        if self.store is None and _store_unwritable(exc):
            self.store = f"the store cannot be written{_os_cause(str(exc))}, as {step} found"
        if self.store is None and _store_refused(exc):
            self.store = f"the store refuses writes (damaged or newer), as {step} found"
        if self.gateway is None and _gateway_down(exc, config):
            reason = _failure(exc, config)[1]
            self.gateway = f"{reason} (found by {step} in this run; not asked again)"

    def skip_writer(self, fn: Callable[[], str]) -> Callable[[], str]:
        """Return `fn`, or a step that skips it once the store is known to refuse writes."""
        if self.store is None:
            return fn
        note = f"skipped ({self.store} in this run: nothing fetched that could not be stored)"
        return lambda: note

    def gateway_step(self, fn: Callable[[], str]) -> Callable[[], str]:
        """Return `fn`, or a step that fails at once with the run's verdict on the Gateway."""
        verdict = self.gateway
        if verdict is None:
            return fn

        def fail() -> str:
            raise ApiError(verdict)

        return fail


def _store_unwritable(exc: BaseException) -> bool:
    """Return whether a step failed because the store refused a write (not a busy store,
    not a file that is no store)."""
    if not isinstance(exc, StoreError) or isinstance(exc, (StoreBusyError, StoreFileError)):
        return False
    text = str(exc)
    return "cannot write the database" in text or "the store cannot be written" in text


def _store_refused(exc: BaseException) -> bool:
    """Return whether the store refused a step for good: damaged, or from a newer asg_audit
    (StoreFileError, SchemaVersionError: exit 2, retrying will not help), as the start of an
    audit refuses it."""
    return isinstance(exc, StoreError) and exc.exit_code == EXIT_USAGE


def _os_cause(text: str) -> str:
    """Return ` (<the OS's words>)` when an error text carries them (`No space left on
    device`), else ''."""
    for code in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EIO):
        words = os.strerror(code)
        if words in text:
            return f" ({words})"
    return ""


def _gateway_down(exc: BaseException, config: AuditConfig) -> bool:
    """Return whether a step failed because the Gateway is unreachable or down (this run's
    probe, or the collector's own verdict), not because it refused the key or a body."""
    if isinstance(exc, _GatewayUnreachable):
        return True
    if not isinstance(exc, ApiError) or not exc.transient:
        return False
    where = display_url(config.base_url)
    text = str(exc)
    return text.startswith(
        (f"cannot reach the Gateway at {where}", f"the Gateway at {where} is down")
    )


def run_audit(
    config: AuditConfig,
    *,
    out_dir: str | Path | None = None,
    formats: str = "html,md,json",
    wait_seconds: float = 0.0,
    fail_on: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    as_of: datetime | None = None,
    compare: str | None = None,
    collect_seconds: float | None = None,
    clock: Any = None,
    progress: bool = False,
    log: IO[str] | None = None,
    on_start: Callable[[AuditOutcome], None] | None = None,
    warn_on_stderr: bool = False,
) -> AuditOutcome:
    """Run one audit end to end and return its outcome (with the exit code to use).

    `on_start` is called with the outcome once the run is recorded in `runs`: the outcome fills
    in as the steps run, so a caller still knows the run id and the steps done if the run is
    stopped by an exception.

    The run's warnings (unreadable input, no API key) are written to `log` with the step lines
    and, with `warn_on_stderr`, to sys.stderr too as `asg-audit: warning: ...` lines (the
    command line asks for it when its log is stdout: a scheduler keeping only stderr sees them).

    `log` (default sys.stdout) and sys.stderr are written through a `GuardedStream` for the
    run, as on the command line: output that cannot be written (a full disk, a closed stream,
    a reader gone) never stops the run; it is noted in `outcome.output_lost`, and a run that
    would exit 0 or 1 exits 3 (its work is done and recorded; its output is not all there). A
    sys.stdout (log=None) or sys.stderr that is None is such output from the start. Runs that
    overlap in several threads are independent: each is charged only with its own losses (a
    write from a thread it did not start in its context, such as a library's worker pool,
    counts for every run under way).
    """
    _check_arguments(
        config,
        wait_seconds=wait_seconds,
        collect_seconds=collect_seconds,
        out_dir=out_dir,
        compare=compare,
    )
    if log is not None and not callable(getattr(log, "write", None)):
        # refused before a run is recorded (it was a `failed` run: AttributeError, tester T2)
        raise TypeError(
            "run_audit log: expected a text stream (with write()) or None,"
            f" got {type(log).__name__}"
        )
    # log and sys.stderr are guarded for the whole run, its checks included
    with _guarded_output(log) as (guarded_log, lost):
        db = Path(config.db_path)
        settings = dict(config.audit)
        fail_on = fail_on or str(settings.get("fail_on", config.fail_on))
        out = Path(out_dir or settings.get("report_dir", "reports"))
        # Every option is checked before any step runs: a typo must not cost a whole run's work
        # and leave it recorded as running.
        wanted, compare, compare_note = _check_options(
            out, formats=formats, fail_on=fail_on, compare=compare
        )
        _check_window(since, until)
        _check_api_key(config, settings)
        outcome = AuditOutcome(run_id=new_run_id())
        # systemd stops a job with SIGTERM: it stops the run as Ctrl-C does (recorded interrupted)
        with sigterm_interrupts(), audit_lock(db, wait_seconds=wait_seconds):
            # the id says when the run started, not when it began to wait for another audit
            # (tester T8: `--wait` ids carried the time waiting began)
            outcome.run_id = new_run_id()
            with open_store(db, wait_seconds=wait_seconds) as store:
                store.start_run("audit", run_id=outcome.run_id)
            try:
                if on_start is not None:
                    on_start(outcome)
                # each step opens the store itself: one that another process opened between
                # two steps is waited for (`--wait`, END_RECORD_WAIT_S at least), not failed
                step_wait = max(wait_seconds, END_RECORD_WAIT_S)
                with storefile.patience(db, step_wait):
                    _run_steps(
                        outcome,
                        config,
                        settings,
                        out=out,
                        formats=wanted,
                        wait_seconds=wait_seconds,
                        fail_on=fail_on,
                        since=since,
                        until=until,
                        as_of=as_of,
                        compare=compare,
                        compare_note=compare_note,
                        collect_seconds=collect_seconds,
                        clock=clock,
                        progress=progress,
                        log=guarded_log,
                        warnings=sys.stderr if warn_on_stderr else None,
                    )
            except BaseException as exc:
                stopped = _record_stop(exc, config, outcome, wait_seconds=wait_seconds)
                if stopped is None:
                    raise
                raise stopped from exc
        outcome.output_lost = lost()
    if outcome.output_lost and outcome.exit_code in (EXIT_OK, EXIT_FINDINGS):
        # as the command line: 0 and 1 say the run did its work and its output is there
        outcome.exit_code = EXIT_INCOMPLETE
    return outcome


@contextlib.contextmanager
def _guarded_output(
    log: IO[str] | None,
) -> Iterator[tuple[IO[str], Callable[[], dict[str, str]]]]:
    """Guard `log` (sys.stdout when None) and sys.stderr for the block; yield the log to write
    to and a function returning the output lost so far ({name: why}).

    A log the command line already guards (its sys.stdout) is used as it is: the command line
    notes and reports its losses. A log that is None (sys.stdout of a process started with
    `>&-`) is output lost from the start. The caller's own streams are never closed, redirected
    or written again once a write failed. sys.stderr is guarded by `guarded_stderr`: runs that
    overlap (two threads) share one guard, the last one puts the caller's stream back, and each
    run is charged only with what it lost itself.
    """
    own: dict[str, str] = {}
    stream = sys.stdout if log is None else log
    if isinstance(stream, GuardedStream):
        guarded = stream
    else:
        name = STDOUT if log is None else "the log"
        guarded = GuardedStream(cast(TextIO | None, stream), name, own, own_process=False)

    with guarded_stderr(own) as stderr_lost:

        def lost() -> dict[str, str]:
            if guarded is not stream:  # the caller's log: a buffered one fails here at the latest
                guarded.flush()
            found = {guarded.name: guarded.lost} if guarded.lost is not None else {}
            if (why := stderr_lost()) is not None:
                found[STDERR] = why
            return found

        yield cast(IO[str], guarded), lost


def _record_stop(
    exc: BaseException, config: AuditConfig, outcome: AuditOutcome, *, wait_seconds: float
) -> BaseException | None:
    """Record the run stopped by `exc` (failed, interrupted, ...) in `runs`; return the error to
    raise instead (a bug: IncompleteRunError, exit 3), or None to raise `exc` (an AuditError
    naming what could not be recorded, an interruption, a reader gone).

    DuckDB's forms of an interrupted statement (`RuntimeError: Query interrupted`, its error
    for a scan a KeyboardInterrupt broke), raised outside a step (while the findings are
    written: tester T1), are the interruption: recorded `interrupted`, raised as a
    KeyboardInterrupt (they were a bug's `failed` and `IncompleteRunError`)."""
    if not isinstance(exc, KeyboardInterrupt) and is_interrupt(exc):
        interrupted = KeyboardInterrupt("audit interrupted")
        _record_stop(interrupted, config, outcome, wait_seconds=wait_seconds)
        return interrupted
    status, error = _failure(exc, config)
    code = exc.exit_code if isinstance(exc, AuditError) else EXIT_INCOMPLETE
    db = Path(config.db_path)
    problem = _record_failure(db, outcome, status, error, code, wait_seconds=wait_seconds)
    unrecorded = (
        None
        if problem is None
        else f"audit run {outcome.run_id} could not be recorded as {status} ({problem});"
        " `runs` shows it running until the next audit marks it abandoned"
    )
    if isinstance(exc, BrokenPipeError):
        return None  # the reader of the log went away (`audit | head`): stopped, quietly
    if isinstance(exc, KeyboardInterrupt):
        if unrecorded is not None:
            print(f"asg-audit: warning: {printable(unrecorded)}", file=sys.stderr)
        return None
    if isinstance(exc, AuditError):
        if unrecorded is not None:  # said in the one error line
            exc.args = (f"{exc}; {unrecorded}",)
        if outcome.report_dir is not None:  # the run got as far as its report
            exc.args = (f"{exc}; the report is written: {outcome.report_dir}",)
        return None
    # A bug: the run is recorded as failed and the job exits 3 (incomplete), not 1, which a
    # scheduler would read as "findings".
    recorded = "recorded as failed in runs" if unrecorded is None else unrecorded
    return IncompleteRunError(f"audit run {outcome.run_id} failed: {error} ({recorded})")


def _check_arguments(
    config: Any, *, wait_seconds: Any, collect_seconds: Any, out_dir: Any, compare: Any
) -> None:
    """Raise TypeError or ConfigError naming a bad argument of `run_audit`."""
    from asg_audit.config import setting_problem

    if not isinstance(config, AuditConfig):
        raise TypeError(
            "run_audit config: expected an AuditConfig (see load_config),"
            f" got {type(config).__name__}"
        )
    if out_dir is not None and not isinstance(out_dir, str | os.PathLike):
        raise TypeError(
            "run_audit out_dir: expected a path (str or Path) or None,"
            f" got {type(out_dir).__name__}"
        )
    if compare is not None and not isinstance(compare, str):
        raise TypeError(f"run_audit compare: expected a str or None, got {type(compare).__name__}")
    if compare == "":
        # as the command line refuses `--compare ''` (an unset `$PREV`) (tester T3)
        raise ConfigError(
            "run_audit compare: expected a run id or 'previous', got an empty value (None: no"
            " comparison)"
        )
    check_wait_seconds(wait_seconds, "run_audit wait_seconds")
    if collect_seconds is not None:
        problem = setting_problem("audit", "collect_seconds", collect_seconds)
        if problem is not None:
            raise ConfigError(f"run_audit collect_seconds: {problem}")


def _check_window(since: datetime | None, until: datetime | None) -> None:
    """Raise ConfigError for an empty or inverted window (before any step runs)."""
    from asg_audit.audit import check_window

    check_window(since, until)


def _check_api_key(config: AuditConfig, settings: dict[str, Any]) -> None:
    """Raise ConfigError without an API key under `[audit] require_api = true`.

    A cron job that lost its environment file would otherwise skip collect and billing and
    report success; without require_api the run says so loudly (`_warn_no_api_key`).
    """
    if config.api_key is not None:
        return
    if settings.get("require_api", False):
        raise ConfigError(
            "no API key: set ASG_API_KEY (or API_KEY) in the environment; "
            "[audit] require_api = true makes the Gateway steps mandatory"
        )


def _warn(text: str, log: IO[str], warnings: IO[str] | None) -> None:
    """Print a warning of the run: `warning: TEXT` in the log, `asg-audit: warning: TEXT` on
    `warnings` too when given (one line each, control characters escaped)."""
    print(printable(f"warning: {text}", one_line=True), file=log)
    if warnings is not None and warnings is not log:
        print(printable(f"asg-audit: warning: {text}", one_line=True), file=warnings)


def _warn_no_api_key(
    config: AuditConfig, settings: dict[str, Any], log: IO[str], warnings: IO[str] | None
) -> None:
    """Print the warning of a run without an API key (once the run is recorded): the steps
    it skips (billing only when `[audit] billing` is on: tester T8)."""
    if config.api_key is None:
        _warn(_no_api_key_text(config, settings), log, warnings)


def _no_api_key_text(config: AuditConfig, settings: dict[str, Any]) -> str:
    skipped = "collect and billing are" if settings.get("billing", True) else "collect is"
    return (
        f"no ASG_API_KEY (or API_KEY) in the environment: {skipped} "
        f"skipped, the Gateway at {display_url(config.base_url)} is not asked; "
        "set [audit] require_api = true to make this an error"
    )


def _check_options(
    out: Path, *, formats: str, fail_on: str, compare: str | None
) -> tuple[tuple[str, ...], str | None, str | None]:
    """Return the report formats, the `--compare` to render with, and a note when `previous`
    has no earlier report; raise ConfigError for any option `report` would refuse.

    `--compare previous` in a job whose reports folder holds no report yet (a new deployment,
    a folder cleaned by hand) compares with nothing and says so: refusing would record no run
    and write no report, so the next run would be refused too, for ever. A run id that names
    no report is still an error.
    """
    from asg_audit.report import parse_formats
    from asg_audit.report.compare import (
        PREVIOUS,
        load_summary,
        previous_summary,
        resolve_compare,
    )
    from asg_audit.report.render import check_report_folder, check_report_pointers

    wanted = parse_formats(formats)
    if fail_on not in _SEVERITY_RANK:
        raise ConfigError("--fail-on (fail_on): expected one of info, warn, fail")
    check_report_folder(out)  # a file in the way, or a folder that cannot be written
    # or a `latest`/`LATEST` of the user's there: refused before the steps (a long collect),
    # not by the report at the end
    check_report_pointers(out)
    if compare == PREVIOUS and previous_summary(out) is None:
        return wanted, None, f"skipped (no earlier report to compare with in {out})"
    if compare:
        load_summary(resolve_compare(out, compare))
    return wanted, compare, None


def _run_steps(
    outcome: AuditOutcome,
    config: AuditConfig,
    settings: dict[str, Any],
    *,
    out: Path,
    formats: tuple[str, ...],
    wait_seconds: float,
    fail_on: str,
    since: datetime | None,
    until: datetime | None,
    as_of: datetime | None,
    compare: str | None,
    compare_note: str | None,
    collect_seconds: float | None,
    clock: Any,
    progress: bool,
    log: IO[str],
    warnings: IO[str] | None,
) -> None:
    """Run the steps of one audit, write its report, alert, and record how the run ended."""
    from asg_audit.audit import analyze
    from asg_audit.report import render

    db = Path(config.db_path)
    _warn_no_api_key(config, settings, log, warnings)
    found = _Verdicts()
    failed = _step(
        outcome,
        "ingest",
        lambda: _ingest_drop_folders(config, settings, progress, outcome),
        log,
        config,
    )
    found.learn("ingest", failed, config)
    for problem in outcome.input_errors:
        _warn(f"unreadable input: {problem}", log, warnings)
    failed = _step(
        outcome,
        "collect",
        found.skip_writer(lambda: _collect(config, settings, collect_seconds, progress, clock)),
        log,
        config,
    )
    found.learn("collect", failed, config)
    # A step the job disables says so whatever this run found out (a store that refuses
    # writes, a Gateway that is down): it would not have run anyway.
    verify = _disabled(settings, "verify_chain") or found.skip_writer(
        lambda: _verify_chain(config, settings, progress)
    )
    failed = _step(outcome, "verify-chain", verify, log, config)
    found.learn("verify-chain", failed, config)
    billing = _disabled(settings, "billing") or found.skip_writer(
        found.gateway_step(lambda: _billing(config, settings))
    )
    failed = _step(outcome, "billing", billing, log, config)
    found.learn("billing", failed, config)

    audit = analyze(db, since=since, until=until, config=config, as_of=as_of)
    raise_if_stopped()  # a stop a library caught during the analysis stops the run here
    # The findings are stored under the run id. A store that refuses the write (known already,
    # or found here) still gets its report, written from what the store holds: a `findings`
    # step says why they are not stored (on success there is no such step).
    note = None
    if found.store is not None:
        note = f"skipped (not stored: {found.store} in this run)"
    else:
        try:
            with open_store(db, wait_seconds=wait_seconds) as store, store.transaction():
                store.write_findings(outcome.run_id, audit.findings)
        except StoreError as exc:
            # a damaged or newer store: exit 2, as at the start; any other refusal: exit 3
            reason = _failure(exc, config)[1]
            if _store_refused(exc):
                note = f"refused: not stored: {reason}"
                outcome.store_refused = outcome.store_refused or f"findings: {reason}"
            else:
                note = f"failed: not stored: {reason}"
    if note is not None:
        outcome.steps["findings"] = note
        print(printable(f"{'findings':<13} {note}", one_line=True), file=log)
    if compare_note is not None:  # `--compare previous` with no earlier report: said so
        _step(outcome, "compare", lambda: compare_note, log, config)
    report = render(
        audit,
        out,
        formats=formats,
        run_id=outcome.run_id,
        compare=compare,
        findings_stored=note is None,
        # the steps done so far: an incomplete run's report says so (summary.json `run`, a
        # banner `Incomplete audit: collect failed: ...`)
        steps=dict(outcome.steps),
    )
    outcome.report_dir = report.folder
    outcome.report_paths = dict(report.paths)
    outcome.summary = audit.summary()
    worst = audit.worst_severity()
    alert_url = settings.get("alert_url")
    alert_on = str(settings.get("alert_on", "fail"))
    if alert_url and worst is not None and _SEVERITY_RANK[worst] >= _SEVERITY_RANK[alert_on]:
        # a step like the others: an alert that could not be sent makes the run incomplete
        # (exit 3, "alert if it persists"), so nobody is left unpaged without a trace
        payload = {"run_id": outcome.run_id, "steps": dict(outcome.steps), **outcome.summary}
        _step(outcome, "alert", lambda: _alert(str(alert_url), payload, outcome), log, config)
    if outcome.incomplete:
        outcome.exit_code = EXIT_INCOMPLETE
    elif outcome.input_errors or outcome.store_refused:
        outcome.exit_code = EXIT_USAGE
    elif worst is not None and _SEVERITY_RANK[worst] >= _SEVERITY_RANK[fail_on]:
        outcome.exit_code = EXIT_FINDINGS
    stats: dict[str, Any] = {
        "steps": outcome.steps,
        "exit_code": outcome.exit_code,
        "report": str(outcome.report_dir),
        **outcome.summary,
    }
    if outcome.exit_code == EXIT_USAGE:
        # exit 2, "fix the job definition": `runs` must not read `ok` (as `ingest` records a
        # run with unreadable files `failed`)
        errors = []
        if outcome.input_errors:
            errors.append("unreadable input: " + "; ".join(outcome.input_errors))
        if outcome.store_refused:
            errors.append(f"the store refused the run's writes ({outcome.store_refused})")
        stats["error"] = "; ".join(errors)
    raise_if_stopped()  # ... or, caught while the report was written, before the run is `ok`
    # the store may be busy for a moment (a notebook opening it): the end is worth a wait
    with open_store(db, wait_seconds=max(wait_seconds, END_RECORD_WAIT_S)) as store:
        store.finish_run(outcome.run_id, status=_run_status(outcome.exit_code), stats=stats)


def _disabled(settings: dict[str, Any], key: str) -> Callable[[], str] | None:
    """Return a step that only says it is disabled when `[audit] <key> = false`, else None."""
    if settings.get(key, True):
        return None
    return lambda: DISABLED


def _alert(url: str, payload: dict[str, Any], outcome: AuditOutcome) -> str:
    send_alert(url, payload)
    outcome.alert_sent = True
    return f"ok: sent to {display_origin(url)}"


def _run_status(exit_code: int) -> str:
    """Return the `runs` status of an audit that ran to its end, from its exit code.

    0 and 1 (findings) are `ok`: the audit itself succeeded. 2 (unreadable input: a job
    definition to fix) is `failed`, as `ingest` records a run with unreadable files. 3 (a step
    could not be done) is `incomplete`.
    """
    if exit_code == EXIT_INCOMPLETE:
        return "incomplete"
    if exit_code == EXIT_USAGE:
        return "failed"
    return "ok"


def _failure(exc: BaseException, config: AuditConfig) -> tuple[str, str]:
    """Return the status and the one-line error of a run that an exception stopped."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", "interrupted"
    if isinstance(exc, BrokenPipeError):
        return "interrupted", "the reader of the output went away"
    return "failed", error_text(exc, config.all_secrets())


def _record_failure(
    db: Path,
    outcome: AuditOutcome,
    status: str,
    error: str,
    exit_code: int,
    *,
    wait_seconds: float,
) -> str | None:
    """Record a run an exception stopped, so that it does not stay `running` forever.

    A store another process has open is waited for (`END_RECORD_WAIT_S` at least, also
    without --wait). Return None once recorded, else why it could not be.
    """
    stats = {"steps": outcome.steps, "error": error, "exit_code": exit_code}
    try:
        with open_store(db, wait_seconds=max(wait_seconds, END_RECORD_WAIT_S)) as store:
            store.finish_run(outcome.run_id, status=status, stats=stats)
    except AuditError as exc:
        return " ".join(str(exc).split())
    return None


# -- steps -------------------------------------------------------------------------------------


def _ingest_drop_folders(
    config: AuditConfig, settings: dict[str, Any], progress: bool, outcome: AuditOutcome
) -> str:
    """Ingest the drop folders; unreadable files and missing folders go to `input_errors`."""
    from asg_audit.ingest_files import ingest_paths

    folders = [Path(p) for p in settings.get("drop_folders", [])]
    if not folders:
        return "skipped (no [audit] drop_folders configured)"
    existing = [p for p in folders if p.is_dir()]
    # A folder listed but absent (a typo, an unmounted share) would otherwise hide its files
    # from every run: it is unreadable input, reported and in the exit code.
    missing = [_not_a_drop_folder(p) for p in folders if not p.is_dir()]
    outcome.input_errors.extend(missing)
    if not existing:
        return "unreadable input: " + "; ".join(missing)
    summary = ingest_paths(config.db_path, existing, progress=progress)
    unreadable = [f.error or f.path for f in summary.failed_files]
    outcome.input_errors.extend(str(u) for u in unreadable)
    new_files = sum(f.status == "ingested" for f in summary.files)
    note = f"{new_files} new file(s), {summary.accepted:,} records accepted"
    if summary.accepted:
        note += f" ({summary.new_results:,} new results, {summary.duplicates:,} duplicates)"
    if summary.rejected:
        # tester T8: a corrupt export read as "0 records accepted" and nothing more
        reasons = ", ".join(f"{r} {n:,}" for r, n in sorted(summary.rejected_by_reason.items()))
        note += f", {summary.rejected:,} rejected ({reasons})"
    if missing or unreadable:
        return f"unreadable input ({note}): " + "; ".join([*missing, *map(str, unreadable)])
    return f"ok: {note}"


def _not_a_drop_folder(path: Path) -> str:
    """Return why a listed drop folder cannot be read: absent, or something else than a folder
    (the absolute path checked is shown when the listed one is relative)."""
    checked = "" if path.is_absolute() else f" (checked {path.absolute()})"
    if path.exists() or path.is_symlink():
        what = "a symbolic link to nothing" if not path.exists() else "not a folder"
        return f"{path}{checked}: drop folder is {what}"
    return f"{path}{checked}: drop folder does not exist"


def _collect(
    config: AuditConfig,
    settings: dict[str, Any],
    seconds: float | None,
    progress: bool,
    clock: Any,
) -> str:
    from asg_audit.collector import collect_sync

    if config.api_key is None:
        return "skipped (no ASG_API_KEY: nothing to poll)"
    budget = float(
        seconds if seconds is not None else settings.get("collect_seconds", DEFAULT_COLLECT_SECONDS)
    )
    probe_started = time.monotonic()
    _probe_gateway(config)
    if clock is None:
        # the probe is part of the step's time budget (a slow Gateway answers it late): the
        # collector gets what is left. A simulated clock (the demo) counts its own seconds.
        budget = max(0.0, budget - (time.monotonic() - probe_started))
    # The collector stops cleanly on SIGINT/SIGTERM itself (its run recorded interrupted) and
    # puts back the handlers it found; kept here too, as every step that may touch them is.
    with kept_signal_handlers():
        summary = collect_sync(
            config,
            run_for_s=budget,
            progress=progress,
            clock=clock,
            handle_signals=in_main_thread(),
        )
    if summary.status == "interrupted":
        raise KeyboardInterrupt("collect interrupted")
    if summary.status == "auth_refused":
        raise ApiError("the Gateway refused the API key (401/403)")
    # A Gateway that is down or never answered usefully fails the run inside the collector
    # (`polloutage.Outage`, `polloutage.end_failure`): it raises an ApiError here, as the
    # `collect` command exits 3 for it: one rule for both.
    return (
        f"ok: {summary.settled:,} settled, {summary.pending:,} still pending, "
        f"{summary.not_found:,} not found ({summary.status})"
    )


class _GatewayUnreachable(ApiError):
    """The probe before collect got no HTTP answer from the Gateway (exit 3, as any ApiError)."""


# The probe's whole budget: as the collector, which stops once it got no HTTP answer at all for
# 10 s, it gives up after 10 s without one, however the time went (a connection refused at
# once, retried; a Gateway that accepts and never answers, one request waited out).
PROBE_DEADLINE_S = 10.0


def _probe_gateway(
    config: AuditConfig, *, attempts: int = 3, deadline_s: float = PROBE_DEADLINE_S
) -> None:
    """Fail fast when the Gateway is unreachable or refuses the key, instead of polling on.

    Any HTTP answer (even 404 for the probe id) proves the Gateway is there; only transport
    failures on every attempt, or 401/403, stop the run. All attempts and the pauses between
    them end within `deadline_s`: a Gateway that accepts connections and never answers is
    waited for once, `deadline_s`, not three timeouts and their pauses.
    """
    assert config.api_key is not None
    url = config.base_url.rstrip("/") + "/v1/tasks/asg-audit-probe/result"
    headers = {"Authorization": f"Bearer {config.api_key.reveal()}"}
    answer, why = _first_answer(url, headers, attempts=attempts, deadline_s=deadline_s)
    if answer is None:
        raise _GatewayUnreachable(
            f"the Gateway at {display_url(config.base_url)} is unreachable ({why})"
        )
    if answer.status_code in (401, 403):
        raise ApiError(f"the Gateway refused the API key ({answer.status_code})")


def _first_answer(
    url: str, headers: dict[str, str], *, attempts: int, deadline_s: float
) -> tuple[httpx.Response | None, str]:
    """Return the first HTTP answer of `url` within `deadline_s`, tries and pauses included,
    or (None, why none came): a service that accepts connections and never answers is waited
    for once, `deadline_s`, not `attempts` timeouts and their pauses."""
    started = time.monotonic()
    end = started + deadline_s
    last = ""
    for attempt in range(attempts):
        left = end - time.monotonic()
        if left <= 0:
            break
        try:
            # the status line and headers are the answer: the body is never read (a body
            # trickled byte by byte would hold the probe past its deadline)
            with httpx.stream("GET", url, headers=headers, timeout=left) as answer:
                return answer, ""
        except httpx.TransportError as exc:
            last = type(exc).__name__
            pause = min(0.5 * 2**attempt, end - time.monotonic())
            if attempt + 1 < attempts and pause > 0:
                time.sleep(pause)
    return None, f"{last}; no HTTP answer in {time.monotonic() - started:.0f} s"


def _probe(url: str, what: str, *, attempts: int = 3) -> None:
    """Fail fast when a service does not answer at all (any HTTP answer will do)."""
    answer, why = _first_answer(url, {}, attempts=attempts, deadline_s=PROBE_DEADLINE_S)
    if answer is None:
        raise ApiError(f"the {what} at {display_url(url)} is unreachable ({why})")


def _verify_chain(config: AuditConfig, settings: dict[str, Any], progress: bool) -> str:
    from asg_audit.chain import configured_depth, verify_chain
    from asg_audit.chain_verify import pending_txid_count, unknown_recheck

    if not settings.get("verify_chain", True):
        return DISABLED
    # Nothing to fetch (no txid to verify, no parent fees asked for): the index is not needed.
    # At the depth configured now, as verify_chain counts: a txid stored `confirmed` below it
    # is fetched again, so it needs the index as much as one never fetched.
    depth = configured_depth(config)
    fetch_parents = config.chain.get("fetch_parents", False)
    pending = pending_txid_count(
        config.db_path, confirmations=depth, unknown_recheck=unknown_recheck(config)
    )
    if fetch_parents or pending > 0:
        _probe(config.chain_url.rstrip("/") + "/chain/info", "chain index")
    summary = verify_chain(config.db_path, config, progress=progress)
    counts = (
        f"{summary.checked:,} checked, {summary.confirmed:,} confirmed, "
        f"{summary.unconfirmed:,} unconfirmed, {summary.unknown:,} unknown"
    )
    if summary.unknown_backed_off:
        # not asked this run: their back-off has not run out (still `unknown` in the store)
        counts += f", {summary.unknown_backed_off:,} unknown not asked (back-off"
        if summary.unknown_next_due:
            counts += f", next due {summary.unknown_next_due}"
        counts += ")"
    if summary.refused:
        # As the `verify-chain` command: an index answer that failed its checks (bytes that do
        # not hash to the txid, impossible block fields, an error) is no evidence either way;
        # the txid is asked again next run, and this run is incomplete (exit 3), not `ok`.
        first = printable(summary.refusals[0], one_line=True) if summary.refusals else ""
        return (
            f"failed: {counts}, refused {summary.refused:,} (chain index answers that failed"
            " their checks: asked again next run)" + (f"; first: {first}" if first else "")
        )
    return f"ok: {counts}"


def _billing(config: AuditConfig, settings: dict[str, Any]) -> str:
    from asg_audit.billing import fetch_billing

    if config.api_key is None:
        return "skipped (no ASG_API_KEY)"
    if not settings.get("billing", True):
        return DISABLED
    summary = fetch_billing(config.db_path, config)
    note = f"ok: {len(summary.months)} month(s), {summary.invoices} invoice(s)"
    if summary.notes:
        note += (
            f"; {len(summary.notes)} impossible figure(s) stored as null (billing.invalid_figure)"
        )
    return note
