"""The command line's entry point (`asg-audit`, `python -m asg_audit`).

It imports the command line itself, so that a Ctrl-C while Python still imports it (the first
few tenths of a second) ends as any other interrupted command does: one line and exit 3, not
a traceback.
"""

import sys

TYPE_CHECKING = False  # typing is not imported either: the less imported here, the better
if TYPE_CHECKING:
    from collections.abc import Sequence

EXIT_INTERRUPTED = 3  # errors.EXIT_INCOMPLETE, not imported: importing is what may be interrupted


def main(argv: "Sequence[str] | None" = None) -> int:
    try:
        from asg_audit.cli import main as cli_main

        return cli_main(argv)
    except BaseException as exc:
        if not _caused_by_interrupt(exc):
            raise
        print("asg-audit: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _caused_by_interrupt(exc: BaseException | None) -> bool:
    """Whether `exc` is a KeyboardInterrupt or was raised by one: Python 3.11 wraps one that
    lands while a class is being created (in `__set_name__`, e.g. `ipaddress` importing) in a
    RuntimeError."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__
    return False
