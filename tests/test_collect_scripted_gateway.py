"""`collect` against a scripted Gateway on 127.0.0.1: rejected final answers, kill -9, resumes,
a Gateway that never gives a usable answer, and the progress ETA.

`script(task_id, n)` gives (status, body, headers) for the n-th request (1-based) about a task.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from _scripted_gateway import Answer, Script, pending_body, scripted_gateway, settled_body

from asg_audit.pollwriter import CollectProgress, CollectProgressReporter
from asg_audit.store import open_store

KEY = "sk_sandbox_fixh"
_settled, _pending = settled_body, pending_body


def _ok(task_id: str, n: int) -> Answer:
    return 200, _settled(task_id), {}


def _wrong_task(task_id: str, n: int) -> Answer:
    """A settled body naming another task (a proxy mixing up answers)."""
    return 200, _settled("tsk_someone_else"), {}


_gateway = scripted_gateway


def _start(
    tmp_path: Path, url: str, ids: list[str], *, deadline_s: float, extra: str = ""
) -> subprocess.Popen[str]:
    """Start `asg-audit collect --task-ids` against `url` (stdout and stderr piped)."""
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    (tmp_path / "c.toml").write_text(
        f"[collector]\ndeadline_s = {deadline_s}\nmax_rps = 20\n{extra}"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("ASG_API_KEY", "API_KEY")}
    env.update(ASG_API_KEY=KEY, ASG_BASE_URL=url)
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "asg_audit", "collect", "--db", str(tmp_path / "a.duckdb")),
            *("--config", str(tmp_path / "c.toml"), "--task-ids", str(tmp_path / "ids.txt")),
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _query(db: Path, sql: str) -> list[tuple[object, ...]]:
    with open_store(db) as store:
        return store.con.execute(sql).fetchall()


def _wait_until(what: Callable[[], bool], timeout_s: float) -> None:
    end = time.monotonic() + timeout_s
    while not what():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


IDS = [f"tsk_h{i:02d}" for i in range(5)]


# -- 1: a rejected final answer is never stored `done` ------------------------------------------


def test_kill_9_after_rejected_final_answers_leaves_them_pending_and_a_resume_collects_them(
    tmp_path: Path,
) -> None:
    db = tmp_path / "a.duckdb"
    with _gateway(_wrong_task) as bad:
        proc = _start(tmp_path, bad.url, IDS, deadline_s=300.0)
        try:
            _wait_until(lambda: bad.asked() == set(IDS), 30)
            time.sleep(2.5)  # the first write (answers and rejects) is done by then
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
    rejects = _query(db, "SELECT count(*) FROM rejects WHERE reason = 'task_id_mismatch'")
    assert rejects[0][0] >= len(IDS)
    # never `done` for an answer the same transaction rejected
    assert _query(db, "SELECT count(*) FROM poll_state WHERE state IN ('done', 'failed')") == [(0,)]
    with _gateway(_ok) as good:
        proc = _start(tmp_path, good.url, IDS, deadline_s=30.0)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "tasks: 5 polled, 0 already final" in out
    assert _query(db, "SELECT count(*) FROM results WHERE status = 'settled'") == [(5,)]
    assert _query(db, "SELECT DISTINCT state FROM poll_state") == [("done",)]


def test_a_store_left_done_without_an_answer_is_polled_again(tmp_path: Path) -> None:
    """What an earlier version left after a kill -9: `done` rows with no 200 answer stored."""
    db = tmp_path / "a.duckdb"
    with _gateway(_ok) as good:
        proc = _start(tmp_path, good.url, IDS, deadline_s=30.0)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        with open_store(db) as store, store.transaction():
            store.con.execute("DELETE FROM observations WHERE task_id IN ('tsk_h00', 'tsk_h01')")
            store.con.execute("DELETE FROM results WHERE task_id IN ('tsk_h00', 'tsk_h01')")
        proc = _start(tmp_path, good.url, IDS, deadline_s=30.0)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "tasks: 2 polled, 3 already final" in out
        assert good.codes("tsk_h00") == [200, 200]
        assert good.codes("tsk_h02") == [200]
    assert _query(db, "SELECT count(*) FROM results WHERE status = 'settled'") == [(5,)]


# -- 2: rejected answers are retried in the run; a late SIGTERM still means exit 3 ----------------


def test_rejected_final_answers_are_retried_with_backoff_within_the_run(tmp_path: Path) -> None:
    def script(task_id: str, n: int) -> Answer:
        return _wrong_task(task_id, n) if n <= 2 else _ok(task_id, n)

    with _gateway(script) as gw:
        proc = _start(tmp_path, gw.url, IDS, deadline_s=300.0)
        out, err = proc.communicate(timeout=120)
        times = {t: [at for at, tid, _ in gw.log if tid == t] for t in IDS}
    assert proc.returncode == 0, err
    assert ": completed" in out
    assert "settled 5, failed 0, not found 0, expired 0, still pending 0" in out
    assert "unusable bodies 10" in out
    for task_id in IDS:
        assert len(times[task_id]) == 3
        first, second, third = times[task_id]
        # backoff: about 5 s, then about 10 s (0.8-1.2 jitter), after the write that rejected
        assert second - first >= 3.9 and third - second >= 7.9, times[task_id]
    assert _query(tmp_path / "a.duckdb", "SELECT count(*) FROM results") == [(5,)]


def test_sigterm_while_rejected_answers_wait_for_their_retry_exits_3_at_once(
    tmp_path: Path,
) -> None:
    with _gateway(_wrong_task) as gw:
        proc = _start(tmp_path, gw.url, IDS, deadline_s=300.0)
        _wait_until(lambda: gw.asked() == set(IDS), 30)
        time.sleep(1.5)
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        took = time.monotonic() - sent
    assert proc.returncode == 3, (out, err)
    assert ": interrupted" in out
    assert took < 3.0, took
    db = tmp_path / "a.duckdb"
    assert _query(db, "SELECT DISTINCT state FROM poll_state") == [("pending",)]
    assert _query(db, "SELECT status FROM runs WHERE command = 'collect'") == [("interrupted",)]


# -- 3: on resume, 429s / 5xx / transport errors of an earlier run are no answers ---------------


def _429(retry_after: str) -> Script:
    return lambda task_id, n: (429, b'{"error": "slow down"}', {"Retry-After": retry_after})


def _interrupted_429_run(tmp_path: Path) -> None:
    """A first run that got nothing but 429s, stopped by SIGINT: poll_state attempts > 0."""
    with _gateway(_429("1")) as gw:
        proc = _start(tmp_path, gw.url, IDS, deadline_s=300.0)
        # each 429 closes the gate for a second or two: a few tasks are enough
        _wait_until(lambda: len(gw.asked()) >= 3, 60)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    assert proc.returncode == 3
    rows = _query(tmp_path / "a.duckdb", "SELECT state, attempts, last_http_status FROM poll_state")
    asked = [row for row in rows if int(str(row[1])) >= 1]
    assert len(asked) >= 3
    assert all(state == "pending" and code == 429 for state, _, code in asked)


def test_resume_after_only_429s_stores_the_first_202_of_each_task(tmp_path: Path) -> None:
    _interrupted_429_run(tmp_path)
    with _gateway(lambda task_id, n: (202, _pending(task_id), {})) as gw:
        proc = _start(tmp_path, gw.url, IDS, deadline_s=6.0)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "expired 5" in out
    db = tmp_path / "a.duckdb"
    assert _query(db, "SELECT count(*), count(DISTINCT task_id) FROM observations") == [(5, 5)]
    assert _query(db, "SELECT DISTINCT http_status FROM observations") == [(202,)]
    assert _query(db, "SELECT count(*) FROM results WHERE status = 'pending'") == [(5,)]


def test_resume_after_only_429s_never_expires_a_task_never_answered(tmp_path: Path) -> None:
    """The deadline (4 s) passes behind a closed gate (Retry-After 4 s, plus jitter): a task only
    answered by 429s is polled when the gate reopens; the run stops on nothing but 429s (exit 3)."""
    _interrupted_429_run(tmp_path)
    with _gateway(_429("4")) as gw:
        proc = _start(tmp_path, gw.url, IDS, deadline_s=4.0)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, (out, err)
    assert "answered nothing but 429" in err
    db = tmp_path / "a.duckdb"
    assert _query(db, "SELECT DISTINCT state FROM poll_state") == [("pending",)]
    stats = _query(db, "SELECT stats FROM runs WHERE command = 'collect' ORDER BY started_at")
    assert json.loads(str(stats[-1][0]))["expired"] == 0


# -- 4: a Gateway that never gives a usable answer stops the run, exit 3, naming the status ------


def _redirect(task_id: str, n: int) -> Answer:
    page = b"<html><body>301 Moved</body></html>"
    headers = {"Location": f"https://user:pw@api.example.test/v1/tasks/{task_id}/result?x=1"}
    return 302, page, {**headers, "Content-Type": "text/html"}


def _nginx_400(task_id: str, n: int) -> Answer:
    page = b"<html><head><title>400 Bad Request</title></head><body>nginx</body></html>"
    return 400, page, {"Content-Type": "text/html"}


def _nginx_200(task_id: str, n: int) -> Answer:
    page = b"<html><head><title>Welcome to nginx!</title></head></html>"
    return 200, page, {"Content-Type": "text/html"}


def test_a_gateway_answering_only_redirects_fails_the_run_with_exit_3(tmp_path: Path) -> None:
    with _gateway(_redirect) as gw:
        proc = _start(tmp_path, gw.url, IDS, deadline_s=300.0)
        out, err = proc.communicate(timeout=90)
    assert proc.returncode == 3, (out, err)
    errors = [line for line in err.splitlines() if line.startswith("asg-audit: error:")]
    assert len(errors) == 1, err
    message = errors[0]
    assert f"no usable answer from {gw.url}" in message
    assert "HTTP status 302: " in message
    assert "(last: answered 302 (Location: https://api.example.test/v1/tasks/" in message
    assert "pw" not in message and "x=1" not in message
    db = tmp_path / "a.duckdb"
    assert _query(db, "SELECT status FROM runs WHERE command = 'collect'") == [("failed",)]
    assert _query(db, "SELECT DISTINCT state FROM poll_state") == [("pending",)]
    details = _query(db, "SELECT DISTINCT split_part(detail, ':', 1) FROM rejects")
    assert details == [("answered 302 (Location",)]
    stats = json.loads(str(_query(db, "SELECT stats FROM runs")[0][0]))
    assert stats["http_other"] >= 3 and stats["http_other_statuses"] == {"302": stats["http_other"]}


def test_a_gateway_answering_400_or_a_web_page_fails_the_run_with_exit_3(tmp_path: Path) -> None:
    for name, script, status in (("a", _nginx_400, 400), ("b", _nginx_200, 200)):
        folder = tmp_path / name
        folder.mkdir()
        with _gateway(script) as gw:
            proc = _start(folder, gw.url, IDS, deadline_s=300.0)
            out, err = proc.communicate(timeout=90)
        assert proc.returncode == 3, (name, out, err)
        assert f"no usable answer from {gw.url}" in err
        assert f"HTTP status {status}: " in err
        db = folder / "a.duckdb"
        assert _query(db, "SELECT status FROM runs WHERE command = 'collect'") == [("failed",)]


def test_the_summary_shows_other_http_statuses() -> None:
    from asg_audit.pollwriter import CollectSummary

    summary = CollectSummary(
        run_id="r",
        status="failed",
        stats={"requests": 9, "http_other": 9, "http_other_statuses": {"400": 2, "302": 7}},
    )
    assert summary.lines()[3].endswith(", other statuses 9 (302: 7, 400: 2)")


# -- 6: an honest ETA -------------------------------------------------------------------------


def _snap(**counts: Any) -> CollectProgress:
    base: dict[str, object] = {
        "settled": 0,
        "pending": 300,
        "not_found": 0,
        "expired": 0,
        "throttled": 0,
        "requests": 0,
        "next_poll_in_s": 0.0,
    }
    return CollectProgress(**{**base, **counts})


def test_eta_is_unknown_before_anything_finished() -> None:
    line = CollectProgressReporter(live=False).line(_snap())
    assert line.endswith(
        "| pending 300 | not found 0 | expired 0 | throttled 0 | 5xx 0"
        " | transport errors 0 | 0.0 tasks/s | ETA ?"
    ), line


def test_eta_is_unknown_while_429s_hold_the_run_back() -> None:
    reporter = CollectProgressReporter(live=False)
    reporter.line(_snap(settled=3, pending=2, throttled=10, next_poll_in_s=3.0))
    line = reporter.line(_snap(settled=3, pending=2, throttled=14, next_poll_in_s=3.5))
    assert line.endswith("ETA ?")


def test_eta_counts_the_not_found_grace_window(tmp_path: Path) -> None:
    """Three tasks waiting out the 404 grace (60 s) with a poll every 10 s: the ETA is the end of
    the grace window, not the next poll."""
    from asg_audit.config import load_config
    from asg_audit.pollrun import CollectorRun
    from asg_audit.polltask import PollTask as _Task
    from asg_audit.pollwriter import CollectorSettings
    from asg_audit.schedule import FixedInterval, TaskFacts

    class Frozen:
        def now(self) -> float:
            return 1000.0

        async def sleep(self, seconds: float) -> None:
            pass

    config = load_config(None, env={"ASG_API_KEY": KEY}, overrides={"db_path": "x.duckdb"})
    run = CollectorRun(
        config=config,
        settings=CollectorSettings(not_found_grace_s=60.0),
        policy=FixedInterval(10.0),
        clock=Frozen(),
        task_ids=None,
        run_for_s=None,
        progress=None,
        stop_event=None,
        transport=None,
    )
    for i, first_404 in enumerate((970.0, 975.0, 980.0)):
        t = _Task(facts=TaskFacts(f"tsk_n{i}", None, None, None), next_poll_at=1010.0)
        t.first_404_at = first_404
        run.tasks[t.facts.task_id] = t
        run._push(t)
    run.pending = 3
    assert run.snapshot().next_poll_in_s == pytest.approx(40.0)
