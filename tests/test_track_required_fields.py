"""`track`: a row missing a required field (only `data_url` may be left out) is a `bad_submission`
reject naming its file, line and field, and the task's stored submission is kept as it was.

It used to be taken with nulls: `{"task_id": ...}` alone, a CSV row of blank cells, or a webhook
log passed to `track` by mistake ("4,991 updated") overwrote the stored type, threshold, options
and created_at with NULL. A file most of whose rows lack the required fields is also named as
probably not a submissions export (results or deliveries: `asg-audit ingest` stores those).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import duckdb
import pytest
from _hardening_procs import track_cli

from asg_audit.track import TrackSummary, track_file

HEADER = "task_id,task_type,consensus_threshold,options,created_at\n"
GOOD_CSV = HEADER + "tsk_aaaaaaaaaaaaaaaa,sentiment,5,pos|neg,2026-09-15T00:00:00Z\n"
FULL: dict[str, Any] = {
    "task_id": "tsk_aaaaaaaaaaaaaaaa",
    "type": "sentiment",
    "consensus_threshold": 5,
    "label_spec": {"options": ["pos", "neg"]},
    "created_at": "2026-09-15T00:00:00Z",
}


def _query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def _stored(db: Path) -> list[tuple[Any, ...]]:
    """Every stored submission, with where it came from and when it was tracked."""
    return _query(db, "SELECT * FROM submissions ORDER BY task_id")


def _rejects(db: Path) -> list[tuple[Any, ...]]:
    return _query(
        db,
        "SELECT origin, origin_line, reason, field FROM rejects WHERE source = 'submissions'"
        " ORDER BY origin, origin_line",
    )


def _counts(summary: TrackSummary) -> tuple[int, int, int, int, int, int]:
    s = summary
    return (s.rows, s.new, s.updated, s.unchanged, s.duplicates, s.rejected)


@pytest.fixture
def tracked(tmp_path: Path) -> Path:
    """A store holding one tracked task (from a CSV), and its stored row checked."""
    db = tmp_path / "tr.duckdb"
    one = tmp_path / "one.csv"
    one.write_text(GOOD_CSV)
    assert track_file(db, one).new == 1
    (row,) = _stored(db)
    assert row[1:4] == ("sentiment", 5, ["pos", "neg"])
    return db


def test_a_row_with_only_a_task_id_is_a_reject_and_the_stored_row_is_kept(
    tracked: Path, tmp_path: Path
) -> None:
    before = _stored(tracked)
    bare = tmp_path / "bare.ndjson"
    bare.write_text('{"task_id":"tsk_aaaaaaaaaaaaaaaa"}\n')
    summary = track_file(tracked, bare)
    assert _counts(summary) == (1, 0, 0, 0, 0, 1)
    assert summary.errors == [
        f"{bare}:1: task_type: missing (consensus_threshold, options and created_at are missing"
        " too): a submission needs task_type (or type), consensus_threshold, options (or"
        " label_spec.options) and created_at; only data_url may be left out"
    ]
    assert _stored(tracked) == before
    assert _rejects(tracked) == [(str(bare), 1, "bad_submission", "task_type")]
    # tracked again: still nothing changed, and the reject is not stored twice
    assert _counts(track_file(tracked, bare)) == (1, 0, 0, 0, 0, 1)
    assert _stored(tracked) == before
    assert len(_rejects(tracked)) == 1


def test_a_csv_row_of_blank_cells_is_a_reject_and_the_stored_row_is_kept(
    tracked: Path, tmp_path: Path
) -> None:
    before = _stored(tracked)
    blank = tmp_path / "blank.csv"
    blank.write_text(HEADER + "tsk_aaaaaaaaaaaaaaaa,,,,\n" + "tsk_aaaaaaaaaaaaaaaa, ,  ,,\t\n")
    summary = track_file(tracked, blank)
    assert _counts(summary) == (2, 0, 0, 0, 0, 2)
    assert summary.errors[0] == (
        f"{blank}:2: task_type: missing (an empty cell; the consensus_threshold and created_at"
        " cells are empty too): a submission needs task_type, consensus_threshold, options and"
        " created_at; only data_url may be left out"
    )
    assert summary.errors[1].startswith(f"{blank}:3: task_type: missing (an empty cell; ")
    assert _stored(tracked) == before
    assert _rejects(tracked) == [
        (str(blank), 2, "bad_submission", "task_type"),
        (str(blank), 3, "bad_submission", "task_type"),
    ]


@pytest.mark.parametrize("field", ["type", "consensus_threshold", "label_spec", "created_at"])
@pytest.mark.parametrize("how", ["absent", "null", "empty"])
def test_an_ndjson_row_missing_one_required_field_is_a_reject_naming_it(
    tracked: Path, tmp_path: Path, field: str, how: str
) -> None:
    before = _stored(tracked)
    rec = dict(FULL, consensus_threshold=4)  # another value: it would be an update
    if how == "absent":
        del rec[field]
    elif field == "label_spec":  # the options inside it
        rec[field] = {"options": None} if how == "null" else {}
    else:
        rec[field] = None if how == "null" else ""
    if field == "label_spec" and how == "empty":
        named = "options"
    else:
        named = {"type": "task_type", "label_spec": "options"}.get(field, field)
    path = tmp_path / "one.ndjson"
    path.write_text(json.dumps(rec) + "\n")
    summary = track_file(tracked, path)
    assert _counts(summary) == (1, 0, 0, 0, 0, 1)
    assert summary.errors[0].startswith(f"{path}:1: {named}: missing: a submission needs ")
    assert _stored(tracked) == before
    assert _rejects(tracked) == [(str(path), 1, "bad_submission", named)]


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ("tsk_aaaaaaaaaaaaaaaa,,4,pos|neg,2026-09-15T00:00:00Z", "task_type"),
        ("tsk_aaaaaaaaaaaaaaaa,sentiment,,pos|neg,2026-09-15T00:00:00Z", "consensus_threshold"),
        ("tsk_aaaaaaaaaaaaaaaa,sentiment,4,pos|neg,", "created_at"),
        ("tsk_aaaaaaaaaaaaaaaa,sentiment,4,pos|neg,  ", "created_at"),
        ("tsk_aaaaaaaaaaaaaaaa,  ,4,pos|neg,2026-09-15T00:00:00Z", "task_type"),
    ],
)
def test_a_csv_row_with_one_empty_required_cell_is_a_reject_naming_it(
    tracked: Path, tmp_path: Path, row: str, field: str
) -> None:
    before = _stored(tracked)
    path = tmp_path / "subs.csv"
    path.write_text(HEADER + row + "\n")
    summary = track_file(tracked, path)
    assert _counts(summary) == (1, 0, 0, 0, 0, 1)
    assert summary.errors == [
        f"{path}:2: {field}: missing (an empty cell): a submission needs task_type,"
        " consensus_threshold, options and created_at; only data_url may be left out"
    ]
    assert _stored(tracked) == before


def test_an_empty_options_cell_still_means_no_options(tracked: Path, tmp_path: Path) -> None:
    # README: "An empty options cell means no options" (and only data_url may be left out)
    path = tmp_path / "subs.csv"
    path.write_text(HEADER + "tsk_aaaaaaaaaaaaaaaa,sentiment,5,,2026-09-15T00:00:00Z\n")
    summary = track_file(tracked, path)
    assert (summary.updated, summary.rejected) == (1, 0)
    assert _stored(tracked)[0][3] is None


def test_a_full_row_without_data_url_updates_the_task(tracked: Path, tmp_path: Path) -> None:
    path = tmp_path / "subs.ndjson"
    path.write_text(json.dumps(dict(FULL, consensus_threshold=7)) + "\n")
    summary = track_file(tracked, path)
    assert (summary.updated, summary.rejected, summary.hint) == (1, 0, None)
    assert _stored(tracked)[0][2] == 7


def test_a_wrong_value_is_named_before_a_missing_field(tmp_path: Path) -> None:
    path = tmp_path / "subs.ndjson"
    path.write_text('{"task_id":"t1","consensus_threshold":11}\n')
    summary = track_file(tmp_path / "s.duckdb", path)
    assert summary.errors == [f"{path}:1: consensus_threshold: 11 is outside 2..10"]


def _webhook_log(path: Path, task_ids: list[str]) -> Path:
    """A webhook delivery log (NDJSON of `task.settled` payloads), as a receiver would keep."""
    with path.open("w") as fh:
        for i, task_id in enumerate(task_ids):
            delivery = {
                "event": "task.settled",
                "task_id": task_id,
                "consensus_label": "pos",
                "confidence": 1.0,
                "bsv_txid": f"{i:064x}",
                "settled_at": "2026-09-15T00:34:05Z",
                "timestamp": "2026-09-15T00:34:07Z",
            }
            fh.write(json.dumps(delivery) + "\n")
    return path


def test_a_webhook_log_passed_to_track_changes_nothing_and_says_what_it_looks_like(
    tmp_path: Path,
) -> None:
    db = tmp_path / "s.duckdb"
    ids = [f"tsk_{i:016x}" for i in range(300)]
    subs = tmp_path / "subs.ndjson"
    subs.write_text("".join(json.dumps(dict(FULL, task_id=t)) + "\n" for t in ids))
    assert track_file(db, subs).new == 300
    before = _stored(db)
    log = _webhook_log(tmp_path / "webhooks.ndjson", ids)
    summary = track_file(db, log)
    assert _counts(summary) == (300, 0, 0, 0, 0, 300)
    assert summary.missing_fields == 300
    assert summary.hint is not None
    assert summary.hint.startswith("every row lacks required submission fields; they look like")
    assert "asg-audit ingest" in summary.hint
    assert _stored(db) == before
    assert {r[2:] for r in _rejects(db)} == {("bad_submission", "task_type")}
    # the command: the summary says 300 rejected, the warning says why (exit 0: rejected rows
    # are not a failed file, as for ingest)
    proc = track_cli(db, log)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (
        f"{log}: 300 rows: 0 new tasks, 0 updated, 0 unchanged, 0 duplicates, 300 rejected\n"
    )
    assert proc.stderr.endswith(f"asg-audit: warning: {log}: {summary.hint}\n"), proc.stderr
    assert "... and 280 more (see the rejects table)" in proc.stderr
    assert _stored(db) == before


def test_a_mostly_bare_file_is_named_as_probably_not_submissions(tmp_path: Path) -> None:
    path = tmp_path / "ids.ndjson"
    path.write_text(json.dumps(FULL) + "\n" + "".join(f'{{"task_id": "t{i}"}}\n' for i in range(3)))
    summary = track_file(tmp_path / "s.duckdb", path)
    assert (summary.new, summary.rejected, summary.missing_fields) == (1, 3, 3)
    assert summary.hint is not None
    assert summary.hint.startswith("3 of 4 rows lack required submission fields (")
    assert "is this a submissions export?" in summary.hint


def test_a_few_incomplete_rows_get_no_hint(tmp_path: Path) -> None:
    path = tmp_path / "subs.ndjson"
    rows = [dict(FULL, task_id=f"t{i}") for i in range(3)] + [{"task_id": "t9"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    summary = track_file(tmp_path / "s.duckdb", path)
    assert (summary.new, summary.rejected, summary.hint) == (3, 1, None)


@pytest.mark.parametrize("suffix", ["ndjson", "ndjson.gz", "csv", "csv.gz"])
def test_the_rule_holds_across_staged_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    """Rows are staged in chunks (50,000 by default; 7 here): every chunk keeps the rule, and
    a stored task is never overwritten by a later file's incomplete rows."""
    monkeypatch.setattr("asg_audit.track._CHUNK_ROWS", 7)
    db = tmp_path / "s.duckdb"
    ids = [f"tsk_{i:05d}" for i in range(60)]
    first = tmp_path / "first.ndjson"
    first.write_text("".join(json.dumps(dict(FULL, task_id=t)) + "\n" for t in ids))
    assert track_file(db, first).new == 60
    before = _stored(db)
    # every third row is complete, with another threshold (an update); the others lack a field
    if suffix.startswith("csv"):
        lines = [HEADER.rstrip("\n")]
        for i, t in enumerate(ids):
            lines.append(
                f"{t},sentiment,6,pos|neg,2026-09-15T00:00:00Z"
                if i % 3 == 0
                else [f"{t},,5,pos|neg,2026-09-15T00:00:00Z", f"{t},sentiment,5,pos|neg,"][
                    i % 3 - 1
                ]
            )
        text = "\n".join(lines) + "\n"
    else:
        recs = []
        for i, t in enumerate(ids):
            rec = dict(FULL, task_id=t, consensus_threshold=6 if i % 3 == 0 else 5)
            if i % 3:
                del rec[["type", "created_at"][i % 3 - 1]]
            recs.append(rec)
        text = "".join(json.dumps(r) + "\n" for r in recs)
    second = tmp_path / f"second.{suffix}"
    data = text.encode()
    second.write_bytes(gzip.compress(data) if suffix.endswith(".gz") else data)
    summary = track_file(db, second)
    assert _counts(summary) == (60, 0, 20, 0, 0, 40)
    after = {row[0]: row for row in _stored(db)}
    for i, (task_id, *_rest) in enumerate(before):
        if i % 3 == 0:
            assert after[task_id][2] == 6
        else:
            assert after[task_id] == before[i]  # untouched: type, created_at and all
    fields = {r[3] for r in _rejects(db)}
    assert fields == {"task_type", "created_at"}


def test_a_csv_row_holding_a_nul_byte_is_a_reject_and_the_stored_row_is_kept(
    tracked: Path, tmp_path: Path
) -> None:
    # tester T7: `t\x00y` was stored as the task type (an NDJSON row with a NUL is refused)
    before = _stored(tracked)
    nul = tmp_path / "nul.csv"
    nul.write_bytes(
        HEADER.encode()
        + b"tsk_aaaaaaaaaaaaaaaa,t\x00y,3,a|b,2026-04-08T21:00:00Z\r\n"
        + b"tsk_bbbbbbbbbbbbbbbb,sentiment,3,a|b,2026-04-08T21:00:00Z\r\n"
    )
    summary = track_file(tracked, nul)
    assert _counts(summary) == (2, 1, 0, 0, 0, 1)
    assert summary.errors == [
        f"{nul}:2: not readable (NUL bytes: UTF-16 or UTF-32 text? track reads UTF-8)"
    ]
    assert [r for r in _stored(tracked) if r[0] == "tsk_aaaaaaaaaaaaaaaa"] == before
    assert _rejects(tracked) == [(str(nul), 2, "bad_submission", None)]
