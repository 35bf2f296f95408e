"""A file already ingested is recognised by its content hash before it is staged (tester G #4).

Every `audit` run offers the drop folders' files again; each one was read and staged in full
before its content hash said it was already stored (1.3 GB of old exports: 21 s a run). A file
with the path and size of one already ingested is now hashed first, and skipped when its hash
is known. The hash decides, not the path and size: a file rewritten in place at the same size
is ingested. Real files, real stores; `benchmarks/ingest.py --records N` shows the time.
"""

from __future__ import annotations

from pathlib import Path

from _hardening_procs import query
from _records import settled_export

from asg_audit.ingest_files import ingest_paths

TASKS = 20_000  # over the small-file size: the path taken by big exports


def _statuses(summary) -> list[str]:  # type: ignore[no-untyped-def]
    return [f.status for f in summary.files]


def test_the_same_file_offered_again_is_already_ingested_and_changes_nothing(
    tmp_path: Path,
) -> None:
    export = settled_export(tmp_path / "export.ndjson", TASKS)
    assert export.stat().st_size > 1 << 20
    db = tmp_path / "a.duckdb"
    assert _statuses(ingest_paths(db, [export])) == ["ingested"]
    before = query(db, "SELECT count(*) FROM observations")[0][0]
    again = ingest_paths(db, [export])
    assert _statuses(again) == ["already ingested"]
    assert again.records == 0
    assert query(db, "SELECT count(*) FROM observations")[0][0] == before == TASKS
    assert query(db, "SELECT count(*) FROM ingested_files")[0][0] == 1


def test_a_file_rewritten_in_place_at_the_same_size_is_ingested(tmp_path: Path) -> None:
    export = settled_export(tmp_path / "export.ndjson", TASKS)
    db = tmp_path / "a.duckdb"
    ingest_paths(db, [export])
    size = export.stat().st_size
    # the same length: one label changed, cat -> dog, in the last record
    text = export.read_text()
    cut = text.rindex('"cat"')
    export.write_text(text[:cut] + '"dog"' + text[cut + 5 :])
    assert export.stat().st_size == size
    again = ingest_paths(db, [export])
    assert _statuses(again) == ["ingested"]
    assert query(db, "SELECT count(*) FROM ingested_files")[0][0] == 2
    assert query(db, "SELECT count(*) FROM results WHERE conflict_count > 0")[0][0] == 1


def test_a_copy_under_another_name_is_still_recognised(tmp_path: Path) -> None:
    export = settled_export(tmp_path / "export.ndjson", TASKS)
    db = tmp_path / "a.duckdb"
    ingest_paths(db, [export])
    copy = tmp_path / "copy.ndjson"
    copy.write_bytes(export.read_bytes())
    assert _statuses(ingest_paths(db, [copy])) == ["already ingested"]
