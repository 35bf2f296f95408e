"""Counts in words: `1 day`, `2 days`, `1 task is`, `3 tasks are`, for every report text.

`counted(n, "day")` is the one place a count meets its noun (charts' alt text, captions, the
lines under tables), so no text says "1 days" or "1 unsettled tasks are".
"""

from __future__ import annotations

from typing import Any

__all__ = ["counted", "plural"]


def _is_one(n: Any) -> bool:
    try:
        return n is not None and float(n) == 1
    except (TypeError, ValueError):
        return False


def plural(n: Any, singular: str, many: str | None = None) -> str:
    """Return `singular` when `n` is 1, else `many` (default: `singular` + "s")."""
    return singular if _is_one(n) else (many if many is not None else singular + "s")


def counted(n: Any, singular: str, many: str | None = None) -> str:
    """Return `n` (with thousands separators; `n/a` when unknown) and its noun: `1 day`,
    `1,204 days`."""
    if n is None:
        shown = "n/a"
    elif isinstance(n, float) and not n.is_integer():
        shown = f"{n:,}"
    else:
        shown = f"{int(n):,}"
    return f"{shown} {plural(n, singular, many)}"
