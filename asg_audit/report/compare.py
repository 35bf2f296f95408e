"""`--compare`: how this report's headline figures moved since an earlier report, and which
findings are new or resolved.

The earlier report is read from its `summary.json` (`<out>/<run-id>/summary.json`): the one
stable, versioned record of what a report said, whichever store or code produced it. A finding
is the same finding when its `check_id`, `entity_type` and `entity_id` match.

Two reports may cover different windows (`--since`/`--until`, recorded in each summary's
`window`). A finding is then called resolved only when the current audit covers what it is about
(its task or txid, when the current window holds the whole previous one; its billing month, when
the current window wholly covers that month), and new only when the previous audit covered it so;
the others are listed apart as outside the other audit's window. A finding about the whole
window (a dataset, a channel) is never resolved or new across different windows.

Several stores may report into one folder. Each summary records its store (`store`: the
store's first run, `content.store_identity`); `previous` is the newest earlier report of the
same store (`choose_previous`), and a comparison of two stores' reports (a run id named by
hand) says so (`same_store` false, `store_note`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from asg_audit import jsonload
from asg_audit.errors import ConfigError, InputError
from asg_audit.model import Severity
from asg_audit.report.content import (
    HEADLINE_FIELDS,
    SUMMARY_SCHEMA,
    SUMMARY_SCHEMA_VERSION,
    summary_value,
)

__all__ = [
    "PREVIOUS",
    "choose_previous",
    "compare_summaries",
    "finding_keys",
    "load_summary",
    "previous_summary",
    "resolve_compare",
    "run_ids",
    "store_note",
    "window_note",
]

PREVIOUS: Final = "previous"
_KEY: Final = ("check_id", "entity_type", "entity_id")  # a finding's identity across reports
_MONTH: Final = re.compile(r"\d{4}-\d{2}")  # a billing month's entity id: YYYY-MM
# entities placed in the window by their tasks' creation time (a txid: by any of its tasks)
_TASK_ENTITIES: Final = frozenset({"task", "txid"})

Window = tuple[datetime | None, datetime | None]  # [since, until); None: unbounded


def run_ids(out_dir: str | Path) -> list[str]:
    """Return the run ids of the reports in `out_dir` that have a summary, oldest first.

    Ordered by when their summary was written, then by id (ids sort by time only to the
    second).
    """
    root = Path(out_dir)
    if not root.is_dir():
        return []
    found = [
        ((p / "summary.json").stat().st_mtime_ns, p.name)
        for p in root.iterdir()
        # hidden folders are reports being written (or left by a killed `report`)
        if p.name != "latest"
        and not p.name.startswith(".")
        and not p.is_symlink()
        and (p / "summary.json").is_file()
    ]
    return [name for _, name in sorted(found)]


def load_summary(path: str | Path) -> dict[str, Any]:
    """Return a `summary.json` document, checking its schema name, version and the fields
    `compare_summaries` reads (InputError naming the file and the field otherwise)."""
    path = Path(path)
    try:
        doc = jsonload.loads(path.read_text(encoding="utf-8"))  # too deep: a ValueError
    except FileNotFoundError:
        raise InputError(f"{path}: no such summary") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable summary.json: {exc}") from None
    if not isinstance(doc, dict) or doc.get("schema") != SUMMARY_SCHEMA:
        raise InputError(f"{path}: not an asg_audit summary")
    version = doc.get("schema_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise InputError(
            f"{path}: not a usable asg_audit summary: schema_version is {_json_type(version)},"
            " not an integer"
        )
    if version > SUMMARY_SCHEMA_VERSION:
        raise InputError(
            f"{path}: summary schema version {doc.get('schema_version')} is newer than this "
            f"asg_audit reads ({SUMMARY_SCHEMA_VERSION})"
        )
    problem = _damaged_field(doc)
    if problem is not None:
        raise InputError(f"{path}: not a usable asg_audit summary: {problem}")
    return doc


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _not_finite(value: Any, where: str) -> str | None:
    """Return the path of the first number in `value` that is not finite (`NaN`, `Infinity`
    or `1e999`, which Python reads and JSON cannot hold), or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return where
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        if isinstance(key, int):  # a list item
            inner = f"{where}[{key}]"
        else:
            inner = f"{where}.{key}" if where else str(key)
        found = _not_finite(item, inner)
        if found is not None:
            return found
    return None


# The headline figures a comparison lists: the headline's own, and beside Tasks the tracked
# tasks it does not count (said in a note on the page, a figure of its own here, so that
# "0 -> 0 tasks, no change" does not hide 300 more tasks tracked and not collected).
COMPARED_HEADLINE: Final = (
    HEADLINE_FIELDS[0],
    ("tracked_not_collected", "Tracked, not collected", "count"),
    *HEADLINE_FIELDS[1:],
)


def _damaged_field(doc: dict[str, Any]) -> str | None:
    """Return what is wrong with the fields a comparison reads, or None when they are usable.

    A field may be missing (an older summary may lack a newer headline figure); one that is
    there must have its type. No number anywhere may be `NaN` or infinite: JSON has no such
    number, and a comparison would carry it into the new summary.
    """
    bad = _not_finite(doc, "")
    if bad is not None:
        return f"{bad} is not a finite number (NaN or infinite)"
    headline = doc.get("headline", {})
    if not isinstance(headline, dict):
        return f"headline is {_json_type(headline)}, not an object"
    for key, _, _ in COMPARED_HEADLINE:
        value = headline.get(key)
        if value is not None and not _is_number(value):
            return f"headline.{key} is {_json_type(value)}, not a number or null"
    for key in ("run_id", "generated_at", "as_of"):
        if not isinstance(doc.get(key, ""), str | None):
            return f"{key} is {_json_type(doc[key])}, not text"
    store = doc.get("store")
    if store is not None and not isinstance(store, dict):
        return f"store is {_json_type(store)}, not an object or null"
    for key, value in (store or {}).items():
        if not isinstance(value, str | None):
            return f"store.{key} is {_json_type(value)}, not text or null"
    window = doc.get("window")
    if window is not None and not isinstance(window, dict):
        return f"window is {_json_type(window)}, not an object"
    for key in ("since", "until"):
        value = (window or {}).get(key)
        if value is not None and _time(value) is None:
            return f"window.{key} is {_json_type(value)}, not an ISO 8601 time or null"
    if not isinstance(doc.get("findings_truncated", False), bool):
        return f"findings_truncated is {_json_type(doc['findings_truncated'])}, not true or false"
    findings = doc.get("findings", [])
    if not isinstance(findings, list):
        return f"findings is {_json_type(findings)}, not a list"
    for i, finding in enumerate(findings):
        if not isinstance(finding, dict):
            return f"findings[{i}] is {_json_type(finding)}, not an object"
        for key, value in finding.items():
            if isinstance(value, dict | list):
                return f"findings[{i}].{key} is {_json_type(value)}, not a single value"
        # what a comparison matches findings by and ranks them by, carried into the new
        # summary's resolved findings (tester T1: a check_id of 5 and a severity "bogus" were)
        check_id = finding.get("check_id")
        if not isinstance(check_id, str) or not check_id:
            return f"findings[{i}].check_id is {_json_type(check_id)}, not a check id"
        for key in ("entity_type", "entity_id"):
            if not isinstance(finding.get(key), str | None):
                return f"findings[{i}].{key} is {_json_type(finding[key])}, not text or null"
        if finding.get("severity") not in _SEVERITIES:
            return (
                f"findings[{i}].severity is {_json_type(finding.get('severity'))}, not one of"
                f" {', '.join(_SEVERITIES)}"
            )
    return None


_SEVERITIES: Final = tuple(s.value for s in Severity)


def _time(value: Any) -> datetime | None:
    """Return an ISO 8601 time as an aware datetime (no zone: UTC), or None when it is not one."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when


def _window(doc: dict[str, Any]) -> Window:
    """Return the window a summary records (`load_summary` checked it); none: unbounded."""
    window = doc.get("window") or {}
    return _time(window.get("since")), _time(window.get("until"))


def _holds(outer: Window, inner: Window) -> bool:
    """Return whether the window `outer` holds all of `inner`."""
    (o_since, o_until), (i_since, i_until) = outer, inner
    since_ok = o_since is None or (i_since is not None and o_since <= i_since)
    until_ok = o_until is None or (i_until is not None and i_until <= o_until)
    return since_ok and until_ok


def _covered(finding: dict[str, Any], window: Window, other: Window) -> bool:
    """Return whether an audit of `window` judges what `finding`, of an audit of `other`, is about.

    A billing month: when `window` wholly covers it (the month-level billing checks judge no
    other month). A task or txid (its tasks): when `window` holds all of `other`, so every task
    the other audit saw. Anything else (the whole window: a dataset, a channel; an entity with
    no time to place): never, the windows being different.
    """
    entity, ident = finding.get("entity_type"), str(finding.get("entity_id"))
    if entity == "month" and _MONTH.fullmatch(ident):
        try:
            start = datetime.strptime(ident, "%Y-%m").replace(tzinfo=UTC)
        except ValueError:
            return False
        end = start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
        since, until = window
        return (since is None or since <= start) and (until is None or end <= until)
    return entity in _TASK_ENTITIES and _holds(window, other)


def _shown_window(window: Any) -> str:
    window = window if isinstance(window, dict) else {}
    return f"{window.get('since') or '(start)'} to {window.get('until') or '(end)'}"


def window_note(current: dict[str, Any], previous: dict[str, Any]) -> str | None:
    """Return what the comparison says when the two reports cover different windows, else None."""
    if _window(current) == _window(previous):
        return None
    return (
        "The two reports cover different windows: the previous one covers tasks created "
        f"{_shown_window(previous.get('window'))} (data as of {previous.get('as_of') or 'n/a'}), "
        f"this one tasks created {_shown_window(current.get('window'))} (data as of "
        f"{current.get('as_of') or 'n/a'}), so the headline figures count different tasks. A "
        "finding of the previous report is called resolved only when this audit covers it (its "
        "task or txid, when this window holds the whole previous one; its billing month, when "
        "this window wholly covers the month), and new only when the previous audit covered it "
        "so. The others are listed as outside the other audit's window: neither resolved nor new."
    )


def _json_type(value: Any) -> str:
    """Return how a JSON value reads in a message: `null`, `text "many"`, `an object`, ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"text {json.dumps(shown)}"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return f"the number {value}"


def previous_summary(out_dir: str | Path, *, exclude: str | None = None) -> Path | None:
    """Return the summary path of the newest report in `out_dir` (not `exclude`), or None."""
    earlier = [r for r in run_ids(out_dir) if r != exclude]
    return Path(out_dir) / earlier[-1] / "summary.json" if earlier else None


def _recorded_store(path: Path) -> tuple[bool, Any]:
    """Return whether the summary at `path` is readable and records a store (`store` key),
    and the store it records (None: unknown). An unreadable summary is (False, ...)."""
    try:
        doc = jsonload.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False, None
    if not isinstance(doc, dict):
        return False, None
    return "store" in doc, doc.get("store")


def choose_previous(
    out_dir: str | Path,
    *,
    exclude: str | None = None,
    store: dict[str, Any] | None,
    name: str = "--compare",
) -> tuple[Path | None, str | None]:
    """Return the summary `--compare previous` compares with, and why there is none.

    The newest earlier report (not `exclude`) of the store `store` (`content.store_identity`;
    None: unknown, when any report will do). Else the newest one that records no store (written
    before summaries recorded it; the comparison says it may be of another store). Else None
    and a note saying the earlier reports there are of other stores: the report is written
    without a comparison (refusing would refuse every later run too). A summary that cannot
    be read is returned as it is found, for `load_summary` to say what is wrong with it.
    No earlier report at all is a ConfigError, as before.
    """
    earlier = [r for r in run_ids(out_dir) if r != exclude]
    if not earlier:
        raise ConfigError(f"{name} previous: no earlier report with a summary in {out_dir}")
    paths = [Path(out_dir) / r / "summary.json" for r in reversed(earlier)]
    if store is None:
        return paths[0], None
    unrecorded: Path | None = None
    for path in paths:
        readable, found = _recorded_store(path)
        if not readable:
            return path, None
        if isinstance(found, dict) and found == store:
            return path, None
        if found is None and unrecorded is None:
            unrecorded = path
    if unrecorded is not None:
        return unrecorded, None
    n = len(paths)
    return None, (
        f"Not compared: no earlier report of this store in {out_dir} ({n:,} earlier"
        f" {'report is' if n == 1 else 'reports are'} of other stores)."
    )


def store_note(current: dict[str, Any], previous: dict[str, Any]) -> tuple[bool | None, str | None]:
    """Return whether two summaries are of the same store (None: cannot be told) and what the
    comparison says about it (None when they are of the same store)."""
    now, before = current.get("store"), previous.get("store")
    if isinstance(now, dict) and isinstance(before, dict):
        if now == before:
            return True, None
        return False, (
            "Different stores: the previous report is of another store (first run "
            f"{before.get('first_run_id') or 'n/a'}) than this one (first run "
            f"{now.get('first_run_id') or 'n/a'}), so its findings are not this store's: new"
            " and resolved findings and the headline changes compare two stores' data."
        )
    if before is None and "store" not in previous:
        return None, (
            "The previous report does not record which store it is of (written by an earlier"
            " asg_audit): it may be of another store."
        )
    return None, (
        "Which store "
        + ("this report" if not isinstance(now, dict) else "the previous report")
        + " is of is not known (no run recorded in the store), so whether the two reports are"
        " of the same store cannot be told."
    )


def resolve_compare(
    out_dir: str | Path, ref: str, *, exclude: str | None = None, name: str = "--compare"
) -> Path:
    """Return the summary path of `ref`: a run id, or `previous` (the newest other report).
    `name` is what the errors call the argument (`render compare` from the library)."""
    if ref == PREVIOUS:
        path = previous_summary(out_dir, exclude=exclude)
        if path is None:
            raise ConfigError(f"{name} previous: no earlier report with a summary in {out_dir}")
        return path
    if not ref or "/" in ref or "\\" in ref or ref in (".", ".."):
        raise ConfigError(f"{name}: {ref!r} is not a run id")
    path = Path(out_dir) / ref / "summary.json"
    if not path.is_file():
        raise ConfigError(f"{name}: no report {ref!r} in {out_dir}")
    return path


def _change(before: Any, after: Any) -> Any:
    numeric = (int, float)
    if isinstance(before, numeric) and isinstance(after, numeric):
        if isinstance(before, bool) or isinstance(after, bool):
            return None
        return after - before
    return None


def _key(values: Iterable[Any]) -> tuple[str, ...]:
    """Return a finding's comparison key, each part as summary.json holds it (a long entity
    id cut with its digest, `content.summary_value`): a summary written before ids were cut
    holds the whole id, one written since the cut one, and both give the same key."""
    return tuple(str(summary_value(v)) for v in values)


def _keys(findings: list[dict[str, Any]]) -> dict[tuple[str, ...], dict[str, Any]]:
    return {_key(f.get(k) for k in _KEY): f for f in findings}


def finding_keys(findings: Iterable[tuple[Any, ...]]) -> set[tuple[str, ...]]:
    """Return the comparison keys of findings given as (check_id, entity_type, entity_id)."""
    return {_key(row) for row in findings}


def compare_summaries(
    current: dict[str, Any],
    previous: dict[str, Any],
    *,
    current_keys: set[tuple[str, ...]] | None = None,
) -> dict[str, Any]:
    """Return the headline movements and the new and resolved findings between two summaries.

    `headline` rows: key, label, kind, previous, current, change (null when not numeric).
    `current_keys`: the keys (`finding_keys`) of every current finding, when the current
    summary lists only its worst ones: a finding of the previous report is resolved only if it
    is not among them (it used to be resolved when it was merely cut from the list).

    When the two summaries record different windows (`same_window` false, `window_note` saying
    so), a previous finding the current audit does not cover is listed under
    `outside_window_findings` instead of resolved, and a current finding the previous audit did
    not cover under `outside_previous_window_findings` instead of new (see `_covered`).
    """
    before, after = previous.get("headline", {}), current.get("headline", {})
    rows = [
        {
            "key": key,
            "label": label,
            "kind": kind,
            "previous": before.get(key),
            "current": after.get(key),
            "change": _change(before.get(key), after.get(key)),
        }
        for key, label, kind in COMPARED_HEADLINE
    ]
    old, new = _keys(previous.get("findings", [])), _keys(current.get("findings", []))
    now, before_window = _window(current), _window(previous)
    same = now == before_window
    same_store, store_text = store_note(current, previous)
    appeared = [new[k] for k in sorted(new.keys() - old.keys())]
    gone = [old[k] for k in sorted(old.keys() - new.keys() - (current_keys or set()))]
    # windows differ: a finding the other audit did not judge is neither new nor resolved
    seen_before = [same or _covered(f, before_window, now) for f in appeared]
    seen_now = [same or _covered(f, now, before_window) for f in gone]
    return {
        "previous_run_id": previous.get("run_id"),
        "previous_generated_at": previous.get("generated_at"),
        "previous_as_of": previous.get("as_of"),
        "previous_window": {
            "since": (previous.get("window") or {}).get("since"),
            "until": (previous.get("window") or {}).get("until"),
        },
        "same_window": same,
        "window_note": window_note(current, previous),
        # false: the previous report is of another store; null: cannot be told (store_note)
        "same_store": same_store,
        "store_note": store_text,
        "headline": rows,
        "new_findings": [f for f, seen in zip(appeared, seen_before, strict=True) if seen],
        "resolved_findings": [f for f, seen in zip(gone, seen_now, strict=True) if seen],
        "outside_previous_window_findings": [
            f for f, seen in zip(appeared, seen_before, strict=True) if not seen
        ],
        "outside_window_findings": [f for f, seen in zip(gone, seen_now, strict=True) if not seen],
        "unchanged_findings": len(new.keys() & old.keys()),
        "incomplete": bool(previous.get("findings_truncated") or current.get("findings_truncated")),
    }
