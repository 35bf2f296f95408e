"""A `verify-chain` run with a refused chain index answer is recorded `incomplete` (fixer H1).

The command exits 3 when an index answer failed its checks (the txid is asked again next run),
and `audit` records such a run `incomplete` (c1ac0be), but the standalone command recorded
its own run `ok` in `runs`: `status IN ('ok', 'completed')` counted it as a run that finished
its work. It is now `incomplete`, with an error naming the refusal (shown by `asg-audit runs`).
Real simulator, its chain index serving other bytes under one settled txid.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from _chain_sim import Scenario, scenario
from _hardening_procs import query
from _tampered_chain import run_status, tampered_txid

from asg_audit.chain import verify_chain
from asg_audit.cli import main as cli_main
from asg_audit.errors import EXIT_INCOMPLETE
from asg_audit.storeinfo import describe_runs


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    with scenario(tmp_path_factory.mktemp("h1refused"), tasks=300) as sc:
        yield sc


@pytest.fixture
def tampered(world: Scenario) -> Iterator[str]:
    with tampered_txid(world) as txid:
        yield txid


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
    status, stats = run_status(world.db, summary.run_id)
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
    status, stats = run_status(world.db, _latest_verify_run(world.db))
    assert status == "incomplete" and stats["refused"] == 1, (status, stats)


def test_verify_chain_without_a_refused_answer_is_still_ok(world: Scenario) -> None:
    summary = verify_chain(world.db, world.config)
    assert summary.refused == 0
    status, stats = run_status(world.db, summary.run_id)
    assert status == "ok" and "error" not in stats, (status, stats)
