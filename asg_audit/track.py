"""Submission exports (`asg-audit track`): what the customer submitted, for the checks.

CSV (`task_id, task_type, consensus_threshold, options, created_at[, data_url]`, options
`|`-separated) or NDJSON (`type` or `task_type`, `label_spec.options`). Good rows are stored in
`submissions`; every row that cannot be used is reported with its file, line and field and kept
in `rejects`.
"""

from __future__ import annotations

import csv
import gzip
import json
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import polars as pl

from asg_audit.errors import InputError
from asg_audit.filelines import describe_read_error
from asg_audit.model import SUBMISSIONS_SCHEMA, is_safe_task_id, printable
from asg_audit.store import open_store

__all__ = ["TrackSummary", "print_track_summary", "track_file"]


@dataclass(slots=True)
class TrackSummary:
    """What `track` registered."""

    path: str
    rows: int = 0
    new: int = 0
    updated: int = 0
    errors: list[str] = field(default_factory=list)


def _parse_ts(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError("expected a timestamp, got a boolean")
    if isinstance(value, int | float):
        return datetime.fromtimestamp(int(value), UTC)
    text = str(value).strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _submission_row(rec: dict[str, Any]) -> dict[str, Any]:
    task_id = rec.get("task_id")
    if not isinstance(task_id, str) or not task_id:
        raise ValueError("task_id: missing or not a string")
    if not is_safe_task_id(task_id):
        raise ValueError("task_id: unsafe task id (letters, digits and _ . : - only)")
    threshold = rec.get("consensus_threshold")
    if threshold in (None, ""):
        threshold_v = None
    else:
        try:
            threshold_v = int(str(threshold))
        except ValueError:
            raise ValueError(f"consensus_threshold: not an integer: {threshold!r}") from None
        if not 2 <= threshold_v <= 10:
            raise ValueError(f"consensus_threshold: {threshold_v} is outside 2..10")
    options: Any = rec.get("options")
    spec = rec.get("label_spec")
    if options is None and isinstance(spec, dict):
        options = spec.get("options")
    if isinstance(options, str):
        options = json.loads(options) if options.startswith("[") else options.split("|")
    if options is not None and (
        not isinstance(options, list) or not all(isinstance(o, str) for o in options)
    ):
        raise ValueError("options: expected a list of strings")
    task_type = rec.get("task_type", rec.get("type"))
    try:
        created_at = _parse_ts(rec.get("created_at"))
    except (ValueError, OverflowError, OSError):
        raise ValueError(f"created_at: not a timestamp: {rec.get('created_at')!r}") from None
    return {
        "task_id": task_id,
        "task_type": None if task_type in (None, "") else str(task_type),
        "consensus_threshold": threshold_v,
        "options": options or None,
        "created_at": created_at,
        "data_url": rec.get("data_url") or None,
    }


def _submission_records(path: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8", newline="") as fh:
        stem = path.name.removesuffix(".gz")
        if stem.endswith(".csv"):
            reader = csv.DictReader(fh)
            for line_no, row in enumerate(reader, start=2):
                yield line_no, dict(row)
        else:
            for line_no, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield line_no, f"not valid JSON ({exc.msg})"
                    continue
                yield line_no, rec if isinstance(rec, dict) else "expected a JSON object"


def track_file(db: str | Path, path: str | Path, *, wait_seconds: float = 0.0) -> TrackSummary:
    """Register submitted tasks from a CSV or NDJSON export; return what was registered.

    Rows that cannot be used are listed in `errors` (file, line, field and reason) and go to
    `rejects`; the good rows are stored.
    """
    path = Path(path)
    summary = TrackSummary(path=str(path))
    rows: list[dict[str, Any]] = []
    bad: list[tuple[int, str, str]] = []
    try:
        for line_no, rec in _submission_records(path):
            summary.rows += 1
            if isinstance(rec, str):
                bad.append((line_no, rec, ""))
                continue
            try:
                row = _submission_row(rec)
            except (ValueError, TypeError) as exc:
                bad.append((line_no, str(exc), json.dumps(rec, default=str)))
                continue
            rows.append({**row, "origin": str(path), "origin_line": line_no})
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, EOFError, UnicodeDecodeError, zlib.error, csv.Error) as exc:
        raise InputError(f"{path}: {describe_read_error(exc)}") from None
    frame = (
        pl.DataFrame(
            rows,
            schema={**SUBMISSIONS_SCHEMA, "origin": pl.String(), "origin_line": pl.Int64()},
            orient="row",
        )
        if rows
        else pl.DataFrame(
            schema={**SUBMISSIONS_SCHEMA, "origin": pl.String(), "origin_line": pl.Int64()}
        )
    )
    with open_store(db, wait_seconds=wait_seconds) as store:
        run_id = store.start_run("track")
        with store.transaction() as con:
            summary.new, summary.updated = store.write_submissions(frame)
            now = datetime.now(UTC)
            for line_no, reason, raw in bad:
                field_name = reason.split(":", 1)[0] if ":" in reason else None
                con.execute(
                    "INSERT INTO rejects VALUES"
                    " (?, 'submissions', ?, ?, ?, 'bad_submission', ?, ?, ?)",
                    [run_id, now, str(path), line_no, field_name, reason, raw.encode()],
                )
        summary.errors = [f"{path}:{line}: {reason}" for line, reason, _ in bad]
        store.finish_run(
            run_id,
            status="ok",
            stats={
                "rows": summary.rows,
                "new": summary.new,
                "updated": summary.updated,
                "errors": len(bad),
            },
        )
    return summary


def print_track_summary(summary: TrackSummary, *, file: IO[str] | None = None) -> None:
    """Print what `track` registered and every row it could not use."""
    out = file or sys.stdout
    print(
        f"{printable(summary.path)}: {summary.rows:,} rows, {summary.new:,} new tasks, "
        f"{summary.updated:,} updated, {len(summary.errors):,} rejected",
        file=out,
    )
    for err in summary.errors[:20]:
        print(f"  {printable(err)}", file=sys.stderr)
    if len(summary.errors) > 20:
        print(
            f"  ... and {len(summary.errors) - 20:,} more (see the rejects table)", file=sys.stderr
        )
