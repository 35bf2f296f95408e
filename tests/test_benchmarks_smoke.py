"""Tiny runs of the benchmarks: each script works and prints its figures.

It is not a timed test: the figures of a 3,000-record run say nothing about the targets.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).parents[1]


def test_ingest_benchmark_smoke_prints_its_figures(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "ingest.py"),
            "--records",
            "3000",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    assert re.search(r"\(a\) asg-audit ingest .* [\d,]+\n", out)
    assert re.search(r"\(b\) bare DuckDB read_json .* [\d,]+\n", out)
    assert re.search(r"\(c\) json.loads \+ executemany \(3,000 prefix\)", out)
    assert re.search(r"\(a\)/\(b\) = \d+\.\d\d", out) and re.search(r"\(a\)/\(c\) = \d+x", out)
    assert re.search(r"\(d\) one typed parse into observations \+ results .* [\d,]+\n", out)
    assert re.search(r"\(d\)/\(b\) = \d+\.\d\d  \(the best \(a\)/\(b\)", out)
    assert re.search(r"peak RSS of \(a\) = \d+\.\d\d GiB", out)
    assert (tmp_path / "ingest-3000.jsonl").stat().st_size > 0


def test_small_files_benchmark_smoke_prints_both_times_and_the_ratio() -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "ingest_small_files.py"),
            "--files",
            "30",
            "--records",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    assert "ingest of 30 NDJSON files of 3 record(s) (90 records)" in out
    assert re.search(r"grouped commits \(asg-audit ingest\) +\d+\.\d\d +[\d,]+\n", out)
    assert re.search(r"one transaction per file \(baseline\) +\d+\.\d\d +[\d,]+\n", out)
    assert re.search(r"speed-up = \d+\.\dx", out)
