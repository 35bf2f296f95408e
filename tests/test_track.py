"""`asg-audit track`: reading submission exports (BOM, bad bytes, short rows, headers), idempotence,
duplicate task ids within a file, and a summary that accounts for every row."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest
from _hardening_procs import track_cli

from asg_audit.errors import InputError
from asg_audit.track import TrackSummary, track_file

BOM = b"\xef\xbb\xbf"
HEADER = "task_id,task_type,consensus_threshold,options,created_at,data_url\n"


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def submissions(db: Path) -> dict[str, dict[str, Any]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        cur = con.execute("SELECT * FROM submissions ORDER BY task_id")
        names = [d[0] for d in cur.description]
        return {row[0]: dict(zip(names, row, strict=True)) for row in cur.fetchall()}
    finally:
        con.close()


def rejects(db: Path) -> list[tuple[Any, ...]]:
    return query(
        db,
        "SELECT origin_line, reason, field, detail, raw FROM rejects"
        " WHERE source = 'submissions' ORDER BY origin_line, reason",
    )


def _full(start: bytes) -> bytes:
    """An NDJSON line starting `start` (an object not yet closed), with every required field it
    does not give (a row missing one is a reject): type, threshold, options and created_at."""
    rest = {
        b'"type"': b'"type":"image"',
        b'"consensus_threshold"': b'"consensus_threshold":3',
        b'"options"': b'"label_spec":{"options":["cat","dog"]}',
        b'"created_at"': b'"created_at":"2026-04-08T21:00:00Z"',
    }
    return b",".join([start, *(v for k, v in rest.items() if k not in start)]) + b"}\n"


def accounted(summary: TrackSummary) -> int:
    return summary.new + summary.updated + summary.unchanged + summary.duplicates + summary.rejected


# -- byte order mark -------------------------------------------------------------------------


def test_track_csv_with_a_bom_is_read(db: Path, tmp_path: Path) -> None:
    # Excel's "CSV UTF-8": a BOM and CRLF line ends
    path = tmp_path / "excel.csv"
    path.write_bytes(
        BOM
        + b"task_id,task_type,consensus_threshold,options,created_at\r\n"
        + b"b1,image,3,cat|dog,2026-04-08T19:00:00Z\r\n"
    )
    summary = track_file(db, path)
    assert (summary.rows, summary.new, summary.errors) == (1, 1, [])
    assert submissions(db)["b1"]["options"] == ["cat", "dog"]


def test_track_ndjson_with_a_bom_is_read(db: Path, tmp_path: Path) -> None:
    path = tmp_path / "subs.ndjson"
    path.write_bytes(BOM + _full(b'{"task_id":"u3","type":"image","consensus_threshold":3'))
    summary = track_file(db, path)
    assert (summary.rows, summary.new, summary.errors) == (1, 1, [])


def test_track_gzip_ndjson_with_a_bom_is_read(db: Path, tmp_path: Path) -> None:
    path = tmp_path / "subs.ndjson.gz"
    path.write_bytes(
        gzip.compress(BOM + _full(b'{"task_id":"u3","type":"image","consensus_threshold":3'))
    )
    assert track_file(db, path).new == 1


def test_track_bom_after_the_start_of_the_file_is_a_reject(db: Path, tmp_path: Path) -> None:
    path = tmp_path / "subs.ndjson"
    path.write_bytes(_full(b'{"task_id":"a1"') + BOM + _full(b'{"task_id":"a2"'))
    summary = track_file(db, path)
    assert summary.new == 1 and len(summary.errors) == 1
    assert summary.errors[0].startswith(f"{path}:2: ")
    assert [r[:2] for r in rejects(db)] == [(2, "invalid_json")]


# -- idempotence -----------------------------------------------------------------------------


SUBS_CSV = HEADER + (
    "t1,image,3,cat|dog,2026-04-08T21:00:00Z,https://x/1.png\n"
    "t2,image,5,cat|dog|bird,2026-04-08T19:00:00Z,\n"
    "bad/id,image,3,cat|dog,2026-04-08T21:00:00Z,\n"
    "t13,image,11,cat|dog,2026-04-08T21:00:00Z,\n"
    "t16,image,3,,2026-04-08T21:00:00Z,\n"
)


def test_track_same_file_twice_changes_nothing_but_adds_a_run(db: Path, tmp_path: Path) -> None:
    path = tmp_path / "subs.csv"
    path.write_text(SUBS_CSV)
    first = track_cli(db, path)
    assert first.returncode == 0, first.stderr
    before = (submissions(db), rejects(db))
    second = track_cli(db, path)
    assert second.returncode == 0, second.stderr
    assert "0 new tasks, 0 updated, 3 unchanged" in second.stdout
    assert (submissions(db), rejects(db)) == before  # tracked_at and origin too
    assert len(before[1]) == 2
    assert query(db, "SELECT count(*) FROM runs WHERE command = 'track'") == [(2,)]


def test_track_same_file_twice_through_the_library_counts_unchanged(
    db: Path, tmp_path: Path
) -> None:
    path = tmp_path / "subs.csv"
    path.write_text(SUBS_CSV)
    track_file(db, path)
    again = track_file(db, path)
    assert (again.new, again.updated, again.unchanged, len(again.errors)) == (0, 0, 3, 2)


def test_track_updated_counts_only_tasks_whose_values_changed(db: Path, tmp_path: Path) -> None:
    first = tmp_path / "a.csv"
    first.write_text(SUBS_CSV)
    track_file(db, first)
    later = tmp_path / "b.csv"
    later.write_text(
        HEADER
        + "t1,image,3,cat|dog,2026-04-08T21:00:00Z,https://x/1.png\n"  # same values
        + "t2,image,7,cat|dog|bird,2026-04-08T19:00:00Z,\n"  # threshold 5 -> 7
    )
    summary = track_file(db, later)
    assert (summary.new, summary.updated, summary.unchanged) == (0, 1, 1)
    stored = submissions(db)
    assert stored["t2"]["consensus_threshold"] == 7 and stored["t2"]["origin"] == str(later)
    assert stored["t1"]["origin"] == str(first)  # an unchanged task keeps where it came from


def test_track_same_rejects_from_another_file_are_stored_for_it(db: Path, tmp_path: Path) -> None:
    # the reject's evidence names its file: a copy elsewhere is another origin
    for name in ("a.csv", "b.csv"):
        (tmp_path / name).write_text(SUBS_CSV)
        track_file(db, tmp_path / name)
    assert query(db, "SELECT origin, count(*) FROM rejects GROUP BY ALL ORDER BY 1") == [
        (str(tmp_path / "a.csv"), 2),
        (str(tmp_path / "b.csv"), 2),
    ]


# -- duplicate task ids within one file ------------------------------------------------------


def test_track_duplicate_task_id_with_other_values_is_a_reject_naming_both_lines(
    db: Path, tmp_path: Path
) -> None:
    path = tmp_path / "subs.csv"
    path.write_text(
        HEADER
        + "t1,image,3,cat|dog,2026-04-08T21:00:00Z,\n"
        + "t2,image,3,cat|dog,2026-04-08T21:00:00Z,\n"
        + "t1,image,4,cat|dog,2026-04-08T21:00:00Z,\n"
    )
    summary = track_file(db, path)
    assert (summary.rows, summary.new, summary.duplicates) == (3, 2, 0)
    assert summary.errors == [
        f"{path}:4: task_id: t1 is also on line 2 with other values"
        " (consensus_threshold: 3 there, 4 here); line 2 is kept"
    ]
    assert submissions(db)["t1"]["consensus_threshold"] == 3
    assert [r[:3] for r in rejects(db)] == [(4, "duplicate_task_id", "task_id")]


def test_track_identical_duplicate_row_is_counted_as_a_duplicate(db: Path, tmp_path: Path) -> None:
    path = tmp_path / "subs.csv"
    row = "t1,image,3,cat|dog,2026-04-08T21:00:00Z,\n"
    path.write_text(HEADER + row + row)
    summary = track_file(db, path)
    assert (summary.rows, summary.new, summary.duplicates, summary.errors) == (2, 1, 1, [])
    assert submissions(db)["t1"]["origin_line"] == 2
    assert rejects(db) == []


def test_track_summary_accounts_for_every_row(tmp_path: Path) -> None:
    # the tester's file: 14 rows of every kind
    path = tmp_path / "subs.csv"
    path.write_text(
        SUBS_CSV
        + "t14,image,1,cat|dog,2026-04-08T21:00:00Z,\n"
        + "t15,image,abc,cat|dog,2026-04-08T21:00:00Z,\n"
        + "t17,image,3,cat|dog,notatime,\n"
        + "t18,image,3,cat|dog\n"
        + 't19,"<b>img</b>",3,"<script>x</script>|dog",2026-04-08T21:00:00Z,\n'
        + ",image,3,cat|dog,2026-04-08T21:00:00Z,\n"
        + "t20,image,3,cat|cat,2026-04-08T21:00:00Z,\n"
        + "t21,image,3.0,cat|dog,1775682000,\n"
        + "t1,image,4,cat|dog,2026-04-08T21:00:00Z,\n"
    )
    db = tmp_path / "a.duckdb"
    proc = track_cli(db, path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(
        f"{path}: 14 rows: 4 new tasks, 0 updated, 0 unchanged, 0 duplicates, 10 rejected"
    )
    summary = track_file(tmp_path / "b.duckdb", path)
    assert summary.rows == accounted(summary) == 14


# -- bad rows --------------------------------------------------------------------------------


def test_track_empty_options_cell_is_stored_as_no_options(db: Path, tmp_path: Path) -> None:
    path = tmp_path / "subs.csv"
    path.write_text(HEADER + "t16,image,3,,2026-04-08T21:00:00Z,\n")
    assert track_file(db, path).new == 1
    assert submissions(db)["t16"]["options"] is None


def test_track_short_row_without_created_at_is_a_reject(db: Path, tmp_path: Path) -> None:
    path = tmp_path / "subs.csv"
    path.write_text(HEADER + "t18,image,3,cat|dog\n" + "t1,image,3,cat|dog,1775682000,\n")
    summary = track_file(db, path)
    assert summary.new == 1
    assert len(summary.errors) == 1
    assert summary.errors[0].startswith(f"{path}:2: created_at: missing")
    assert [r[:3] for r in rejects(db)] == [(2, "bad_submission", "created_at")]
    assert "t18" not in submissions(db)


def test_track_row_without_the_optional_data_url_is_accepted(db: Path, tmp_path: Path) -> None:
    path = tmp_path / "subs.csv"
    path.write_text(HEADER + "t1,image,3,cat|dog,2026-04-08T21:00:00Z\n")
    summary = track_file(db, path)
    assert (summary.new, summary.errors) == (1, [])
    assert submissions(db)["t1"]["data_url"] is None


def test_track_row_with_more_fields_than_the_header_is_a_reject(db: Path, tmp_path: Path) -> None:
    path = tmp_path / "subs.csv"
    path.write_text(HEADER + "t1,image,3,cat,dog,2026-04-08T21:00:00Z,\n")
    summary = track_file(db, path)
    assert summary.new == 0 and len(summary.errors) == 1
    assert summary.errors[0].startswith(f"{path}:2: 7 fields")


def test_track_duplicate_option_is_a_reject_naming_the_field(db: Path, tmp_path: Path) -> None:
    path = tmp_path / "subs.csv"
    path.write_text(HEADER + "t20,image,3,cat|cat,2026-04-08T21:00:00Z,\n")
    summary = track_file(db, path)
    assert summary.new == 0
    assert summary.errors == [f"{path}:2: options: 'cat' is listed twice"]
    assert [r[:3] for r in rejects(db)] == [(2, "bad_submission", "options")]


@pytest.mark.parametrize("options", ["cat||dog", "cat|"])
def test_track_empty_option_is_a_reject(db: Path, tmp_path: Path, options: str) -> None:
    path = tmp_path / "subs.csv"
    path.write_text(HEADER + f"t1,image,3,{options},2026-04-08T21:00:00Z,\n")
    summary = track_file(db, path)
    assert summary.new == 0 and summary.errors[0].startswith(f"{path}:2: options: ")


def test_track_duplicate_option_in_ndjson_is_a_reject(db: Path, tmp_path: Path) -> None:
    path = tmp_path / "subs.ndjson"
    path.write_text(json.dumps({"task_id": "n1", "label_spec": {"options": ["a", "a"]}}) + "\n")
    summary = track_file(db, path)
    assert summary.errors == [f"{path}:1: options: 'a' is listed twice"]


def test_track_header_without_task_id_fails_the_file_and_stores_nothing(
    db: Path, tmp_path: Path
) -> None:
    path = tmp_path / "wrongcols.csv"
    path.write_text("a,b\n1,2\n3,4\n")
    proc = track_cli(db, path)
    assert proc.returncode == 2, proc.stdout
    assert f"{path}: the header has no task_id column" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not db.exists() or query(db, "SELECT count(*) FROM rejects") == [(0,)]


def test_track_header_without_a_required_column_names_it(db: Path, tmp_path: Path) -> None:
    path = tmp_path / "subs.csv"
    path.write_text("task_id,task_type,consensus_threshold,options\nt1,image,3,a|b\n")
    with pytest.raises(InputError, match="no created_at column"):
        track_file(db, path)


def test_track_line_numbers_count_quoted_line_breaks(db: Path, tmp_path: Path) -> None:
    path = tmp_path / "subs.csv"
    path.write_text(
        HEADER
        + 't1,"image\nwith a break",3,cat|dog,2026-04-08T21:00:00Z,\n'
        + "t2,image,99,cat|dog,2026-04-08T21:00:00Z,\n"
    )
    summary = track_file(db, path)
    assert summary.errors == [f"{path}:4: consensus_threshold: 99 is outside 2..10"]


# -- invalid UTF-8 ---------------------------------------------------------------------------


def test_track_invalid_utf8_row_is_a_reject_and_good_rows_are_stored(
    db: Path, tmp_path: Path
) -> None:
    path = tmp_path / "badutf.csv"
    bad_line = b"u1,image,3,cat|d\xffog,2026-04-08T19:00:00Z\n"
    path.write_bytes(
        b"task_id,task_type,consensus_threshold,options,created_at\n"
        + bad_line
        + b"u2,image,3,cat|dog,2026-04-08T19:00:00Z\n"
    )
    proc = track_cli(db, path)
    assert proc.returncode == 0, proc.stderr
    assert f"{path}:2: invalid_utf8: byte 0xff at byte 17 of the line" in proc.stderr
    assert list(submissions(db)) == ["u2"]
    assert rejects(db) == [
        (
            2,
            "invalid_utf8",
            None,
            "invalid_utf8: byte 0xff at byte 17 of the line",
            bad_line.removesuffix(b"\n"),  # the row's bytes are the evidence
        )
    ]


def test_track_invalid_utf8_ndjson_line_is_a_reject(db: Path, tmp_path: Path) -> None:
    path = tmp_path / "subs.ndjson"
    path.write_bytes(b'{"task_id":"n1","type":"im\xc3"}\n' + _full(b'{"task_id":"n2"'))
    summary = track_file(db, path)
    assert summary.new == 1
    assert [r[:2] for r in rejects(db)] == [(1, "invalid_utf8")]


def test_track_invalid_utf8_in_the_header_fails_the_file(db: Path, tmp_path: Path) -> None:
    path = tmp_path / "subs.csv"
    path.write_bytes(b"task_id,task_\xfftype\nt1,x\n")
    with pytest.raises(InputError, match="header"):
        track_file(db, path)


def test_track_csv_epoch_seconds_are_a_timestamp(db: Path, tmp_path: Path) -> None:
    # NDJSON gives epoch seconds as a number; a CSV cell has the same digits as text
    path = tmp_path / "subs.csv"
    path.write_text(HEADER + "t21,image,3,cat|dog,1775682000,\n")
    assert track_file(db, path).errors == []
    assert submissions(db)["t21"]["created_at"].timestamp() == 1775682000


def test_track_csv_a_row_the_reader_cannot_parse_is_a_reject_naming_its_line(
    db: Path, tmp_path: Path
) -> None:
    path = tmp_path / "subs.csv"
    path.write_text(
        HEADER
        + "t1,image,3,cat|dog,2026-04-08T21:00:00Z,\n"
        + "t2,ima\rge,3,cat|dog,2026-04-08T21:00:00Z,\n"  # a carriage return in a field
        + "t3,image,3,cat|dog,2026-04-08T21:00:00Z,\n"
        + "t4,"
        + "x" * 200_000  # a field over the reader's size limit
        + "\nt5,image,3,cat|dog,2026-04-08T21:00:00Z,\n",
        newline="",
    )
    summary = track_file(db, path)
    assert sorted(submissions(db)) == ["t1", "t3", "t5"]
    assert [(e.split(": ")[0], "not readable as CSV" in e) for e in summary.errors] == [
        (f"{path}:3", True),
        (f"{path}:5", True),
    ]


def test_track_csv_a_header_the_reader_cannot_parse_fails_the_file(
    db: Path, tmp_path: Path
) -> None:
    path = tmp_path / "subs.csv"
    path.write_text("task_id,ty\rpe\n", newline="")
    with pytest.raises(InputError, match=rf"{path.name}:1: the header is not readable as CSV"):
        track_file(db, path)
    assert not db.exists()


# -- created_at: the normaliser's timestamp rules ----------------------------------------------


@pytest.mark.parametrize(
    ("cell", "why"),
    [
        # ambiguous: an Excel "CSV UTF-8" with local times must not be read as UTC
        ("2026-04-08 21:00:00", "a date alone or a time without a zone is ambiguous"),
        ("2026-04-08", "a date alone or a time without a zone is ambiguous"),
        ("0", "epoch seconds outside 2000-2100"),
        ("946684799", "epoch seconds outside 2000-2100"),
        ("-5", "not an RFC 3339 timestamp"),
        ("1e3", "not an RFC 3339 timestamp"),
        ("1775682000.9", "not an RFC 3339 timestamp"),
        ("2026-W15-3T21:00:00Z", "not an RFC 3339 timestamp"),
        ("2026-04-08T21:00:00+00:60", "zone offset out of range (hours 00-23, minutes 00-59)"),
        ("2026-04-08T21:00:00+24:00", "zone offset out of range (hours 00-23, minutes 00-59)"),
        ("2026-04-08T21:00:00+05:00:30", "a zone offset has no seconds in RFC 3339"),
        ("2026-04-08T24:00:00Z", "time out of range (hour 00-23, minute and second 00-59)"),
        ("2026-02-30T21:00:00Z", "no such date"),
        ("9999-12-31T23:59:59Z", "outside 2000-2100"),
    ],
)
def test_track_csv_created_at_that_is_not_a_timestamp_is_a_reject_saying_why(
    db: Path, tmp_path: Path, cell: str, why: str
) -> None:
    path = tmp_path / "subs.csv"
    path.write_text(
        HEADER + "t1,image,3,cat|dog,2026-04-08T21:00:00Z,\n" + f"k1,image,3,cat|dog,{cell},\n"
    )
    summary = track_file(db, path)
    assert len(summary.errors) == 1
    assert summary.errors[0].startswith(f"{path}:3: created_at: {why}"), summary.errors
    assert summary.errors[0].endswith(f": {cell!r}")
    assert sorted(submissions(db)) == ["t1"]
    assert [r[:3] for r in rejects(db)] == [(3, "bad_submission", "created_at")]


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (1775682000.9, "not an RFC 3339 timestamp"),  # no silent truncation to whole seconds
        (1e3, "not an RFC 3339 timestamp"),
        (0, "epoch seconds outside 2000-2100"),
        (-1, "epoch seconds outside 2000-2100"),
        (True, "not an RFC 3339 timestamp"),
        ("1775682000", "not an RFC 3339 timestamp"),  # in JSON epoch seconds are a number
        ("2026-04-08T21:00:00", "a date alone or a time without a zone is ambiguous"),
    ],
)
def test_track_ndjson_created_at_that_is_not_a_timestamp_is_a_reject_saying_why(
    db: Path, tmp_path: Path, value: object, why: str
) -> None:
    path = tmp_path / "subs.ndjson"
    rec = {"task_id": "n1", "task_type": "image", "consensus_threshold": 3, "created_at": value}
    path.write_text(json.dumps(rec) + "\n")
    summary = track_file(db, path)
    assert len(summary.errors) == 1
    assert summary.errors[0].startswith(f"{path}:1: created_at: {why}"), summary.errors
    assert submissions(db) == {}
    assert [r[:3] for r in rejects(db)] == [(1, "bad_submission", "created_at")]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1775682000, datetime(2026, 4, 8, 21, 0, tzinfo=UTC)),
        ("2026-04-09T11:00:00+14:00", datetime(2026, 4, 8, 21, 0, tzinfo=UTC)),
        ("2026-04-08T09:00:00-12:00", datetime(2026, 4, 8, 21, 0, tzinfo=UTC)),
        ("2026-04-09T20:59:00+23:59", datetime(2026, 4, 8, 21, 0, tzinfo=UTC)),
        ("2026-04-08t23:00:00.5+0200", datetime(2026, 4, 8, 21, 0, 0, 500000, tzinfo=UTC)),
        ("2026-04-08 21:00:00.123456789z", datetime(2026, 4, 8, 21, 0, 0, 123456, tzinfo=UTC)),
        ("2000-01-01T00:00:00Z", datetime(2000, 1, 1, tzinfo=UTC)),
    ],
)
def test_track_ndjson_created_at_forms_are_stored_as_utc(
    db: Path, tmp_path: Path, value: object, expected: datetime
) -> None:
    path = tmp_path / "subs.ndjson"
    rec = {"task_id": "n1", "task_type": "image", "consensus_threshold": 3, "created_at": value}
    rec["options"] = ["cat", "dog"]
    path.write_text(json.dumps(rec) + "\n")
    assert track_file(db, path).errors == []
    assert submissions(db)["n1"]["created_at"] == expected


def test_track_csv_epoch_seconds_cell_may_have_blanks_around(db: Path, tmp_path: Path) -> None:
    path = tmp_path / "subs.csv"
    path.write_text(HEADER + "t21,image,3,cat|dog, 1775682000 ,\n")
    assert track_file(db, path).errors == []
    assert submissions(db)["t21"]["created_at"] == datetime(2026, 4, 8, 21, 0, tzinfo=UTC)
