"""The times a report prints (as_of, window, generated_at) are UTC, whatever zone they came in.

README, summary.json: `as_of` is ISO 8601, UTC. A window given with a `+02:00` offset selects the
same tasks as the same instants written in UTC, and the report says them in UTC.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asg_audit.cli import main
from asg_audit.ingest_files import ingest_paths

_LINE = (
    '{{"task_id":"t{i}","status":"settled","consensus_label":"cat","confidence":1.0,'
    '"worker_count":3,"agreement_count":3,"bsv_txid":"{i:064x}",'
    '"created_at":"2026-09-23T0{i}:00:00Z","settled_at":"2026-09-23T0{i}:00:40Z","cost_sats":975}}\n'
)


def _store(tmp_path: Path) -> Path:
    export = tmp_path / "r.ndjson"
    export.write_text("".join(_LINE.format(i=i) for i in range(1, 8)))
    db = tmp_path / "s.duckdb"
    ingest_paths(db, [export], progress=False)
    return db


def _report(db: Path, out: Path, since: str, until: str) -> dict[str, Any]:
    args = ["report", "--db", str(db), "--out", str(out), "--format", "json,md,html"]
    assert main([*args, "--since", since, "--until", until]) == 0
    doc: dict[str, Any] = json.loads((out / "latest" / "summary.json").read_text(encoding="utf-8"))
    return doc


def test_report_window_with_an_offset_is_written_in_utc(tmp_path: Path) -> None:
    db = _store(tmp_path)
    local = _report(
        db, tmp_path / "local", "2026-09-23T04:30:00+02:00", "2026-09-23T07:30:00+02:00"
    )
    utc = _report(db, tmp_path / "utc", "2026-09-23T02:30:00Z", "2026-09-23T05:30:00Z")
    assert local["headline"]["tasks"] == utc["headline"]["tasks"] == 3  # t3, t4, t5
    assert local["window"] == {"since": "2026-09-23T02:30:00+00:00",
                               "until": "2026-09-23T05:30:00+00:00"}  # fmt: skip
    assert local["window"] == utc["window"]
    assert local["as_of"] == utc["as_of"] == "2026-09-23T05:30:00+00:00"
    for doc in (local, utc):
        for when in (doc["as_of"], doc["generated_at"]):
            assert datetime.fromisoformat(when).utcoffset() == UTC.utcoffset(None)
    run = (tmp_path / "local" / "LATEST").read_text().strip()
    for name in ("report.md", "index.html"):
        # (the Markdown escapes the window's `+` as `\+`; it renders as `+`)
        text = (tmp_path / "local" / run / name).read_text(encoding="utf-8").replace("\\", "")
        assert "+02:00" not in text
        assert "2026-09-23T02:30:00+00:00" in text and "2026-09-23T05:30:00+00:00" in text
