"""Small NDJSON files are read whole and committed in groups; the store ends up the same as
when every file is streamed in its own transaction."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import polars as pl
import pytest
from _records import settled_line

from asg_audit.ingest_files import IngestSummary, ingest_paths, print_ingest_summary
from asg_audit.store import open_store


def rec(task_id: str, label: str = "cat", **extra: object) -> str:
    return settled_line(task_id, consensus_label=label, **extra)


def make_exports(folder: Path) -> None:
    folder.mkdir()
    (folder / "01-a.jsonl").write_text(rec("t1") + "\n" + rec("t2") + "\n")
    (folder / "02-rejects.jsonl").write_bytes(
        b'{"task_id": "t3", "worker_count": "3"}\r\n\r\n   \t\n[1]\n\xff\xfe\n' + rec("t4").encode()
    )
    (folder / "03-copy-of-a.jsonl").write_text(rec("t1") + "\n" + rec("t2") + "\n")
    with gzip.open(folder / "04-b.jsonl.gz", "wt") as fh:
        fh.write(rec("t5") + "\n" + rec("t1") + "\n")  # t1 again, same payload: a duplicate
    # a big file between small ones: it changes t2's label (a conflict, as it comes later)
    (folder / "05-big.jsonl").write_text(
        rec("t2", label="dog") + "\n" + "".join(rec(f"p{i}") + "\n" for i in range(40))
    )
    data = gzip.compress((rec("t6") + "\n").encode() * 50)
    (folder / "06-truncated.jsonl.gz").write_bytes(data[: len(data) // 2])
    (folder / "07-c.jsonl").write_text(rec("t2", label="bird") + "\n" + rec("t7") + "\n")
    (folder / "08-empty.jsonl").write_text("")
    # arrays and pretty-printed documents, plain and compressed, good and broken
    (folder / "08a-array.json").write_text(
        "[" + rec("a1") + ", [1], " + rec("t1", label="owl") + "]"
    )
    with gzip.open(folder / "08b-array.json.gz", "wt") as fh:
        fh.write(
            json.dumps([json.loads(rec("a2")), {"task_id": "a3", "confidence": "high"}], indent=2)
        )
    (folder / "08c-pretty.json").write_text(
        json.dumps(json.loads(rec("a4")), indent=2)
        + "\n"
        + json.dumps({"task_id": "a/5"}, indent=2)
    )
    (folder / "08d-cut.json").write_text(json.dumps(json.loads(rec("a6")), indent=2)[:50])
    for i in range(9, 15):
        (folder / f"{i:02d}-more.ndjson").write_text(rec(f"m{i}") + "\n")


def tables(db: Path) -> dict[str, pl.DataFrame]:
    with open_store(db, read_only=True) as store:
        return {
            "observations": store.frame("observations")
            .sort("obs_id")
            .drop("obs_id", "run_id", "observed_at"),
            "results": store.frame("results")
            .sort("task_id")
            .drop("first_seen_at", "settled_seen_at", "last_seen_at"),
            "rejects": store.frame("rejects")
            .select("origin", "origin_line", "reason", "field", "detail", "raw")
            .sort("origin", "origin_line"),
            "ingested_files": store.frame("ingested_files")
            .drop("run_id", "ingested_at")
            .sort("path"),
        }


def summary_of(summary: IngestSummary) -> dict[str, object]:
    return {k: v for k, v in summary.as_dict().items() if k != "run_id"}


def test_grouped_small_files_store_what_streaming_them_one_by_one_stores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_exports(tmp_path / "exports")
    monkeypatch.setattr("asg_audit.ingest_files.SMALL_FILE_BYTES", 2_000)  # 05-big.jsonl is big
    monkeypatch.setattr("asg_audit.ingest_files._GROUP_FILES", 4)  # several groups
    grouped = ingest_paths(tmp_path / "grouped.duckdb", [tmp_path / "exports"])
    monkeypatch.setattr("asg_audit.ingest_files.SMALL_FILE_BYTES", -1)
    streamed = ingest_paths(tmp_path / "streamed.duckdb", [tmp_path / "exports"])

    assert summary_of(grouped) == summary_of(streamed)
    assert [(Path(f.path).name, f.status, f.records) for f in grouped.files] == [
        ("01-a.jsonl", "ingested", 2),
        ("02-rejects.jsonl", "ingested", 4),
        ("03-copy-of-a.jsonl", "already ingested", 0),
        ("04-b.jsonl.gz", "ingested", 2),
        ("05-big.jsonl", "ingested", 41),
        ("06-truncated.jsonl.gz", "failed", 0),
        ("07-c.jsonl", "ingested", 2),
        ("08-empty.jsonl", "ingested", 0),
        ("08a-array.json", "ingested", 3),
        ("08b-array.json.gz", "ingested", 2),
        ("08c-pretty.json", "ingested", 2),
        ("08d-cut.json", "failed", 0),
        *[(f"{i:02d}-more.ndjson", "ingested", 1) for i in range(9, 15)],
    ]
    assert grouped.rejected_by_reason == {
        "bad_type": 2,
        "not_object": 2,
        "invalid_utf8": 1,
        "unsafe_task_id": 1,
    }
    assert (grouped.duplicates, grouped.conflicts) == (1, 3)
    cut = next(f for f in grouped.files if f.path.endswith("08d-cut.json"))
    assert "08d-cut.json: not a readable JSON document: " in (cut.error or "")
    assert "unterminated string starting at: line 4, column 3 (document 1)" in (cut.error or "")
    expected, got = tables(tmp_path / "streamed.duckdb"), tables(tmp_path / "grouped.duckdb")
    for name, frame in expected.items():
        assert got[name].equals(frame), name
    t2 = got["results"].filter(pl.col("task_id") == "t2").row(0, named=True)
    # the first file to settle t2 gives its label; the big file and the later small one are
    # conflicts, whichever way each was read
    assert (t2["consensus_label"], t2["conflict_count"], t2["observation_count"]) == ("cat", 2, 3)
    t1 = got["results"].filter(pl.col("task_id") == "t1").row(0, named=True)
    assert (t1["consensus_label"], t1["conflict_count"]) == ("cat", 1)  # the array's owl
    assert (
        got["observations"].get_column("origin").to_list()[:2]
        == [str(tmp_path / "exports" / "01-a.jsonl")] * 2
    )


def test_small_gzip_file_of_much_data_is_streamed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("asg_audit.ingest_files._GROUP_BYTES", 10_000)
    text = "".join(rec(f"t{i}") + "\n" for i in range(200))  # about 50 kB, 2 kB compressed
    with gzip.open(tmp_path / "dense.jsonl.gz", "wt") as fh:
        fh.write(text)
    db = tmp_path / "audit.duckdb"
    summary = ingest_paths(db, [tmp_path / "dense.jsonl.gz"])
    assert (summary.files[0].status, summary.accepted, summary.new_results) == (
        "ingested",
        200,
        200,
    )
    (tmp_path / "plain.jsonl").write_text(text)  # the same content: known by its hash
    assert ingest_paths(db, [tmp_path / "plain.jsonl"]).files[0].status == "already ingested"


def test_summary_of_many_files_counts_them_instead_of_listing_them(tmp_path: Path) -> None:
    for i in range(25):
        (tmp_path / f"r{i:02d}.jsonl").write_text(rec(f"t{i}") + "\n")
    (tmp_path / "r00-again.jsonl").write_text(rec("t0") + "\n")
    summary = ingest_paths(tmp_path / "audit.duckdb", [tmp_path])
    out = io.StringIO()
    print_ingest_summary(summary, file=out)
    text = out.getvalue()
    assert "  already ingested  1 files\n  ingested          25 files\n" in text
    assert "r07.jsonl" not in text
    assert "records read                25\n" in text


def test_summary_of_few_files_names_each(tmp_path: Path) -> None:
    (tmp_path / "one.jsonl").write_text(rec("t1") + "\n" + "{broken\n")
    out = io.StringIO()
    print_ingest_summary(ingest_paths(tmp_path / "audit.duckdb", [tmp_path]), file=out)
    assert (
        f"  ingested          {tmp_path / 'one.jsonl'} (2 records, 1 accepted, 1 rejected)\n"
        in (out.getvalue())
    )


def test_interrupted_ingest_keeps_stored_files_and_says_so(tmp_path: Path) -> None:
    # The second input is a named pipe: the ingest blocks reading it, after the first (large,
    # streamed) file is stored. SIGINT is sent while it waits there (the signal may land on
    # one of DuckDB's threads, so the read is not cut short: it is acted on as soon as the
    # read returns, when the pipe is closed): deterministic, with no sleeps.
    import os
    import signal
    import subprocess
    import sys

    big = tmp_path / "big.jsonl"
    big.write_text("".join(rec(f"t{i}") + "\n" for i in range(5_000)))  # over 1 MiB
    assert big.stat().st_size > (1 << 20)
    pipe = tmp_path / "pipe.jsonl"
    os.mkfifo(pipe)
    db = tmp_path / "audit.duckdb"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "asg_audit",
            "ingest",
            "--db",
            str(db),
            "--quiet",
            str(big),
            str(pipe),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with open(pipe, "w") as writer:  # opens once the ingest opens the pipe to read it
        writer.write(rec("p1") + "\n")
        writer.flush()
        proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err
    assert "ingest interrupted: the files stored before it are kept" in err
    assert "Traceback" not in err and out == ""
    with open_store(db, read_only=True) as store:
        runs = store.frame("runs")
        assert store.count("observations") == 5_000
        assert store.frame("ingested_files").get_column("path").to_list() == [str(big)]
    assert runs.get_column("status").to_list() == ["interrupted"]
    assert runs.get_column("finished_at").is_not_null().all()
    assert '"ingested"' in runs.get_column("stats")[0]  # the big file's outcome
    again = ingest_paths(db, [big])
    assert again.files[0].status == "already ingested"


def test_ingest_reads_ndjson_on_stdin(tmp_path: Path) -> None:
    import subprocess
    import sys

    db = tmp_path / "audit.duckdb"
    body = rec("s1") + "\n{broken\n" + rec("s2") + "\n"

    def run(*paths: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "asg_audit", "ingest", "--db", str(db), "--quiet", *paths],
            input=body,
            capture_output=True,
            text=True,
            timeout=60,
        )

    first = run("-")
    assert first.returncode == 0, first.stderr
    assert "  ingested          <stdin> (3 records, 2 accepted, 1 rejected)" in first.stdout
    with open_store(db, read_only=True) as store:
        rejects = store.frame("rejects")
        observations = store.frame("observations").sort("obs_id")  # stored in any order
    assert rejects.select("origin", "origin_line", "reason").rows() == [
        ("<stdin>", 2, "invalid_json")
    ]
    assert observations.get_column("origin").to_list() == ["<stdin>"] * 2
    assert observations.get_column("origin_line").to_list() == [1, 3]
    # the same content again is known by its hash; `-` mixes with files
    (tmp_path / "more.jsonl").write_text(rec("s3") + "\n")
    again = run("-", str(tmp_path / "more.jsonl"))
    assert again.returncode == 0, again.stderr
    assert "  already ingested  <stdin>\n" in again.stdout
    assert f"  ingested          {tmp_path / 'more.jsonl'} (1 records" in again.stdout


def test_progress_on_a_terminal_is_one_bar_over_all_files(tmp_path: Path) -> None:
    import os
    import pty
    import re
    import select
    import subprocess
    import sys

    for i in range(3):
        (tmp_path / f"r{i}.jsonl").write_text(rec(f"t{i}") + "\n")
    (tmp_path / "big.jsonl").write_text("".join(rec(f"b{i}") + "\n" for i in range(4_000)))
    total_mb = sum(p.stat().st_size for p in tmp_path.glob("*.jsonl")) / 1e6
    main, child = pty.openpty()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "asg_audit",
            "ingest",
            "--db",
            str(tmp_path / "audit.duckdb"),
            str(tmp_path),
        ],
        stdin=child,
        stdout=child,
        stderr=child,
        env={**os.environ, "COLUMNS": "160", "TERM": "xterm"},
    )
    os.close(child)
    out = b""
    while select.select([main], [], [], 60)[0]:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    assert proc.wait(timeout=60) == 0
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.decode(errors="replace"))
    # one bar over the bytes of all the files: drawn empty at the start and full at the end,
    # naming the last file (the refreshes in between depend on timing)
    bar = "━" * 40
    assert f"ingest {bar} 0.0/{total_mb:.1f} MB " in text
    assert f"file 4/4 r2.jsonl {bar} {total_mb:.1f}/{total_mb:.1f} MB " in text
    assert "  ingested          " in text and "records read             4,003" in text
