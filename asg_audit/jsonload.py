"""JSON read from an answer of a service (the Gateway, the chain index, the billing endpoint).

`json.loads` raises RecursionError, not ValueError, for JSON nested deeper than Python's
recursion limit (a 4 KB body of `[[[...]]]`): every caller, written for ValueError, let it
through, which killed a poll's task and hung `collect`, and gave `billing`, `verify-chain` and
`webhooks register` a traceback and exit 1. Here it is invalid JSON like any other.

Bodies that are stored (polled answers, webhook deliveries, submission rows) are refused
beyond `MAX_JSON_DEPTH` levels (`nesting_depth_over`), a limit well below Python's, so that the
answer is the same on every thread and stack and the same wherever the body came from.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

__all__ = ["MAX_JSON_DEPTH", "TooDeepError", "loads", "nesting_depth_over"]


def loads(data: str | bytes | bytearray) -> Any:
    """Return `json.loads(data)`; JSON nested too deep to read is a ValueError."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("JSON nested too deep to read") from None


# Arrays and objects nested deeper than this are not parsed (a `task.settled` body nests two
# levels). Python's json gives up near its recursion limit (~1000 levels, fewer on a deep call
# stack), where DuckDB's JSON functions (the normaliser) do not: such a body would skip every
# check that reads it (timestamp, repeated keys) and still be stored. A fixed limit well below
# Python's makes the answer the same on every thread and stack.
MAX_JSON_DEPTH: Final = 512


class TooDeepError(ValueError):
    """A JSON body nests arrays/objects deeper than `MAX_JSON_DEPTH`: it is not read."""

    def __init__(self, depth: int | None) -> None:
        deep = f"{depth} levels" if depth is not None else "too deeply"
        super().__init__(
            f"arrays/objects nested {deep}, over the limit of {MAX_JSON_DEPTH}: the body is not"
            " read, so its timestamp and keys cannot be checked, and it is not used"
        )
        self.depth = depth


_JSON_STRING_RE: Final = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS: Final = bytes(b for b in range(256) if b not in b"[]{}")


def nesting_depth_over(body: bytes, limit: int = MAX_JSON_DEPTH) -> int | None:
    """Return how deep arrays/objects nest in `body` if that is over `limit`, else None.

    Brackets inside JSON strings do not count. A body with no more than `limit` opening
    brackets in all is answered without scanning (the usual case: one or two).
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return None
    brackets = _JSON_STRING_RE.sub(b"", body).translate(None, _NOT_BRACKETS)
    depth = deepest = 0
    for byte in brackets:
        if byte in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest if deepest > limit else None
