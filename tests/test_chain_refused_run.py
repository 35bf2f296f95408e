"""A `verify-chain` run with a refused chain index answer is recorded `incomplete` (fixer H1).

The command exits 3 when an index answer failed its checks (the txid is asked again next run),
and `audit` records such a run `incomplete` (c1ac0be), but the standalone command recorded
its own run `ok` in `runs`: `status IN ('ok', 'completed')` counted it as a run that finished
its work. It is now `incomplete`, with an error naming the refusal (shown by `asg-audit runs`).
Real simulator, its chain index serving other bytes under one settled txid.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _chain_sim import Scenario, scenario
from _hardening_procs import query

from asg_audit.chain import verify_chain
from asg_audit.cli import main as cli_main
from asg_audit.errors import EXIT_INCOMPLETE
from asg_audit.store import describe_runs, open_store


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    with scenario(tmp_path_factory.mktemp("h1refused"), tasks=300) as sc:
        yield sc


@pytest.fixture
def tampered(world: Scenario) -> Iterator[str]:
    """The index serves other bytes (one output value changed) under one settled txid."""
    settled = {
        t.lower()
        for (t,) in query(
            world.db, "SELECT bsv_txid FROM results WHERE status = 'settled' AND bsv_txid NOT NULL"
        )
    }
    txid = sorted(t for t, tx in world.sim.world.txs.items() if t in settled and tx.mined)[0]
    with open_store(world.db) as store:  # asked again, whatever an earlier test stored
        store.con.execute("DELETE FROM chain_txs WHERE txid = ?", [txid])
    tx = world.sim.world.txs[txid]
    original = tx.raw
    tx.raw = original[:-30] + bytes([original[-30] ^ 0x01]) + original[-29:]
    world.sim.state._decoded.pop(txid, None)
    try:
        yield txid
    finally:
        tx.raw = original
        world.sim.state._decoded.pop(txid, None)


def _run(db: Path, run_id: str) -> tuple[str, dict[str, Any]]:
    [(status, stats)] = query(db, "SELECT status, stats FROM runs WHERE run_id = ?", [run_id])
    return status, json.loads(stats)


def _latest_verify_run(db: Path) -> str:
    [(run_id,)] = query(
        db,
        "SELECT run_id FROM runs WHERE command = 'verify-chain' ORDER BY started_at DESC LIMIT 1",
    )
    return str(run_id)


def test_verify_chain_with_a_refused_answer_records_its_run_incomplete(
    world: Scenario, tampered: str
) -> None:
    summary = verify_chain(world.db, world.config)
    assert summary.refused == 1
    status, stats = _run(world.db, summary.run_id)
    assert status == "incomplete", (status, stats)
    assert stats["refused"] == 1 and "refused 1 chain index answer" in stats["error"], stats
    assert tampered in stats["error"]  # the first refusal names its txid
    line = next(x for x in describe_runs(world.db).splitlines() if summary.run_id in x)
    assert "incomplete" in line and "refused 1" in line, line


def test_cli_verify_chain_exits_3_and_its_run_reads_incomplete(
    world: Scenario,
    tampered: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "asg_audit.toml"
    config.write_text(
        f'db = "{world.db}"\nchain_url = "{world.sim.chain_url}"\n[chain]\nrps = 1000\n'
    )
    for name in ("ASG_API_KEY", "API_KEY", "ASG_AUDIT_DB", "ASG_BASE_URL", "ASG_CHAIN_URL"):
        monkeypatch.delenv(name, raising=False)
    code = cli_main(["verify-chain", "--config", str(config), "--quiet"])
    capsys.readouterr()
    assert code == EXIT_INCOMPLETE
    status, stats = _run(world.db, _latest_verify_run(world.db))
    assert status == "incomplete" and stats["refused"] == 1, (status, stats)


def test_verify_chain_without_a_refused_answer_is_still_ok(world: Scenario) -> None:
    summary = verify_chain(world.db, world.config)
    assert summary.refused == 0
    status, stats = _run(world.db, summary.run_id)
    assert status == "ok" and "error" not in stats, (status, stats)
