"""verify-chain against a chain index that answers 503 to everything (a real HTTP server).

It is retried `[chain] max_retries` times (about 90 s at the default 8); the error then names
the index (its URL as messages show URLs) and what it answered, in the library's exception, in
the run `asg-audit runs` shows, and on the command line's one error line (exit 3).
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from _chain_index import settled_store
from _hardening_procs import asg_audit, clean_env, query
from _http_server import serve

from asg_audit.chain import verify_chain
from asg_audit.config import AuditConfig
from asg_audit.errors import ApiTransientError

TXIDS = {f"tsk_down{i}": f"{i + 1:02x}" * 32 for i in range(3)}
RETRIES = 2  # 3 attempts, pauses of 0.5 s and 1 s


@contextmanager
def unavailable_index() -> Iterator[tuple[str, list[str]]]:
    """A chain index on 127.0.0.1 answering 503 to every request; yields its chain URL and
    the requests it answered (method and path)."""
    answered: list[str] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _down(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            with lock:
                answered.append(f"{self.command} {self.path}")
            body = b'{"error": "down for maintenance"}'
            # a reason phrase of its own: the error gives the standard one, not this text
            self.send_response(503, "Try \x1b[31mlater")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _down

        def log_message(self, *args: object) -> None:
            pass

    with serve(Handler) as url:
        yield url + "/v1/bsv/main", answered


def test_the_error_names_the_index_and_its_503s(tmp_path: Path) -> None:
    db = settled_store(tmp_path, TXIDS)
    with unavailable_index() as (url, answered):
        config = AuditConfig(db_path=db, chain_url=url, chain={"rps": 1000, "max_retries": RETRIES})
        with pytest.raises(ApiTransientError) as caught:
            verify_chain(db, config)
    message = str(caught.value)
    assert message.startswith(f"the chain index at {url} answered 503 Service Unavailable"), message
    assert "on every request (POST /txs, 3 attempts in " in message, message
    assert "\x1b" not in message and "Try" not in message, message
    assert answered == ["POST /v1/bsv/main/txs"] * (RETRIES + 1), answered
    [(status, stats)] = query(db, "SELECT status, stats FROM runs WHERE command = 'verify-chain'")
    assert status == "failed"
    assert json.loads(stats)["error"] == message


def test_the_command_says_which_index_answered_503(tmp_path: Path) -> None:
    db = settled_store(tmp_path, TXIDS)
    config = tmp_path / "asg_audit.toml"
    config.write_text(f"[chain]\nmax_retries = {RETRIES}\nrps = 1000\n")
    with unavailable_index() as (url, answered):
        done = subprocess.run(
            asg_audit("verify-chain", "--db", str(db), "--config", str(config), "--quiet"),
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=clean_env(ASG_CHAIN_URL=url),
            timeout=60,
        )
    assert done.returncode == 3, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith(
        f"asg-audit: error: the chain index at {url} answered 503 Service Unavailable on every"
        " request (POST /txs, 3 attempts in "
    ), done.stderr
    assert len(answered) == RETRIES + 1, answered


def _index_answering(respond: object) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            respond(self)  # type: ignore[operator]

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    return Handler


def _slow_index_error(tmp_path: Path, chain: dict[str, float]) -> tuple[str, str]:
    """verify-chain against an index that takes every request and does not answer for 10 s:
    return the index's URL and the message of the ApiTransientError it raises."""
    db = settled_store(tmp_path, TXIDS)
    stop = threading.Event()

    def hang(handler: BaseHTTPRequestHandler) -> None:
        stop.wait(10)

    with serve(_index_answering(hang)) as base:
        url = base + "/v1/bsv/main"
        config = AuditConfig(db_path=db, chain_url=url, chain={"rps": 1000, **chain})
        try:
            with pytest.raises(ApiTransientError) as caught:
                verify_chain(db, config)
        finally:
            stop.set()
    return url, str(caught.value)


def test_an_index_too_slow_to_answer_is_said_to_be_slow_not_unreachable(tmp_path: Path) -> None:
    # the connection is accepted and the request sent: "could not be reached" pointed at DNS
    # or the network; the index was there and did not answer in time
    url, message = _slow_index_error(
        tmp_path, {"max_retries": 1, "timeout_seconds": 0.5, "concurrency": 1}
    )
    assert message.startswith(
        f"the chain index at {url} did not answer within 0.5 s: ReadTimeout on every request"
        " (POST /txs, 2 attempts in "
    ), message
    assert "could not be reached" not in message


def test_a_refused_key_names_the_index(tmp_path: Path) -> None:
    db = settled_store(tmp_path, TXIDS)

    def refuse(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(401)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    with serve(_index_answering(refuse)) as base:
        url = base + "/v1/bsv/main"
        config = AuditConfig(db_path=db, chain_url=url, chain={"rps": 1000})
        with pytest.raises(Exception, match="refused the key") as caught:
            verify_chain(db, config)
    assert str(caught.value) == (
        f"the chain index at {url} refused the key (401); check WOC_API_KEY"
    )


def test_an_index_that_never_answers_in_time_is_slow_not_unreachable_at_default_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With the default retries the run stops once 3 requests over 10 s got no answer at all
    # (the client's "cannot reach" guard), before the retries run out: that message too says
    # the index was reached and too slow. (10 s shortened to 0.5 s here.)
    import asg_audit.chain as chain_module

    monkeypatch.setattr(chain_module, "UNREACHABLE_AFTER_S", 0.5)
    url, message = _slow_index_error(tmp_path, {"timeout_seconds": 0.3, "concurrency": 1})
    assert message.startswith(
        f"the chain index at {url} did not answer within 0.3 s: no answer to 3 requests in"
    ), message
    assert "cannot reach" not in message and "ReadTimeout" in message
