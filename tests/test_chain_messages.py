"""Chain findings say what the index proves, no more (tester F, fix G2).

`chain.outputs_below_cost` and `chain.shared_outputs_below_cost` called every non-data output
"the transaction's payouts" although, without `[chain] change_scripts`, that figure includes
the payer's change (who received the money is not proved); `chain.txid_unknown` said "not
found on chain" where only "unknown to this index" is proved. On the simulator's world and
chain index, through `verify_chain`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _chain_sim import Scenario, scenario

from asg_audit.chain import reconciliation_findings, verify_chain


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    with scenario(tmp_path_factory.mktemp("g2chain")) as sc:
        verify_chain(sc.db, sc.config)
        yield sc


def test_txid_unknown_says_unknown_to_this_index(world: Scenario) -> None:
    findings, _ = reconciliation_findings(world.db, world.config, prefixes=("chain.txid_unknown",))
    assert findings.height > 0
    for message in findings["message"]:
        assert "not found on chain" not in message
        assert "unknown to this chain index" in message
        assert "not proved absent from the chain" in message


def test_outputs_below_cost_without_change_scripts_names_non_data_outputs(
    world: Scenario,
) -> None:
    assert not world.config.chain.get("change_scripts")
    findings, _ = reconciliation_findings(
        world.db,
        world.config,
        prefixes=("chain.outputs_below_cost", "chain.shared_outputs_below_cost"),
    )
    assert findings.height > 0
    for message in findings["message"]:
        assert "payouts" not in message
        assert "the transaction's non-data outputs (" in message
        assert message.endswith("change included (not told apart): who received them is not proved")
