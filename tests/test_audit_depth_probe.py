"""`audit` probes the chain index when only transactions confirmed below the depth configured
now are to be fetched (fixer H1, after 5bc3dd1).

Since 5bc3dd1 `verify_chain` fetches again a transaction stored `confirmed` below the current
`[chain] confirmations`; `audit` counted what there was to fetch at the default depth 1, found
nothing, and skipped the reachability probe (an unreachable index then failed late, or not by
the probe's rule). It now counts at the configured depth.
"""

from __future__ import annotations

import io
import socket
from pathlib import Path
from typing import Any

import pytest
from _audit_job import offline_job
from _chain_sim import scenario

from asg_audit import jobs
from asg_audit.chain import verify_chain
from asg_audit.config import AuditConfig
from asg_audit.errors import EXIT_INCOMPLETE
from asg_audit.jobs import run_audit
from asg_audit.store import open_store

DEEP = 10_000_000  # deeper than any simulated chain


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_audit_at_a_raised_depth_probes_and_fetches_the_shallow_confirmed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with scenario(tmp_path, tasks=300) as sc:
        verify_chain(sc.db, sc.config)  # depth 1
        with open_store(sc.db) as store:  # keep only the settled txids confirmed at depth 1
            store.con.execute(
                "DELETE FROM results WHERE lower(bsv_txid) NOT IN"
                " (SELECT txid FROM chain_txs WHERE status = 'confirmed')"
            )
            (confirmed,) = store.con.execute(
                "SELECT count(DISTINCT lower(bsv_txid)) FROM results WHERE status = 'settled'"
            ).fetchone()
        assert confirmed > 0
        probed: list[str] = []
        real_probe = jobs._probe

        def probe(url: str, what: str, **kw: Any) -> None:
            probed.append(url)
            real_probe(url, what, **kw)

        monkeypatch.setattr(jobs, "_probe", probe)
        audit = {"report_dir": str(tmp_path / "reports"), "billing": False}
        shallow = AuditConfig(
            db_path=sc.db, chain_url=sc.sim.chain_url, chain={"rps": 1000}, audit=audit
        )
        outcome = run_audit(shallow, log=io.StringIO())  # depth 1: nothing to fetch, no probe
        assert outcome.steps["verify-chain"].startswith("ok: 0 checked"), outcome.steps
        assert probed == []

        deep = shallow.replace(chain={"rps": 1000, "confirmations": DEEP})
        outcome = run_audit(deep, log=io.StringIO())
        assert probed == [sc.sim.chain_url.rstrip("/") + "/chain/info"]
        step = outcome.steps["verify-chain"]
        assert step.startswith(f"ok: {confirmed:,} checked, 0 confirmed"), step


def test_audit_at_a_raised_depth_with_the_index_unreachable_fails_by_the_probe(
    tmp_path: Path,
) -> None:
    """Every txid stored confirmed at depth 1, the index unreachable, depth 6: the probe says
    the index is unreachable (exit 3), as for txids never fetched."""
    job = offline_job(tmp_path, 3)
    config = AuditConfig(
        db_path=job["db"],
        chain_url=f"http://127.0.0.1:{_closed_port()}",
        chain={"confirmations": 6},
        audit={"drop_folders": [str(job["drop"])], "report_dir": str(job["reports"])},
    )
    # ingest the drop folder once, then store each txid as confirmed at depth 1
    first = run_audit(config.replace(audit={**config.audit, "verify_chain": False}))
    assert first.exit_code in (0, 1), first
    with open_store(job["db"]) as store:
        store.con.execute(
            "INSERT INTO chain_txs (txid, status, confirmations, first_checked_at, fetched_at)"
            " SELECT DISTINCT lower(bsv_txid), 'confirmed', 1, now(), now() FROM results"
        )
    outcome = run_audit(config, log=io.StringIO())
    step = outcome.steps["verify-chain"]
    assert step.startswith("failed") and "chain index" in step and "unreachable" in step, step
    assert outcome.exit_code == EXIT_INCOMPLETE
