"""The report says what each check's findings prove, and shows differences of sats exactly.

Defects (financial auditor): `report.md`, `index.html` and `summary.json` dropped the `proves`
value of each finding (`billing.vs_results` -> `aggregate only`), and a difference of 2^63 - 1
sats read `9,223,372,036,854,775,808` (report.md) and `9.223372036854776e+18` (summary.json),
off by one sat from the message, because the difference was held as a float everywhere.
"""

from __future__ import annotations

import dataclasses
import html
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import pytest
from _analyses_frames import result, results_frame
from _browser import chromium
from _report_world import build_store

from asg_audit.audit import Audit, analyze
from asg_audit.checks import CheckContext, run_checks
from asg_audit.config import AuditConfig
from asg_audit.migrations import MIGRATIONS
from asg_audit.report import render
from asg_audit.store import SCHEMA_VERSION, open_store

INT64_MAX = 2**63 - 1
MONTH = "2099-01"  # a month without results: the per-task sum is 0, the difference the bill
_FETCHED = datetime(2099, 2, 1, tzinfo=UTC)


def _bill(db: Path, month: str, total: int) -> None:
    """Store a usage answer billing `total` sats for no task in `month`, consistent in itself
    (payouts + fee, daily rows): a month without results, so billing.vs_results reports the
    whole bill as the difference."""
    body = {
        "customer_id": "cus_1",
        "month": month,
        "tier": "sandbox",
        "tasks_settled": 0,
        "total_cost_sats": total,
        "total_cost_usd_estimate": 1.0,
        "worker_payouts_sats": total,
        "platform_fee_sats": 0,
        "daily_breakdown": [{"date": f"{month}-01", "tasks": 0, "cost_sats": total}],
    }
    with open_store(db) as store:
        store.con.execute(
            "INSERT INTO billing_usage (month, customer_id, tier, tasks_settled, total_cost_sats,"
            " total_cost_usd_estimate, worker_payouts_sats, platform_fee_sats, daily_breakdown,"
            " raw, fetched_at) VALUES (?, 'cus_1', 'sandbox', 0, ?, 1.0, ?, 0,"
            " [{'date': ?::DATE, 'tasks': 0, 'cost_sats': ?}], ?, ?)",
            [month, total, total, f"{month}-01", total, json.dumps(body), _FETCHED],
        )


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("g4")
    db, now = build_store(folder)
    _bill(db, MONTH, INT64_MAX)
    audit = analyze(db, as_of=now, config=AuditConfig())
    out = render(audit, folder / "reports", run_id="20990201T000000Z-g4g4g4")
    return {
        "audit": audit,
        "folder": folder,
        "md": out.paths["md"].read_text(encoding="utf-8"),
        "html_path": out.paths["html"],
        "summary": json.loads(out.paths["json"].read_text(encoding="utf-8")),
    }


def _md_section(md: str, check_id: str) -> str:
    start = md.index(f"\n### {check_id.replace('_', chr(92) + '_')} (")
    end = md.find("\n### ", start + 1)
    end2 = md.find("\n## ", start + 1)
    return md[start : min(e for e in (end, end2) if e != -1)]


def test_findings_hold_the_exact_difference(report: dict[str, Any]) -> None:
    findings = report["audit"].findings
    row = findings.filter(pl.col("check_id") == "billing.vs_results").row(0, named=True)
    assert row["entity_id"] == MONTH
    assert row["difference_exact"] == INT64_MAX
    assert row["proves"] == "aggregate only"
    assert str(INT64_MAX) in row["message"]


def test_markdown_shows_exact_difference_and_proves(report: dict[str, Any]) -> None:
    md = report["md"]
    section = _md_section(md, "billing.vs_results")
    assert "Proves: **aggregate only**" in section
    row = next(line for line in section.splitlines() if f"month: {MONTH}" in line)
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[4] == f"{INT64_MAX:,}"  # 9,223,372,036,854,775,807, as the message says
    assert f"{INT64_MAX + 1:,}" not in md


def test_markdown_states_proves_for_every_check_that_has_one(
    report: dict[str, Any],
) -> None:
    md = report["md"]
    checks = [c for c in report["summary"]["checks"] if c["proves"]]
    assert checks  # billing.vs_results at least
    for check in checks:
        section = _md_section(md, check["check_id"])
        for what in check["proves"]:
            assert f"**{what}**" in section, check["check_id"]
    # the methodology says what a chain check cannot prove
    method = md[md.index("## Methodology") :]
    assert "aggregate only" in method and "change scripts" in method


def test_summary_json_exact_difference_and_proves(report: dict[str, Any]) -> None:
    doc = report["summary"]
    assert doc["schema_version"] == 2  # findings[].difference changed from float to exact int
    (found,) = [f for f in doc["findings"] if f["check_id"] == "billing.vs_results"]
    assert found["difference"] == INT64_MAX and isinstance(found["difference"], int)
    assert found["proves"] == "aggregate only"
    (check,) = [c for c in doc["checks"] if c["check_id"] == "billing.vs_results"]
    assert check["proves"] == {"aggregate only": 1}
    text = (report["html_path"].parent / "summary.json").read_text(encoding="utf-8")
    assert "9.223372036854776e+18" not in text and str(INT64_MAX) in text
    # a fractional difference is still a float; one with no difference still null
    others = [f for f in doc["findings"] if f["check_id"] != "billing.vs_results"]
    assert all(f["difference"] is None or isinstance(f["difference"], int | float) for f in others)


@pytest.mark.browser
def test_html_dom_shows_proves_and_exact_difference(report: dict[str, Any], tmp_path: Path) -> None:
    dom = chromium(report["html_path"], tmp_path / "profile", "--dump-dom").stdout
    sections = dict(
        re.findall(
            r'<section class="check" id="check-\d+" data-check="([^"]+)">(.*?)</section>', dom, re.S
        )
    )
    vs = sections["billing.vs_results"]
    text = html.unescape(re.sub(r"<[^>]+>", "", vs))
    assert "Proves: aggregate only" in text
    assert f"{INT64_MAX:,}" in text and f"{INT64_MAX + 1:,}" not in dom
    for check in report["summary"]["checks"]:
        body = html.unescape(re.sub(r"<[^>]+>", "", sections[check["check_id"]]))
        for what in check["proves"]:
            assert f"Proves: {what}" in body or f"{what} (" in body, check["check_id"]


def test_mixed_proves_get_a_column_per_finding(report: dict[str, Any]) -> None:
    """A check whose findings prove different things (chain.block_time: exact for one task's
    txid, aggregate only for a shared one) says so per finding, in both formats."""
    audit: Audit = report["audit"]
    base = audit.findings.filter(pl.col("check_id") == "billing.vs_results")
    mixed = pl.concat(
        [
            base.with_columns(
                pl.lit("chain.block_time").alias("check_id"),
                pl.lit("txid").alias("entity_type"),
                pl.lit(f"{i:064x}").alias("entity_id"),
                pl.lit(p).alias("proves"),
            )
            for i, p in ((1, "exact"), (2, "aggregate only"), (3, "exact"))
        ]
    )
    changed = dataclasses.replace(audit, findings=pl.concat([audit.findings, mixed]))
    out = render(changed, report["folder"] / "mixed", run_id="20990201T000000Z-g4mixd")
    section = _md_section(out.paths["md"].read_text(encoding="utf-8"), "chain.block_time")
    assert "Proves: **exact** (2 findings) · **aggregate only** (1 finding)" in section
    header = next(line for line in section.splitlines() if line.startswith("| Severity"))
    assert "| Difference \\(s\\) | Proves | Message |" in header  # chain.block_time: seconds
    row = next(line for line in section.splitlines() if f"{2:064x}" in line)
    assert "| aggregate only |" in row
    page = out.paths["html"].read_text(encoding="utf-8")
    part = page[page.index('data-check="chain.block_time"') :]
    part = part[: part.index("</section>")]
    assert '<th scope="col">Proves</th>' in part
    # a check proving one thing has no extra column
    single = page[page.index('data-check="billing.vs_results"') :]
    assert '<th scope="col">Proves</th>' not in single[: single.index("</section>")]


# ---- the store: findings keep every digit --------------------------------------------------


def test_store_round_trips_the_exact_difference(report: dict[str, Any]) -> None:
    db = report["folder"] / "roundtrip.duckdb"
    findings = report["audit"].findings
    with open_store(db) as store:
        store.write_findings("run-1", findings)
        back = store.read_findings("run-1")
        doubles = store.con.execute(
            "SELECT difference_exact FROM findings WHERE check_id = 'billing.vs_results'"
        ).fetchall()
    assert back.height == findings.height
    row = back.filter(pl.col("check_id") == "billing.vs_results").row(0, named=True)
    assert row["difference_exact"] == INT64_MAX and row["proves"] == "aggregate only"
    assert [int(d) for (d,) in doubles] == [INT64_MAX]


def test_run_checks_keeps_whole_differences_exact_only(report: dict[str, Any]) -> None:
    usage = pl.DataFrame(
        {
            "month": [MONTH],
            "tasks_settled": [1],
            "total_cost_sats": [INT64_MAX],
            "worker_payouts_sats": [INT64_MAX],
            "platform_fee_sats": [0],
        }
    )
    import asg_audit.billing  # noqa: F401  (registers the checks)

    tables = {"results": results_frame([result("t1")]), "billing_usage": usage}
    ctx = CheckContext(tables, config=AuditConfig(), as_of=_FETCHED)
    found = run_checks(ctx, only=["billing.vs_results"])
    assert found["difference_exact"].to_list() == [INT64_MAX]
    assert found["difference"].to_list() == [float(INT64_MAX)]  # the float column unchanged
    # in the simulated world: whole differences (counts, sats) exact, fractional ones null
    findings = report["audit"].findings.filter(pl.col("difference").is_not_null())
    whole = findings.filter(pl.col("difference_exact").is_not_null())
    fraction = findings.filter(pl.col("difference_exact").is_null())
    assert whole.height and fraction.height
    assert (whole["difference_exact"].cast(pl.Float64) == whole["difference"]).all()
    assert "confidence.neither_formula" in fraction["check_id"].to_list()


def test_migration_adds_exact_difference_to_an_older_store(tmp_path: Path) -> None:
    db = tmp_path / "old.duckdb"
    con = duckdb.connect(str(db))
    con.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR NOT NULL,"
        " applied_at TIMESTAMPTZ NOT NULL)"
    )
    # the migrations before the one that adds the column (later ones may follow it)
    names = [m.name for m in MIGRATIONS]
    older = MIGRATIONS[: names.index("findings: exact integer differences")]
    for number, migration in enumerate(older, start=1):
        for statement in migration.statements:
            con.execute(statement)
        con.execute("INSERT INTO schema_migrations VALUES (?, ?, now())", [number, migration.name])
    con.execute(
        "INSERT INTO findings (run_id, check_id, severity, entity_type, entity_id, difference,"
        " proves) VALUES ('old', 'billing.vs_results', 'fail', 'month', ?, ?, 'aggregate only')",
        [MONTH, float(INT64_MAX)],
    )
    con.close()
    with open_store(db) as store:
        assert store.schema_version() == SCHEMA_VERSION == len(MIGRATIONS)
        old = store.read_findings("old").row(0, named=True)
        # the old row's double may be rounded: no exact figure is made up from it
        assert old["difference_exact"] is None and old["difference"] == float(INT64_MAX)
        frame = pl.DataFrame(
            {"check_id": ["billing.vs_results"], "severity": ["fail"], "difference": [1.0]}
        ).with_columns(pl.lit(INT64_MAX, dtype=pl.Int128).alias("difference_exact"))
        full = frame.select(
            pl.col("check_id"),
            pl.col("severity"),
            *[pl.lit(None, dtype=pl.String).alias(c) for c in ("entity_type", "entity_id")],
            *[pl.lit(None, dtype=pl.String).alias(c) for c in ("expected", "actual")],
            pl.col("difference"),
            *[pl.lit(None, dtype=pl.String).alias(c) for c in ("proves", "message")],
            pl.col("difference_exact"),
        )
        store.write_findings("new", full)
        assert store.read_findings("new")["difference_exact"].to_list() == [INT64_MAX]
