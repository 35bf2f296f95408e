"""The `--json` outcome of `asg-audit audit`: one line, the same keys whatever happened.

Its own small module, imported with the command line (while stop signals are held back): the
outcome of a run a signal stopped is printed from the signal's handler, where importing
`asg_audit.jobs` (asyncio, httpx) again could find a module the signal left half-imported.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from asg_audit.jobs import AuditOutcome

__all__ = ["outcome_json"]


def outcome_json(
    outcome: AuditOutcome | None, *, exit_code: int | None = None, error: str | None = None
) -> str:
    """Return the outcome of `audit --json` as one line of JSON, also for a run that did not end.

    Always the same keys: `run_id`, `exit_code`, `steps`, `report`, `summary`, `error`. A run
    that ended has `error` null. A run that could not start (a bad option or config, the
    database busy, another audit holding the lock) has `run_id` null, no steps, and `error`
    the line printed on stderr; one that an error or a signal stopped after it started keeps
    its run id and the steps done so far. `exit_code` is the command's exit code either way.
    """
    return json.dumps(
        {
            "run_id": outcome.run_id if outcome else None,
            "exit_code": exit_code if exit_code is not None or not outcome else outcome.exit_code,
            "steps": outcome.steps if outcome else {},
            "report": str(outcome.report_dir) if outcome and outcome.report_dir else None,
            "summary": outcome.summary if outcome else {},
            "error": error,
        },
        default=str,
    )
