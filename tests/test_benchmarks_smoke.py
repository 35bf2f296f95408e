"""A tiny run of the ingest benchmark: the script works and prints its three figures.

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
        [sys.executable, str(REPO / "benchmarks" / "ingest.py"), "--records", "3000",
         "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=300, check=True,
    ).stdout
    assert re.search(r"\(a\) asg-audit ingest .* [\d,]+\n", out)
    assert re.search(r"\(b\) bare DuckDB read_json .* [\d,]+\n", out)
    assert re.search(r"\(c\) json.loads \+ executemany \(3,000 prefix\)", out)
    assert re.search(r"\(a\)/\(b\) = \d+\.\d\d", out) and re.search(r"\(a\)/\(c\) = \d+x", out)
    assert re.search(r"peak RSS of \(a\) = \d+\.\d\d GiB", out)
    assert (tmp_path / "ingest-3000.jsonl").stat().st_size > 0
