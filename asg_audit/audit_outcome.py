"""The `--json` outcome of `asg-audit audit`: one line, the same keys whatever happened.

Its own small module, imported with the command line (while stop signals are held back): the
outcome of a run a signal stopped is printed from the signal's handler, where importing
`asg_audit.jobs` (asyncio, httpx) again could find a module the signal left half-imported.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING

from asg_audit.errors import EXIT_INCOMPLETE, EXIT_USAGE

if TYPE_CHECKING:
    from asg_audit.jobs import AuditOutcome

__all__ = ["failed_steps", "outcome_error", "outcome_json"]


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


def outcome_error(outcome: AuditOutcome) -> str | None:
    """Return the error line (without `asg-audit: error: `) of a run that ended with exit 2 or 3,
    naming the outcome and the first step that failed; None for exit 0 or 1.

    `audit incomplete (exit 3): collect failed: the Gateway at ... is unreachable (...); also
    failed: billing; the report is written: DIR`, or `audit failed (exit 2): unreadable input:
    ...` (the words of `asg-audit runs`: 3 is `incomplete`, 2 `failed`). A scheduler that keeps
    or mails stderr gets the reason with the code. A run whose only fault is output it could
    not write gets None: the command line says that itself (`cannot write to standard output`),
    and lost stderr takes no line anyway.
    """
    # A step is failed as the report's banner judges it (report.run_steps): refused,
    # interrupted or unreadable input too, so that both name the same first failed step
    # (tester T8: the banner said "ingest failed: unreadable input", stderr "collect failed")
    failed = failed_steps(outcome.steps)
    if outcome.exit_code == EXIT_INCOMPLETE and failed:
        line = f"audit incomplete (exit 3): {failed[0]}"
        if len(failed) > 1:
            line += "; also failed: " + ", ".join(f.split(" ", 1)[0] for f in failed[1:])
    elif outcome.exit_code == EXIT_USAGE and (outcome.input_errors or outcome.store_refused):
        causes = []
        if outcome.input_errors:
            more = len(outcome.input_errors) - 1
            causes.append(
                f"unreadable input: {outcome.input_errors[0]}"
                + (f" (and {more} more: see the ingest step)" if more else "")
            )
        if outcome.store_refused:
            causes.append(f"the store refused the run's writes ({outcome.store_refused})")
        line = "audit failed (exit 2): " + "; ".join(causes)
    else:
        return None
    if outcome.report_dir is not None:
        line += f"; the report is written: {outcome.report_dir}"
    return line


def failed_steps(steps: Mapping[str, object]) -> list[str]:
    """Return `STEP failed: WHY` of each step of an audit run (`AuditOutcome.steps`, or its
    recorded `stats.steps`) that did not do its work, in order."""
    return [
        f"{name} {note}" if note.startswith("failed") else f"{name} failed: {note}"
        for name, note in steps.items()
        if isinstance(note, str) and not _done(note)
    ]


def _done(note: str) -> bool:
    """Return whether a step's note says it did its work or was skipped (`ok`, `ok: ...`,
    `skipped (...)`), as `report.run_steps` reads it (not imported: see the module's note)."""
    text = note.strip()
    return any(
        text == word or (text.startswith(word) and text[len(word)] in ":( ")
        for word in ("ok", "skipped")
    )
