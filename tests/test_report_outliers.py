"""One task with a latency of years, or a date far from the others, must not hang the report.

The latency histogram used to allocate one 5-second bin for every 5 seconds up to the longest
latency (a settlement ten years late: 63 million bins, minutes and gigabytes; one in 9999:
`Unable to allocate 375 GiB`). Dates near year 1 or 9999 stretched the per-day axes past what
matplotlib can draw. Now the cost follows the number of tasks and every task stays in a bin.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
from _analyses_frames import T0, result, results_frame
from _records import settled_record

from asg_audit.audit import analyze, analyze_frames
from asg_audit.config import AuditConfig
from asg_audit.ingest_files import ingest_paths
from asg_audit.report.charts import MAX_HISTOGRAM_BINS, _histogram_bins, draw_charts

CLI = [sys.executable, "-m", "asg_audit"]
TIME_LIMIT_S = 120.0  # the report takes a few seconds; the old code ran for over 10 minutes
RSS_LIMIT_KB = 3 * 1024 * 1024  # the report needs under 1 GB; the old code passed 12 GB
NORMAL_TASKS = 40
CENTURY = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2099, 12, 30, tzinfo=UTC))


def _z(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _settled(task_id: str, created: datetime, settled: datetime) -> dict[str, object]:
    return settled_record(task_id, created_at=_z(created), settled_at=_z(settled))


def _export(path: Path) -> Path:
    """Write NORMAL_TASKS ordinary settlements (10 s to 3 min) and the outliers."""
    records = [
        _settled(f"n{i}", T0 + timedelta(minutes=i), T0 + timedelta(minutes=i, seconds=10 + 4 * i))
        for i in range(NORMAL_TASKS)
    ]
    records += [
        _settled("ten_years", T0, T0.replace(year=2036)),  # the adversarial report's case
        _settled("century", *CENTURY),
        _settled(
            "early",
            datetime(2000, 1, 1, 0, 0, 1, tzinfo=UTC),
            datetime(2000, 1, 1, 0, 1, tzinfo=UTC),
        ),
        _settled(
            "late", datetime(2099, 12, 1, tzinfo=UTC), datetime(2099, 12, 1, 0, 1, tzinfo=UTC)
        ),
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def _rss_kb(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return 0
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(found.group(1)) if found else 0


def _run_bounded(args: list[str], cwd: Path) -> tuple[int, float, int, str | None, str]:
    """Run the CLI; kill it past the time or memory limit. Return rc, seconds, peak KB, why
    it was killed (None if not) and its stderr."""
    err_path = cwd / "stderr.txt"
    with err_path.open("wb") as err:
        proc = subprocess.Popen(
            CLI + args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err, env=os.environ.copy()
        )
        start = time.monotonic()
        killed: str | None = None
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if killed is None:
                if _rss_kb(proc.pid) > RSS_LIMIT_KB:
                    killed = f"over {RSS_LIMIT_KB // 1024} MB of memory"
                elif time.monotonic() - start > TIME_LIMIT_S:
                    killed = f"over {TIME_LIMIT_S:g} s"
                if killed is not None:
                    proc.kill()
            time.sleep(0.1)
        elapsed = time.monotonic() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, elapsed, usage.ru_maxrss, killed, err_path.read_text(errors="replace")


def test_report_with_latencies_of_years_is_fast_small_and_counts_every_task(
    tmp_path: Path,
) -> None:
    db = tmp_path / "audit.duckdb"
    summary = ingest_paths(db, [_export(tmp_path / "export.jsonl")])
    assert summary.accepted == NORMAL_TASKS + 4, "the outliers are valid records"

    rc, seconds, peak_kb, killed, stderr = _run_bounded(
        ["report", "--db", str(db), "--out", str(tmp_path / "reports")], tmp_path
    )
    assert killed is None, f"report killed: {killed} ({seconds:.0f} s, peak {peak_kb} KB)"
    assert "Traceback" not in stderr, stderr
    assert rc in (0, 1), stderr  # 1 = findings (the outliers are findings); never a crash
    assert seconds < TIME_LIMIT_S and peak_kb < RSS_LIMIT_KB

    page = (tmp_path / "reports" / "latest" / "index.html").read_text(encoding="utf-8")
    assert (tmp_path / "reports" / "latest" / "latency_distribution.png").stat().st_size > 0
    alt = re.search(r'alt="(Histogram and ECDF of settlement latency[^"]*)"', page)
    assert alt, "the latency chart is in the report"
    assert f"for {NORMAL_TASKS + 4} settled tasks" in alt.group(1)
    longest = (CENTURY[1] - CENTURY[0]).total_seconds()
    assert f"longest latency is {longest:,.1f} s ({longest / 86400:,.1f} d)" in alt.group(1)


def test_histogram_keeps_every_task_in_a_bounded_number_of_bins(tmp_path: Path) -> None:
    db = tmp_path / "audit.duckdb"
    ingest_paths(db, [_export(tmp_path / "export.jsonl")])
    audit = analyze(db, as_of=datetime(2100, 1, 1, tzinfo=UTC))
    latencies = (
        audit["latency_histogram"]
        .select(pl.col("lower_s").repeat_by("count").explode())
        .to_series()
        .to_numpy()
    )
    counts, edges, log_spaced = _histogram_bins(audit["latency_histogram"])
    assert log_spaced and len(counts) <= MAX_HISTOGRAM_BINS
    assert counts.sum() == NORMAL_TASKS + 4 == len(latencies)
    # each task is in the bin that holds its latency, the slowest ones included
    assert np.array_equal(np.histogram(latencies, edges)[0], counts)
    assert edges[0] <= 10 and edges[-1] > (CENTURY[1] - CENTURY[0]).total_seconds()
    assert np.all(np.diff(edges) > 0)
    charts = draw_charts(audit.frames, slo_seconds=60)
    assert "latency_distribution" in charts and "spend" in charts and "survival" in charts


def test_histogram_of_ordinary_latencies_is_unchanged_five_second_bins() -> None:
    hist = pl.DataFrame(
        {"lower_s": [10.0, 25.0, 180.0], "upper_s": [15.0, 30.0, 185.0], "count": [3, 1, 2]}
    )
    counts, edges, log_spaced = _histogram_bins(hist)
    assert not log_spaced
    assert np.allclose(np.diff(edges), 5.0) and edges[0] == 10.0 and edges[-1] == 185.0
    assert counts.tolist()[:4] == [3, 0, 0, 1] and counts[-1] == 2 and counts.sum() == 6


def test_charts_draw_a_settlement_in_9999_and_a_task_from_year_1() -> None:
    end_of_time = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    rows = [result(f"n{i}", settled_at=T0 + timedelta(seconds=20 + i)) for i in range(20)]
    rows += [
        result("forever", settled_at=end_of_time),  # 375 GiB of bins in the old code
        result(
            "last_day",
            created_at=end_of_time - timedelta(minutes=1),
            settled_at=end_of_time,
        ),
        result(
            "first_day",
            created_at=datetime(1, 1, 1, tzinfo=UTC),
            settled_at=datetime(1, 1, 1, 0, 0, 30, tzinfo=UTC),
        ),
        result(
            "old_pending",
            status="pending",
            settled_at=None,
            created_at=datetime(1, 1, 2, tzinfo=UTC),
        ),
    ]
    audit = analyze_frames(results_frame(rows), config=AuditConfig(), as_of=end_of_time)
    started = time.monotonic()
    charts = draw_charts(audit.frames, slo_seconds=60)
    assert time.monotonic() - started < 60
    for name in ("latency_distribution", "latency_over_time", "survival", "spend"):
        assert name in charts and charts[name].png.startswith(b"\x89PNG"), name
    assert "from 0001-01-01 to 9999-12-31" in charts["spend"].alt
    assert "for 23 settled tasks" in charts["latency_distribution"].alt
    counts, _, _ = _histogram_bins(audit["latency_histogram"])
    assert counts.sum() == 23 and len(counts) <= MAX_HISTOGRAM_BINS
