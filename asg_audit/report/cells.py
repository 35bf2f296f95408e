"""How a data value is shown in a table cell: cut when long, then on one line, visibly.

Both index.html and report.md write every data value of a table cell (a label, a status, a
txid, a finding's entity id, expected and actual) through `cell_text`, so the two show the
same text: newline, tab and CR as `\\x0a`, `\\x09`, `\\x0d` (as every other control character),
a value starting or ending with whitespace between single quotes (`'done\\x0a'`), as the
charts' labels are (`model.printable(value, one_line=True, quote_edges=True)`).

A value longer than `CELL_LIMIT` characters (a 900,000-character junk txid) is shown as its
first `CELL_LIMIT` characters and `… (899,800 more characters)`; summary.json keeps the same
cut with the whole value's SHA-256 (`cut_value(value, digest=True)`), so that two long entity
ids that share their first characters stay two findings across reports.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Final

from asg_audit.model import printable

__all__ = ["CELL_LIMIT", "MESSAGE_LIMIT", "cell_text", "cut_value"]

# the characters of a data value a table cell (and summary.json's findings) shows
CELL_LIMIT: Final = 200
# a finding's message or a step's detail: our own sentence, which may quote a value
MESSAGE_LIMIT: Final = 1000
_DIGEST_HEX: Final = 16
_MARK: Final = re.compile(r"… \(\d{1,3}(?:,\d{3})* more characters?(?:; sha256 [0-9a-f]{16})?\)\Z")


def _is_cut(text: str, limit: int) -> bool:
    """Return whether `text` is already a value cut at `limit` (cutting it again would cut
    the marker, and count what it says was cut as more)."""
    found = _MARK.search(text)
    return found is not None and found.start() <= limit


def cut_value(value: str, limit: int = CELL_LIMIT, *, digest: bool = False) -> str:
    """Return `value`, or when longer than `limit` characters its first `limit` and
    `… (N more characters)` (with `digest`, also `; sha256 <16 hex>` of the whole value).
    A value already so cut is returned as it is."""
    if len(value) <= limit or _is_cut(value, limit):
        return value
    more = len(value) - limit
    mark = f"{more:,} more character{'' if more == 1 else 's'}"
    if digest:
        whole = value.encode("utf-8", "surrogatepass")
        mark += f"; sha256 {hashlib.sha256(whole).hexdigest()[:_DIGEST_HEX]}"
    return f"{value[:limit]}… ({mark})"


def cell_text(value: Any, limit: int = CELL_LIMIT, *, quote_edges: bool = True) -> str:
    """Return a data value as a table cell shows it: cut at `limit` characters, every
    control character (newline, tab and CR too) as a visible escape, and with `quote_edges`
    a value starting or ending with whitespace between single quotes. Escaping for the
    format (HTML, Markdown) is left to it; `markdown.md_cell` escapes before this."""
    if value is None:
        return ""
    return printable(cut_value(str(value), limit), one_line=True, quote_edges=quote_edges)
