"""Crash consistency: `ingest`, `collect` and `serve-webhooks` killed with SIGKILL and restarted.

Each command runs as a subprocess against inputs from the simulator's world (the Gateway on
127.0.0.1 for `collect`), is killed at seeded random moments, restarted on the same store each
time, and finally left to finish. Then: no task lost, no observation duplicated, the results
equal those of a run of the same command without kills, and the store opens cleanly. The default
run kills each command 3 times; the `slow` variants 20 times.
"""

from __future__ import annotations

import json
import random
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest
from _hardening_procs import (
    KillLog,
    asg_audit,
    assert_store_opens_cleanly,
    clean_env,
    duplicated_observations,
    query,
    results_fingerprint,
    run_with_kills,
    wait_store_open,
)
from _webhooks_server import free_port, signed, wait_healthy

from asg_audit.ingest_files import track_file
from asg_audit.sim import WorldConfig, generate_world, run_simulator
from asg_audit.webhooks import WEBHOOK_PATH

QUICK_KILLS = 3
LONG_KILLS = 20


def _observations(db: Path) -> int:
    return query(db, "SELECT count(*) FROM observations")[0][0]


# -- ingest ---------------------------------------------------------------------------------------


def _exports(tmp_path: Path, *, files: int, per_file: int, seed: int) -> tuple[Path, set[str]]:
    """Write the world's results export split into `files` NDJSON files, with one bad line each."""
    world = generate_world(WorldConfig(seed=seed, tasks=files * per_file, anomalies="all"))
    lines = world.write_results_export(tmp_path / "all.ndjson").read_text().splitlines()
    folder = tmp_path / "exports"
    folder.mkdir()
    size = -(-len(lines) // files)
    for i in range(files):
        chunk = lines[i * size : (i + 1) * size]
        chunk.insert(len(chunk) // 2, '{"task_id": "tsk_truncated", "status": "sett')  # a reject
        (folder / f"part-{i:03d}.ndjson").write_text("\n".join(chunk) + "\n")
    return folder, {json.loads(line)["task_id"] for line in lines}


def _ingest_with_kills(
    tmp_path: Path,
    *,
    kills: int,
    files: int,
    seed: int,
    per_file: int = 2000,
    delay: tuple[float, float] = (0.15, 0.3),
) -> KillLog:
    """Ingest a folder of exports with `kills` SIGKILLs, each after `delay` (low, high) times
    the work of the same ingest without kills: the moments scale with the machine (in a CI run
    slower than ours, fixed kills 0.05 to 0.6 s in all landed before the first commit)."""
    folder, tasks = _exports(tmp_path, files=files, per_file=per_file, seed=seed)
    env = clean_env()
    reference = tmp_path / "reference.duckdb"
    unkilled = run_with_kills(
        asg_audit("ingest", str(folder), "--db", str(reference)),
        db=reference,
        kills=0,
        seed=seed,
        delay=(0, 0),
        env=env,
        cwd=tmp_path,
        committed=_observations,
        ready=lambda proc: wait_store_open(proc, reference),
    )
    db = tmp_path / "killed.duckdb"
    log = run_with_kills(
        asg_audit("ingest", str(folder), "--db", str(db)),
        db=db,
        kills=kills,
        seed=seed,
        delay=(delay[0] * unkilled.work_seconds, delay[1] * unkilled.work_seconds),
        env=env,
        cwd=tmp_path,
        ready=lambda proc: wait_store_open(proc, db),
        last_after_commit=True,
        committed=lambda p: (
            query(p, "SELECT count(*) FROM ingested_files")[0][0] + _observations(p)
        ),
    )
    assert log.kills == kills
    assert log.final_returncode == 0, log.final_stderr
    assert {r[0] for r in query(db, "SELECT task_id FROM results")} == tasks  # no task lost
    assert duplicated_observations(db) == 0
    assert results_fingerprint(db) == results_fingerprint(reference)
    for table in ("observations", "rejects", "ingested_files"):
        assert query(db, f"SELECT count(*) FROM {table}") == query(
            reference, f"SELECT count(*) FROM {table}"
        ), table
    assert query(db, "SELECT count(*) FROM rejects")[0][0] == files  # one bad line per file
    assert assert_store_opens_cleanly(db)["results"] == len(tasks)
    print(
        f"\ningest: {log.kills} kills, {files} files, {len(tasks)} tasks, progress {log.progress},"
        f" unkilled {unkilled.work_seconds:.1f} s"
    )
    return log


def test_hardening_ingest_killed_3_times_ends_as_an_unkilled_run(tmp_path: Path) -> None:
    # 36 files of about 0.6 MB: small files, read whole and stored in groups of about 4 MiB
    # (six or seven files), the first committed about a sixth of the way in. Kills a fifth to
    # three tenths in: they land after a commit, and two cannot leave so little that the third
    # start finishes before its kill lands.
    log = _ingest_with_kills(tmp_path, kills=QUICK_KILLS, files=36, seed=101, delay=(0.2, 0.3))
    assert log.progress[-1] > 0  # at least one kill landed after a commit


def test_hardening_ingest_of_large_files_killed_3_times_ends_as_an_unkilled_run(
    tmp_path: Path,
) -> None:
    # 16 files of about 1.3 MB: each streamed and stored in its own transaction. A restart skips
    # the files already stored at the cost of hashing them, so the work left after two kills (at
    # most three tenths of the work in each) must still outlast the third kill's delay: with 5
    # files the third start found them all stored and ended before its kill (a CI run).
    log = _ingest_with_kills(tmp_path, kills=QUICK_KILLS, files=16, per_file=4000, seed=103)
    assert log.progress[-1] > 0  # at least one kill landed after a commit


@pytest.mark.slow
def test_hardening_ingest_killed_20_times_ends_as_an_unkilled_run(tmp_path: Path) -> None:
    log = _ingest_with_kills(tmp_path, kills=LONG_KILLS, files=90, seed=102, delay=(0.005, 0.07))
    assert len(set(log.progress)) >= 3  # kills landed before and between commits


# -- collect --------------------------------------------------------------------------------------


def _collect_with_kills(
    tmp_path: Path, *, kills: int, tasks: int, seed: int, delay: tuple[float, float]
) -> KillLog:
    # Every task is final before the run (no live tasks), so a run without kills is the
    # expected answer whatever the timing; the collector's pace makes the work last.
    world = generate_world(
        WorldConfig(
            seed=seed,
            tasks=tasks,
            live_fraction=0.0,
            anomalies={"cost_mismatch": 3, "missing_txid": 3, "label_outside_options": 3},
        )
    )
    subs = world.write_submissions(tmp_path / "subs.ndjson")
    reference, db = tmp_path / "reference.duckdb", tmp_path / "killed.duckdb"
    track_file(reference, subs)
    track_file(db, subs)
    with run_simulator(world) as sim:
        env = clean_env(ASG_API_KEY=sim.api_key, ASG_BASE_URL=sim.gateway_url)
        # Small write batches: more commits for the kills to fall between.
        config = tmp_path / "asg_audit.toml"
        config.write_text("[collector]\nflush_interval_s = 0.3\nbatch_size = 40\n")
        argv = ("collect", "--config", str(config), "--max-rps", "60", "--concurrency", "8")
        unkilled = run_with_kills(
            asg_audit(*argv, "--db", str(reference)),
            db=reference,
            kills=0,
            seed=seed,
            delay=(0, 0),
            env=env,
            cwd=tmp_path,
            committed=_observations,
            ready=lambda proc: wait_store_open(proc, reference),
        )
        # Kills `delay` times the work of the run without kills in (fixed moments from 0.3 to
        # 2.5 s all landed before the first commit in a CI run slower than ours).
        log = run_with_kills(
            asg_audit(*argv, "--db", str(db)),
            db=db,
            kills=kills,
            seed=seed,
            delay=(delay[0] * unkilled.work_seconds, delay[1] * unkilled.work_seconds),
            env=env,
            cwd=tmp_path,
            committed=_observations,
            ready=lambda proc: wait_store_open(proc, db),
            last_after_commit=True,
        )
    assert log.kills == kills
    assert log.final_returncode == 0, log.final_stderr
    states = dict(query(db, "SELECT task_id, state FROM poll_state"))
    assert set(states) == {t["task_id"] for t in world.ground_truth()["tasks"]}  # no task lost
    assert states == dict(query(reference, "SELECT task_id, state FROM poll_state"))
    assert set(states.values()) == {"done"}
    assert duplicated_observations(db) == 0
    assert query(
        db, "SELECT max(n) FROM (SELECT count(*) n FROM observations GROUP BY task_id)"
    ) == [(1,)]  # one answer per task: nothing polled twice into the store
    assert results_fingerprint(db) == results_fingerprint(reference)
    assert_store_opens_cleanly(db)
    print(
        f"\ncollect: {log.kills} kills, {len(states)} tasks, progress {log.progress},"
        f" unkilled {unkilled.work_seconds:.1f} s"
    )
    return log


def test_hardening_collect_killed_3_times_ends_as_an_unkilled_run(tmp_path: Path) -> None:
    log = _collect_with_kills(tmp_path, kills=QUICK_KILLS, tasks=300, seed=201, delay=(0.2, 0.4))
    assert log.progress[-1] > 0


@pytest.mark.slow
def test_hardening_collect_killed_20_times_ends_as_an_unkilled_run(tmp_path: Path) -> None:
    log = _collect_with_kills(tmp_path, kills=LONG_KILLS, tasks=1500, seed=202, delay=(0.01, 0.1))
    assert len(set(log.progress)) >= 3


# -- serve-webhooks -------------------------------------------------------------------------------

HOOK_SECRET = "whsec_hardening_crash"


class _Provider:
    """The Gateway's side of webhooks: deliver every body, retrying until a 2xx, at a pace."""

    def __init__(self, url: str, bodies: list[bytes], *, rate: float, senders: int = 4) -> None:
        self.url, self.rate, self.senders = url, rate, senders
        self.queue = list(reversed(bodies))
        self.lock = threading.Lock()
        self.acked: list[bytes] = []
        self.threads = [threading.Thread(target=self._send, daemon=True) for _ in range(senders)]

    def _send(self) -> None:
        with httpx.Client(timeout=10) as client:
            while True:
                with self.lock:
                    if not self.queue:
                        return
                    body = self.queue.pop()
                raw, headers = signed(body, HOOK_SECRET)
                while True:
                    try:
                        answer = client.post(self.url, content=raw, headers=headers)
                        if 200 <= answer.status_code < 300:
                            break
                    except httpx.HTTPError:
                        pass  # the receiver is down: retry as the provider does
                    time.sleep(0.05)
                with self.lock:
                    self.acked.append(body)
                time.sleep(self.senders / self.rate)

    def start(self) -> _Provider:
        for t in self.threads:
            t.start()
        return self

    @property
    def done(self) -> bool:
        return not any(t.is_alive() for t in self.threads)

    def join(self) -> None:
        for t in self.threads:
            t.join(600)


def _webhook_bodies(tmp_path: Path, *, tasks: int, seed: int) -> list[bytes]:
    world = generate_world(WorldConfig(seed=seed, tasks=tasks, anomalies="all"))
    lines = world.write_webhook_log(tmp_path / "hooks.ndjson").read_text().splitlines()
    random.Random(seed).shuffle(lines)  # out of order, as the Gateway delivers
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    bodies = []
    for line in lines:
        record = json.loads(line)
        record["timestamp"] = now  # signed "now" (the log holds simulated times)
        bodies.append(json.dumps(record).encode())
    return bodies + bodies[:20]  # and some redeliveries


def _serve(db: Path, port: int) -> list[str]:
    return asg_audit("serve-webhooks", "--host", "127.0.0.1", "--port", str(port), "--db", str(db))


def _webhooks_with_kills(tmp_path: Path, *, kills: int, tasks: int, seed: int) -> KillLog:
    bodies = _webhook_bodies(tmp_path, tasks=tasks, seed=seed)
    env = clean_env(ASG_WEBHOOK_SECRET=HOOK_SECRET)
    results = {}
    logs = {}
    for name, n_kills in (("reference", 0), ("killed", kills)):
        db, port = tmp_path / f"{name}.duckdb", free_port()
        url = f"http://127.0.0.1:{port}"
        provider = _Provider(url + WEBHOOK_PATH, bodies, rate=150).start()

        def finish(proc, provider=provider) -> None:
            provider.join()
            proc.terminate()  # SIGTERM: the receiver drains and normalises what it committed

        def ready(proc, url=url) -> None:
            wait_healthy(url, proc, timeout=60)

        logs[name] = run_with_kills(
            _serve(db, port),
            db=db,
            kills=n_kills,
            seed=seed,
            delay=(0.1, 1.0),
            env=env,
            cwd=tmp_path,
            committed=lambda p: query(
                p, "SELECT count(*) FROM webhook_deliveries WHERE outcome = 'stored'"
            )[0][0],
            ready=ready,
            finish=finish,
        )
        # Uvicorn re-raises SIGTERM after its graceful shutdown: -15 is a clean stop here.
        assert logs[name].final_returncode in (0, -signal.SIGTERM), logs[name].final_stderr
        assert query(db, "SELECT status FROM runs ORDER BY started_at DESC LIMIT 1") == [
            ("finished",)
        ]
        assert len(provider.acked) == len(bodies)  # every delivery was acknowledged at last
        results[name] = db
    db, reference = results["killed"], results["reference"]
    sent = {json.loads(b)["task_id"] for b in bodies}
    observed = {
        r[0] for r in query(db, "SELECT task_id FROM observations WHERE source = 'webhook'")
    }
    assert observed == sent  # no acknowledged delivery lost
    assert duplicated_observations(db) == 0
    stored = (
        "SELECT count(*), count(DISTINCT event_key) FROM webhook_deliveries"
        " WHERE outcome = 'stored'"
    )
    assert query(db, stored) == query(reference, stored)  # each event stored once
    assert results_fingerprint(db) == results_fingerprint(reference)
    assert_store_opens_cleanly(db)
    assert logs["killed"].kills == kills
    print(
        f"\nserve-webhooks: {kills} kills, {len(bodies)} deliveries, {len(sent)} tasks,"
        f" progress {logs['killed'].progress}"
    )
    return logs["killed"]


def test_hardening_serve_webhooks_killed_3_times_loses_no_delivery(tmp_path: Path) -> None:
    log = _webhooks_with_kills(tmp_path, kills=QUICK_KILLS, tasks=500, seed=301)
    assert log.progress[-1] > 0


@pytest.mark.slow
def test_hardening_serve_webhooks_killed_20_times_loses_no_delivery(tmp_path: Path) -> None:
    log = _webhooks_with_kills(tmp_path, kills=LONG_KILLS, tasks=3000, seed=302)
    assert len(set(log.progress)) >= 3
