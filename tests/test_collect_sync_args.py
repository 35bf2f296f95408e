"""`collect`/`collect_sync` from a notebook: one task id given as a str (or bytes) is one id, and
a config that is not an AuditConfig is a TypeError naming it.

A str was iterated as a sequence of one-character ids: the run polled '0', '1', ... and left a
`pending` row for each in poll_state. A dict given as the config was an AttributeError from deep
inside. The real collector against the simulator on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from asg_audit.collector import collect_sync
from asg_audit.config import AuditConfig, load_config
from asg_audit.sim import WorldConfig, generate_world, run_simulator
from asg_audit.store import open_store


@pytest.fixture(scope="module")
def sim() -> Iterator[tuple[Any, str]]:
    world = generate_world(WorldConfig(seed=5, tasks=20, live_fraction=0.0, anomalies="none"))
    settled = next(t for t in world.ground_truth()["tasks"] if t["final_status"] == "settled")
    with run_simulator(world, time_scale=0.005) as running:
        yield running, settled["task_id"]


def _config(running: Any, db: Path) -> AuditConfig:
    return load_config(
        None,
        env={"ASG_API_KEY": running.api_key, "ASG_BASE_URL": running.gateway_url},
        overrides={"db_path": str(db)},
    )


def _poll_states(db: Path) -> dict[str, str]:
    with open_store(db, read_only=True) as store:
        return dict(store.con.execute("SELECT task_id, state FROM poll_state").fetchall())


@pytest.mark.parametrize("as_given", [str, str.encode], ids=["str", "bytes"])
def test_collect_sync_takes_one_task_id_as_one_id(
    sim: tuple[Any, str], tmp_path: Path, as_given: Any
) -> None:
    running, task_id = sim
    db = tmp_path / "audit.duckdb"
    summary = collect_sync(
        _config(running, db), task_ids=as_given(task_id), clock=running.clock, max_rps=200
    )
    assert summary.status == "completed"
    assert summary.tracked == 1
    assert summary.skipped_unsafe_ids == 0
    assert _poll_states(db) == {task_id: "done"}


def test_collect_sync_still_takes_a_list_of_ids(sim: tuple[Any, str], tmp_path: Path) -> None:
    running, task_id = sim
    db = tmp_path / "audit.duckdb"
    summary = collect_sync(
        _config(running, db), task_ids=[task_id], clock=running.clock, max_rps=200
    )
    assert summary.tracked == 1
    assert _poll_states(db) == {task_id: "done"}


def test_collect_sync_names_task_ids_that_are_not_ids(sim: tuple[Any, str], tmp_path: Path) -> None:
    running, _ = sim
    with pytest.raises(TypeError, match=r"collect task_ids: expected a task id \(str\).* got int"):
        collect_sync(_config(running, tmp_path / "a.duckdb"), task_ids=7)
    assert not (tmp_path / "a.duckdb").exists()
    # an item that is no id: named by its place, before anything runs (was polars' error)
    for bad, kind in (([1], "int"), (["tsk_a", None], "NoneType")):
        with pytest.raises(TypeError, match=rf"collect task_ids\[\d\]: expected .* got {kind}"):
            collect_sync(_config(running, tmp_path / "a.duckdb"), task_ids=bad)
    assert not (tmp_path / "a.duckdb").exists()


@pytest.mark.parametrize("config", [{"db": "x.duckdb"}, None, "asg_audit.toml"])
def test_collect_sync_names_a_config_that_is_not_an_audit_config(config: object) -> None:
    with pytest.raises(
        TypeError,
        match=r"collect_sync config: expected an AuditConfig \(asg_audit\.load_config\(\)\), got",
    ):
        collect_sync(config)  # type: ignore[arg-type]
