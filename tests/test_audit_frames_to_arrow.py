"""Every frame of an Audit goes to Arrow, pandas and DuckDB (the defect: `_pli128`).

Sums of sats are exact past int64 (test_sats_sums_past_int64.py), but an Int128 column cannot
leave polars: `to_arrow()`, `to_pandas()` and a DuckDB query over the frame failed with
`ArrowInvalid: Invalid or unsupported format string: '_pli128'`. The frames a user gets from an
Audit hold those sums as Decimal(38, 0) instead: exact, and Arrow's decimal128(38, 0).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import duckdb
import polars as pl
import pytest
from _capped import CAP, TRUE_TOTAL, N, capped_export
from _chain_sim import scenario

from asg_audit.audit import Audit, analyze
from asg_audit.billing import fetch_billing
from asg_audit.chain import verify_chain
from asg_audit.ingest_files import ingest_paths

SUM_COLUMNS = {
    "unknown_costs": ["known_total_sats"],
    "shared_txids": ["total_cost_sats"],
    "spend_by_day": ["cost_sats"],
    "spend_by_month": ["cost_sats"],
}


def _every_frame_converts(audit: Audit) -> list[str]:
    """Convert every frame of `audit` (and its findings) to Arrow and pandas, and query it in
    DuckDB; return the names checked."""
    frames = {**audit.frames, "findings": audit.findings}
    assert audit.names == [n for n in frames if n != "findings"]
    for name, frame in frames.items():
        table = frame.to_arrow()  # raised ArrowInvalid '_pli128' on an Int128 column
        assert table.num_rows == frame.height, name
        assert table.column_names == frame.columns, name
        pdf = frame.to_pandas()
        assert len(pdf) == frame.height and list(pdf.columns) == frame.columns, name
        con = duckdb.connect()
        try:
            con.register("f", table)
            assert con.execute("SELECT count(*) FROM f").fetchone() == (frame.height,), name
            # and DuckDB's own scan of the polars frame (replacement scan by variable name)
            got = con.execute("SELECT count(*) FROM frame").fetchone()
            assert got == (frame.height,), name
        finally:
            con.close()
    return list(frames)


def _sums_are_exact_decimals(audit: Audit) -> None:
    for name, columns in SUM_COLUMNS.items():
        for column in columns:
            assert audit[name].schema[column] == pl.Decimal(38, 0), (name, column)
            pdf = audit[name].to_pandas()
            # pandas gets Python Decimals: exact, where a float64 would round
            assert all(isinstance(v, Decimal) for v in pdf[column].dropna()), (name, column)


# ---- a realistic store: the simulator's world, with chain and billing data --------------


@pytest.fixture(scope="module")
def sim_audits(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Audit, Audit]]:
    with scenario(tmp_path_factory.mktemp("s2"), seed=5, tasks=500) as sc:
        verify_chain(sc.db, sc.config)
        fetch_billing(sc.db, sc.config)
        whole = analyze(sc.db, config=sc.config)
        # under a window: the billing_window frame, and txids counted over the whole store
        first = whole["spend_by_day"]["period_start"].min()
        assert isinstance(first, datetime)
        windowed = analyze(sc.db, config=sc.config, since=first + timedelta(days=1))
        yield whole, windowed


def test_fix11_S2_every_frame_of_a_simulated_audit_converts(
    sim_audits: tuple[Audit, Audit],
) -> None:
    whole, windowed = sim_audits
    names = set(_every_frame_converts(whole)) | set(_every_frame_converts(windowed))
    # the store's chain and billing frames are among them, and so are the sums of sats
    for name in ("chain_status", "chain_coverage", "billing_usage", "billing_window", *SUM_COLUMNS):
        assert name in names, name
    for audit in (whole, windowed):
        _sums_are_exact_decimals(audit)
        assert audit["shared_txids"].height > 0  # the world plants shared txids
        # the figures are unchanged: the spend per day adds up to the known spend
        spent = audit["spend_by_day"]["cost_sats"].sum()
        assert spent == audit["unknown_costs"]["known_total_sats"][0]
        assert spent == audit.summary()["known_cost_sats"]


def test_fix11_S2_summary_holds_plain_ints(sim_audits: tuple[Audit, Audit]) -> None:
    whole, _ = sim_audits
    s = whole.summary()
    assert type(s["known_cost_sats"]) is int
    json.dumps(s, allow_nan=False)  # plain JSON: no Decimal to refuse


# ---- 5,000 capped costs, past int64: exact, and still convertible ----------------------


@pytest.fixture(scope="module")
def capped_audit(tmp_path_factory: pytest.TempPathFactory) -> Audit:
    tmp = tmp_path_factory.mktemp("s2capped")
    # two pairs of tasks share a txid: a shared txid's total passes int64 too
    records = capped_export(tmp / "r.ndjson", shared_pairs=2)
    db = tmp / "s.duckdb"
    ingest_paths(db, [records])
    return analyze(db, as_of=datetime(2026, 10, 2, tzinfo=UTC))


def test_fix11_S2_capped_costs_audit_frames_convert_and_stay_exact(capped_audit: Audit) -> None:
    audit = capped_audit
    _every_frame_converts(audit)
    _sums_are_exact_decimals(audit)
    assert audit["unknown_costs"]["known_total_sats"].to_list() == [TRUE_TOTAL]
    assert audit["spend_by_day"]["cost_sats"].to_list() == [TRUE_TOTAL]
    con = duckdb.connect()
    con.register("spend", audit["spend_by_month"])  # the polars frame itself
    assert con.sql("SELECT cost_sats FROM spend").fetchall() == [(Decimal(TRUE_TOTAL),)]
    con.close()
    assert audit["spend_by_month"]["cost_sats"].to_list() == [TRUE_TOTAL]
    assert audit["shared_txids"]["total_cost_sats"].to_list() == [2 * CAP, 2 * CAP]
    # exact through Arrow, pandas and DuckDB alike
    table = audit["spend_by_day"].to_arrow()
    assert table.column("cost_sats").to_pylist() == [Decimal(TRUE_TOTAL)]
    assert audit["spend_by_day"].to_pandas()["cost_sats"].tolist() == [Decimal(TRUE_TOTAL)]
    s = audit.summary()
    assert s["known_cost_sats"] == TRUE_TOTAL and type(s["known_cost_sats"]) is int
    assert json.loads(json.dumps(s))["known_cost_sats"] == TRUE_TOTAL


def test_fix11_S2_report_of_capped_costs_gives_json_integers(
    capped_audit: Audit, tmp_path: Path
) -> None:
    from asg_audit.report import render

    folder = render(capped_audit, tmp_path / "rep").folder
    summary = json.loads((Path(folder) / "summary.json").read_text())
    spent = summary["headline"]["spent_sats"]
    assert type(spent) is int and spent == TRUE_TOTAL  # never a string, never a float
    md = (Path(folder) / "report.md").read_text()
    assert f"| 2026-10 | {N:,} | {TRUE_TOTAL:,} sats |" in md
    assert (Path(folder) / "index.html").read_text().count(f"{TRUE_TOTAL:,} sats") >= 2
