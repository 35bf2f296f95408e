"""The times a report prints (as_of, window, generated_at) are UTC, whatever zone they came in.

README, summary.json: `as_of` is ISO 8601, UTC. A window given with a `+02:00` offset selects the
same tasks as the same instants written in UTC, and the report says them in UTC.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _report_store import page_and_markdown, report_store, settled

from asg_audit.cli import main


def _store(tmp_path: Path) -> Path:
    """t1 ... t7, created at 01:00 ... 07:00 UTC on 2026-09-23, settled 40 s later."""
    records = [
        settled(f"t{i}", created_at=f"2026-09-23T0{i}:00:00Z",
                settled_at=f"2026-09-23T0{i}:00:40Z", bsv_txid=f"{i:064x}")
        for i in range(1, 8)
    ]  # fmt: skip
    return report_store(tmp_path, records)


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
    # (the Markdown escapes the window's `+` as `\+`; it renders as `+`)
    for text in page_and_markdown(tmp_path / "local" / run):
        assert "+02:00" not in text
        assert "2026-09-23T02:30:00+00:00" in text and "2026-09-23T05:30:00+00:00" in text
