"""A report shows the data it audits exactly as stored, and writes the times of findings in
ISO 8601 UTC because the checks write them so, not because the report rewrites text.

Review (R4 #1, #2): the report rewrote every timestamp-looking text in findings. A consensus
label `9999-12-31 23:59:59-05:00` made it raise OverflowError (no report at all, `audit` wrote
none), and a label `2026-01-01 00:00:00+05:00` was shown as `2025-12-31T19:00:00+00:00`, in
the options list too. The compare tables still showed polars' `... 02:55:39.000000+00:00`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from _report_store import page_and_markdown, settled, write_ndjson

from asg_audit.cli import main
from asg_audit.ingest_files import ingest_paths

FAR = "9999-12-31 23:59:59-05:00"
ZONED = "2026-01-01 00:00:00+05:00"
OPTION = "2026-01-02 00:00:00+05:00"


def _task(task_id: str, label: str, options: list[str], **times: str) -> dict[str, Any]:
    return settled(task_id, label, **{
        "created_at": "2026-09-15T02:41:05Z", "settled_at": "2026-09-15T02:41:35Z",
        "label_spec": {"options": options}, **times,
    })  # fmt: skip


def _submission(record: dict[str, Any]) -> dict[str, Any]:
    keys = ("task_id", "label_spec", "created_at")
    return {"type": "x", "consensus_threshold": 3, **{k: record[k] for k in keys}}


def _store(tmp_path: Path, records: list[dict[str, Any]], name: str = "r") -> Path:
    """Return the store holding the results `records` and their submissions (options)."""
    results = write_ndjson(tmp_path / f"{name}.ndjson", records)
    subs = write_ndjson(tmp_path / f"{name}-subs.ndjson", map(_submission, records))
    db = tmp_path / "s.duckdb"
    assert main(["track", "--db", str(db), str(subs)]) == 0
    ingest_paths(db, [results], progress=False)
    return db


def _report(db: Path, out: Path, *extra: str) -> tuple[str, str, dict[str, Any]]:
    args = ["report", "--db", str(db), "--out", str(out), "--format", "json,md,html", *extra]
    assert main(args) == 0
    run = out / (out / "LATEST").read_text().strip()
    # the Markdown escapes `+` as `\+` and `>` as `&gt;`; they render as written
    page, md = page_and_markdown(run, unescape_md=True)
    return page, md, json.loads((run / "summary.json").read_text(encoding="utf-8"))


def test_labels_that_look_like_times_are_shown_as_stored(tmp_path: Path) -> None:
    db = _store(tmp_path, [_task("far", FAR, ["a", "b"]), _task("zoned", ZONED, [OPTION, "b"])])
    page, md, summary = _report(db, tmp_path / "out")  # it crashed (OverflowError)
    found = {
        f["entity_id"]: f for f in summary["findings"] if f["check_id"].endswith("outside_options")
    }
    assert found["far"]["actual"] == FAR
    assert found["zoned"]["actual"] == ZONED and OPTION in found["zoned"]["expected"]
    for text in (page, md):
        for label in (FAR, ZONED, OPTION):
            assert label in text
        assert "2025-12-31T19:00:00" not in text and "2026-01-01T19:00:00" not in text
    assert "2025-12-31T19:00:00" not in json.dumps(summary)


def test_a_time_in_a_finding_is_iso_utc_everywhere_and_in_the_compare_tables(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    db = _store(tmp_path, [_task("ok", "a", ["a", "b"])])
    _report(db, out)
    # settled 30 s before it was created, created in +02:00: task.settled_before_created
    late = _task(
        "early", "a", ["a", "b"], created_at="2026-10-01T02:00:40.250+02:00",
        settled_at="2026-10-01T00:00:10Z",
    )  # fmt: skip
    _store(tmp_path, [late], "late")
    page, md, summary = _report(db, out, "--compare", "previous")
    (finding,) = [f for f in summary["findings"] if f["check_id"] == "task.settled_before_created"]
    assert finding["expected"] == "settled_at >= 2026-10-01T00:00:40.250+00:00"
    assert finding["actual"] == "2026-10-01T00:00:10+00:00"
    new = summary["compare"]["new_findings"]
    assert any(f["actual"] == "2026-10-01T00:00:10+00:00" for f in new)
    for text in (page, md):
        findings = text[text.index("task.settled_before_created") :]
        assert "settled_at >= 2026-10-01T00:00:40.250+00:00" in findings
        assert "2026-10-01T00:00:10+00:00" in findings
        assert "2026-10-01 00:00:10" not in text and ".000000" not in text
        # the compare table of new findings, after the findings
        compare = text[text.rindex("New findings") :] if "New findings" in text else ""
        assert "2026-10-01T00:00:10+00:00" in compare, "compare table"
