"""The command line's entry point (`asg-audit`, `python -m asg_audit`).

It imports the command line itself, so that a Ctrl-C while Python still imports it (the first
few tenths of a second) ends as any other interrupted command does: one line and exit 3, not
a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

EXIT_INTERRUPTED = 3  # errors.EXIT_INCOMPLETE, not imported: importing is what may be interrupted


def main(argv: Sequence[str] | None = None) -> int:
    try:
        from asg_audit.cli import main as cli_main

        return cli_main(argv)
    except KeyboardInterrupt:
        print("asg-audit: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
