"""What a store holds, as text for `asg-audit db info` and `asg-audit runs`."""

from __future__ import annotations

import json
from pathlib import Path

from asg_audit.audit_outcome import failed_steps
from asg_audit.model import printable
from asg_audit.normalize import RULES_VERSION
from asg_audit.rejudge import UNJUDGED_KEY, rules_note, setting, stored_rules_version
from asg_audit.store import open_store

__all__ = ["describe_runs", "describe_store"]


def describe_store(path: str | Path) -> str:
    """Return a short text: the schema and normaliser rules versions (with a note when the rows
    were judged by other rules) and the row count of every table."""
    with open_store(path, read_only=True) as store:
        lines = [f"database: {store.path}", f"schema version: {store.schema_version()}"]
        lines.append(
            f"normaliser rules: version {stored_rules_version(store.con)}"
            f" (this asg_audit: {RULES_VERSION})"
        )
        if (note := rules_note(store.con, store.path)) is not None:
            lines.append(f"note: {note}")
        elif (unjudged := int(setting(store.con, UNJUDGED_KEY) or 0)) > 0:
            lines.append(
                f"note: {unjudged:,} file observations were stored under older normaliser rules"
                " and keep no raw text, so they could not be judged again (a fresh ingest of"
                " their files into a new store judges them by today's rules)"
            )
        for table in store.tables():
            lines.append(f"{table:<20} {store.count(table):>12,}")
    return "\n".join(lines)


def _first_failed_step(steps: str | None) -> str | None:
    """Return `STEP failed: WHY` of the first failed step in an audit run's `stats.steps`
    (recorded with its secrets masked), or None."""
    try:
        parsed = json.loads(steps) if steps else None
    except ValueError:
        return None
    if isinstance(parsed, dict):
        # as the error line and the report's banner count them (tester T8)
        return next(iter(failed_steps(parsed)), None)
    return None


def describe_runs(path: str | Path, *, limit: int = 20, command: str | None = None) -> str:
    """Return a table of the latest runs (of `command` only, when given: `audit`, whose steps
    record runs of their own that start after it): id, command, start, duration, status, and
    the error a run recorded (or why it was abandoned): its first line, at most 120 characters.
    """
    with open_store(path, read_only=True) as store:
        rows = store.con.execute(
            "SELECT run_id, command, started_at, epoch(finished_at) - epoch(started_at), status,"
            " coalesce(json_extract_string(stats, '$.error'),"
            " json_extract_string(stats, '$.abandoned')),"
            " CAST(json_extract(stats, '$.steps') AS VARCHAR)"
            " FROM runs WHERE $command IS NULL OR command = $command"
            " ORDER BY started_at DESC LIMIT $limit",
            {"limit": limit, "command": command},
        ).fetchall()
        known = (
            [
                c
                for (c,) in store.con.execute(
                    "SELECT DISTINCT command FROM runs ORDER BY 1"
                ).fetchall()
            ]
            if command is not None and not rows
            else []
        )
    if known:
        return f"no {command} runs in the store (commands recorded: {', '.join(known)})"
    lines = [f"{'run':<24} {'command':<14} {'started (UTC)':<20} {'seconds':>8}  status"]
    for run_id, command, started, seconds, status, error, steps in rows:
        if not error and command == "audit" and status in ("incomplete", "failed"):
            error = _first_failed_step(steps)  # why the audit did not finish its work
        took = f"{seconds:8.1f}" if seconds is not None else f"{'-':>8}"
        line = f"{run_id:<24} {command:<14} {started:%Y-%m-%d %H:%M:%S} {took}  {status}"
        if error:
            # on one line, its line breaks shown as escapes: a file name holding a newline
            # must not end the message there, dropping the reason (tester T5)
            text = printable(str(error).strip(), one_line=True)
            line += f"  {text[:117] + '...' if len(text) > 120 else text}"
        lines.append(line)
    return "\n".join(lines)
