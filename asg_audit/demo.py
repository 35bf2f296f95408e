"""`asg-audit demo`: the main job end to end on a fresh store.

Today: ingest the bundled sample export and submissions into a fresh store under the demo folder
and print the ingest summary and a per-status table.
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path
from typing import IO

from asg_audit.config import AuditConfig
from asg_audit.ingest import ingest_paths, print_ingest_summary, print_track_summary, track_file
from asg_audit.store import open_store

__all__ = ["run_demo", "sample_path"]


def sample_path(name: str) -> Path:
    """Return the path of a bundled sample file (`sample_results.jsonl`, ...)."""
    return Path(str(resources.files("asg_audit") / "data" / name))


def _status_table(db: Path, out: IO[str]) -> None:
    with open_store(db, read_only=True) as store:
        rows = store.con.execute(
            "SELECT coalesce(status, '(none)'), count(*), "
            "count(*) FILTER (WHERE cost_unknown), "
            "coalesce(sum(cost_sats), 0) FROM results GROUP BY 1 ORDER BY 2 DESC"
        ).fetchall()
    print(f"\n{'status':<14}{'tasks':>8}{'cost unknown':>14}{'sats reported':>15}", file=out)
    for status, n, unknown, sats in rows:
        print(f"{status:<14}{n:>8,}{unknown:>14,}{sats:>15,}", file=out)


def run_demo(config: AuditConfig, *, out_dir: str | Path = "demo-output") -> int:
    """Run the demo into `out_dir` (its store is recreated); return the exit code."""
    out = sys.stdout
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "demo.duckdb"
    for stale in (db, db.with_suffix(".duckdb.wal")):
        stale.unlink(missing_ok=True)
    print(f"demo store: {db}", file=out)
    track = track_file(db, sample_path("sample_submissions.csv"))
    print_track_summary(track, file=out)
    summary = ingest_paths(db, [sample_path("sample_results.jsonl")])
    print_ingest_summary(summary, file=out)
    _status_table(db, out)
    return 0
