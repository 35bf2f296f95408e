"""`--compare`: how this report's headline figures moved since an earlier report, and which
findings are new or resolved.

The earlier report is read from its `summary.json` (`<out>/<run-id>/summary.json`): the one
stable, versioned record of what a report said, whichever store or code produced it. A finding
is the same finding when its `check_id`, `entity_type` and `entity_id` match.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

from asg_audit import jsonload
from asg_audit.errors import ConfigError, InputError
from asg_audit.report.content import HEADLINE_FIELDS, SUMMARY_SCHEMA, SUMMARY_SCHEMA_VERSION

__all__ = [
    "PREVIOUS",
    "compare_summaries",
    "finding_keys",
    "load_summary",
    "previous_summary",
    "resolve_compare",
    "run_ids",
]

PREVIOUS: Final = "previous"
_KEY: Final = ("check_id", "entity_type", "entity_id")  # a finding's identity across reports


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
    for key, _, _ in HEADLINE_FIELDS:
        value = headline.get(key)
        if value is not None and not _is_number(value):
            return f"headline.{key} is {_json_type(value)}, not a number or null"
    for key in ("run_id", "generated_at"):
        if not isinstance(doc.get(key, ""), str | None):
            return f"{key} is {_json_type(doc[key])}, not text"
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
    return None


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


def resolve_compare(out_dir: str | Path, ref: str, *, exclude: str | None = None) -> Path:
    """Return the summary path of `ref`: a run id, or `previous` (the newest other report)."""
    if ref == PREVIOUS:
        path = previous_summary(out_dir, exclude=exclude)
        if path is None:
            raise ConfigError(f"--compare previous: no earlier report with a summary in {out_dir}")
        return path
    if not ref or "/" in ref or "\\" in ref or ref in (".", ".."):
        raise ConfigError(f"--compare: {ref!r} is not a run id")
    path = Path(out_dir) / ref / "summary.json"
    if not path.is_file():
        raise ConfigError(f"--compare: no report {ref!r} in {out_dir}")
    return path


def _change(before: Any, after: Any) -> Any:
    numeric = (int, float)
    if isinstance(before, numeric) and isinstance(after, numeric):
        if isinstance(before, bool) or isinstance(after, bool):
            return None
        return after - before
    return None


def _keys(findings: list[dict[str, Any]]) -> dict[tuple[str, ...], dict[str, Any]]:
    return {tuple(str(f.get(k)) for k in _KEY): f for f in findings}


def finding_keys(findings: Iterable[tuple[Any, ...]]) -> set[tuple[str, ...]]:
    """Return the comparison keys of findings given as (check_id, entity_type, entity_id)."""
    return {tuple(str(v) for v in row) for row in findings}


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
        for key, label, kind in HEADLINE_FIELDS
    ]
    old, new = _keys(previous.get("findings", [])), _keys(current.get("findings", []))
    return {
        "previous_run_id": previous.get("run_id"),
        "previous_generated_at": previous.get("generated_at"),
        "headline": rows,
        "new_findings": [new[k] for k in sorted(new.keys() - old.keys())],
        "resolved_findings": [
            old[k] for k in sorted(old.keys() - new.keys() - (current_keys or set()))
        ],
        "unchanged_findings": len(new.keys() & old.keys()),
        "incomplete": bool(previous.get("findings_truncated") or current.get("findings_truncated")),
    }
