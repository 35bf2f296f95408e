"""The per-day charts say their days are UTC (tester, R3 defect 5).

"Spend per day" and the p50/p95 latency per day had titles without a word of UTC, though the
days are UTC days (the tables say "(UTC months)"). Their titles, drawn in the PNG and given as
`Chart.title`, and their alt text now say "(UTC days)".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from _audit_job import result_lines

from asg_audit.audit import analyze
from asg_audit.ingest_files import ingest_paths
from asg_audit.report import charts
from asg_audit.store import open_store


def test_per_day_charts_say_utc_days(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "audit.duckdb"
    with open_store(db):
        pass
    export = tmp_path / "few.ndjson"
    export.write_text(result_lines(3), encoding="utf-8")
    ingest_paths(db, [export])
    audit = analyze(db)
    drawn: list[str] = []
    real_png = charts._png

    def png(fig: Any) -> bytes:
        drawn.extend(ax.get_title() for ax in fig.axes)
        return real_png(fig)

    monkeypatch.setattr(charts, "_png", png)
    out = charts.draw_charts(audit.frames, slo_seconds=audit.config.slo_seconds)
    assert out["spend"].title == "Spend per day (UTC days)"
    assert out["latency_over_time"].title == "p50/p95 per day (UTC days)"
    assert "Spend per day (known costs; UTC days)" in drawn
    assert "p50/p95 latency per day of creation (UTC days)" in drawn
    assert "(UTC days)" in out["spend"].alt and "(UTC days)" in out["latency_over_time"].alt
    # every per-day title says UTC
    assert all("UTC" in t for t in drawn if "per day" in t)
