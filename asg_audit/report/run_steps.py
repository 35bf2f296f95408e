"""The audit run's steps, as a report shows them: whether the audit is complete, and why not.

`asg-audit audit` renders its report after its steps (ingest, collect, verify-chain, billing,
findings, compare) and passes them to `render(steps=...)`: a mapping step -> note, as
`AuditOutcome.steps` records them (`ok: ...`, `skipped (why)`, `failed: why`, `refused: why`),
or `RunStep` items. Each becomes (step, outcome, detail) with outcome `ok`, `failed` or
`skipped`; a step the store refused (`refused: ...`), that was interrupted, or that could not
read all its input (`unreadable input: ...`) did not do its work: it is `failed`, its detail
keeping those words. The audit is `incomplete` when a step failed: the report then says so
first (`Incomplete audit: collect failed: ...`), so its figures are not read as complete.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from asg_audit.errors import ConfigError
from asg_audit.model import printable

__all__ = ["OUTCOMES", "RunStep", "banner", "normalise_steps", "run_object"]

OUTCOMES: Final = ("ok", "failed", "skipped")


@dataclass(frozen=True, slots=True)
class RunStep:
    """One step of an audit run: its name, `ok`/`failed`/`skipped`, and a one-line detail."""

    step: str
    outcome: str
    detail: str = ""


def _one_line(text: str) -> str:
    return printable(" ".join(text.split()), one_line=True)


def _from_note(step: str, note: str) -> RunStep:
    """Return a step from its note as `AuditOutcome.steps` records it."""
    text = note.strip()
    for outcome in ("ok", "failed", "skipped"):
        if text == outcome:
            return RunStep(step, outcome)
        if text.startswith(outcome) and text[len(outcome)] in ":( ":
            detail = text[len(outcome) :].lstrip(": ")
            if detail.startswith("(") and detail.endswith(")"):
                detail = detail[1:-1]
            return RunStep(step, outcome, _one_line(detail))
    # refused (a damaged or newer store), interrupted, unreadable input: not done
    return RunStep(step, "failed", _one_line(text))


def normalise_steps(steps: object) -> list[RunStep]:
    """Return `render`'s `steps` argument as `RunStep`s, in order.

    Takes a mapping step -> note (`AuditOutcome.steps`) or an iterable of `RunStep` or
    (step, outcome, detail) tuples. Anything else is a TypeError naming `render steps`; an
    outcome other than ok/failed/skipped a ConfigError.
    """
    what = "render steps"
    if isinstance(steps, Mapping):
        out = []
        for name, note in steps.items():
            if not isinstance(name, str) or not isinstance(note, str):
                raise TypeError(f"{what}: expected a mapping of str to str (step -> note)")
            out.append(_from_note(name, note))
        return out
    if isinstance(steps, str | bytes) or not isinstance(steps, Iterable):
        raise TypeError(
            f"{what}: expected a mapping step -> note or an iterable of RunStep or"
            f" (step, outcome, detail), got {type(steps).__name__}"
        )
    result = []
    for item in steps:
        if isinstance(item, RunStep):
            fields: tuple[Any, ...] = (item.step, item.outcome, item.detail)
        elif isinstance(item, tuple) and len(item) == 3:
            fields = item
        else:
            raise TypeError(
                f"{what}: expected RunStep or (step, outcome, detail) items, got"
                f" {type(item).__name__}"
            )
        if not all(isinstance(f, str) for f in fields):
            raise TypeError(f"{what}: step, outcome and detail must be str")
        step, outcome, detail = fields
        if outcome not in OUTCOMES:
            raise ConfigError(f"{what}: outcome of {step!r} must be one of ok, failed, skipped")
        result.append(RunStep(step, outcome, _one_line(detail)))
    return result


def run_object(steps: list[RunStep]) -> dict[str, Any]:
    """Return summary.json's `run`: `status` (complete/incomplete) and the steps."""
    failed = any(s.outcome == "failed" for s in steps)
    return {
        "status": "incomplete" if failed else "complete",
        "steps": [{"step": s.step, "outcome": s.outcome, "detail": s.detail} for s in steps],
    }


def banner(steps: list[RunStep]) -> str | None:
    """Return `Incomplete audit: collect failed: <why>; also failed: billing`, or None when no
    step failed."""
    failed = [s for s in steps if s.outcome == "failed"]
    if not failed:
        return None
    first = failed[0]
    line = f"Incomplete audit: {first.step} failed" + (f": {first.detail}" if first.detail else "")
    if len(failed) > 1:
        line += "; also failed: " + ", ".join(s.step for s in failed[1:])
    return line + ". The figures below cover only what the store held."
