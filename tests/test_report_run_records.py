"""The runs table says `records 0` only where the run really stored nothing: a collect or ingest
run, in a report without a window. A track, verify-chain or billing run stores no records (its
count is `n/a`), and under `--since/--until` a run whose records are all outside the window did
not store 0 either (review R4 #5: every null was shown as 0).
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import duckdb

from asg_audit.audit import analyze
from asg_audit.ingest_files import ingest_paths, track_file
from asg_audit.report import render
from asg_audit.store import open_store

_RECORD = {
    "task_id": "t1", "status": "settled", "consensus_label": "cat", "confidence": 1.0,
    "worker_count": 3, "agreement_count": 3, "created_at": "2026-09-15T02:41:05Z",
    "settled_at": "2026-09-15T02:41:35Z", "cost_sats": 975, "bsv_txid": "ab" * 32,
}  # fmt: skip
_SUBMISSION = {
    "task_id": "t1", "task_type": "a", "consensus_threshold": 3,
    "label_spec": {"options": ["cat", "dog"]}, "created_at": "2026-09-15T02:41:05Z",
}  # fmt: skip


def _records_by_command(text: str, runs: dict[str, str]) -> dict[str, str]:
    """Return the `records` cell of each run's row (HTML or Markdown), by command."""
    found = {}
    for line in text.replace("</tr>", "\n").splitlines():
        for command, run_id in runs.items():
            if run_id in line:
                if "<td" in line:
                    cells = [html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", line)]
                else:
                    cells = [c.strip() for c in line.strip().strip("|").split("|")]
                found[command] = cells[3]
    return found


def _store(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    (tmp_path / "subs.ndjson").write_text(json.dumps(_SUBMISSION) + "\n")
    (tmp_path / "results.ndjson").write_text(json.dumps(_RECORD) + "\n")
    db = tmp_path / "s.duckdb"
    track_file(db, tmp_path / "subs.ndjson")
    ingest_paths(db, [tmp_path / "results.ndjson"])
    with open_store(db) as store:
        for command in ("collect", "verify-chain", "billing"):
            run = store.start_run(command, run_id=f"{command}-run")
            store.finish_run(run, status="ok", stats={})
    with duckdb.connect(str(db), read_only=True) as con:
        runs = dict(con.execute("SELECT command, run_id FROM runs").fetchall())
    return db, runs


def _pages(tmp_path: Path, db: Path, name: str, **window: str) -> list[str]:
    report = render(analyze(db, **window), tmp_path / name, formats="html,md")
    return [report.paths[k].read_text(encoding="utf-8") for k in ("html", "md")]


def test_records_0_only_where_the_run_stored_nothing(tmp_path: Path) -> None:
    db, runs = _store(tmp_path)
    assert set(runs) == {"track", "ingest", "collect", "verify-chain", "billing"}
    for text in _pages(tmp_path, db, "all"):
        assert _records_by_command(text, runs) == {
            "ingest": "1",
            "collect": "0",  # a collect run that stored nothing
            "track": "n/a",
            "verify-chain": "n/a",
            "billing": "n/a",
        }


def test_a_window_does_not_say_a_run_stored_0(tmp_path: Path) -> None:
    db, runs = _store(tmp_path)
    # the one record was created on 2026-09-15: outside this window
    window = {"since": "2026-10-01T00:00:00Z", "until": "2026-11-01T00:00:00Z"}
    for text in _pages(tmp_path, db, "window", **window):
        assert _records_by_command(text, runs) == dict.fromkeys(runs, "n/a")
