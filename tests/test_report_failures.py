"""`report` on edge-case stores, and a report that cannot be written.

A store where every task agrees (rate 1.0) once crashed the agreement chart (a Wilson bound
rounded below the rate); a failed report left a half-written run folder. Real stores, the real
command in a subprocess where the exit code matters.
"""

from __future__ import annotations

import json
import resource
import signal
import subprocess
from pathlib import Path

import pytest
from _hardening_procs import asg_audit, clean_env

from asg_audit.audit import analyze
from asg_audit.ingest_files import ingest_paths
from asg_audit.report import draw_charts, render
from asg_audit.store import open_store

_LINE = (
    '{{"task_id":"w{i}","status":"settled","consensus_label":"cat","confidence":1.0,'
    '"worker_count":3,"agreement_count":3,"bsv_txid":"{i:064x}",'
    '"created_at":"2026-04-08T21:00:00Z","settled_at":"2026-04-08T21:00:47Z","cost_sats":975}}\n'
)


def _agreeing_store(tmp_path: Path, tasks: int) -> Path:
    """Return a store of `tasks` settled tasks, each agreed 3 of 3."""
    export = tmp_path / f"agree{tasks}.ndjson"
    export.write_text("".join(_LINE.format(i=i) for i in range(1, tasks + 1)))
    db = tmp_path / f"agree{tasks}.duckdb"
    ingest_paths(db, [export], progress=False)
    return db


def _report(db: Path, out: Path, *extra: str, preexec_fn=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        asg_audit("report", "--db", str(db), "--out", str(out), *extra),
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=120,
        preexec_fn=preexec_fn,
    )


def _runs(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name not in ("latest", "LATEST"))


@pytest.mark.parametrize("tasks", [9, 16])  # 27 and 48 labels: bounds rounded below 1.0
def test_report_all_tasks_agreeing_is_written_with_bounds_around_the_rate(
    tmp_path: Path, tasks: int
) -> None:
    db = _agreeing_store(tmp_path, tasks)
    done = _report(db, tmp_path / "reports")
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((tmp_path / "reports" / "latest" / "summary.json").read_text())
    headline = summary["headline"]
    assert headline["agreement_rate"] == 1.0
    assert headline["agreement_wilson_low"] <= 1.0 <= headline["agreement_wilson_high"]
    assert "agreement" in summary["charts"]


def test_report_agreement_chart_draws_bounds_that_miss_the_rate(tmp_path: Path) -> None:
    # Frames from elsewhere (an older summary, a notebook) may carry bounds that exclude the
    # rate by a rounding error: the chart draws them as a zero-length bar, it does not fail.
    audit = analyze(_agreeing_store(tmp_path, 9))
    frames = dict(audit.frames)
    for name in ("agreement_by_label", "agreement_by_threshold"):
        frames[name] = frames[name].with_columns(wilson_high=0.9999999999999999)
    assert "agreement" in draw_charts(frames, slo_seconds=60.0)


def _full_disk_at(limit: int):
    def apply() -> None:
        # Files may not grow past `limit` bytes; with SIGXFSZ ignored, a write fails with EFBIG
        # as on a full disk.
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    return apply


def test_report_that_cannot_be_written_leaves_no_folder_and_keeps_latest(tmp_path: Path) -> None:
    db = _agreeing_store(tmp_path, 9)
    out = tmp_path / "reports"
    assert _report(db, out).returncode == 0
    good = (out / "LATEST").read_text().strip()
    before = _runs(out)

    done = _report(db, out, preexec_fn=_full_disk_at(32 * 1024))  # index.html is larger

    assert done.returncode == 3, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("asg-audit: error:") and done.stderr.count("\n") == 1
    assert _runs(out) == before  # no half-written run folder, no temporary folder left
    assert (out / "LATEST").read_text().strip() == good
    assert (out / "latest").resolve() == (out / good).resolve()
    assert (out / "latest" / "summary.json").is_file()


def test_report_into_a_path_under_a_file_is_a_usage_error(tmp_path: Path) -> None:
    db = _agreeing_store(tmp_path, 9)
    (tmp_path / "afile").write_text("x")
    done = _report(db, tmp_path / "afile" / "reports")
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.startswith("asg-audit: error:") and "Traceback" not in done.stderr


def test_report_empty_store_has_no_best_cost_model(tmp_path: Path) -> None:
    db = tmp_path / "empty.duckdb"
    with open_store(db):
        pass
    report = render(analyze(db), tmp_path / "reports", formats="html,md,json")
    assert report.summary["headline"]["best_cost_model"] is None
    html = (report.folder / "index.html").read_text()
    md = (report.folder / "report.md").read_text()
    assert "sats per agreeing worker" not in html.split('id="costs"')[1].split("</section>")[0]
    section = md.split("## Costs and payments")[1].split("\n## ")[0]
    assert "sats per agreeing worker" not in section
    assert "No data" in section
