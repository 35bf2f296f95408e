"""The collector's entry points: `collect`, `collect_sync` and the `collect` command.

The run itself (dispatcher, outcomes, writes, what the schedule learns) is
`asg_audit.pollrun.CollectorRun`; settings and the store writer are `asg_audit.pollwriter`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Final, TextIO

from asg_audit import aio
from asg_audit.clock import Clock, SystemClock
from asg_audit.config import AuditConfig, check_wait_seconds, read_limited
from asg_audit.errors import ConfigError, InputError
from asg_audit.model import is_safe_task_id, printable
from asg_audit.pollrun import CollectorRun
from asg_audit.pollwriter import CollectorSettings, CollectProgressReporter, CollectSummary
from asg_audit.progress import ProgressReporter, is_terminal
from asg_audit.schedule import SchedulePolicy, make_policy
from asg_audit.stopsignals import in_main_thread, kept_signal_handlers, note_stop, one_run_command

__all__ = [
    "TASK_ID_FILE_MAX_BYTES",
    "CollectNotStoppedError",
    "CollectSummary",
    "CollectorSettings",
    "TaskIdFile",
    "collect",
    "collect_sync",
    "read_task_id_file",
    "read_task_ids",
]

log = logging.getLogger("asg_audit.collector")

# a `--task-ids` file is read whole, so with a bound: about 500,000 ids of 128 characters (a
# device such as /dev/zero, or the wrong file, is one error line instead of a MemoryError)
TASK_ID_FILE_MAX_BYTES: Final = 64 << 20


@dataclass(frozen=True, slots=True)
class TaskIdFile:
    """The ids of a `--task-ids` file and the lines skipped as unsafe: (line, text, reason)."""

    path: str
    ids: list[str]
    skipped: list[tuple[int, str, str]]

    def problems(self) -> list[str]:
        """Return one printable line per skipped id: `file:line: reason: 'id'`."""
        return [
            f"{printable(self.path, one_line=True)}:{line}: skipped task id "
            f"{printable(repr(text[:80]), one_line=True)}: {reason}"
            for line, text, reason in self.skipped
        ]


def read_task_id_file(path: str | Path) -> TaskIdFile:
    """Return the ids of a file, one per line (blank lines and `#` comments skipped), and the
    lines whose id is not safe in a URL (`asg_audit.model.is_safe_task_id`).

    Raises `InputError` when the file cannot be read, is not UTF-8 text or holds more than
    `TASK_ID_FILE_MAX_BYTES` (64 MiB; read no further).
    """
    try:
        Path(path).stat()
    except OSError as exc:
        raise InputError(f"cannot read task ids from {path}: {exc.strerror or exc}") from None
    data = read_limited(path, limit=TASK_ID_FILE_MAX_BYTES, what="task id file", error=InputError)
    try:
        text = data.decode("utf-8-sig")  # a BOM (Notepad, Excel) is no id
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (byte {exc.start}): one task id a line") from None
    ids: list[str] = []
    skipped: list[tuple[int, str, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if is_safe_task_id(s):
            ids.append(s)
        elif len(s) > 128:
            skipped.append((number, s, "longer than 128 characters"))
        else:
            skipped.append((number, s, "not a safe task id (letters, digits, _ . : - only)"))
    return TaskIdFile(str(path), ids, skipped)


def read_task_ids(path: str | Path) -> list[str]:
    """Return the safe task ids of a file, one per line (see `read_task_id_file`)."""
    return read_task_id_file(path).ids


def _check_config(config: object, caller: str) -> None:
    """Raise TypeError unless `config` is an AuditConfig (a library caller's slip)."""
    if not isinstance(config, AuditConfig):
        raise TypeError(
            f"{caller} config: expected an AuditConfig (asg_audit.load_config()),"
            f" got {type(config).__name__}"
        )


def _check_run_arguments(caller: str, run_for_s: object, stop_event: object) -> None:
    """Raise ConfigError or TypeError naming a bad `run_for_s` or `stop_event`, before a run
    is recorded (`nan` would never end the run, a string would fail once it had begun)."""
    if run_for_s is not None:
        check_wait_seconds(run_for_s, f"{caller} run_for_s")
    if stop_event is not None and not callable(getattr(stop_event, "is_set", None)):
        raise TypeError(
            f"{caller} stop_event: expected a threading.Event (anything with is_set()) or None,"
            f" got {type(stop_event).__name__}"
        )


def _task_id_list(task_ids: str | bytes | Iterable[str | bytes] | None) -> list[str] | None:
    """Return `task_ids` as a list of ids: one str (or bytes) is one id, not its characters.

    Bytes are decoded as file names are (`os.fsdecode`); an id that is then not safe in a URL
    is skipped by the run and counted, as any other. Raises TypeError for anything else.
    """
    if task_ids is None:
        return None
    if isinstance(task_ids, str | bytes | bytearray):
        task_ids = [task_ids]
    elif not isinstance(task_ids, Iterable):
        raise TypeError(
            "collect task_ids: expected a task id (str) or an iterable of them, got"
            f" {type(task_ids).__name__}"
        )
    ids: list[str] = []
    for n, item in enumerate(task_ids):
        if isinstance(item, bytes | bytearray):
            ids.append(os.fsdecode(bytes(item)))
        elif isinstance(item, str):
            ids.append(item)
        else:  # never echoed: an id list may be anything a notebook had at hand
            raise TypeError(
                f"collect task_ids[{n}]: expected a task id (str or bytes), got"
                f" {type(item).__name__}"
            )
    return ids


async def collect(
    config: AuditConfig,
    *,
    task_ids: str | bytes | Iterable[str | bytes] | None = None,
    schedule: str | SchedulePolicy | None = None,
    max_rps: float | None = None,
    concurrency: int | None = None,
    deadline_s: float | None = None,
    run_for_s: float | None = None,
    clock: Clock | None = None,
    progress: bool | ProgressReporter = False,
    handle_signals: bool = False,
    stop_event: threading.Event | None = None,
    transport: Any = None,
) -> CollectSummary:
    """Poll every tracked task that is not final (or just `task_ids`); return the summary.

    `task_ids` is one id (a str) or an iterable of ids. Settings come from `config.collector`
    ([collector] in the TOML), overridden by the keyword arguments. `run_for_s` stops after
    that many (clock) seconds, leaving pending tasks for the next run. `handle_signals` makes
    SIGINT/SIGTERM stop the run cleanly (main thread only; the handlers found are put back
    after the run); `stop_event` does the same from another thread. Raises `AuthError` on
    401/403 after writing what was collected; an interrupted run returns with
    `status == "interrupted"`.
    """
    _check_config(config, "collect")
    _check_run_arguments("collect", run_for_s, stop_event)
    ids = _task_id_list(task_ids)
    if not config.api_key:
        raise ConfigError("no API key: set ASG_API_KEY (or API_KEY) in the environment")
    name = schedule if isinstance(schedule, str) else None
    settings = CollectorSettings.from_mapping(
        config.collector,
        schedule=name,
        max_rps=max_rps,
        concurrency=concurrency,
        deadline_s=deadline_s,
    )
    policy = schedule if schedule is not None and not isinstance(schedule, str) else None
    reporter = progress if isinstance(progress, ProgressReporter) else None
    if progress is True:
        reporter = CollectProgressReporter(log_every_s=settings.progress_interval_s)
    collector = CollectorRun(
        config=config,
        settings=settings,
        policy=policy or make_policy(settings.schedule),
        clock=clock or SystemClock(),
        task_ids=ids,
        run_for_s=run_for_s,
        progress=reporter,
        stop_event=stop_event,
        transport=transport,
    )
    # the signals handled, with what handled them before: the loop's own handler (a caller's
    # `loop.add_signal_handler`), else the Python-level one
    installed: dict[signal.Signals, tuple[Any, asyncio.Handle | None]] = {}
    received: list[signal.Signals] = []

    def on_signal(sig: signal.Signals) -> None:
        received.append(sig)
        collector.stop(sig.name)

    try:
        if handle_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous = signal.getsignal(sig)
                loop_handle = getattr(loop, "_signal_handlers", {}).get(sig)
                loop.add_signal_handler(sig, on_signal, sig)
                installed[sig] = (previous, loop_handle)
        summary = await collector.run()
    finally:
        _remove_signal_handlers(asyncio.get_running_loop(), installed)
    if received and summary.status != "interrupted":
        # A stop signal came as the run was ending, after its outcome was settled: the run
        # stands as recorded, and the signal goes on to the handlers found, which stop what
        # comes next (`audit`'s next steps) or, once the command's run is recorded, leave it
        # alone (`stopsignals.run_ended`). It used to be lost: `audit` ran on to its end.
        signal.raise_signal(received[0])
    return summary


def _remove_signal_handlers(
    loop: asyncio.AbstractEventLoop, installed: dict[signal.Signals, Any]
) -> None:
    """Remove the run's signal handlers and put back the ones that were there before.

    asyncio (and uvloop) reset a signal to its default when removing its handler: SIGINT to
    `default_int_handler`, SIGTERM to SIG_DFL, so that a later SIGTERM killed the caller's
    process, whatever handler it had installed (or `asyncio.run`'s own Ctrl-C was lost). A
    handler the caller had added to the loop itself (`loop.add_signal_handler`) is replaced by
    ours and deleted with it: it is added back, else the signal would reach asyncio's no-op
    and be ignored.
    """
    for sig, (previous, loop_handle) in installed.items():
        loop.remove_signal_handler(sig)
        if loop_handle is not None and not loop_handle.cancelled():
            loop.add_signal_handler(sig, loop_handle._callback, *loop_handle._args)
        elif previous is not None:  # None: installed from C, which Python cannot put back
            signal.signal(sig, previous)


def collect_sync(config: AuditConfig, **kwargs: Any) -> CollectSummary:
    """Run `collect` to the end and return its summary; works inside a running event loop.

    The run happens on a worker thread with its own loop (a notebook's loop may be running on
    this one) while this thread waits for it. A KeyboardInterrupt here (Ctrl-C, Jupyter's
    "interrupt kernel") stops the run the way `stop_event` does: what was answered is written,
    the run is recorded `interrupted` and the store released before the KeyboardInterrupt is
    raised again, with a note naming the run. From the main thread, SIGINT sets the run's stop
    before its KeyboardInterrupt is raised, so no second Ctrl-C can leave the run going. A
    further Ctrl-C during the stop does not cut its clean-up short: the run is awaited for
    `_STOP_GRACE_S` (10 s) more, then given up on with `CollectNotStoppedError` (a
    KeyboardInterrupt) saying its thread may still hold the store. `handle_signals=True` from
    the main thread with no loop running keeps the run on this thread, with `collect`'s own
    SIGINT/SIGTERM handling.
    """
    _check_config(config, "collect_sync")
    _check_run_arguments("collect_sync", kwargs.get("run_for_s"), kwargs.get("stop_event"))
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        if kwargs.get("handle_signals") and in_main_thread():
            return aio.run(collect(config, **kwargs))
    kwargs["handle_signals"] = False
    return _collect_on_worker(config, kwargs)


# how often the waiting thread looks up: a signal delivered to another of the process's threads
# (any of them may get a process-wide SIGINT) is only acted on when the main thread runs Python
# again, so it must not sit in one long `join()`
_WAIT_STEP_S: Final = 0.05
# a worker whose start was interrupted may begin a moment later: how long its end is awaited
_START_GRACE_S: Final = 2.0
# after a repeated interrupt, how much longer a stopping run is awaited before collect_sync
# gives up on it with `CollectNotStoppedError` (a stop writes what was answered: seconds at most)
_STOP_GRACE_S = 10.0


class CollectNotStoppedError(KeyboardInterrupt):
    """`collect_sync` was interrupted again and its run did not stop within `_STOP_GRACE_S`.

    A KeyboardInterrupt (code that handles Ctrl-C handles it), saying that the run's worker
    thread is still alive and may hold the store's write lock until it ends.
    """


class _Stopping:
    """The stop of one `collect_sync` run: whether it has begun, and the interrupts since."""

    __slots__ = ("repeats", "stop", "stopping")

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.stopping = False
        self.repeats = 0


@contextlib.contextmanager
def _stop_on_sigint(state: _Stopping) -> Iterator[None]:
    """While the block runs, SIGINT sets the run's stop event, then goes to the handler that was
    there.

    That handler (Python's KeyboardInterrupt, `asyncio.run`'s cancel of its main task, a
    notebook's) still acts on the first SIGINT, but the stop is set first, whatever it does:
    when it interrupts, no later signal can cut in between the two; when it does not raise
    (`asyncio.run` cancels its main task, which may not be the task waiting here: a TaskGroup's
    child or a task of `asyncio.create_task` saw nothing), the run stops all the same and
    `collect_sync` returns its summary, recorded `interrupted`. Once the stop has begun, further
    SIGINTs are counted, not passed on: the clean-up they would cut short (the run writing,
    recording itself and releasing the store) is awaited instead, for a bounded time
    (`_await_worker`). Outside the main thread, or when SIGINT is not handled by Python code
    (ignored, default), nothing changes.
    """
    previous = signal.getsignal(signal.SIGINT) if in_main_thread() else None
    if not callable(previous):
        yield
        return
    handler = previous

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        if state.stopping:
            state.repeats += 1
            state.stop.set()
            return
        state.stopping = True  # first, with no call before it: no signal cuts in
        state.stop.set()
        handler(signum, frame)

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _collect_on_worker(config: AuditConfig, kwargs: dict[str, Any]) -> CollectSummary:
    caller_stop: threading.Event | None = kwargs.get("stop_event")
    stop = threading.Event()  # ours: the caller's event is not set by an interrupt
    kwargs["stop_event"] = stop
    box: dict[str, Any] = {}
    done = threading.Event()
    state = _Stopping(stop)

    def work() -> None:
        try:
            if not stop.is_set():  # interrupted before the thread ran: nothing started
                box["result"] = aio.run(collect(config, **kwargs))
        except BaseException as exc:  # re-raised on the caller's thread
            box["error"] = exc
        finally:
            done.set()

    # called from a coroutine (a cell of a notebook whose loop runs here): `asyncio.run`'s
    # Ctrl-C cancels that task instead of raising, which only an await would notice
    task = _calling_task()
    cancels = task.cancelling() if task is not None else 0
    # the worker runs in a copy of this thread's context: what it fails to write is charged to
    # the run that started it (guarded_output), not to every run under way
    runner = contextvars.copy_context().run
    thread = threading.Thread(target=runner, args=(work,), name="asg-collect", daemon=True)
    with _stop_on_sigint(state):
        try:
            thread.start()
            while not done.wait(_WAIT_STEP_S):
                if caller_stop is not None and caller_stop.is_set():
                    stop.set()
                _raise_if_cancelled(task, cancels)
            if state.stopping:  # Ctrl-C cancelled the calling task (`asyncio.run`'s first):
                _raise_if_cancelled(task, cancels)  # as when seen earlier, however soon it ended
        except (KeyboardInterrupt, asyncio.CancelledError) as interrupt:
            state.stopping = True
            stop.set()
            _await_worker(thread, done, state, config, interrupt)
            _note_stopped_run(interrupt, box)
            raise
        finally:
            stop.set()  # whatever left the wait (the worker is done, or it is told to stop)
    _reap(thread)
    if "error" in box:
        raise box["error"]
    result: CollectSummary = box["result"]
    return result


def _raise_if_cancelled(task: asyncio.Task[Any] | None, cancels: int) -> None:
    if task is not None and task.cancelling() > cancels:
        raise asyncio.CancelledError("collect_sync: the calling task was cancelled")


def _calling_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no loop running in this thread
        return None


def _await_worker(
    thread: threading.Thread,
    done: threading.Event,
    state: _Stopping,
    config: AuditConfig,
    interrupt: BaseException,
) -> None:
    """Wait for the stopped run to write, record itself and release the store.

    An interrupt meanwhile does not cut that clean-up short: the first one repeated starts a
    bounded wait (`_STOP_GRACE_S`); a run still not stopped then is given up on with
    `CollectNotStoppedError`, which says its thread may still hold the store.
    """
    give_up_at = time.monotonic() + _START_GRACE_S
    force_at: float | None = None
    while not done.is_set():
        try:
            done.wait(_WAIT_STEP_S)
            now = time.monotonic()
            if state.repeats and force_at is None:
                force_at = now + _STOP_GRACE_S
                log.warning(
                    "collect: still stopping (writing what was answered, recording the run);"
                    " waiting up to %g s more",
                    _STOP_GRACE_S,
                )
            if not thread.is_alive() and now > give_up_at:
                return  # its start was interrupted before the thread was made: it never ran
            if force_at is not None and now > force_at and not done.is_set():
                raise _not_stopped(thread, config, interrupt)
        except CollectNotStoppedError:
            raise
        except KeyboardInterrupt:  # not through `_stop_on_sigint` (another thread's call)
            state.repeats += 1
    _reap(thread)


def _not_stopped(
    thread: threading.Thread, config: AuditConfig, interrupt: BaseException
) -> CollectNotStoppedError:
    error = CollectNotStoppedError(
        f"collect_sync: the collect run could not be stopped: its worker thread {thread.name!r}"
        f" was still running {_STOP_GRACE_S:g} s after a repeated interrupt and may hold the"
        f" write lock of {printable(str(config.db_path), one_line=True)} until it ends (restart"
        " the Python process or kernel to release it)"
    )
    error.__cause__ = interrupt
    return error


def _reap(thread: threading.Thread) -> None:
    """Let the worker, its run over, end (it has only returning left to do)."""
    if thread.is_alive():
        thread.join(_WAIT_STEP_S * 20)


def _note_stopped_run(interrupt: BaseException, box: dict[str, Any]) -> None:
    """Say on the KeyboardInterrupt how the run it stopped ended (its summary is not returned)."""
    summary: CollectSummary | None = box.get("result")
    error: BaseException | None = box.get("error")
    if summary is not None:
        interrupt.add_note(
            f"collect run {summary.run_id} stopped: recorded {summary.status}; settled "
            f"{summary.settled:,}, failed {summary.failed:,}, not found {summary.not_found:,}, "
            f"expired {summary.expired:,}, still pending {summary.pending:,} (run collect again "
            "to resume)"
        )
    elif error is not None and not isinstance(error, KeyboardInterrupt | asyncio.CancelledError):
        interrupt.add_note(f"collect stopped with an error: {type(error).__name__}: {error}")


def _writable(stream: TextIO | None) -> bool:
    """Whether `stream` can take a line: there, and not closed."""
    try:
        return stream is not None and not stream.closed
    except (AttributeError, OSError, ValueError):
        return False


def run_collect_command(
    config: AuditConfig,
    *,
    task_ids_file: str | None = None,
    schedule: str | None = None,
    max_rps: float | None = None,
    concurrency: int | None = None,
    deadline_s: float | None = None,
) -> int:
    """Run `asg-audit collect`: progress, SIGINT/SIGTERM handling, a printed summary.

    Returns 0 when the run ended normally, 3 when it was interrupted (after writing what was
    collected). `AuthError` and `ApiError` (the API unreachable or down, no usable answer, or
    404 to everything: exit 3) propagate to the CLI after the run was recorded `failed` with
    the reason (`asg-audit runs` shows it); `ConfigError`/`InputError` (exit 2)
    before any run starts. Unsafe ids of `task_ids_file` are named on stderr, one a line.
    """
    import sys

    from asg_audit.errors import EXIT_INCOMPLETE

    ids = None
    skipped = 0
    if task_ids_file:
        listed = read_task_id_file(task_ids_file)
        for problem in listed.problems():
            print(f"asg-audit: warning: {problem}", file=sys.stderr)
        ids, skipped = listed.ids, len(listed.skipped)
    stderr = sys.stderr  # None under pythonw, some daemons, or `2>&-` at the start
    if _writable(stderr) and not is_terminal(stderr) and not log.handlers:
        # no terminal: the periodic progress lines go to stderr through logging (none at all
        # to a missing or closed stream: a log line would be an error there, not a line)
        handler = logging.StreamHandler(stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
    # `collect` puts back the SIGINT/SIGTERM handlers it found (asyncio resets them to their
    # defaults: a SIGTERM then killed the process while it printed the summary); kept here as
    # well, so that ours are there whatever ends the run, and once the run is recorded a stop
    # signal is left alone (the summary and the exit code
    # stand, as for any command whose run is recorded: `cli._recorded`)
    # the command ends with the run `collect` records: once recorded, a stop is left alone
    one_run_command("collect")
    try:
        with kept_signal_handlers():
            summary = aio.run(
                collect(
                    config,
                    task_ids=ids,
                    schedule=schedule,
                    max_rps=max_rps,
                    concurrency=concurrency,
                    deadline_s=deadline_s,
                    progress=True,
                    handle_signals=True,
                )
            )
    finally:
        one_run_command(None)
    note_stop()
    summary.skipped_unsafe_ids += skipped
    for line in summary.lines():
        print(line)
    if summary.status == "interrupted":
        print("asg-audit: collect interrupted; run it again to resume", file=sys.stderr)
        return EXIT_INCOMPLETE
    return 0
