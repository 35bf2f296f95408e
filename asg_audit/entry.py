"""The command line's entry point (`asg-audit`, `python -m asg_audit`).

A Ctrl-C or SIGTERM at any moment ends as any other interrupted command does: one line and
exit 3, never a traceback. While Python imports the command line (the first few tenths of a
second) SIGINT and SIGTERM are held back: a KeyboardInterrupt inside an extension module's
initialisation (DuckDB's) aborts the process instead of raising, and SIGTERM would kill it.
They are delivered once the imports are done, to handlers that raise KeyboardInterrupt.
Once the command has finished, both are ignored: its exit code stands.
"""

import sys

TYPE_CHECKING = False  # typing is not imported either: the less imported here, the better
if TYPE_CHECKING:
    from collections.abc import Sequence

EXIT_INTERRUPTED = 3  # errors.EXIT_INCOMPLETE, not imported: importing is what may be interrupted


def main(argv: "Sequence[str] | None" = None) -> int:
    try:
        import signal

        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            if sys.stdout is None or sys.stderr is None:  # `>&-`, `2>&-`: before any file opens
                from asg_audit.guarded_output import open_missing_std_fds

                open_missing_std_fds()
            import duckdb  # noqa: F401  (imported here, where its initialisation is safe)

            from asg_audit.cli import main as cli_main
            from asg_audit.stopsignals import stop_on_signals

            stop_on_signals()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)  # a held signal arrives here
        code = cli_main(argv)
    except BaseException as exc:
        if not _caused_by_interrupt(exc):
            raise
        code = EXIT_INTERRUPTED
        try:  # output that cannot be written (a full disk, the reader gone) changes nothing here
            if sys.stderr is not None:  # None (`2>&-`): print would write it on stdout
                print("asg-audit: interrupted", file=sys.stderr)
            cli = sys.modules.get("asg_audit.cli")
            if cli is not None and hasattr(cli, "print_stopped_audit"):  # `audit --json` too
                words = list(sys.argv[1:] if argv is None else argv)
                cli.print_stopped_audit(None, words, EXIT_INTERRUPTED, "interrupted")
        except OSError:
            pass
        if argv is None:  # the process's own command line: it ends here
            _exit_now(code)
    _ignore_stop_signals()
    return code


def _exit_now(code: int) -> None:
    """End the process of a stopped command without the interpreter's teardown.

    What the command wrote is written (its stores closed as the interrupt unwound their
    `with` blocks); only the output streams are left to flush. A library's worker thread that
    the signal caught mid-task (DuckDB's, polars') may still call into Python while the
    interpreter is being torn down, which aborts the process ("Fatal Python error:
    PyThreadState_Get ... finalizing", killed by SIGABRT) instead of exiting 3.
    """
    import contextlib
    import os

    for stream in (sys.stdout, sys.stderr):
        # a reader gone, a stream closed (or none at all: `2>&-`): nothing more to say
        with contextlib.suppress(OSError, ValueError):
            if stream is not None:
                stream.flush()
    os._exit(code)


def _ignore_stop_signals() -> None:
    """The work is done (or stopped): a late signal must not turn exit 0 into a kill."""
    signal = sys.modules.get("signal")
    if signal is not None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)


def _caused_by_interrupt(exc: BaseException | None) -> bool:
    """Whether `exc` is a KeyboardInterrupt, was raised by one, or is DuckDB's report of a
    statement a signal interrupted ("Query interrupted"). Python 3.11 wraps a KeyboardInterrupt
    that lands while a class is being created (in `__set_name__`) in a RuntimeError. An error
    after a stop signal raised its KeyboardInterrupt is taken as that stop's too: a library
    may turn the interrupt into an error of its own (`stopsignals.signal_stopped`)."""
    stops = sys.modules.get("asg_audit.stopsignals")
    if isinstance(exc, Exception) and stops is not None and stops.signal_stopped():
        return True
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        if isinstance(exc, RuntimeError) and "duckdb" in sys.modules:
            from asg_audit.interrupts import is_interrupt

            if is_interrupt(exc):
                return True
        seen.add(id(exc))
        exc = exc.__cause__
    return False
