"""Why a report table is empty, where the store says why: no tasks, tasks tracked but not
collected, only ingested files (no polls), no task settled, none unsettled.

`empty_reasons(audit)` gives one line per table name; a table without a known reason says only
"No data." (`no_data`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from asg_audit.report.content import tracked_not_collected
from asg_audit.report.words import counted, plural

if TYPE_CHECKING:
    from asg_audit.audit import Audit

__all__ = ["NO_DATA", "empty_reasons", "no_data", "not_run_note"]

NO_DATA: Final = "No data."
_COLLECTING_COMMANDS: Final = frozenset({"collect", "audit"})  # runs that poll the Gateway


def no_data(reason: str | None) -> str:
    """Return what an empty table says: `No data: <reason>.` or `No data.`."""
    return f"No data: {reason}." if reason else NO_DATA


def _store_reason(audit: Audit, tasks: int) -> str | None:
    """Return why every task table is empty (no task at all), or None when there are tasks.

    The tracked tasks are counted as the headline counts them (`tracked_not_collected`); those
    the Gateway does not know (polled to the end, `tracked_coverage.unknown`) are not sent to
    a collect. Both are figures of the data, whatever checks are enabled."""
    if tasks:
        return None
    waiting = tracked_not_collected(audit) or 0
    if waiting:
        coverage = audit.frames.get("tracked_coverage")
        unknown = 0
        if coverage is not None and coverage.height and "unknown" in coverage.columns:
            unknown = int(coverage["unknown"][0] or 0)
        tracked = f"{counted(waiting, 'task')} {plural(waiting, 'is', 'are')} tracked"
        if unknown >= waiting:
            return f"{tracked} and the Gateway knows none of them (task.unknown: 404)"
        hint = "asg-audit collect"
        if unknown:
            hint += f"; {unknown:,} of them unknown to the Gateway: task.unknown"
        return f"{tracked} but nothing was collected yet ({hint})"
    if audit.windowed:
        return "no task was created in this report's window"
    return "the store holds no tasks"


def _seen(audit: Audit) -> set[str]:
    frame = audit.frames.get("source_coverage")
    if frame is None or "seen_by" not in frame.columns:
        return set()
    return {str(s) for s in frame["seen_by"].drop_nulls()}


def _commands(audit: Audit) -> set[str]:
    frame = audit.frames.get("http_by_run")
    if frame is None or "command" not in frame.columns:
        return set()
    return {str(c) for c in frame["command"].drop_nulls()}


def empty_reasons(audit: Audit) -> dict[str, str | None]:
    """Return, per table name, why that table would be empty (None: reason unknown)."""
    s = audit.summary()
    tasks, settled = int(s["tasks"] or 0), int(s["settled"] or 0)
    unsettled = int(s["pending"] or 0) + int(s["other_status"] or 0)
    store = _store_reason(audit, tasks)
    no_settled = store or (None if settled else "no task has settled")
    seen = _seen(audit)
    polled = any("poll" in x for x in seen)
    if store:
        polls = store
    elif seen == {"file only"} and not (_commands(audit) & _COLLECTING_COMMANDS):
        polls = "only ingested files: no polls"
    elif not polled:
        polls = "no task was polled"
    else:
        polls = None
    return {
        "latency_by_threshold": no_settled,
        "ageing": store or (None if unsettled else "no task is unsettled"),
        "agreement_by_threshold": store,
        "invariants": store,
        "cost_model_fit": no_settled or "no settled task has a known cost",
        "spend_by_month": no_settled,
        "txid_health": no_settled,
        "collection": polls,
        "source_coverage": store,
        "http_by_run": "no run is recorded in the store",
        "compare_new": "no new findings",
        "compare_resolved": "no resolved findings",
        "compare_outside": "none",
        "compare_outside_previous": "none",
    }


_NOT_RUN: Final = {
    "verify-chain": (
        "Chain verification not run on this store (asg-audit verify-chain)",
        "asg-audit verify-chain ran on this store but found no settled task's txid to verify",
    ),
    "billing": (
        "Billing not fetched (asg-audit billing)",
        "asg-audit billing ran on this store but stored no usage or invoice",
    ),
}


def not_run_note(audit: Audit, command: str) -> str:
    """Return what the chain (`verify-chain`) or billing (`billing`) section says in place of
    its tables when the store holds none: the command never ran, or ran and found nothing."""
    never, nothing = _NOT_RUN[command]
    return nothing if command in _commands(audit) else never
