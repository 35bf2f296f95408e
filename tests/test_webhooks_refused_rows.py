"""What the real receiver records and prints about deliveries it refuses or cuts off.

Security tester E, fixer G6:
1. a stale delivery's detail said a timestamp in the past was `+N s from now` (and a future one
   `-N s`): it now says `N s in the past` / `N s in the future`;
2. a connection the receiver closed itself (request deadline, connection cap) was recorded as
   `the sender disconnected`, http_status 400, though nothing was answered: it is now answered
   (408 / 503) and recorded as closed by the receiver, with that status and reason;
3. a secret pasted into `[webhooks] path` was printed in the `listening on` line;
4. `POST <path>/` was redirected (307, built from the Host header) without a row: it is now an
   unknown path like any other (404, no row, no Location);
5. with `forwarded_allow_ips`, `remote_addr` stored whatever X-Forwarded-For held: it now stores
   only an IP address, else the proxy's address and a note in `detail`.
"""

from __future__ import annotations

import contextlib
import re
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
from _webhooks_server import SECRET, free_port, payload, receiver_process, signed

DEADLINE_S = 2.0
CAP = 5
HOOK = f"/hooks/{SECRET}"  # a secret pasted into the path


@contextlib.contextmanager
def _receiver(tmp_path: Path, http: str = "auto") -> Iterator[tuple[str, Any]]:
    db = tmp_path / "g6.duckdb"
    config = tmp_path / "asg_audit.toml"
    config.write_text(
        f'[webhooks]\nhttp = "{http}"\npath = "{HOOK}"\n'
        f'forwarded_allow_ips = "127.0.0.1"\nrequest_timeout_seconds = {DEADLINE_S}\n'
        f"max_connections = {CAP}\n"
    )
    port = free_port()
    with receiver_process(db, port, extra=("--config", str(config))) as proc:
        yield f"http://127.0.0.1:{port}", proc
        proc.terminate()
        out, err = (b.decode() for b in proc.communicate(timeout=30))
        proc.g6_out, proc.g6_err = out, err


def _rows(db: Path) -> list[dict[str, Any]]:
    with duckdb.connect(str(db), read_only=True) as con:
        cur = con.execute(
            "SELECT outcome, http_status, task_id, remote_addr, detail FROM webhook_deliveries"
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _post(url: str, task_id: str, *, at: datetime | None = None, **headers: str) -> httpx.Response:
    body, head = signed(payload(task_id, at=at))
    return httpx.post(url, content=body, headers={**head, **headers}, timeout=10)


PAST = datetime(2020, 1, 1, tzinfo=UTC)
FUTURE = datetime(2030, 1, 1, tzinfo=UTC)
JUNK = "<script>alert(1)</script>" + "A" * 5000
ZONE = "fe80::1%<b>x</b>"  # `ipaddress` takes any text as an IPv6 zone


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One receiver, sent every case below; what it answered, printed and recorded."""
    tmp_path = tmp_path_factory.mktemp("g6")
    answers: dict[str, httpx.Response] = {}
    with _receiver(tmp_path) as (base, proc):
        url = base + HOOK
        answers["past"] = _post(url, "tsk_past", at=PAST)
        answers["future"] = _post(url, "tsk_future", at=FUTURE)
        checked_at = datetime.now(UTC)
        answers["slash"] = _post(url + "/", "tsk_slash")
        answers["unknown"] = _post(base + "/hooks/elsewhere", "tsk_unknown")
        # X-Forwarded-For from the trusted proxy (127.0.0.1)
        answers["ip"] = _post(url, "tsk_xff_ip", **{"X-Forwarded-For": "203.0.113.7"})
        answers["junk"] = _post(url, "tsk_xff_junk", **{"X-Forwarded-For": JUNK})
        answers["zone"] = _post(url, "tsk_xff_zone", **{"X-Forwarded-For": ZONE})
    rows = {r["task_id"]: r for r in _rows(tmp_path / "g6.duckdb")}
    return {
        "answers": answers,
        "rows": rows,
        "out": proc.g6_out,
        "err": proc.g6_err,
        "checked_at": checked_at,
    }


def test_stale_detail_says_past_or_future(served: dict[str, Any]) -> None:
    assert served["answers"]["past"].status_code == 400
    assert served["answers"]["future"].status_code == 400
    for task_id, when, way in (("tsk_past", PAST, "past"), ("tsk_future", FUTURE, "future")):
        detail = served["rows"][task_id]["detail"]
        match = re.fullmatch(rf"timestamp (\d+) s in the {way}, window 300 s", detail)
        assert match, detail
        expected = abs((served["checked_at"] - when).total_seconds())
        assert abs(int(match.group(1)) - expected) < 120, detail


def test_trailing_slash_is_an_unknown_path_not_a_redirect(
    served: dict[str, Any],
) -> None:
    slash, unknown = served["answers"]["slash"], served["answers"]["unknown"]
    assert slash.status_code == unknown.status_code == 404, (slash, slash.headers)
    assert "location" not in slash.headers
    # neither is a delivery: no row for either, as for any unknown path
    assert "tsk_slash" not in served["rows"] and "tsk_unknown" not in served["rows"]
    assert len(served["rows"]) == 5, served["rows"]


def test_remote_addr_is_only_an_ip_address(served: dict[str, Any]) -> None:
    rows = served["rows"]
    assert all(served["answers"][k].status_code == 200 for k in ("ip", "junk", "zone"))
    assert rows["tsk_xff_ip"]["remote_addr"] == "203.0.113.7"
    assert rows["tsk_xff_ip"]["detail"] is None
    for task_id in ("tsk_xff_junk", "tsk_xff_zone"):
        row = rows[task_id]
        assert row["outcome"] == "stored"
        assert row["remote_addr"] == "127.0.0.1", row  # the proxy's (the TCP peer)
        assert "X-Forwarded-For names no IP address" in (row["detail"] or ""), row
        assert "<" not in row["detail"] and "AAAA" not in row["detail"]


def test_listening_line_masks_a_secret_in_the_path(served: dict[str, Any]) -> None:
    listening = next(line for line in served["out"].splitlines() if "listening on" in line)
    assert listening.endswith("/hooks/***"), listening
    assert SECRET not in served["out"] + served["err"]


def _half_sent(port: int, sent: int = 10, declared: int = 300) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(
        f"POST {HOOK} HTTP/1.1\r\nHost: x\r\nContent-Length: {declared}\r\n"
        f"X-ASG-Signature: sha256={'0' * 64}\r\n\r\n".encode()
        + b"x" * sent
    )
    return sock


def _answer_line(sock: socket.socket, timeout: float) -> str:
    sock.settimeout(timeout)
    try:
        data = sock.recv(200)
    except (TimeoutError, ConnectionResetError) as exc:
        return type(exc).__name__
    return data.split(b"\r\n", 1)[0].decode()


@pytest.mark.parametrize("http", ["httptools", "h11"])
def test_connections_the_receiver_closes_are_recorded_as_such(tmp_path: Path, http: str) -> None:
    with _receiver(tmp_path, http) as (base, _proc):
        port = int(base.rsplit(":", 1)[1])
        first = _half_sent(port, sent=7)
        time.sleep(0.3)
        # CAP more half-sent requests: the first (receiving longest) is closed to make room
        rest = [_half_sent(port) for _ in range(CAP)]
        evicted_answer = _answer_line(first, 5)
        # the others are closed at the request deadline
        timed_out_answers = [_answer_line(sock, DEADLINE_S + 5) for sock in rest]
        for sock in [first, *rest]:
            sock.close()
        time.sleep(0.5)  # let the rows be queued before the stop
    rows = _rows(tmp_path / "g6.duckdb")
    assert len(rows) == CAP + 1, rows
    assert all(r["outcome"] == "truncated" for r in rows), rows
    assert not any("sender disconnected" in r["detail"] for r in rows), rows
    evicted = [r for r in rows if r["http_status"] == 503]
    assert len(evicted) == 1, rows
    assert evicted[0]["detail"].startswith(
        "the receiver closed the connection (still receiving its request when the receiver"
        f" reached its limit of {CAP} connections; answered 503) after 7 bytes of 300"
    ), evicted
    timed_out = [r for r in rows if r["http_status"] == 408]
    assert len(timed_out) == CAP, rows
    for row in timed_out:
        assert row["detail"].startswith(
            "the receiver closed the connection (no whole request within"
            f" {DEADLINE_S:g} s; answered 408) after 10 bytes of 300"
        ), row
    # and each was answered so, the sender learning why (the provider retries a 503)
    assert evicted_answer == "HTTP/1.1 503 Service Unavailable"
    assert timed_out_answers == ["HTTP/1.1 408 Request Timeout"] * CAP
