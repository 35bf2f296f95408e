"""The findings table prints the exact difference, as the headline writes figures.

The Difference column used `.4g`, so a cost difference of 1,233,592 sats read `1.234e+06`
(408 sats off) while summary.json held 1233592. The real command on a real store, in a
subprocess; then the formatter itself on fractions.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from _hardening_procs import asg_audit, clean_env
from _records import settled_line

from asg_audit.ingest_files import ingest_paths
from asg_audit.report.content import format_value


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("fix_g_difference")
    export = tmp / "r.ndjson"
    # 3 of 3 workers, default model (325 sats per worker): 975 expected, 1,233,592 too much
    export.write_text(settled_line("tsk_big1", cost_sats=1_234_567) + "\n", encoding="utf-8")
    db = tmp / "s.duckdb"
    ingest_paths(db, [export], progress=False)
    out = tmp / "reports"
    proc = subprocess.run(
        asg_audit("report", "--db", str(db), "--out", str(out), "--format", "html,md,json"),
        capture_output=True, text=True, env=clean_env(), timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return out / (out / "LATEST").read_text(encoding="utf-8").strip()


def _mismatch(run: Path) -> dict[str, object]:
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    (row,) = [f for f in summary["findings"] if f["check_id"] == "cost.mismatch"]
    return dict(row)


def test_summary_json_keeps_the_raw_difference(run: Path) -> None:
    assert _mismatch(run)["difference"] == 1_233_592


def test_markdown_findings_table_shows_the_exact_difference(run: Path) -> None:
    (line,) = [x for x in (run / "report.md").read_text().splitlines() if "tsk\\_big1 |" in x]
    cells = [c.strip() for c in line.strip("|").split(" | ")]
    assert cells[4] == "1,233,592", line
    assert "e+" not in line and "e\\+" not in line


def test_html_findings_table_shows_the_exact_difference(run: Path) -> None:
    html = (run / "index.html").read_text(encoding="utf-8")
    assert '<td class="num">1,233,592</td>' in html
    assert "1.234e+06" not in html


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1_233_592.0, "1,233,592"),
        (-6_109_333.0, "-6,109,333"),
        (6_109_333.25, "6,109,333.25"),
        (0.5, "0.5"),
        (1 / 3, "0.3333"),
        (-0.2, "-0.2"),
        (0.0001234567, "0.0001235"),
        (0.99999, "1.0000"),  # a fraction never reads as the whole number 1
        (1e20, "100,000,000,000,000,000,000"),
    ],
)
def test_plain_figures_are_never_rounded_to_an_exponent(value: float, text: str) -> None:
    assert format_value(value) == text
