"""An unexpected exception in one step of the audit fails that step only: it is recorded with
its type and message (secrets masked), the other steps and the report still run, the run is
recorded `incomplete` and exits 3. Bad arguments of `run_audit` are named before any step.
Real simulator on 127.0.0.1 (Gateway and chain index), real store and report."""

from __future__ import annotations

import io
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _hardening_procs import query

from asg_audit.config import AuditConfig, Secret
from asg_audit.demo import _write_provider_export
from asg_audit.errors import ConfigError
from asg_audit.ingest_files import track_file
from asg_audit.jobs import run_audit
from asg_audit.sim import WorldConfig, generate_world, run_simulator
from asg_audit.store import open_store


@pytest.fixture(scope="module")
def world() -> Any:
    return generate_world(WorldConfig(seed=9, tasks=300, anomalies="all"))


@pytest.fixture(scope="module")
def sim(world: Any) -> Iterator[Any]:
    with run_simulator(world, time_scale=0.01) as running:
        yield running


class _StoppedClock:
    """A clock (the `Clock` protocol collect runs on) that fails when read."""

    def __init__(self, secret: str) -> None:
        self.secret = secret

    def now(self) -> float:
        raise RuntimeError(f"clock stopped (key {self.secret})")

    async def sleep(self, seconds: float) -> None:
        raise RuntimeError("clock stopped")


def _config(tmp_path: Path, world: Any, sim: Any) -> AuditConfig:
    db = tmp_path / "audit.duckdb"
    track_file(db, world.write_submissions(tmp_path / "subs.ndjson"))
    drop = tmp_path / "drop"
    _write_provider_export(world, drop / "export.jsonl")
    return AuditConfig(
        db_path=db,
        base_url=sim.gateway_url,
        api_key=Secret(sim.api_key),
        chain_url=sim.chain_url,
        chain={"rps": 200},
        audit={"report_dir": str(tmp_path / "reports"), "drop_folders": [str(drop)]},
    )


def test_audit_a_step_that_raises_fails_alone_and_the_report_is_written(
    tmp_path: Path, world: Any, sim: Any
) -> None:
    config = _config(tmp_path, world, sim)
    log = io.StringIO()
    outcome = run_audit(
        config,
        clock=_StoppedClock(sim.api_key),
        as_of=sim.clock.now_dt(),
        collect_seconds=60,
        log=log,
    )
    steps = outcome.steps
    assert steps["collect"] == "failed: RuntimeError: clock stopped (key ***)", steps
    assert steps["ingest"].startswith("ok"), steps
    # the steps after the failed one still ran, against the real Gateway and chain index
    assert steps["verify-chain"].startswith("ok: "), steps
    assert steps["billing"].startswith("ok: "), steps
    assert outcome.exit_code == 3
    assert outcome.report_dir is not None and (outcome.report_dir / "index.html").is_file()
    assert query(config.db_path, "SELECT count(*) FROM chain_txs")[0][0] > 0
    assert query(config.db_path, "SELECT count(*) FROM billing_usage")[0][0] > 0
    ((status, stats),) = query(
        config.db_path, "SELECT status, stats FROM runs WHERE run_id = ?", [outcome.run_id]
    )
    assert status == "incomplete"
    assert json.loads(stats)["steps"]["collect"] == steps["collect"]
    assert "collect       failed: RuntimeError: clock stopped (key ***)" in log.getvalue()
    assert sim.api_key not in stats + log.getvalue() + json.dumps(steps)


@pytest.mark.parametrize(
    "config, kwargs, error, message",
    [
        (None, {}, TypeError, "run_audit config: expected an AuditConfig"),
        ("asg_audit.toml", {}, TypeError, "run_audit config: expected an AuditConfig"),
        ("CONFIG", {"wait_seconds": math.nan}, ConfigError, "run_audit wait_seconds"),
        ("CONFIG", {"wait_seconds": -1}, ConfigError, "run_audit wait_seconds"),
        ("CONFIG", {"collect_seconds": math.inf}, ConfigError, "run_audit collect_seconds"),
        ("CONFIG", {"collect_seconds": -5}, ConfigError, "run_audit collect_seconds"),
    ],
)
def test_run_audit_bad_argument_is_named_before_any_step(
    tmp_path: Path, config: Any, kwargs: dict[str, Any], error: type[Exception], message: str
) -> None:
    db = tmp_path / "audit.duckdb"
    with open_store(db):
        pass
    if config == "CONFIG":
        config = AuditConfig(db_path=db, audit={"report_dir": str(tmp_path / "r")})
    with pytest.raises(error, match=message):
        run_audit(config, log=io.StringIO(), **kwargs)
    assert query(db, "SELECT count(*) FROM runs")[0][0] == 0
    assert not (tmp_path / "r").exists()
