"""The command line's output edges: a reader that goes away, bad counts, names with newlines,
and options checked before the work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from asg_audit.errors import EXIT_BROKEN_PIPE, EXIT_USAGE
from asg_audit.ingest_files import ingest_paths
from asg_audit.model import printable


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asg_audit", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def export(path: Path, *task_ids: str) -> Path:
    path.write_text(
        "".join(json.dumps({"task_id": t, "status": "in_progress"}) + "\n" for t in task_ids)
    )
    return path


def cli_to_no_reader(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`asg-audit ARGS | head -0`: nobody reads the output."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run(
            [sys.executable, "-m", "asg_audit", *args],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            cwd=cwd,
        )
    finally:
        os.close(write)


def test_output_to_a_reader_that_went_away_ends_quietly(tmp_path: Path) -> None:
    db = tmp_path / "audit.duckdb"
    ingest_paths(db, [export(tmp_path / "a.jsonl", "t1")])
    proc = cli_to_no_reader("runs", "--db", str(db))
    assert proc.returncode == EXIT_BROKEN_PIPE
    assert proc.stderr == ""  # no traceback, no "Exception ignored" at exit


def test_runs_limit_must_be_positive_and_within_int64(tmp_path: Path) -> None:
    db = tmp_path / "audit.duckdb"
    ingest_paths(db, [export(tmp_path / "a.jsonl", "t1")])
    for bad, why in (
        ("-1", "must be at least 1, got -1"),
        ("x", "expected a whole number, got 'x'"),
        (str(10**20), f"must be at most {2**63 - 1:,}, got {10**20}"),
    ):
        proc = cli("runs", "--db", str(db), "--limit", bad)
        assert proc.returncode == EXIT_USAGE and f"argument --limit: {why}" in proc.stderr
        assert "Traceback" not in proc.stderr
    assert cli("runs", "--db", str(db), "--limit", "1").returncode == 0


def test_file_names_with_newlines_stay_on_their_line(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    export(folder / "a\nb.jsonl", "t1")
    proc = cli("ingest", "--quiet", "--db", str(tmp_path / "audit.duckdb"), str(folder))
    assert proc.returncode == 0, proc.stderr
    assert f"  ingested          {folder}/a\\x0ab.jsonl (1 records" in proc.stdout
    assert printable("a\nb\tc", one_line=True) == "a\\x0ab\\x09c"
    assert printable("a\nb\tc") == "a\nb\tc"  # messages of several lines keep them


def test_report_compare_is_checked_before_the_analyses(tmp_path: Path) -> None:
    # The store does not exist: an analysis would fail on it; the bad --compare comes first.
    proc = cli(
        "report",
        "--db",
        str(tmp_path / "missing.duckdb"),
        "--out",
        str(tmp_path / "reports"),
        "--compare",
        "nosuchrun",
    )
    assert proc.returncode == EXIT_USAGE
    assert "--compare: no report 'nosuchrun'" in proc.stderr


def test_audit_whose_reader_went_away_stops_quietly_and_says_so_in_runs(tmp_path: Path) -> None:
    # `asg-audit audit | head -1`: the audit used to record itself failed (BrokenPipeError)
    # and exit 3 with an error line
    db = tmp_path / "audit.duckdb"
    ingest_paths(db, [export(tmp_path / "a.jsonl", "t1")])
    proc = cli_to_no_reader("audit", "--db", str(db), cwd=tmp_path)
    assert proc.returncode == EXIT_BROKEN_PIPE, proc.stderr
    assert "Traceback" not in proc.stderr and "error" not in proc.stderr, proc.stderr
    runs = cli("runs", "--db", str(db)).stdout
    audit_line = next(line for line in runs.splitlines() if " audit " in line)
    assert "interrupted" in audit_line and "the reader of the output went away" in audit_line


def test_a_report_folder_named_like_an_option_is_printed_with_its_dot_slash(
    tmp_path: Path,
) -> None:
    # `--out ./-dash` was printed `-dash/...`: pasted into another command, an option
    db = tmp_path / "audit.duckdb"
    ingest_paths(db, [export(tmp_path / "a.jsonl", "t1")])
    report = cli("report", "--db", str(db), "--out", "./-dash", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    lines = report.stdout.splitlines()
    assert lines and all(line.startswith("./-dash/") for line in lines), lines
    assert (tmp_path / lines[0]).is_file()
    audit = cli("audit", "--db", str(db), "--out", "./-dash", cwd=tmp_path)
    assert audit.stdout.splitlines()[-1].startswith("report: ./-dash/"), audit.stdout
