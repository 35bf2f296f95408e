"""JSON nested deeper than Python's parser goes, in a service's answer (tester H).

`json.loads` raises RecursionError for it, which no caller expected: a Gateway 200 of a settled
result with `"extra": [[[...]]]` (4 KB) killed each poll's task and `collect` (and the scheduled
`audit`) hung past `--deadline`; `billing`, `verify-chain` and `webhooks register` printed a
traceback and exited 1 (the exit code of findings). It is now invalid JSON like any other
(`asg_audit.jsonload`). And a poll task that fails for any other reason (a bug, a custom
schedule's own code) stops the run instead of leaving it waiting for that task for ever.
Real servers on 127.0.0.1, the real command in subprocesses.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from _hardening_procs import asg_audit, clean_env, query
from _http_server import serve
from _records import settled_line
from _scripted_gateway import Answer, scripted_gateway, settled_body, tracked_store

from asg_audit.clock import ScaledClock
from asg_audit.collector import collect
from asg_audit.config import load_config
from asg_audit.errors import ApiStatusError
from asg_audit.ingest_files import ingest
from asg_audit.jsonload import loads
from asg_audit.schedule import FixedInterval

KEY = "sk_sandbox_deepjson"
DEEP = 2_000
NESTED = ("[" * DEEP + "]" * DEEP).encode()


def _deep_result(task_id: str, n: int) -> Answer:
    body = settled_body(task_id)[:-1] + b', "extra": ' + NESTED + b"}"
    return 200, body, {}


def test_jsonload_reads_too_deep_json_as_invalid_json() -> None:
    with pytest.raises(RecursionError):
        json.loads(NESTED)  # what every caller met
    with pytest.raises(ValueError, match="nested too deep"):
        loads(NESTED)
    assert loads(b'{"a": [[1]]}') == {"a": [[1]]}


def test_collect_keeps_a_too_deep_answer_as_a_reject_and_ends(tmp_path: Path) -> None:
    db = tracked_store(tmp_path, ["tsk_d1", "tsk_d2"])
    config = load_config(
        None,
        env={"ASG_API_KEY": KEY, "ASG_BASE_URL": "http://127.0.0.1:9"},
        overrides={"db_path": str(db), "collector": {"max_rps": 50.0, "deadline_s": 60.0}},
    )
    with scripted_gateway(_deep_result) as gateway:
        started = time.monotonic()
        clock = ScaledClock(1_790_000_000.0, time_scale=0.05)
        with pytest.raises(ApiStatusError, match="no usable answer") as failure:
            asyncio.run(collect(config.replace(base_url=gateway.url), clock=clock))
        took = time.monotonic() - started
    assert took < 30, took  # it used to hang until killed
    assert "invalid_json" in str(failure.value)
    rejects = query(db, "SELECT count(*), min(reason) FROM rejects")[0]
    assert rejects[0] >= 2 and rejects[1] == "invalid_json"
    assert query(db, "SELECT count(*) FROM results WHERE status = 'settled'")[0][0] == 0
    assert query(db, "SELECT status FROM runs WHERE command = 'collect'") == [("failed",)]


class _Exploding(FixedInterval):
    """A custom schedule whose own code fails on the first pending answer."""

    def observe_pending(self, task, sent_at):  # type: ignore[no-untyped-def]
        raise ZeroDivisionError("the schedule's own bug")


def test_a_poll_task_that_fails_stops_the_run_and_is_raised(tmp_path: Path) -> None:
    db = tracked_store(tmp_path, ["tsk_p1", "tsk_p2", "tsk_p3"])

    def pending(task_id: str, n: int) -> Answer:
        return 202, json.dumps({"task_id": task_id, "status": "pending"}).encode(), {}

    with scripted_gateway(pending) as gateway:
        config = load_config(
            None,
            env={"ASG_API_KEY": KEY, "ASG_BASE_URL": gateway.url},
            overrides={"db_path": str(db), "collector": {"max_rps": 50.0, "deadline_s": 600.0}},
        )
        started = time.monotonic()
        clock = ScaledClock(1_790_000_000.0, time_scale=0.05)
        with pytest.raises(ZeroDivisionError, match="the schedule's own bug"):
            asyncio.run(collect(config, clock=clock, schedule=_Exploding()))
        took = time.monotonic() - started
    assert took < 30, took
    ((status, stats),) = query(db, "SELECT status, stats FROM runs WHERE command = 'collect'")
    assert status == "failed"
    assert "ZeroDivisionError" in json.loads(stats)["error"]


def _deep_server(status: int = 200) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(NESTED)))
            self.end_headers()
            self.wfile.write(NESTED)

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    return Handler


def _run(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        asg_audit(*args), capture_output=True, text=True, env=clean_env(**env), cwd=cwd, timeout=120
    )


def _one_settled_task(folder: Path, config_text: str) -> tuple[Path, Path]:
    """Return a store holding one settled task (its txid to verify, its month to bill) and a
    config file of `config_text`."""
    export = folder / "e.ndjson"
    export.write_text(settled_line("tsk_1") + "\n")
    db = folder / "a.duckdb"
    ingest(db, export)
    config = folder / "c.toml"
    config.write_text(config_text)
    return db, config


def _one_error_line(done: subprocess.CompletedProcess[str], service: str) -> str:
    assert done.returncode == 3, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "RecursionError" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("asg-audit: error:")]
    assert len(errors) == 1, done.stderr
    assert service in errors[0]
    return errors[0]


def test_billing_with_a_too_deep_answer_exits_3_with_one_line(tmp_path: Path) -> None:
    db, config = _one_settled_task(tmp_path, "[billing]\nmax_retries = 0\n")
    with serve(_deep_server()) as url:
        done = _run(
            "billing", "--db", str(db), "--config", str(config),
            env={"ASG_API_KEY": KEY, "ASG_BASE_URL": url}, cwd=tmp_path,
        )  # fmt: skip
    line = _one_error_line(done, "GET /v1/billing/")
    assert "not JSON" in line and KEY not in done.stderr


def test_verify_chain_with_a_too_deep_answer_exits_3_with_one_line(tmp_path: Path) -> None:
    db, config = _one_settled_task(tmp_path, "[chain]\nmax_retries = 0\n")
    with serve(_deep_server()) as url:
        done = _run(
            "verify-chain", "--db", str(db), "--config", str(config), "--quiet",
            env={"ASG_CHAIN_URL": url}, cwd=tmp_path,
        )  # fmt: skip
    line = _one_error_line(done, "chain index")
    assert "not JSON" in line


def test_webhooks_register_with_a_too_deep_answer_exits_3_with_one_line(tmp_path: Path) -> None:
    with serve(_deep_server(201)) as url:
        done = _run(
            "webhooks", "register", "--db", str(tmp_path / "w.duckdb"),
            "--url", "https://hooks.example/webhooks/asg",
            env={"ASG_API_KEY": KEY, "ASG_BASE_URL": url, "ASG_WEBHOOK_SECRET": "whsec_deep"},
            cwd=tmp_path,
        )  # fmt: skip
    line = _one_error_line(done, "POST ")
    assert "not JSON" in line and "whsec_deep" not in done.stderr


def test_the_normaliser_refuses_a_too_deep_polled_body_as_the_receiver_does() -> None:
    """The collector cannot read it (Python's parser gives up), so it must not become a result
    the run never saw: DuckDB would read it, and stored it as a settled result."""
    from datetime import UTC, datetime

    from asg_audit.model import Source
    from asg_audit.normalize import RawRecord, normalise_records

    at = datetime(2026, 11, 1, tzinfo=UTC)
    deep = _deep_result("tsk_n1", 1)[1]
    shallow = settled_body("tsk_n2")
    batch = normalise_records(
        [
            RawRecord(deep, Source.POLL, "GET /v1/tasks/tsk_n1/result", at, http_status=200),
            RawRecord(shallow, Source.POLL, "GET /v1/tasks/tsk_n2/result", at, http_status=200),
        ]
    )
    assert batch.accepted["task_id"].to_list() == ["tsk_n2"]
    ((reason, detail, raw),) = batch.rejects.select("reason", "detail", "raw").rows()
    assert reason == "invalid_json" and "nested 2001 levels, over the limit of 512" in detail
    assert raw == deep


def test_a_body_that_is_not_utf8_is_named_as_the_store_names_it(tmp_path: Path) -> None:
    """A gzip body the server did not label: the run's error said `invalid_json` while every
    stored reject said `invalid_utf8` (tester H #8). Both say `invalid_utf8` now."""
    import gzip

    db = tracked_store(tmp_path, ["tsk_z1"])

    def gzipped(task_id: str, n: int) -> Answer:
        return 200, gzip.compress(settled_body(task_id)), {}

    with scripted_gateway(gzipped) as gateway:
        config = load_config(
            None,
            env={"ASG_API_KEY": KEY, "ASG_BASE_URL": gateway.url},
            overrides={"db_path": str(db), "collector": {"max_rps": 50.0, "deadline_s": 60.0}},
        )
        clock = ScaledClock(1_790_000_000.0, time_scale=0.05)
        with pytest.raises(ApiStatusError) as failure:
            asyncio.run(collect(config, clock=clock))
    assert "unusable body (invalid_utf8)" in str(failure.value)
    assert query(db, "SELECT DISTINCT reason FROM rejects") == [("invalid_utf8",)]


def test_verify_chain_gives_up_on_an_index_that_never_answers(tmp_path: Path) -> None:
    """An index that accepts connections and never answers held verify-chain (and its store)
    for minutes: every request waited its timeout, then was retried 8 times (tester H #6). As
    `collect` does, it stops after 3 requests over 10 s with no answer at all: exit 3."""
    import socket
    import threading

    db, config = _one_settled_task(tmp_path, "[chain]\ntimeout_seconds = 2\n")
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept_and_hold() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            held.append(conn)  # read nothing, answer nothing

    threading.Thread(target=accept_and_hold, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        started = time.monotonic()
        done = _run(
            "verify-chain", "--db", str(db), "--config", str(config), "--quiet",
            env={"ASG_CHAIN_URL": url}, cwd=tmp_path,
        )  # fmt: skip
        took = time.monotonic() - started
    finally:
        listener.close()
        for conn in held:
            conn.close()
    # reached and silent: slow, not unreachable (the message said "cannot reach ... check
    # ASG_CHAIN_URL and the network", pointing at DNS or the network)
    line = _one_error_line(done, f"the chain index at {url} did not answer within 2 s")
    assert "no answer to" in line and "cannot reach" not in line
    assert took < 45, took  # about 18 s; it was about 110 s with these settings
