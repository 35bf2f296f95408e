"""Chain cost checks on the simulator (tester M): change scripts, windows, equality wording.

One small world with two planted `chain_outputs_below_cost`, ingested into two stores:
`later` verified first without `[chain] change_scripts` and again with them (the setting added
to an existing store, as a user would), `early` verified with them from the start.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest

from asg_audit import analyze
from asg_audit.chain import reconciliation_findings, verify_chain
from asg_audit.checks import findings_with_kinds
from asg_audit.config import AuditConfig
from asg_audit.ingest_files import ingest_paths, track_file
from asg_audit.sim import World, WorldConfig, generate_world, run_simulator

KIND = "chain_outputs_below_cost"
COST_CHECKS = ("chain.outputs_below_cost", "chain.shared_outputs_below_cost")


@dataclass
class Stores:
    world: World
    later: Path
    early: Path
    plain: AuditConfig
    change: AuditConfig
    cli_stdout: str
    cli_code: int

    @property
    def as_of(self) -> datetime:
        return datetime.fromtimestamp(self.world.now_at, UTC)

    def planted(self) -> set[tuple[str, str]]:
        return {(a["kind"], a["entity_id"]) for a in self.world.anomalies if a["kind"] == KIND}


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stores]:
    tmp = tmp_path_factory.mktemp("fix_m_chain")
    world = generate_world(WorldConfig(seed=3, tasks=150, anomalies={KIND: 2}, batch_rate=0.3))
    subs = world.write_submissions(tmp / "submissions.ndjson")
    export = world.write_results_export(tmp / "results.ndjson")
    later, early = tmp / "later.duckdb", tmp / "early.duckdb"
    for db in (later, early):
        track_file(db, subs)
        ingest_paths(db, [export])
    payer = "76a914" + world.wallets["payer"].hex() + "88ac"  # the payer's P2PKH change script
    (tmp / "change.toml").write_text(f'[chain]\nrps = 1000\nchange_scripts = ["{payer}"]\n')
    plain = AuditConfig(chain={"rps": 1000})
    change = AuditConfig(chain={"rps": 1000, "change_scripts": [payer]})
    with run_simulator(world, time_scale=0.01) as sim:
        verify_chain(later, plain.replace(chain_url=sim.chain_url))
        # the setting added afterwards, from the command line: confirmed txids are not fetched
        # again, so the verdict must come from what the store already holds
        done = subprocess.run(
            [sys.executable, "-m", "asg_audit", "verify-chain", "--db", str(later), "--quiet",
             "--config", str(tmp / "change.toml")],
            env={**os.environ, "ASG_CHAIN_URL": sim.chain_url},
            cwd=tmp, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        verify_chain(early, change.replace(chain_url=sim.chain_url))
    assert "Traceback" not in done.stderr, done.stderr
    yield Stores(world, later, early, plain, change, done.stdout, done.returncode)


def _cost_findings(db: Path, config: AuditConfig, **window: object) -> pl.DataFrame:
    audit = analyze(db, config=config, **window)  # type: ignore[arg-type]
    return audit.findings.filter(pl.col("check_id").is_in(COST_CHECKS))


def _pairs(findings: pl.DataFrame) -> set[tuple[str, str]]:
    return set(findings_with_kinds(findings).select("kind", "entity_id").iter_rows())


def _single_txids(db: Path) -> list[tuple[str, str, int, int]]:
    """(task_id, txid, cost, non-data sats) of settled single-task txids, by task id."""
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute(
            """SELECT min(r.task_id), c.txid, min(r.cost_sats), min(c.non_data_sats)
            FROM results r JOIN chain_txs c ON lower(r.bsv_txid) = c.txid
            WHERE r.status = 'settled' AND c.raw_hex IS NOT NULL
            GROUP BY c.txid HAVING count(*) = 1 AND min(r.cost_sats) IS NOT NULL
            ORDER BY 1"""
        ).fetchall()
    return [(t, x, int(c), int(n)) for t, x, c, n in rows]


def test_change_scripts_added_after_verify_gives_only_the_planted_findings(
    stores: Stores,
) -> None:
    planted = stores.planted()
    assert len(planted) == 2
    later = _cost_findings(stores.later, stores.change, as_of=stores.as_of)
    early = _cost_findings(stores.early, stores.change, as_of=stores.as_of)
    assert _pairs(later) == planted  # was 100+ false `chain.outputs_below_cost` fails
    assert _pairs(early) == planted  # the control: the setting there from the start
    assert (
        later.drop("run_id", strict=False)
        .sort("entity_id")
        .equals(early.drop("run_id", strict=False).sort("entity_id"))
    )
    # verify-chain's own report (the library call behind the command)
    findings, _ = reconciliation_findings(stores.later, stores.change)
    assert _pairs(findings.filter(pl.col("check_id").is_in(COST_CHECKS))) == planted


def test_verify_chain_command_after_adding_change_scripts_reports_only_the_planted(
    stores: Stores,
) -> None:
    counts = re.findall(r"chain\.(?:shared_)?outputs_below_cost \[fail\]: (\d+)", stores.cli_stdout)
    assert sum(int(n) for n in counts) == len(stores.planted()), stores.cli_stdout
    assert "confirmed earlier, not fetched again" in stores.cli_stdout
    assert stores.cli_code == 1  # the two planted ones are real fails


def test_equality_mode_reports_an_understated_cost_as_differing(
    stores: Stores, tmp_path: Path
) -> None:
    db = tmp_path / "copy.duckdb"
    shutil.copy(stores.early, db)
    planted = {e for _, e in stores.planted()}
    (low_task, low_tx, low_cost, _), (high_task, high_tx, high_cost, _) = [
        r for r in _single_txids(db) if r[1] not in planted
    ][:2]
    with duckdb.connect(str(db)) as con:
        con.execute(
            "UPDATE results SET cost_sats = ? WHERE task_id = ?", [low_cost - 100, low_task]
        )
        con.execute(
            "UPDATE results SET cost_sats = ? WHERE task_id = ?", [high_cost + 7, high_task]
        )
    found = _cost_findings(db, stores.change, as_of=stores.as_of)
    by_tx = {r["entity_id"]: r for r in found.iter_rows(named=True)}
    low, high = by_tx[low_tx], by_tx[high_tx]
    assert low["expected"] == f"exactly {low_cost} sats (outputs that are not data or change)"
    assert low["difference"] == -100
    assert low["message"] == (
        f"cost of 1 task ({low_cost - 100} sats) differs from the transaction's payouts"
        f" ({low_cost} sats), its outputs other than data and change"
    )
    assert "exceed" not in low["message"] and "at most" not in low["expected"]
    assert high["expected"].startswith(f"exactly {high_cost} sats") and high["difference"] == 7
    assert "differs from" in high["message"]
    # without change scripts the change counts as payout: neither is caught (an upper bound)
    plain = _cost_findings(db, stores.plain, as_of=stores.as_of)
    assert not {low_tx, high_tx} & set(plain["entity_id"])


def test_without_stored_bytes_the_check_falls_back_to_at_most_and_says_so(
    stores: Stores, tmp_path: Path
) -> None:
    db = tmp_path / "copy.duckdb"
    shutil.copy(stores.early, db)
    planted = {e for _, e in stores.planted()}
    (over_task, over_tx, _, outs), (under_task, under_tx, under_cost, _) = [
        r for r in _single_txids(db) if r[1] not in planted
    ][:2]
    with duckdb.connect(str(db)) as con:
        # rows as if fetched without their bytes and without change scripts
        con.execute(
            "UPDATE chain_txs SET raw_hex = NULL, output_kinds = list_transform(output_kinds,"
            " lambda k: CASE WHEN k = 'change' THEN 'payout' ELSE k END) WHERE txid IN (?, ?)",
            [over_tx, under_tx],
        )
        con.execute("UPDATE results SET cost_sats = ? WHERE task_id = ?", [outs + 5, over_task])
        con.execute(
            "UPDATE results SET cost_sats = ? WHERE task_id = ?", [under_cost - 1, under_task]
        )
    found = _cost_findings(db, stores.change, as_of=stores.as_of)
    by_tx = {r["entity_id"]: r for r in found.iter_rows(named=True)}
    assert under_tx not in by_tx  # an upper bound only: an understated cost is not provable
    over = by_tx[over_tx]
    assert over["expected"] == (
        f"at most {outs} sats (outputs that are not data; change not told apart:"
        " no stored transaction)"
    )
    assert over["message"].endswith(
        f"exceeds the transaction's non-data outputs ({outs} sats), change included (not told"
        " apart): who received them is not proved"
    )
    assert over["difference"] == 5


def test_window_cutting_a_batch_keeps_its_txid_a_batch(stores: Stores) -> None:
    planted = {e for _, e in stores.planted()}
    with duckdb.connect(str(stores.early), read_only=True) as con:
        rows = con.execute(
            """SELECT lower(bsv_txid), max(created_at), count(*) FROM results
            WHERE status = 'settled' AND lower(bsv_txid) IN (SELECT txid FROM chain_txs)
            GROUP BY 1 HAVING count(*) >= 2 AND min(created_at) < max(created_at)
            ORDER BY 1"""
        ).fetchall()
    txid, last, batch = next(r for r in rows if r[0] not in planted)
    assert txid not in planted and batch >= 2
    whole = _cost_findings(stores.early, stores.change, as_of=stores.as_of)
    cut = analyze(stores.early, config=stores.change, since=last, as_of=stores.as_of)
    cut_costs = cut.findings.filter(pl.col("check_id").is_in(COST_CHECKS))
    assert txid not in set(whole["entity_id"])
    assert txid not in set(cut_costs["entity_id"])  # was an `exact` single-task fail
    # coverage: the window's tasks whose txid pays several tasks of the store are aggregate
    with duckdb.connect(str(stores.early), read_only=True) as con:
        (shared_in_window,) = con.execute(
            """WITH sizes AS (SELECT lower(bsv_txid) AS txid, count(*) AS n FROM results
                WHERE status = 'settled' GROUP BY 1)
            SELECT count(*) FROM results r JOIN sizes s ON lower(r.bsv_txid) = s.txid
            JOIN chain_txs c ON c.txid = s.txid
            WHERE r.status = 'settled' AND s.n > 1 AND c.non_data_sats IS NOT NULL
              AND r.cost_sats IS NOT NULL AND coalesce(r.created_at, r.first_seen_at) >= ?""",
            [last],
        ).fetchone() or (0,)
    coverage = dict(cut["chain_coverage"].iter_rows())
    assert coverage.get("aggregate only", 0) == shared_in_window


def test_stored_bytes_that_are_not_the_transaction_fall_back_to_at_most_and_say_so(
    stores: Stores, tmp_path: Path
) -> None:
    """A stored raw transaction cut short (only an edited store holds one: `verify-chain`
    stores bytes that hash to the txid) is no evidence of the change, wherever it was cut.
    Cut before the change script, it counted as "no change": the change was taken for payout
    and a task paid its exact cost was reported as differing; cut after it, the fallback was
    labelled "no stored transaction"."""
    db = tmp_path / "copy.duckdb"
    shutil.copy(stores.early, db)
    planted = {e for _, e in stores.planted()}
    (script,) = stores.change.chain["change_scripts"]
    with duckdb.connect(str(db), read_only=True) as con:
        with_change = {
            txid: raw
            for txid, raw in con.execute(
                "SELECT txid, raw_hex FROM chain_txs WHERE list_contains(output_kinds, 'change')"
            ).fetchall()
        }
    singles = [r for r in _single_txids(db) if r[1] not in planted and r[1] in with_change]
    (_, exact_tx, exact_cost, _), (over_task, over_tx, _, outs) = singles[:2]
    cut_before = with_change[exact_tx][:80]  # version and part of the inputs
    raw = with_change[over_tx]
    cut_after = raw[: raw.lower().index(script.lower()) + len(script) + 8]
    assert script.lower() not in cut_before.lower()
    with duckdb.connect(str(db)) as con:
        con.execute("UPDATE chain_txs SET raw_hex = ? WHERE txid = ?", [cut_before, exact_tx])
        con.execute("UPDATE chain_txs SET raw_hex = ? WHERE txid = ?", [cut_after, over_tx])
        con.execute("UPDATE results SET cost_sats = ? WHERE task_id = ?", [outs + 5, over_task])
    found = _cost_findings(db, stores.change, as_of=stores.as_of)
    by_tx = {r["entity_id"]: r for r in found.iter_rows(named=True)}
    # its exact cost is within the outputs (change included): nothing provable
    assert exact_tx not in by_tx, by_tx.get(exact_tx)
    assert exact_cost > 0
    assert by_tx[over_tx]["expected"] == (
        f"at most {outs} sats (outputs that are not data; change not told apart:"
        " the stored transaction does not hash to its txid)"
    )
    assert by_tx[over_tx]["difference"] == 5
