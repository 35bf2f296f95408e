"""`collect` against a local HTTP server on 127.0.0.1 that answers 429 with a Retry-After.

A Retry-After longer than the deadline stops the run at once (exit 3, saying when to come back)
instead of blocking it silently; an absurd one (`1e308`, the year 9999) is capped at
`MAX_RETRY_AFTER_S`; a task whose deadline passes while the gate is closed is expired then;
the ETA and a log line account for the closed gate.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from email.utils import formatdate
from pathlib import Path

import pytest
from _manual_clock import ManualClock
from _scripted_gateway import Answer, ScriptedGateway, scripted_gateway, settled_body

from asg_audit.clock import ScaledClock
from asg_audit.collector import collect
from asg_audit.config import load_config
from asg_audit.gateway import parse_retry_after
from asg_audit.pollwriter import CollectProgress, CollectProgressReporter
from asg_audit.ratelimit import MAX_RETRY_AFTER_S, TokenBucket
from asg_audit.store import open_store

KEY = "sk_sandbox_retryafter"
# (status, Retry-After or None) for the n-th request (1-based) about a task
Script = Callable[[str, int], tuple[int, str | None]]


def _answer(code: int, retry_after: str | None, task_id: str) -> Answer:
    body = {
        200: settled_body(task_id),
        202: json.dumps({"task_id": task_id, "status": "pending"}).encode(),
        429: b'{"error": "slow down"}',
    }.get(code, b'{"error": "internal"}')
    return code, body, {} if retry_after is None else {"Retry-After": retry_after}


@contextmanager
def _gateway(script: Script) -> Iterator[ScriptedGateway]:
    """A Gateway on 127.0.0.1 answering as `script` says: (status, Retry-After or None)."""
    with scripted_gateway(lambda task_id, n: _answer(*script(task_id, n), task_id)) as gateway:
        yield gateway


def _states(db: Path) -> dict[str, str]:
    with open_store(db) as store:
        return dict(store.con.execute("SELECT task_id, state FROM poll_state").fetchall())


def _run_statuses(db: Path) -> list[str]:
    with open_store(db) as store:
        rows = store.con.execute("SELECT status FROM runs WHERE command = 'collect'").fetchall()
    return [r[0] for r in rows]


def _collect_cli(
    tmp_path: Path, ids: list[str], deadline_s: float, script: Script
) -> tuple[subprocess.CompletedProcess[str], float, ScriptedGateway]:
    """`asg-audit collect --task-ids` of `ids` against a gateway answering as `script` says;
    return the finished process, its wall seconds and the gateway."""
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    (tmp_path / "c.toml").write_text(f"[collector]\ndeadline_s = {deadline_s}\nmax_rps = 20\n")
    env = {k: v for k, v in os.environ.items() if k not in ("ASG_API_KEY", "API_KEY")}
    with _gateway(script) as gateway:
        env.update(ASG_API_KEY=KEY, ASG_BASE_URL=gateway.url)
        started = time.monotonic()
        done = subprocess.run(
            [
                *(sys.executable, "-m", "asg_audit", "collect", "--db", str(tmp_path / "a.duckdb")),
                *("--config", str(tmp_path / "c.toml"), "--task-ids", str(tmp_path / "ids.txt")),
            ],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return done, time.monotonic() - started, gateway


# -- a Retry-After longer than the deadline: the run stops at once, exit 3 ---------------------


@pytest.mark.parametrize(
    ("retry_after", "come_back"),
    [
        ("3600", "after 20"),
        ("1e308", "later"),
        ("99999999999999999999", "later"),
        ("Fri, 31 Dec 9999 23:59:59 GMT", "after 9999-12-31T23:59:59Z"),
    ],
)
def test_collect_retry_after_longer_than_the_deadline_stops_the_run_with_exit_3(
    tmp_path: Path, retry_after: str, come_back: str
) -> None:
    ids = ["tsk_r1", "tsk_r2", "tsk_r3"]
    done, elapsed, _ = _collect_cli(tmp_path, ids, 5.0, lambda task_id, n: (429, retry_after))
    assert done.returncode == 3, done.stderr
    assert elapsed < 15
    errors = [line for line in done.stderr.splitlines() if line.startswith("asg-audit: error:")]
    assert len(errors) == 1, done.stderr
    message = errors[0]
    assert "rate-limited the run (429) with a Retry-After of" in message
    assert "longer than the deadline (5 s)" in message
    assert "3 tasks stay pending" in message
    assert f"run collect again {come_back}" in message
    assert KEY not in done.stderr + done.stdout
    # nothing was made final from 429s; the next run polls every task again
    db = tmp_path / "a.duckdb"
    assert _run_statuses(db) == ["failed"]
    assert set(_states(db).values()) <= {"pending"}


# -- a gate shorter than the deadline: waited for, logged, in the ETA; deadlines still hold -------


def test_collect_task_whose_deadline_passes_behind_a_closed_gate_is_expired_then(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """tsk_a: pending, pending, pending, then a 429 asking 20 s at about 15 s of its 20 s
    deadline. tsk_b: 500s until then (never answered), 200 once the gate reopened. Clock: 10 s
    a wall s."""
    throttled: list[float] = []

    def script(task_id: str, n: int) -> tuple[int, str | None]:
        if task_id == "tsk_a":
            if n <= 3:
                return 202, None
            if n == 4:
                throttled.append(time.monotonic())
                return 429, "20"
            return 200, None
        # (a request in flight when the gate closed still gets a 500)
        return (200, None) if throttled and time.monotonic() > throttled[0] + 0.5 else (500, None)

    snaps: list[tuple[float, CollectProgress]] = []

    class Recording(CollectProgressReporter):
        def update(self, snap: object) -> None:
            assert isinstance(snap, CollectProgress)
            snaps.append((time.monotonic(), snap))

    db = tmp_path / "a.duckdb"
    with _gateway(script) as gateway:
        config = load_config(
            None,
            env={"ASG_API_KEY": KEY, "ASG_BASE_URL": gateway.url},
            overrides={"db_path": str(db), "collector": {"deadline_s": 20.0, "max_rps": 20.0}},
        )
        clock = ScaledClock(time.time(), time_scale=0.1)
        with caplog.at_level(logging.WARNING, logger="asg_audit.collector"):
            summary = asyncio.run(
                collect(
                    config,
                    clock=clock,
                    schedule="fixed",
                    task_ids=["tsk_a", "tsk_b"],
                    progress=Recording(live=False),
                    run_for_s=200.0,
                )
            )
        a, b = gateway.answers("tsk_a"), gateway.answers("tsk_b")
    assert summary.status == "completed"
    assert _states(db) == {"tsk_a": "expired", "tsk_b": "done"}
    assert (summary.expired, summary.settled, summary.pending) == (1, 1, 0)
    # tsk_a was expired at its deadline, behind the gate: never polled again
    assert [code for _, code in a] == [202, 202, 202, 429]
    # nothing went before the gate reopened (20 clock s = 2 wall s; a request in flight when
    # it closed is answered within milliseconds)
    closed_at = throttled[0]
    after = [at for at, _ in a + b if at > closed_at + 0.2]
    assert after and min(after) - closed_at >= 1.9
    reopened = min(after)
    # the ETA counted the closed gate all along (it read 0 once tsk_a's deadline had passed)
    closed = [(at, snap) for at, snap in snaps if closed_at + 0.1 < at < reopened - 0.3]
    assert closed
    for at, snap in closed:
        assert snap.next_poll_in_s is not None
        assert snap.next_poll_in_s >= 0.5 * (reopened - at) - 0.1, (at, snap)
    gate_lines = [r.getMessage() for r in caplog.records if "rate limited (429)" in r.getMessage()]
    assert len(gate_lines) == 1
    assert "no request for 20 s, until 20" in gate_lines[0]


@pytest.mark.parametrize("retry_after", ["7200", "in 2 h"])
def test_collect_retry_after_over_an_hour_is_capped_at_one_hour(
    tmp_path: Path, retry_after: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A deadline longer than the ask keeps the run going: the gate closes for at most
    MAX_RETRY_AFTER_S (1 h), then the task is polled. Clock: 1,000 s a wall s."""
    if retry_after == "in 2 h":
        retry_after = formatdate(time.time() + 7200, usegmt=True)
    db = tmp_path / "a.duckdb"
    with _gateway(lambda task_id, n: (429, retry_after) if n == 1 else (200, None)) as gateway:
        config = load_config(
            None,
            env={"ASG_API_KEY": KEY, "ASG_BASE_URL": gateway.url},
            overrides={"db_path": str(db), "collector": {"deadline_s": 86400.0}},
        )
        clock = ScaledClock(time.time(), time_scale=0.001)
        with caplog.at_level(logging.WARNING, logger="asg_audit.collector"):
            summary = asyncio.run(
                collect(config, clock=clock, task_ids=["tsk_c"], run_for_s=10_000.0)
            )
        answers = gateway.answers("tsk_c")
    assert summary.settled == 1, summary
    assert [code for _, code in answers] == [429, 200]
    gap = answers[1][0] - answers[0][0]
    assert MAX_RETRY_AFTER_S * 0.001 - 0.1 <= gap <= MAX_RETRY_AFTER_S * 0.001 + 2.5
    gate_lines = [r.getMessage() for r in caplog.records if "rate limited (429)" in r.getMessage()]
    assert len(gate_lines) == 1
    assert "no request for 3,600 s (Retry-After " in gate_lines[0]
    assert ", capped), until " in gate_lines[0]


# -- nothing but 429s: the run stops after a deadline of them; the control probe's 429 --------


def test_collect_nothing_but_429s_for_longer_than_the_deadline_stops_the_run_with_exit_3(
    tmp_path: Path,
) -> None:
    """Each Retry-After (1 s) is shorter than the deadline (4 s), but no answer ever comes: the
    run used to poll for ever (tasks never answered are never expired)."""
    done, elapsed, gateway = _collect_cli(
        tmp_path, ["tsk_f1", "tsk_f2"], 4.0, lambda task_id, n: (429, "1")
    )
    asked = len(gateway.log)
    assert done.returncode == 3, done.stderr
    assert 4 <= elapsed < 30
    assert asked >= 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("asg-audit: error:")]
    assert len(errors) == 1, done.stderr
    assert "answered nothing but 429 (rate limited) for " in errors[0]
    assert "longer than the deadline (4 s): stopped, 2 tasks stay pending" in errors[0]
    assert "run collect again later, or with a lower --max-rps" in errors[0]
    db = tmp_path / "a.duckdb"
    assert _run_statuses(db) == ["failed"]
    assert set(_states(db).values()) <= {"pending"}


def test_collect_429s_between_answers_do_not_stop_the_run(tmp_path: Path) -> None:
    """A 429 now and then, with answers between them, never adds up to the deadline."""
    db = tmp_path / "a.duckdb"

    def script(task_id: str, n: int) -> tuple[int, str | None]:
        return (429, "1") if n % 2 else ((202, None) if n < 6 else (200, None))

    with _gateway(script) as gateway:
        config = load_config(
            None,
            env={"ASG_API_KEY": KEY, "ASG_BASE_URL": gateway.url},
            overrides={"db_path": str(db), "collector": {"deadline_s": 30.0, "max_rps": 20.0}},
        )
        clock = ScaledClock(time.time(), time_scale=0.1)
        summary = asyncio.run(
            collect(config, clock=clock, schedule="fixed", task_ids=["tsk_g"], run_for_s=300.0)
        )
        codes = [code for _, code in gateway.answers("tsk_g")]
    assert summary.status == "completed", summary
    assert summary.settled == 1
    assert codes == [429, 202, 429, 202, 429, 200]


def test_collect_a_429_to_the_control_probe_closes_the_gate(tmp_path: Path) -> None:
    """Only 404s: the run asks a task this store saw settle (the control task). Its 429 asks
    for 40 clock s: nothing may go before then (it used to be ignored). Clock: 10 s a wall s."""
    db = tmp_path / "a.duckdb"
    probe_429: list[float] = []

    def script(task_id: str, n: int) -> tuple[int, str | None]:
        if task_id == "tsk_ctl":
            if n == 2:  # its first answer settled it in the first run; this is the probe
                probe_429.append(time.monotonic())
                return 429, "40"
            return 200, None
        return 404, None

    with _gateway(script) as gateway:
        config = load_config(
            None,
            env={"ASG_API_KEY": KEY, "ASG_BASE_URL": gateway.url},
            overrides={"db_path": str(db), "collector": {"max_rps": 20.0}},
        )
        first = asyncio.run(collect(config, task_ids=["tsk_ctl"], run_for_s=30.0))
        assert first.settled == 1
        clock = ScaledClock(time.time(), time_scale=0.1)
        unknown = [f"tsk_u{i:02d}" for i in range(25)]
        asyncio.run(
            collect(config, clock=clock, schedule="fixed", task_ids=unknown, run_for_s=120.0)
        )
        with gateway.lock:
            log = list(gateway.log)
    assert probe_429, log
    closed_at = probe_429[0]
    # a request in flight when the gate closed is answered within milliseconds
    after = [at for at, _, _ in log if at > closed_at + 0.2]
    assert after, log
    assert min(after) - closed_at >= 3.8


# -- the pieces: the header's value as asked, the bucket's cap --------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("1e308", 1e308),
        ("99999999999999999999", 1e20),
        ("1e999", math.inf),
        ("inf", math.inf),
        ("Fri, 31 Dec 9999 23:59:59 GMT", 253402300799.0 - 1000.0),
        ("Fri, 31 Dec 99999 23:59:59 GMT", None),
        ("nan", None),
        ("-inf", 0.0),
        ("12", 12.0),
    ],
)
def test_collect_retry_after_header_gives_what_was_asked(value: str, seconds: float | None) -> None:
    assert parse_retry_after(value, now=1000.0) == seconds


@pytest.mark.parametrize("asked", [1e308, math.inf, 253402300799.0, 7200.0])
def test_collect_retry_after_gate_is_capped(asked: float) -> None:
    clock = ManualClock()
    bucket = TokenBucket(clock, max_rps=10, jitter_s=0.5)
    resume = bucket.on_throttled(asked)
    assert clock.t + MAX_RETRY_AFTER_S <= resume <= clock.t + MAX_RETRY_AFTER_S + 0.5
    assert bucket.reserve() == resume
    assert bucket.gate_wait_s(asked) == MAX_RETRY_AFTER_S
    assert bucket.gate_wait_s(math.nan) == bucket.retry_floor_s
    assert TokenBucket(clock, max_rps=10, retry_max_s=30.0).gate_wait_s(asked) == 30.0
