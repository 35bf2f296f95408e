"""Captions and column headers of the chain and billing tables (frames named after the store's
tables: `chain_status`, `billing_usage`), in words a reader knows.

`layout(name, columns)` gives a table's caption and its (column, header, kind) list; a frame
this module does not know gets a caption and headers from its names (`tasks_settled` as
`tasks settled`), never the raw names.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

__all__ = ["HTTP_BY_RUN", "layout"]

# the collection table of runs: a collect run stores HTTP answers, an ingest run file records;
# beside them the run's own counters, which count every answer, stored or not
HTTP_BY_RUN: Final = (
    "Records stored per run (collect: HTTP answers; ingest: file records), and each run's own"
    " counts of requests, 429 and 5xx answers (stored or not)"
)

Column = tuple[str, str, str]  # column, header, kind (see render.frame_table)

_LAYOUTS: Final[dict[str, tuple[str, list[Column]]]] = {
    "chain_status": (
        "Chain transactions by status",
        [("status", "status", "text"), ("txids", "txids", "count")],
    ),
    "chain_coverage": (
        "Chain coverage: what the on-chain cost checks could check, per settled task",
        [("proves", "proves", "text"), ("tasks", "tasks", "count")],
    ),
    "fee_coverage": (
        "Fee coverage: which fees chain.fee_rate could check",
        [("proves", "proves", "text"), ("txids", "txids", "count")],
    ),
    "billing_usage": (
        "Billed usage per month (UTC months)",
        [
            ("month", "month (UTC)", "text"),
            ("tier", "tier", "text"),
            ("tasks_settled", "tasks settled", "count"),
            ("total_cost_sats", "total cost", "sats"),
            ("worker_payouts_sats", "worker payouts", "sats"),
            ("platform_fee_sats", "platform fee", "sats"),
        ],
    ),
    "billing_window": (
        "Billed months compared with this window's results (UTC months)",
        [
            ("month", "month (UTC)", "text"),
            ("compared", "compared", "text"),
            ("reason", "why", "text"),
        ],
    ),
}


def _words(name: str) -> str:
    return name.replace("_", " ")


def layout(name: str, columns: Sequence[tuple[str, str]]) -> tuple[str, list[Column]]:
    """Return the caption and the (column, header, kind) list of the table of frame `name`,
    whose columns and kinds (`count`, `sats`, `num`, `text`) are `columns`."""
    known = _LAYOUTS.get(name)
    if known is not None:
        return known
    caption = _words(name).capitalize()
    shown = [
        (c, _words(c.removesuffix("_sats")) if kind == "sats" else _words(c), kind)
        for c, kind in columns
    ]
    return caption, shown
