"""A seeded simulator world with planted chain and billing anomalies, ingested into a store."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from asg_audit.checks import findings_with_kinds
from asg_audit.config import AuditConfig, Secret
from asg_audit.ingest_files import ingest_paths
from asg_audit.sim import RunningSimulator, WorldConfig, generate_world, run_simulator

CHAIN_KINDS = ("txid_unknown_on_chain", "txid_unconfirmed", "chain_outputs_below_cost")
BILLING_KINDS = ("billing_total_off", "billing_daily_mismatch")


@dataclass
class Scenario:
    sim: RunningSimulator
    db: Path
    config: AuditConfig

    def planted(self, kinds: tuple[str, ...]) -> set[tuple[str, str]]:
        """Return the ground truth's (kind, entity_id) pairs of the given kinds."""
        return {
            (a["kind"], a["entity_id"])
            for a in self.sim.world.ground_truth()["anomalies"]
            if a["kind"] in kinds
        }


@contextmanager
def scenario(tmp: Path, *, seed: int = 11, tasks: int = 1500, **sim_kw: Any) -> Iterator[Scenario]:
    """Serve a world, wait until its live window has passed, ingest its results export."""
    world = generate_world(WorldConfig(seed=seed, tasks=tasks, anomalies="all"))
    with run_simulator(world, time_scale=sim_kw.pop("time_scale", 0.002), **sim_kw) as sim:
        # Past the end of the span, every task the export holds has settled and been broadcast,
        # so the export, the chain and the billing all describe the same tasks.
        while sim.clock.now() < world.end_at + 1:
            time.sleep(0.05)
        export = world.write_results_export(tmp / "results.ndjson")
        db = tmp / "audit.duckdb"
        ingest_paths(db, [export])
        config = AuditConfig(
            db_path=db,
            chain_url=sim.chain_url,
            base_url=sim.gateway_url,
            api_key=Secret(sim.api_key),
            chain={"rps": 1000},
        )
        yield Scenario(sim, db, config)


def kinds_found(findings: pl.DataFrame) -> set[tuple[str | None, str]]:
    """Return the (anomaly kind, entity_id) pairs of findings."""
    rows = findings_with_kinds(findings).select("kind", "entity_id").iter_rows()
    return {(k, e) for k, e in rows}
