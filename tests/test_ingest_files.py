"""File ingest: formats, folders and globs, idempotence, unreadable files, summaries."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest
from _records import settled_record

from asg_audit.demo import sample_path
from asg_audit.errors import InputError
from asg_audit.ingest_files import ingest_paths, track_file
from asg_audit.store import open_store
from asg_audit.storeinfo import describe_runs

# every test runs through both ways a commit derives results (conftest.write_path) and both
# ways a file is read (conftest.read_path)
pytestmark = pytest.mark.usefixtures("write_path", "read_path")

REPO = Path(__file__).parents[1]


def rec(task_id: str, **extra: object) -> dict[str, object]:
    """A settled record whose txid is its own (from the digits of its id)."""
    return settled_record(task_id, **{"bsv_txid": f"{int(task_id[1:]):064x}", **extra})


def write_ndjson(path: Path, records: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def counts(db: Path) -> dict[str, int]:
    with open_store(db, read_only=True) as store:
        return {t: store.count(t) for t in ("observations", "results", "rejects", "runs")}


def test_ingest_sample_export_summary(db: Path) -> None:
    summary = ingest_paths(db, [sample_path("sample_results.jsonl")])
    assert summary.records == 185
    assert summary.accepted == 180 and summary.rejected == 5
    assert summary.new_results == 180
    assert set(summary.rejected_by_reason) == {
        "bad_sats",
        "bad_timestamp",
        "bad_type",
        "invalid_json",
        "missing_task_id",
    }


def test_ingest_reject_names_file_and_line(db: Path, tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps(rec("t1")) + "\n" + '{"task_id": "t2", "worker_count": "3"}\n')
    ingest_paths(db, [path])
    with open_store(db, read_only=True) as store:
        row = store.frame("rejects").row(0, named=True)
    assert (row["origin"], row["origin_line"], row["reason"], row["field"]) == (
        str(path),
        2,
        "bad_type",
        "worker_count",
    )
    assert row["raw"] == b'{"task_id": "t2", "worker_count": "3"}'


def test_ingest_same_file_twice_changes_nothing_but_a_run_record(db: Path, tmp_path: Path) -> None:
    path = write_ndjson(tmp_path / "a.jsonl", [rec("t1"), rec("t2"), "oops"])
    ingest_paths(db, [path])
    before = counts(db)
    summary = ingest_paths(db, [path])
    after = counts(db)
    assert summary.files[0].status == "already ingested"
    assert after == {**before, "runs": before["runs"] + 1}


def test_ingest_overlapping_exports_do_not_duplicate_observations(db: Path, tmp_path: Path) -> None:
    ingest_paths(db, [write_ndjson(tmp_path / "a.jsonl", [rec("t1"), rec("t2")])])
    summary = ingest_paths(db, [write_ndjson(tmp_path / "b.jsonl", [rec("t2"), rec("t3")])])
    assert summary.duplicates == 1 and summary.new_results == 1
    assert counts(db)["observations"] == 3


def test_ingest_result_changed_after_settlement_is_a_conflict(db: Path, tmp_path: Path) -> None:
    path = write_ndjson(tmp_path / "a.jsonl", [rec("t1"), rec("t1", consensus_label="dog")])
    summary = ingest_paths(db, [path])
    assert summary.conflicts == 1
    with open_store(db, read_only=True) as store:
        row = store.frame("results").row(0, named=True)
    assert row["consensus_label"] == "cat" and row["conflict_count"] == 1


def test_ingest_gzip_json_array_folder_and_glob(db: Path, tmp_path: Path) -> None:
    folder = tmp_path / "exports"
    (folder / "sub").mkdir(parents=True)
    with gzip.open(folder / "a.jsonl.gz", "wt") as fh:
        fh.write(json.dumps(rec("t1")) + "\n")
    (folder / "sub" / "b.json").write_text(json.dumps([rec("t2"), rec("t3")], indent=2))
    (folder / "notes.txt").write_text("not an export")
    summary = ingest_paths(db, [folder])
    assert [f.status for f in summary.files] == ["ingested", "ingested"]
    assert summary.new_results == 3
    summary = ingest_paths(db, [str(tmp_path / "exports" / "**" / "*.json")])
    assert summary.files[0].status == "already ingested"


def test_ingest_gzip_json_arrays_compact_and_indented(db: Path, tmp_path: Path) -> None:
    # A gzip-compressed `.json` is sniffed like a plain one: an array is read element by
    # element (its number is the record's line), whether on one line or indented.
    with gzip.open(tmp_path / "compact.json.gz", "wt") as fh:
        fh.write(json.dumps([rec("t1"), {"task_id": "t2", "worker_count": "3"}, rec("t3")]))
    with gzip.open(tmp_path / "indented.json.gz", "wt") as fh:
        fh.write(json.dumps([rec("t4"), [1]], indent=2))
    summary = ingest_paths(db, [tmp_path])
    assert [f.status for f in summary.files] == ["ingested", "ingested"]
    assert (summary.records, summary.accepted, summary.new_results) == (5, 3, 3)
    assert summary.rejected_by_reason == {"bad_type": 1, "not_object": 1}
    with open_store(db, read_only=True) as store:
        rejects = store.frame("rejects").sort("origin")
    assert rejects.select("origin", "origin_line", "reason").rows() == [
        (str(tmp_path / "compact.json.gz"), 2, "bad_type"),
        (str(tmp_path / "indented.json.gz"), 2, "not_object"),
    ]
    assert json.loads(rejects.get_column("raw")[0]) == {"task_id": "t2", "worker_count": "3"}
    # the content hash is of the decompressed content: the same array uncompressed is known
    (tmp_path / "again.json").write_bytes(
        gzip.decompress((tmp_path / "compact.json.gz").read_bytes())
    )
    assert ingest_paths(db, [tmp_path / "again.json"]).files[0].status == "already ingested"


def test_ingest_pretty_printed_documents(db: Path, tmp_path: Path) -> None:
    # One result saved with `jq .` or `json.dumps(..., indent=2)`, and a file of several such
    # documents: each document is a record (its number is its line), not each line.
    (tmp_path / "one.json").write_text(json.dumps(rec("t1"), indent=2) + "\n")
    with gzip.open(tmp_path / "many.json.gz", "wt") as fh:
        fh.write(
            "\n".join(
                json.dumps(r, indent="\t")
                for r in (rec("t2"), {"task_id": "t3", "worker_count": "3"}, rec("t4"))
            )
        )
    summary = ingest_paths(db, [tmp_path])
    assert [f.status for f in summary.files] == ["ingested", "ingested"]
    assert (summary.records, summary.accepted, summary.new_results) == (4, 3, 3)
    with open_store(db, read_only=True) as store:
        rejects = store.frame("rejects")
        stored = store.frame("results").sort("task_id")
    assert rejects.select("origin", "origin_line", "reason").rows() == [
        (str(tmp_path / "many.json.gz"), 2, "bad_type")
    ]
    assert json.loads(rejects.get_column("raw")[0]) == {"task_id": "t3", "worker_count": "3"}
    assert stored.get_column("task_id").to_list() == ["t1", "t2", "t4"]
    assert stored.get_column("cost_sats").to_list() == [975] * 3


def test_ingest_one_line_json_file_stays_line_delimited(db: Path, tmp_path: Path) -> None:
    # A `.json` file of compact records, one per line, keeps per-line rejects: a broken first
    # line does not make the file a (malformed) document.
    path = tmp_path / "export.json"
    path.write_text('{"task_id": "t1", "status":\n' + json.dumps(rec("t2")) + "\n")
    summary = ingest_paths(db, [path])
    assert summary.files[0].status == "ingested"
    assert (summary.accepted, summary.rejected_by_reason) == (1, {"invalid_json": 1})


def test_ingest_broken_pretty_printed_document_fails_cleanly(db: Path, tmp_path: Path) -> None:
    path = tmp_path / "cut.json"
    text = json.dumps(rec("t1"), indent=2)[:60]
    path.write_text(text)
    summary = ingest_paths(db, [path, write_ndjson(tmp_path / "good.jsonl", [rec("t2")])])
    assert [f.status for f in summary.files] == ["failed", "ingested"]
    error = summary.files[0].error or ""
    assert error.startswith(f"{path}: not a readable JSON document: ")
    # the cut is on the file's last line, in its first document
    assert f": line {len(text.splitlines())}, column " in error and "(document 1)" in error
    assert counts(db)["observations"] == 1 and counts(db)["rejects"] == 0


@pytest.mark.parametrize("name", ["broken.json", "broken.json.gz"])
def test_ingest_malformed_or_truncated_json_array_fails_cleanly(
    db: Path, tmp_path: Path, name: str
) -> None:
    text = json.dumps([rec(f"t{i}") for i in range(1, 300)])
    path = tmp_path / name
    if name.endswith(".gz"):
        data = gzip.compress(text.encode())
        path.write_bytes(data[: len(data) // 2])  # a truncated compressed file
    else:
        path.write_text(text[: len(text) // 2])  # an array cut in the middle of a record
    good = write_ndjson(tmp_path / "good.jsonl", [rec("t900")])
    summary = ingest_paths(db, [path, good])
    assert [f.status for f in summary.files] == ["failed", "ingested"]
    error = summary.files[0].error or ""
    assert str(path) in error
    if name.endswith(".gz"):  # the cause, whichever reader (DuckDB or the hash) fails first
        assert "truncated compressed file" in error
    assert counts(db)["observations"] == 1 and counts(db)["rejects"] == 0  # nothing of it
    # `runs` says why the run failed (it showed the status alone)
    runs = describe_runs(db).splitlines()
    (line,) = [r for r in runs if summary.run_id in r]
    assert " failed  1 of 2 files could not be read; first: " in line
    assert str(path)[:40] in line


def test_ingest_webhook_delivery_log(db: Path, tmp_path: Path) -> None:
    log = write_ndjson(
        tmp_path / "deliveries.ndjson",
        [
            {
                "event": "task.settled",
                "task_id": "t1",
                "consensus_label": "cat",
                "confidence": 1.0,
                "bsv_txid": "f" * 64,
                "settled_at": "2026-11-01T10:00:40Z",
                "timestamp": "2026-11-01T10:00:41Z",
            }
        ],
    )
    ingest_paths(db, [log])
    with open_store(db, read_only=True) as store:
        row = store.frame("results").row(0, named=True)
    assert row["status"] == "settled" and row["shape"] == "webhook"


def test_ingest_truncated_gzip_leaves_store_unchanged_and_goes_on(db: Path, tmp_path: Path) -> None:
    good = write_ndjson(tmp_path / "good.jsonl", [rec("t1")])
    data = gzip.compress("".join(json.dumps(rec(f"t{i}")) + "\n" for i in range(2, 500)).encode())
    bad = tmp_path / "bad.jsonl.gz"
    bad.write_bytes(data[: len(data) // 2])
    summary = ingest_paths(db, [bad, good])
    assert [f.status for f in summary.files] == ["failed", "ingested"]
    assert "truncated" in (summary.files[0].error or "")
    assert counts(db)["observations"] == 1  # nothing of the truncated file


def test_ingest_unreadable_file_is_reported(db: Path, tmp_path: Path) -> None:
    path = tmp_path / "gone.jsonl"
    path.symlink_to(tmp_path / "deleted-target.jsonl")  # a dangling link: open() fails
    good = write_ndjson(tmp_path / "good.jsonl", [rec("t1")])
    summary = ingest_paths(db, [path, good])
    assert summary.files[0].status == "failed" and "no such file" in (summary.files[0].error or "")
    assert summary.files[1].status == "ingested"


def test_ingest_missing_pattern_is_an_input_error(db: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no file matches"):
        ingest_paths(db, [str(tmp_path / "*.jsonl")])


def test_ingest_streams_in_chunks_with_correct_line_numbers(db: Path, tmp_path: Path) -> None:
    records: list[object] = [rec(f"t{i}") for i in range(1, 301)]
    records[250] = "not json"
    path = tmp_path / "big.jsonl"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    summary = ingest_paths(db, [path], chunk_bytes=4096)
    assert summary.accepted == 299 and summary.rejected == 1
    with open_store(db, read_only=True) as store:
        assert store.frame("rejects").get_column("origin_line").to_list() == [251]
        assert store.count("results") == 299


@pytest.mark.parametrize("chunk_bytes", [7, 64, 8 * 1024 * 1024])
def test_ingest_line_edges_crlf_blank_non_utf8_duplicates_and_no_final_newline(
    db: Path, tmp_path: Path, chunk_bytes: int
) -> None:
    good = [json.dumps(rec(f"t{i}")).encode() for i in range(1, 5)]
    lines = [
        b"[1, 2]",  # line 1: a record that is not an object, not a JSON array file
        good[0] + b"\r",  # line 2: CRLF
        b"",  # line 3: blank
        b"   \t ",  # line 4: whitespace only
        b'{"task_id": "t9", "consensus_label": "caf\xe9"}',  # line 5: Latin-1, not UTF-8
        good[1],  # line 6
        good[1],  # line 7: the same record again in the same file
        '{"task_id": "t7", "status": "pending", "note": "\u00e9t\u00e9 \u2713"}'.encode(),
        good[2],  # line 9, the last, without a final newline
    ]
    path = tmp_path / "edges.jsonl"
    path.write_bytes(b"\n".join(lines))
    summary = ingest_paths(db, [path], chunk_bytes=chunk_bytes)
    assert summary.records == 7 and summary.duplicates == 1
    assert summary.rejected_by_reason == {"not_object": 1, "invalid_utf8": 1}
    with open_store(db, read_only=True) as store:
        rejects = store.frame("rejects").sort("origin_line")
        assert rejects.get_column("origin_line").to_list() == [1, 5]
        assert rejects.get_column("raw").to_list() == [b"[1, 2]", lines[4]]
        obs = store.con.execute(
            "SELECT origin_line, task_id, raw FROM observations ORDER BY obs_id"
        ).fetchall()
        assert obs == [(2, "t1", None), (6, "t2", None), (8, "t7", None), (9, "t3", None)]
        assert store.count("results") == 4


def test_ingest_cli_exits_2_after_processing_the_other_files(db: Path, tmp_path: Path) -> None:
    good = write_ndjson(tmp_path / "good.jsonl", [rec("t1")])
    bad = tmp_path / "bad.jsonl.gz"
    bad.write_bytes(gzip.compress(b'{"task_id": "t9"}\n' * 100)[:30])
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "asg_audit",
            "ingest",
            "--quiet",
            "--db",
            str(db),
            str(bad),
            str(good),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert proc.returncode == 2
    assert f"{bad}:" in proc.stderr and "Traceback" not in proc.stderr
    assert "accepted                     1" in proc.stdout


def test_track_csv_and_ndjson_submissions(db: Path, tmp_path: Path) -> None:
    summary = track_file(db, sample_path("sample_submissions.csv"))
    assert summary.new == 180 and not summary.errors
    nd = write_ndjson(
        tmp_path / "subs.ndjson",
        [
            {
                "task_id": "tsk_00001",
                "type": "image",
                "consensus_threshold": 5,
                "label_spec": {"options": ["a", "b"]},
                "created_at": "2026-11-01T10:00:00Z",
            },
            {"task_id": "bad id", "consensus_threshold": 3},
            {"task_id": "t2", "consensus_threshold": 11},
        ],
    )
    summary = track_file(db, nd)
    assert (summary.new, summary.updated) == (0, 1)
    assert len(summary.errors) == 2 and summary.errors[0].startswith(f"{nd}:2: task_id")
    with open_store(db, read_only=True) as store:
        row = store.frame("submissions", where="task_id = ?", params=["tsk_00001"]).row(
            0, named=True
        )
    assert row["options"] == ["a", "b"] and row["consensus_threshold"] == 5


def test_ingest_progress_of_a_query_is_reported_in_bytes() -> None:
    # JSON arrays are one query inside the store: its progress is reported as bytes read.
    import duckdb

    from asg_audit.ingest_staging import query_progress

    con = duckdb.connect()
    seen: list[int] = []
    with query_progress(con, 1_000, seen.append):
        con.execute("SELECT sum(hash(i)) FROM range(300000000) t(i)").fetchall()
    assert seen and all(n > 0 for n in seen) and sum(seen) <= 1_000
