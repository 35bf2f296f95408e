"""verify-chain against a misbehaving index: a garbling proxy in front of the simulator's index.

Nonsense block fields are refused (never a crash, never `confirmed`); answers are paired with
txids by the txid they name (another order changes nothing, an answer naming no txid proves
nothing); a stop while the index is failing ends the run in seconds, keeping what was fetched.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from _chain_sim import Scenario, scenario
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from asg_audit.chain import VerifySummary, reconciliation_findings, verify_chain
from asg_audit.store import open_store

_VERIFY = (sys.executable, "-m", "asg_audit", "verify-chain")
Garble = Callable[[str, list[Any]], list[Any] | None]  # (path, answers) -> answers, None: 503


class GarblingIndex:
    """A proxy to the simulator's chain index that rewrites bulk answers with `garble`."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.garble: Garble | None = None
        self.calls: list[str] = []

    def app(self) -> Starlette:
        async def forward(request: Request) -> Response:
            path = "/" + request.path_params["path"]
            self.calls.append(path)
            async with httpx.AsyncClient() as http:
                answer = await http.request(
                    request.method, self.upstream + path, content=await request.body()
                )
            body = answer.content
            if self.garble is not None and answer.status_code == 200 and path.startswith("/txs"):
                garbled = self.garble(path, json.loads(body))
                if garbled is None:
                    return Response(b'{"error": "down"}', 503)
                # Not JSONResponse: Infinity must go out as the JSON extension it is.
                body = json.dumps(garbled).encode()
            return Response(body, answer.status_code, media_type="application/json")

        return Starlette(
            routes=[Route("/v1/bsv/main/{path:path}", forward, methods=["GET", "POST"])]
        )


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Scenario, str, GarblingIndex]]:
    with scenario(tmp_path_factory.mktemp("faults"), seed=11, tasks=300) as sc:
        proxy = GarblingIndex(sc.sim.chain_url)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        server = uvicorn.Server(uvicorn.Config(proxy.app(), log_level="critical", lifespan="off"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.01)
        yield sc, f"http://127.0.0.1:{sock.getsockname()[1]}/v1/bsv/main", proxy
        server.should_exit = True
        thread.join(5)


@pytest.fixture(scope="module")
def honest(
    world: tuple[Scenario, str, GarblingIndex], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[str, str | None]]:
    """txid -> (status, block hash) as verify-chain stores them from the honest index."""
    sc, _, _ = world
    db = tmp_path_factory.mktemp("honest") / "honest.duckdb"
    shutil.copy(sc.db, db)
    verify_chain(db, sc.config)
    return _stored(db)


@pytest.fixture
def run(
    world: tuple[Scenario, str, GarblingIndex], tmp_path: Path
) -> Iterator[Callable[[Garble | None], tuple[Path, VerifySummary]]]:
    """Run verify_chain on a fresh copy of the store through the proxy with a garbling."""
    sc, url, proxy = world

    def go(garble: Garble | None) -> tuple[Path, VerifySummary]:
        db = tmp_path / "garbled.duckdb"
        shutil.copy(sc.db, db)
        proxy.garble, proxy.calls = garble, []
        return db, verify_chain(db, sc.config.replace(chain_url=url))

    yield go
    proxy.garble = None


def _stored(db: Path) -> dict[str, tuple[str, str | None]]:
    with open_store(db, read_only=True) as store:
        rows = store.con.execute("SELECT txid, status, block_hash, note FROM chain_txs").fetchall()
    return {t: (s, h) for t, s, h, _ in rows}


def _notes(db: Path) -> dict[str, str]:
    with open_store(db, read_only=True) as store:
        rows = store.con.execute("SELECT txid, note FROM chain_txs").fetchall()
    return {t: n or "" for t, n in rows}


def _on_mined(field: str, value: Any) -> Garble:
    def garble(path: str, answers: list[Any]) -> list[Any]:
        for a in answers:
            if path == "/txs" and "blockhash" in a:
                a[field] = value
        return answers

    return garble


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("blocktime", 10**15, "blocktime"),
        ("blocktime", -5, "blocktime"),
        ("blocktime", 1.5, "blocktime"),
        ("confirmations", float("inf"), "confirmations"),
        ("confirmations", -1, "confirmations"),
        ("confirmations", "lots", "confirmations"),
        ("blockheight", 2**70, "blockheight"),
        ("blockheight", True, "blockheight"),
        ("blockhash", 12345, "blockhash"),
        ("blockhash", "zz" * 32, "blockhash"),
        ("blockhash", "", "no block hash"),
    ],
)
def test_chain_index_faults_bad_block_field_refused(
    run: Any, honest: dict[str, tuple[str, str | None]], field: str, value: Any, named: str
) -> None:
    db, summary = run(_on_mined(field, value))
    mined = {t for t, (_, h) in honest.items() if h is not None}
    stored, notes = _stored(db), _notes(db)
    assert mined and summary.confirmed == 0
    assert {t for t, (s, _) in stored.items() if s == "refused"} == mined
    assert all(named in notes[t] for t in mined)
    # the txids the index answered without block fields are unaffected
    assert {t: s for t, (s, _) in stored.items() if t not in mined} == {
        t: s for t, (s, _) in honest.items() if t not in mined
    }


def test_chain_index_faults_bad_block_field_cli_exit_3(
    world: tuple[Scenario, str, GarblingIndex], tmp_path: Path
) -> None:
    sc, url, proxy = world
    db = tmp_path / "cli.duckdb"
    shutil.copy(sc.db, db)
    proxy.garble = _on_mined("blocktime", 10**15)
    try:
        done = subprocess.run(
            [*_VERIFY, "--db", str(db), "--quiet"],
            env={**os.environ, "ASG_CHAIN_URL": url},
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        proxy.garble = None
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr
    assert "refused:" in done.stdout and "blocktime" in done.stdout


def test_chain_index_faults_answers_in_reverse_order_paired_by_txid(
    run: Any, honest: dict[str, tuple[str, str | None]]
) -> None:
    db, summary = run(lambda path, answers: answers[::-1])
    assert summary.refused == 0
    assert _stored(db) == honest


def test_chain_index_faults_reverse_order_finds_planted_unknowns_only(
    run: Any, world: tuple[Scenario, str, GarblingIndex]
) -> None:
    sc, _, _ = world
    db, _ = run(lambda path, answers: answers[::-1])
    findings, _ = reconciliation_findings(db, sc.config, prefixes=("chain.txid_unknown",))
    planted = {e for _, e in sc.planted(("txid_unknown_on_chain",))}
    assert set(findings["entity_id"]) == planted and planted


def _renamed(txid: Any) -> Garble:
    def garble(path: str, answers: list[Any]) -> list[Any]:
        for a in answers:
            if txid is None:
                a.pop("txid", None)
            else:
                a["txid"] = txid
        return answers

    return garble


@pytest.mark.parametrize("txid", [None, 7, "ee" * 32], ids=["no-txid", "int-txid", "not-asked"])
def test_chain_index_faults_answer_naming_no_asked_txid_is_no_evidence(
    run: Any, world: tuple[Scenario, str, GarblingIndex], txid: Any
) -> None:
    sc, _, _ = world
    db, summary = run(_renamed(txid))
    stored = _stored(db)
    assert summary.unknown == 0 and summary.confirmed == 0
    assert {s for s, _ in stored.values()} == {"refused"}
    findings, _ = reconciliation_findings(db, sc.config, prefixes=("chain.txid_unknown",))
    assert findings.height == 0


def test_chain_index_faults_missing_answers_asked_again(
    run: Any, honest: dict[str, tuple[str, str | None]]
) -> None:
    dropped: set[str] = set()

    def drop_first(path: str, answers: list[Any]) -> list[Any]:
        # Half the txids of each call get no answer the first time they are asked.
        kept = []
        for i, a in enumerate(answers):
            if i % 2 and a["txid"] not in dropped:
                dropped.add(a["txid"])
            else:
                kept.append(a)
        return kept

    db, summary = run(drop_first)
    assert summary.refused == 0
    assert _stored(db) == honest


def test_chain_index_faults_contradictory_answers_refused(
    run: Any, honest: dict[str, tuple[str, str | None]]
) -> None:
    def twice(path: str, answers: list[Any]) -> list[Any]:
        return answers + [{**a, "blockhash": "ff" * 32} for a in answers if "blockhash" in a]

    db, _ = run(twice)
    mined = {t for t, (_, h) in honest.items() if h is not None}
    stored = _stored(db)
    assert {t for t, (s, _) in stored.items() if s == "refused"} == mined
    assert all("twice" in _notes(db)[t] for t in mined)


def test_chain_index_faults_other_error_is_not_unknown(
    run: Any, honest: dict[str, tuple[str, str | None]]
) -> None:
    def other_error(path: str, answers: list[Any]) -> list[Any]:
        return [{**a, "error": "internal"} if "error" in a else a for a in answers]

    db, summary = run(other_error)
    unknown = {t for t, (s, _) in honest.items() if s == "unknown"}
    assert unknown and summary.unknown == 0
    assert {t for t, (s, _) in _stored(db).items() if s == "refused"} == unknown


def test_chain_index_faults_sigterm_while_index_fails_stops_in_seconds(
    world: tuple[Scenario, str, GarblingIndex], tmp_path: Path
) -> None:
    sc, url, proxy = world
    db = tmp_path / "stop.duckdb"
    shutil.copy(sc.db, db)
    (tmp_path / "one.toml").write_text("[chain]\nconcurrency = 1\nrps = 1000\n")
    answered: list[int] = []

    def fail_after_two(path: str, answers: list[Any]) -> list[Any] | None:
        if len(answered) >= 2:
            return None
        answered.append(len(answers))
        return answers

    proxy.garble, proxy.calls = fail_after_two, []
    try:
        child = subprocess.Popen(
            [*_VERIFY, "--db", str(db), "--quiet", "--config", str(tmp_path / "one.toml")],
            env={**os.environ, "ASG_CHAIN_URL": url},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 60
        while len(proxy.calls) < 5:  # two answered, then failing retries (pauses 0.5, 1 s)
            assert child.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        stopped_at = time.monotonic()
        child.send_signal(signal.SIGTERM)
        try:
            _, err = child.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            pytest.fail("verify-chain still running 20 s after SIGTERM")
        took = time.monotonic() - stopped_at
    finally:
        proxy.garble = None
    assert took < 5, f"stopping took {took:.1f} s"
    assert child.returncode == 3, err
    assert "Traceback" not in err
    with open_store(db, read_only=True) as store:
        runs = store.con.execute(
            "SELECT status FROM runs WHERE command = 'verify-chain'"
        ).fetchall()
        kept = store.con.execute("SELECT count(*) FROM chain_txs").fetchone()
    assert runs == [("interrupted",)]
    assert kept == (sum(answered),)  # the two batches answered before the outage are kept
