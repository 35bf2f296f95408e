"""verify-chain end to end on the simulator: planted chain anomalies found exactly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _chain_sim import CHAIN_KINDS, Scenario, kinds_found, scenario

from asg_audit.chain import VerifySummary, reconciliation_findings, verify_chain
from asg_audit.cli import main
from asg_audit.store import open_store


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Scenario, VerifySummary]]:
    with scenario(tmp_path_factory.mktemp("chain")) as sc:
        yield sc, verify_chain(sc.db, sc.config)


def test_chain_e2e_planted_anomalies_found_exactly(world: tuple[Scenario, VerifySummary]) -> None:
    sc, _ = world
    findings, _ = reconciliation_findings(sc.db, sc.config, prefixes=("chain.",))
    assert kinds_found(findings) == sc.planted(CHAIN_KINDS)


def test_chain_e2e_every_finding_states_what_it_proves(
    world: tuple[Scenario, VerifySummary],
) -> None:
    sc, _ = world
    findings, coverage = reconciliation_findings(sc.db, sc.config, prefixes=("chain.",))
    assert set(findings["proves"]) <= {"exact", "aggregate only"}
    assert {"exact", "aggregate only"} <= set(coverage["proves"])


def test_chain_e2e_summary_counts(world: tuple[Scenario, VerifySummary]) -> None:
    sc, summary = world
    truth = sc.sim.world.ground_truth()["anomalies"]
    assert summary.unknown == sum(a["kind"] == "txid_unknown_on_chain" for a in truth)
    assert summary.refused == 0
    assert summary.checked == summary.txids_total
    assert summary.requests <= -(-summary.txids_total // 20) + summary.throttled


def test_chain_e2e_confirmed_not_fetched_again(world: tuple[Scenario, VerifySummary]) -> None:
    sc, first = world
    again = verify_chain(sc.db, sc.config)
    assert again.cached_confirmed == first.confirmed
    # unconfirmed ones are asked again; unknown ones wait out their back-off
    assert again.checked == first.unconfirmed
    assert again.unknown_backed_off == first.unknown


def test_chain_e2e_tampered_index_bytes_refused(world: tuple[Scenario, VerifySummary]) -> None:
    sc, _ = world
    with open_store(sc.db) as store:
        (txid,) = store.con.execute(
            "SELECT txid FROM chain_txs WHERE status = 'confirmed' ORDER BY txid LIMIT 1"
        ).fetchone() or ("",)
        store.con.execute("DELETE FROM chain_txs WHERE txid = ?", [txid])
    tx = sc.sim.world.txs[txid]
    original = tx.raw
    # The index now serves other bytes under the same txid (one output value changed).
    tx.raw = original[:-30] + bytes([original[-30] ^ 0x01]) + original[-29:]
    sc.sim.state._decoded.pop(txid, None)
    try:
        summary = verify_chain(sc.db, sc.config)
    finally:
        tx.raw = original
        sc.sim.state._decoded.pop(txid, None)
    assert summary.refused == 1
    with open_store(sc.db, read_only=True) as store:
        status, raw = store.con.execute(
            "SELECT status, raw_hex FROM chain_txs WHERE txid = ?", [txid]
        ).fetchone() or ("", "")
    assert status == "refused" and raw is None


def test_chain_e2e_cli_verify_chain(
    world: tuple[Scenario, VerifySummary],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sc, _ = world
    monkeypatch.setenv("ASG_CHAIN_URL", sc.sim.chain_url)
    monkeypatch.setenv("WOC_API_KEY", "woc_secret_never_printed")
    code = main(["verify-chain", "--db", str(sc.db), "--rps", "1000", "--quiet"])
    out = capsys.readouterr().out
    assert code == 1  # planted unknown txids are failures
    assert "txids of settled tasks" in out and "chain.txid_unknown [fail]" in out
    assert "woc_secret_never_printed" not in out


def test_chain_e2e_run_recorded(world: tuple[Scenario, VerifySummary], tmp_path: Path) -> None:
    sc, summary = world
    with open_store(sc.db, read_only=True) as store:
        row = store.con.execute(
            "SELECT command, status FROM runs WHERE run_id = ?", [summary.run_id]
        ).fetchone()
    assert row == ("verify-chain", "ok")
