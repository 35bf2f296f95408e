"""One rule for the configured depth: `chain_verify.configured_depth` (fixer J5).

`int(config.chain.get("confirmations", DEFAULT_CONFIRMATIONS))` was written in both
`verify_chain` and the `audit` job's pre-check (`jobs`): two copies of the rule that decides
which stored transactions are fetched again. It is now one public function, re-exported by
`asg_audit.chain` as its other verification names; `verify_chain` uses it, and the count of
txids it would fetch at that depth is the count it fetches.

The real simulator's chain index.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from _chain_sim import scenario

from asg_audit import chain, chain_verify
from asg_audit.chain import DEFAULT_CONFIRMATIONS, verify_chain
from asg_audit.chain_verify import configured_depth, pending_txid_count
from asg_audit.config import AuditConfig


def test_configured_depth_reads_the_config(tmp_path: Path) -> None:
    base = AuditConfig(db_path=tmp_path / "x.duckdb")
    assert configured_depth(base) == DEFAULT_CONFIRMATIONS
    assert configured_depth(base.replace(chain={"confirmations": 6})) == 6
    assert chain.configured_depth is chain_verify.configured_depth
    assert "configured_depth" in chain.__all__ and "configured_depth" in chain_verify.__all__


def test_configured_depth_is_reachable_from_chain_imported_first() -> None:
    code = "import asg_audit.chain as c; print(c.configured_depth.__module__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "asg_audit.chain_verify"


def test_verify_chain_fetches_what_the_count_at_the_configured_depth_says(
    tmp_path: Path,
) -> None:
    with scenario(tmp_path, tasks=150) as sc:
        verify_chain(sc.db, sc.config)
        deep = sc.config.replace(chain={**sc.config.chain, "confirmations": 10_000_000})
        for config in (sc.config, deep):
            depth = configured_depth(config)
            expected = pending_txid_count(sc.db, confirmations=depth)
            summary = verify_chain(sc.db, config)
            assert summary.depth == depth
            assert summary.checked == expected, (depth, summary)
        assert expected > 0  # at the deep setting every txid is fetched again
