"""`asg-audit demo`: the main job end to end, on the embedded DuckDB and the simulator.

It starts the simulator on 127.0.0.1 (a seeded world with planted anomalies, scaled time), a real
webhook receiver registered with the simulated Gateway, then runs the scheduled audit job
against them: track the submissions, collect (some tasks are still live and settle during the
run), receive webhooks, verify the chain, reconcile billing, analyse, check, report. It prints
the headline figures, the findings and the path of `index.html`, and compares the findings with
the simulator's ground truth.

Of the user's config (`--config`, else `./asg_audit.toml`) the demo honours the analysis
settings (`slo_seconds`, `fail_on`, `[costs]`, `[checks.*]`) and the tuning of `[collector]`
and `[chain]`; of the `[audit]` table, which defines the production job, only `fail_on` (and
`demo_collect_seconds`). It never sends the alert, reads no drop folder and writes no report
but its own, and never sends `WOC_API_KEY` anywhere.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import IO, Any

from asg_audit.config import AuditConfig, Secret
from asg_audit.errors import EXIT_INCOMPLETE, EXIT_OK

__all__ = ["DEFAULT_DEMO_TASKS", "demo_audit_settings", "run_demo", "sample_path"]

DEFAULT_DEMO_TASKS = 3000  # keep in step with `asg-audit demo --tasks`
DEFAULT_TIME_SCALE = 0.02  # one simulated second lasts 20 ms


def sample_path(name: str) -> Path:
    """Return the path of a bundled sample file (`sample_results.jsonl`, ...)."""
    return Path(str(resources.files("asg_audit") / "data" / name))


@contextlib.contextmanager
def _serve_in_thread(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn on a free loopback port in a thread; yield its URL."""
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    server = uvicorn.Server(
        # log_config=None: leave the process's logging alone (the simulator shares it).
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on"
        )
    )
    # uvicorn installs no signal handlers outside the main thread: the process keeps its own.
    thread = threading.Thread(target=server.run, name="webhook-receiver", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the webhook receiver did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True  # uvicorn drains deliveries in flight before it stops
        thread.join(30)


def _fresh_store(folder: Path) -> Path:
    """Return the demo's store path, an earlier demo's store deleted; `StoreBusyError` when
    another process has it open (a demo still running, a notebook reading it): its file is
    never deleted from under it."""
    from asg_audit.errors import StoreBusyError, StoreError
    from asg_audit.store import open_store

    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "demo.duckdb"
    if db.exists():
        try:
            with open_store(db):  # a writer is locked out by any other process holding it
                pass
        except StoreBusyError:
            raise
        except StoreError:
            pass  # a damaged or foreign file named demo.duckdb: replaced below
    for stale in folder.glob("demo.duckdb*"):
        stale.unlink()
    return db


def _write_provider_export(world: Any, path: Path) -> Path:
    """Write the provider's export of the results known at simulated "now" (a drop-folder file)."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    full = world.write_results_export(path.with_suffix(".all"))
    with full.open() as src, path.open("w") as dst:
        for line in src:
            rec = json.loads(line)
            settled = rec.get("settled_at") or (rec.get("settlement") or {}).get("settled_at")
            if settled is None or parse_rfc3339(settled) <= world.now_at:
                dst.write(line)
    full.unlink()
    return path


def parse_rfc3339(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _submit_live_tasks(gateway_url: str, api_key: str, count: int, path: Path) -> Path:
    """Submit tasks through the Gateway as the customer's app would; write their records."""
    import json

    import httpx

    kinds = [
        ("image_classification", ["cat", "dog", "bird"]),
        ("sentiment", ["positive", "negative"]),
    ]
    rows = []
    with httpx.Client(
        base_url=gateway_url, timeout=10, headers={"Authorization": f"Bearer {api_key}"}
    ) as client:
        for i in range(count):
            task_type, options = kinds[i % len(kinds)]
            spec = {
                "task_type": task_type,
                "label_spec": {"options": options},
                "consensus_threshold": 3,
                "idempotency_key": f"demo-live-{i}",
            }
            for attempt in range(8):  # the simulated Gateway throttles and fails now and then
                try:
                    answer = client.post("/v1/tasks", json=spec)
                    if answer.status_code in (200, 202):
                        body = answer.json()
                        break
                except (httpx.TransportError, ValueError):
                    pass
                time.sleep(0.05 * 2**attempt)
            else:
                continue
            rows.append(
                {
                    "task_id": body["task_id"],
                    "task_type": task_type,
                    "consensus_threshold": 3,
                    "label_spec": {"options": options},
                    "created_at": body["created_at"],
                }
            )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _print_headline(summary: dict[str, Any], out: IO[str]) -> None:
    def fmt(value: Any, unit: str = "") -> str:
        if value is None:
            return "n/a"
        if isinstance(value, float):
            return f"{value:,.1f}{unit}" if unit != "%" else f"{value * 100:.1f}%"
        return f"{value:,}{unit}"

    rows = [
        ("tasks", fmt(summary.get("tasks"))),
        ("settled", fmt(summary.get("settled"))),
        ("not settled", fmt(summary.get("unsettled"))),
        (
            "latency p50 / p95",
            f"{fmt(summary.get('latency_p50_s'), ' s')} / "
            f"{fmt(summary.get('latency_p95_s'), ' s')}",
        ),
        (
            f"share over {summary.get('slo_seconds', 60):g} s SLO",
            fmt(summary.get("share_over_slo"), "%"),
        ),
        ("agreement rate", fmt(summary.get("agreement_rate"), "%")),
        ("confidence follows", str(summary.get("confidence_follows") or "undetermined")),
        ("best cost model", str(summary.get("best_cost_model"))),
        ("sats reported (known)", fmt(summary.get("known_cost_sats"))),
    ]
    print("\nheadline", file=out)
    for label, value in rows:
        print(f"  {label:<26}{value}", file=out)


def demo_audit_settings(config: AuditConfig, report_dir: Path, drop_folder: Path) -> dict[str, Any]:
    """Return the `[audit]` table of the demo's audit job.

    The user's `[audit]` table defines the production job, and nothing of it reaches the demo
    but `fail_on` (it only changes the exit code the demo says the audit would have): no
    `alert_url` (a fake run must never page anyone), no drop folders or report folder but the
    demo's own, every step on (`verify_chain`, `billing`), no `require_api` (the demo has the
    simulator's key). `demo_collect_seconds` is read by `run_demo` itself.
    """
    settings: dict[str, Any] = {
        "report_dir": str(report_dir),
        "drop_folders": [str(drop_folder)],
    }
    if "fail_on" in config.audit:
        settings["fail_on"] = config.audit["fail_on"]
    return settings


def run_demo(
    config: AuditConfig,
    *,
    out_dir: str | Path = "demo-output",
    tasks: int = DEFAULT_DEMO_TASKS,
    seed: int = 7,
    time_scale: float = DEFAULT_TIME_SCALE,
    faults: str = "mild",
    out: IO[str] | None = None,
) -> int:
    """Run the demo into `out_dir` (its store is recreated); return the exit code."""
    import polars as pl

    from asg_audit.checks import findings_with_kinds
    from asg_audit.jobs import run_audit
    from asg_audit.sim import WorldConfig, generate_world, run_simulator
    from asg_audit.track import print_track_summary, track_file
    from asg_audit.webhook_writer import utc_now
    from asg_audit.webhooks import WEBHOOK_PATH, create_webhook_app, register_webhook

    out = out or sys.stdout
    started = time.monotonic()
    folder = Path(out_dir)
    db = _fresh_store(folder)
    print(f"demo store: {db}", file=out)
    world = generate_world(WorldConfig(seed=seed, tasks=tasks, anomalies="all"))
    world.write_ground_truth(folder / "ground_truth.json")
    print(
        f"simulated world: {tasks:,} tasks, seed {seed}, anomalies planted: {len(world.anomalies)}",
        file=out,
    )
    hook_secret = Secret("whsec_demo_" + secrets.token_hex(16))
    with run_simulator(world, time_scale=time_scale, faults=faults) as sim:
        print(f"simulator: gateway {sim.gateway_url}, chain {sim.chain_url}", file=out)
        # Deliveries are received in the world's (simulated) time, so that detection delays
        # compare with simulated settlement times; their `timestamp` is the wall-clock time
        # they were sent, checked against the wall clock as any receiver does.
        receiver = create_webhook_app(
            db, [hook_secret], clock=sim.clock.now_dt, freshness_clock=utc_now
        )
        with _serve_in_thread(receiver) as receiver_url:
            register_webhook(
                sim.gateway_url, Secret(sim.api_key), receiver_url + WEBHOOK_PATH, hook_secret
            )
            print(f"webhook receiver: {receiver_url}{WEBHOOK_PATH} (registered)", file=out)
            live = _submit_live_tasks(
                sim.gateway_url, sim.api_key, 60, folder / "live-submissions.ndjson"
            )
            subs = world.write_submissions(folder / "submissions.ndjson")
            drop = _write_provider_export(world, folder / "drop" / "provider-export.jsonl")
            print_track_summary(track_file(db, subs), file=out)
            print_track_summary(track_file(db, live), file=out)
            demo_config = config.replace(
                db_path=db,
                base_url=sim.gateway_url,
                api_key=Secret(sim.api_key),
                chain_url=sim.chain_url,
                chain_network="main",  # the simulated chain index is a main-net one
                woc_api_key=None,  # the user's WOC key is never sent to the simulator
                webhook_secrets=(hook_secret,),
                # The simulated services run in scaled time: their limits (50 requests per
                # simulated second on the Gateway, 3 on the chain index) allow faster clients.
                # The world's stuck tasks never settle: a deadline of 10 simulated minutes from
                # when the collector first sees a task (12 s here) ends the collect step, where
                # the default hour would keep it polling them for 72 s.
                collector={"max_rps": 40, "concurrency": 32, "deadline_s": 600, **config.collector},
                chain={"rps": 100, **config.chain},
                audit=demo_audit_settings(config, folder / "reports", drop.parent),
            )
            print("\naudit job", file=out)
            outcome = run_audit(
                demo_config,
                clock=sim.clock,
                as_of=sim.clock.now_dt(),
                collect_seconds=float(config.audit.get("demo_collect_seconds", 3600)),
                log=out,
            )
    _print_headline(outcome.summary, out)

    from asg_audit.store import open_store

    with open_store(db, read_only=True) as store:
        findings = store.frame("findings", where="run_id = ?", params=[outcome.run_id])
        hooks = store.con.execute(
            "SELECT count(*) FROM observations WHERE source = 'webhook'"
        ).fetchall()[0][0]
    print(f"\nwebhook deliveries stored: {hooks:,}", file=out)
    by_check = findings.group_by("check_id", "severity").len().sort(["severity", "check_id"])
    print(f"\nfindings: {findings.height:,}", file=out)
    for check_id, severity, n in by_check.iter_rows():
        print(f"  {severity:<5} {check_id:<40}{n:>6,}", file=out)
    kinds = findings_with_kinds(findings).filter(pl.col("kind").is_not_null())
    found = set(kinds.select("kind", "entity_id").iter_rows())
    planted = {(a["kind"], a["entity_id"]) for a in world.anomalies}
    missed = planted - found
    print(
        f"\nground truth: {len(planted)} planted anomalies, {len(planted & found)} found, "
        f"{len(missed)} missed, {len(found - planted)} reported but not planted",
        file=out,
    )
    for kind, n in sorted(Counter(k for k, _ in missed).items()):
        print(f"  missed {kind}: {n}", file=out)
    if outcome.report_dir is not None:
        print(f"\nreport: {(outcome.report_dir / 'index.html').resolve()}", file=out)
    # The demo's anomalies are findings by design: it exits 0 when it ran (3 when it could
    # not), and says what the scheduled job would have exited with, by the fail_on it uses.
    fail_on = str(config.audit.get("fail_on", config.fail_on))
    print(
        f"audit exit code would be {outcome.exit_code} "
        f"(1: findings at or above {fail_on}; 3: incomplete); the demo exits"
        f" {EXIT_INCOMPLETE if outcome.incomplete else EXIT_OK}",
        file=out,
    )
    print(f"demo finished in {time.monotonic() - started:.0f} s", file=out)
    return EXIT_INCOMPLETE if outcome.incomplete else EXIT_OK
