"""Records that each cost the most one record may: 21 million BSV. 4,393 of them already pass
int64, so every sum of their sats must be exact past it."""

from __future__ import annotations

from pathlib import Path

from _records import settled_line

CAP = 2_100_000_000_000_000  # 21 million BSV, the most one record may cost
N = 5000
TRUE_TOTAL = N * CAP  # 10,500,000,000,000,000,000 sats: past int64 (9,223,372,036,854,775,807)


def capped_export(path: Path, tasks: int = N, *, shared_pairs: int = 0) -> Path:
    """Write an NDJSON export of `tasks` settled results (`x0`, `x1`, ...) that each cost `CAP`
    sats, all created 2026-10-01T00:00:00Z and settled 40 s later, to `path`. Each has its own
    txid but the first `shared_pairs` pairs: the two tasks of a pair share one."""
    with path.open("w") as fh:
        for i in range(tasks):
            tx = i // 2 + 1 if i < 2 * shared_pairs else i + 1
            line = settled_line(
                f"x{i}",
                bsv_txid=format(tx, "064x"),
                cost_sats=CAP,
                created_at="2026-10-01T00:00:00Z",
                settled_at="2026-10-01T00:00:40Z",
            )
            fh.write(line + "\n")
    return path
