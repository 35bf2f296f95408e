"""The scheduled audit job end to end against the simulator on 127.0.0.1.

The simulator's ground truth is the expected answer: with every anomaly kind planted, the run
exits 1 and its findings are exactly the planted anomalies.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from asg_audit.checks import findings_with_kinds
from asg_audit.config import AuditConfig, Secret
from asg_audit.demo import _serve_in_thread, _write_provider_export
from asg_audit.errors import StoreBusyError
from asg_audit.ingest_files import track_file
from asg_audit.jobs import audit_lock, run_audit
from asg_audit.sim import WorldConfig, generate_world, run_simulator
from asg_audit.store import open_store

REPO = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def world() -> Any:
    return generate_world(WorldConfig(seed=5, tasks=600, anomalies="all"))


@pytest.fixture(scope="module")
def sim(world: Any) -> Iterator[Any]:
    with run_simulator(world, time_scale=0.01) as running:
        yield running


def _config(tmp_path: Path, sim: Any, **audit: Any) -> AuditConfig:
    return AuditConfig(
        db_path=tmp_path / "audit.duckdb",
        base_url=sim.gateway_url,
        api_key=Secret(sim.api_key),
        chain_url=sim.chain_url,
        # stuck tasks expire after 10 simulated minutes (6 s here), as in the demo, so collect
        # does not poll them for the default hour
        collector={"max_rps": 200, "concurrency": 32, "deadline_s": 600.0},
        chain={"rps": 200},
        audit={"report_dir": str(tmp_path / "reports"), **audit},
    )


def _prepare(tmp_path: Path, world: Any) -> Path:
    db = tmp_path / "audit.duckdb"
    track_file(db, world.write_submissions(tmp_path / "subs.ndjson"))
    drop = tmp_path / "drop"
    _write_provider_export(world, drop / "export.jsonl")
    return drop


def _run(config: AuditConfig, sim: Any, **kw: Any):
    return run_audit(config, clock=sim.clock, as_of=sim.clock.now_dt(), collect_seconds=3600, **kw)


def test_audit_with_planted_anomalies_exits_1_with_exactly_the_ground_truth(
    tmp_path: Path, world: Any, sim: Any
) -> None:
    drop = _prepare(tmp_path, world)
    outcome = _run(_config(tmp_path, sim, drop_folders=[str(drop)]), sim)
    assert outcome.exit_code == 1, outcome.steps
    assert not outcome.incomplete
    with open_store(tmp_path / "audit.duckdb", read_only=True) as store:
        findings = store.frame("findings", where="run_id = ?", params=[outcome.run_id])
        run = store.frame("runs", where="run_id = ?", params=[outcome.run_id]).row(0, named=True)
    kinds = findings_with_kinds(findings).filter(pl.col("kind").is_not_null())
    found = set(kinds.select("kind", "entity_id").iter_rows())
    planted = {(a["kind"], a["entity_id"]) for a in world.anomalies}
    assert found == planted
    assert run["status"] == "ok" and json.loads(run["stats"])["exit_code"] == 1
    assert (outcome.report_dir / "index.html").is_file()
    assert (outcome.report_dir / "summary.json").is_file()


def test_audit_second_run_does_only_new_work(tmp_path: Path, world: Any, sim: Any) -> None:
    drop = _prepare(tmp_path, world)
    config = _config(tmp_path, sim, drop_folders=[str(drop)])
    first = _run(config, sim)
    polls_before = sim.stats()["gateway"]["by_endpoint"]
    second = _run(config, sim)
    polls_after = sim.stats()["gateway"]["by_endpoint"]
    assert second.steps["ingest"].startswith("ok: 0 new file(s)")
    assert "0 settled" in second.steps["collect"] or "checked" in second.steps["collect"]
    result_key = next(k for k in polls_after if "result" in k)
    # Only tasks that were not final (stuck, unknown ids) are asked again.
    assert polls_after[result_key] - polls_before.get(result_key, 0) <= 20

    def figure(step: str, name: str) -> int:
        text = step.split("ok: ")[1]
        return int(text.split(f" {name}")[0].split(", ")[-1].replace(",", ""))

    # Only the txids not confirmed by the first run are looked up again, and of the unknown
    # ones only those whose back-off ran out (none, a moment later): the step says so.
    first_chain, second_chain = first.steps["verify-chain"], second.steps["verify-chain"]
    assert figure(second_chain, "checked") == figure(first_chain, "unconfirmed")
    unknown = figure(first_chain, "unknown")
    assert unknown > 0
    assert f", {unknown:,} unknown not asked (back-off, next due 20" in second_chain
    assert figure(second_chain, "checked") < figure(first_chain, "checked") // 10


def test_audit_overlapping_run_is_refused_with_exit_3(tmp_path: Path, world: Any, sim: Any) -> None:
    _prepare(tmp_path, world)
    config = _config(tmp_path, sim)
    with audit_lock(config.db_path):
        with pytest.raises(StoreBusyError, match="another audit run"):
            _run(config, sim)
        proc = subprocess.run(
            [sys.executable, "-m", "asg_audit", "audit", "--db", str(config.db_path)],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env={
                "PATH": "/usr/bin:/bin",
                "ASG_API_KEY": sim.api_key,
                "ASG_BASE_URL": sim.gateway_url,
            },
        )
    assert proc.returncode == 3
    assert "another audit run is in progress" in proc.stderr and "Traceback" not in proc.stderr


def test_audit_waits_for_an_overlapping_run_with_wait(tmp_path: Path, world: Any, sim: Any) -> None:
    _prepare(tmp_path, world)
    config = _config(tmp_path, sim, verify_chain=False, billing=False)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with audit_lock(config.db_path):
            held.set()
            release.wait(5)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(10)  # the other run holds the lock before this one starts
    threading.Timer(1.0, release.set).start()
    outcome = _run(config, sim, wait_seconds=30)
    holder.join()
    assert outcome.exit_code in (0, 1)


def test_audit_while_the_api_is_down_exits_3_and_loses_nothing(
    tmp_path: Path, world: Any, sim: Any
) -> None:
    drop = _prepare(tmp_path, world)
    config = _config(tmp_path, sim, drop_folders=[str(drop)])
    first = _run(config, sim)
    with open_store(config.db_path, read_only=True) as store:
        before = {
            t: store.count(t) for t in ("observations", "results", "submissions", "chain_txs")
        }
    down = config.replace(base_url="http://127.0.0.1:9", chain_url="http://127.0.0.1:9/v1/bsv/main")
    outcome = _run(down, sim)
    assert outcome.exit_code == 3
    assert (
        outcome.steps["collect"].startswith("failed") and "unreachable" in outcome.steps["collect"]
    )
    assert outcome.steps["verify-chain"].startswith("failed")
    with open_store(config.db_path, read_only=True) as store:
        after = {t: store.count(t) for t in before}
        run = store.frame("runs", where="run_id = ?", params=[outcome.run_id]).row(0, named=True)
    assert after == before
    assert run["status"] == "incomplete"
    assert (outcome.report_dir / "index.html").is_file()  # the store's evidence is still reported
    assert first.exit_code == 1


def test_audit_posts_one_alert_per_run(tmp_path: Path, world: Any, sim: Any) -> None:
    _prepare(tmp_path, world)
    received: list[dict[str, Any]] = []

    async def alert(request: Request) -> JSONResponse:
        received.append(await request.json())
        return JSONResponse({"ok": True})

    with _serve_in_thread(Starlette(routes=[Route("/alert", alert, methods=["POST"])])) as url:
        config = _config(tmp_path, sim, alert_url=url + "/alert", alert_on="warn")
        outcome = _run(config, sim)
    assert outcome.alert_sent and len(received) == 1
    message = received[0]
    assert message["run_id"] == outcome.run_id
    assert message["findings"]["fail"] > 0
    assert sim.api_key not in json.dumps(message)
    assert outcome.steps["alert"].startswith("ok: sent to http://127.0.0.1:")
    assert "alert" not in message["steps"]  # the message tells what ran before it


def test_audit_alert_that_cannot_be_sent_makes_the_run_incomplete(
    tmp_path: Path, world: Any, sim: Any
) -> None:
    # nobody gets paged: the scheduler must hear of it (exit 3, "alert if it persists")
    _prepare(tmp_path, world)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://user:PASSWORD9@127.0.0.1:{closed.getsockname()[1]}/PATH9?token=TOKEN9"
    config = _config(tmp_path, sim, alert_url=url, alert_on="warn")
    outcome = _run(config, sim)
    assert not outcome.alert_sent and outcome.exit_code == 3
    assert outcome.steps["alert"].startswith("failed: alert to http://127.0.0.1:")
    assert not any(s in outcome.steps["alert"] for s in ("PASSWORD9", "TOKEN9", "PATH9"))
    with open_store(tmp_path / "audit.duckdb", read_only=True) as store:
        ((status, stats),) = store.con.execute(
            "SELECT status, stats FROM runs WHERE run_id = ?", [outcome.run_id]
        ).fetchall()
    assert status == "incomplete" and json.loads(stats)["steps"]["alert"] == outcome.steps["alert"]


def test_demo_command_runs_end_to_end(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "asg_audit",
            "demo",
            "--tasks",
            "800",
            "--out",
            str(tmp_path / "demo"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert " 0 missed, 0 reported but not planted" in out
    report = Path(out.split("report: ")[1].split()[0])
    assert report.is_file() and report.name == "index.html"
    assert "webhook deliveries stored: 0" not in out
