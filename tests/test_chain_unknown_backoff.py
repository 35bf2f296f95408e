"""verify-chain's back-off of txids the chain index does not know (the simulator's index).

A txid the index answered `{"txid", "error": "unknown"}` for used to be asked again on every
run: 40,000 of them cost an hourly audit about 10 minutes of requests. Now it is asked again
only once `[chain] unknown_recheck_seconds` has passed since that answer, twice as long after
each further unknown answer in a row (at most `unknown_recheck_max_seconds`); the summary says
how many were left for later and when the first is due; `recheck_unknown=True` asks them all
now; an answer that is not `unknown` ends the back-off. The findings read the stored status,
which stays `unknown`: they are the same whether or not the txids were asked.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from _chain_sim import Scenario, scenario
from _hardening_procs import asg_audit, clean_env, query

from asg_audit.chain import reconciliation_findings, verify_chain
from asg_audit.chain_verify import pending_txid_count, unknown_recheck_delay
from asg_audit.config import AuditConfig
from asg_audit.errors import ConfigError
from asg_audit.migrations import MIGRATIONS
from asg_audit.store import open_store

_DUE = re.compile(r"the next is due at (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    with scenario(tmp_path_factory.mktemp("backoff"), seed=11, tasks=300) as sc:
        yield sc


@pytest.fixture
def db(world: Scenario, tmp_path: Path) -> Path:
    """A fresh copy of the ingested store: no chain answer stored yet."""
    copy = tmp_path / "audit.duckdb"
    shutil.copy(world.db, copy)
    return copy


def _unknown(world: Scenario) -> set[str]:
    """The settled txids the simulator's index does not know (planted `txid_unknown_on_chain`)."""
    settled = {
        t.lower()
        for (t,) in query(
            world.db, "SELECT bsv_txid FROM results WHERE status = 'settled' AND bsv_txid NOT NULL"
        )
    }
    unknown = {t for t, tx in world.sim.world.txs.items() if not tx.known and t in settled}
    assert unknown, "the world plants txids unknown to the index"
    return unknown


@contextmanager
def served(world: Scenario, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Record what the simulator's index served while inside: `txids` every txid it was asked
    about (in any bulk call), `requests` how many requests it answered."""
    state = world.sim.state
    seen: dict[str, Any] = {"txids": [], "requests": 0}
    before = state.chain_stats.snapshot()["requests"]
    lookup = state.tx

    def counted(txid: str, now: float) -> Any:
        seen["txids"].append(txid)
        return lookup(txid, now)

    with monkeypatch.context() as patch:
        patch.setattr(state, "tx", counted)
        yield seen
    seen["requests"] = state.chain_stats.snapshot()["requests"] - before


def _stored_unknown(db: Path) -> dict[str, tuple[Any, ...]]:
    rows = query(
        db,
        "SELECT txid, unknown_streak, fetched_at, checks, run_id FROM chain_txs"
        " WHERE status = 'unknown'",
    )
    return {t: tuple(rest) for t, *rest in rows}


def _chain_findings(db: Path, config: AuditConfig) -> pl.DataFrame:
    found, _ = reconciliation_findings(db, config, prefixes=("chain.txid_unknown",))
    return found.select("check_id", "severity", "entity_id", "message").sort("entity_id")


def test_a_second_run_asks_none_of_the_unknown_txids_and_says_so(
    world: Scenario, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unknown = _unknown(world)
    with served(world, monkeypatch) as first:
        before = datetime.now(UTC)
        one = verify_chain(db, world.config)
    assert unknown <= set(first["txids"]) and one.unknown == len(unknown)
    stored = _stored_unknown(db)
    assert set(stored) == unknown and {s[0] for s in stored.values()} == {1}
    findings = _chain_findings(db, world.config)
    assert findings.height, "the unknown txids are findings"

    with served(world, monkeypatch) as second:
        two = verify_chain(db, world.config)
    assert not unknown & set(second["txids"]), second["txids"]
    # only the unconfirmed txids were asked: one bulk request
    assert two.checked == two.unconfirmed == len(set(second["txids"]))
    assert second["requests"] == two.requests == 1
    assert two.unknown_backed_off == len(unknown) and two.unknown == 0
    line = next(ln for ln in two.lines() if ln.startswith("unknown txids not asked"))
    assert line.startswith(
        f"unknown txids not asked this run (back-off): {len(unknown)}; the next is due at "
    ), line
    assert line.endswith("(--recheck-unknown asks them all now)"), line
    match = _DUE.search(line)
    assert match is not None, line
    due = datetime.strptime(match[1], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    # the default first interval: a minute after the first unknown answer (to the second, up)
    answered = min(s[1] for s in stored.values())
    assert before < answered and 0 <= (due - answered).total_seconds() - 60 < 1
    assert two.unknown_next_due == match[1]
    # nothing about them changed: the stored rows, and the findings read from them
    assert _stored_unknown(db) == stored
    assert _chain_findings(db, world.config).equals(findings)
    [(stats,)] = query(db, "SELECT stats FROM runs WHERE run_id = ?", [two.run_id])
    recorded = json.loads(stats)
    assert recorded["unknown_backed_off"] == len(unknown)
    assert recorded["unknown_next_due"] == match[1]
    assert pending_txid_count(db) == two.checked  # what an audit's probe counts
    assert pending_txid_count(db, recheck_unknown=True) == two.checked + len(unknown)


def test_recheck_unknown_asks_every_one_now(
    world: Scenario, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unknown = _unknown(world)
    verify_chain(db, world.config)
    findings = _chain_findings(db, world.config)
    with served(world, monkeypatch) as asked:
        now = verify_chain(db, world.config, recheck_unknown=True)
    assert unknown <= set(asked["txids"])
    assert now.unknown == len(unknown) and now.unknown_backed_off == 0
    assert now.unknown_rechecked and not any("back-off" in ln for ln in now.lines())
    # a forced recheck starts the back-off over (e.g. another chain_url): the first in a row
    assert {s[0] for s in _stored_unknown(db).values()} == {1}
    assert _chain_findings(db, world.config).equals(findings)
    with pytest.raises(TypeError, match="recheck_unknown: expected True or False, got str"):
        verify_chain(db, world.config, recheck_unknown="yes")  # type: ignore[arg-type]


def test_they_are_asked_again_once_the_back_off_runs_out(
    world: Scenario, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unknown = _unknown(world)
    config = world.config.replace(
        chain={**world.config.chain, "unknown_recheck_seconds": 1, "unknown_recheck_max_seconds": 2}
    )
    verify_chain(db, config)  # unknown once: asked again after 1 s
    with served(world, monkeypatch) as soon:
        early = verify_chain(db, config)
    assert not unknown & set(soon["txids"]) and early.unknown_backed_off == len(unknown)
    time.sleep(1.1)
    with served(world, monkeypatch) as later:
        again = verify_chain(db, config)
    assert unknown <= set(later["txids"]) and again.unknown == len(unknown)
    assert again.unknown_backed_off == 0
    # unknown twice in a row: 2 s now (the cap), not 1 s
    time.sleep(1.1)
    with served(world, monkeypatch) as doubled:
        held = verify_chain(db, config)
    assert not unknown & set(doubled["txids"]) and held.unknown_backed_off == len(unknown)
    time.sleep(1.0)
    with served(world, monkeypatch) as capped:
        verify_chain(db, config)
    assert unknown <= set(capped["txids"])
    assert {s[0] for s in _stored_unknown(db).values()} == {3}
    time.sleep(2.1)  # three in a row: 4 s, capped at 2 s
    with served(world, monkeypatch) as after_cap:
        verify_chain(db, config)
    assert unknown <= set(after_cap["txids"])


def test_a_txid_the_index_comes_to_know_leaves_the_back_off(
    world: Scenario, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unknown, then known (the index caught up): confirmed, its back-off gone; unknown again
    later (the index lost it) starts over at the first interval."""
    txid = sorted(_unknown(world))[0]
    tx = world.sim.world.txs[txid]
    config = world.config.replace(chain={**world.config.chain, "unknown_recheck_seconds": 1})
    verify_chain(db, config)
    verify_chain(db, config, recheck_unknown=True)
    assert _stored_unknown(db)[txid][0] == 1  # the forced recheck restarted it
    tx.known = True
    try:
        time.sleep(2.1)
        with served(world, monkeypatch) as asked:
            verify_chain(db, config)
        assert txid in asked["txids"]
        [(status, streak)] = query(
            db, "SELECT status, unknown_streak FROM chain_txs WHERE txid = ?", [txid]
        )
        assert (status, streak) == ("confirmed", None)
    finally:
        tx.known = False
    with open_store(db) as store:  # a reorg that dropped it: asked again, found unknown
        store.con.execute("UPDATE chain_txs SET status = 'unconfirmed' WHERE txid = ?", [txid])
    verify_chain(db, config)
    assert _stored_unknown(db)[txid][0] == 1


def test_the_delay_doubles_up_to_its_cap() -> None:
    assert [unknown_recheck_delay(n, 60, 21_600) for n in (1, 2, 3, 4)] == [60, 120, 240, 480]
    assert unknown_recheck_delay(9, 60, 21_600) == 15_360
    assert unknown_recheck_delay(10, 60, 21_600) == 21_600
    assert unknown_recheck_delay(10**9, 60, 21_600) == 21_600
    assert unknown_recheck_delay(0, 60, 21_600) == 60  # no streak stored: the first interval
    assert unknown_recheck_delay(50, 0, 21_600) == 0  # 0: asked on every run


def test_a_first_interval_of_0_asks_them_on_every_run(
    world: Scenario, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    unknown = _unknown(world)
    config = world.config.replace(chain={**world.config.chain, "unknown_recheck_seconds": 0})
    verify_chain(db, config)
    with served(world, monkeypatch) as asked:
        again = verify_chain(db, config)
    assert unknown <= set(asked["txids"]) and again.unknown_backed_off == 0


@pytest.mark.parametrize(
    ("chain", "error"),
    [
        (
            {"unknown_recheck_seconds": -1},
            "[chain] unknown_recheck_seconds: expected a number from 0 to 1,000,000,000, got -1",
        ),
        (
            {"unknown_recheck_max_seconds": float("inf")},
            "[chain] unknown_recheck_max_seconds: expected a number from 0 to 1,000,000,000,"
            " got inf",
        ),
        ({"unknown_recheck_seconds": True}, "[chain] unknown_recheck_seconds: expected a number"),
        (
            {"unknown_recheck_seconds": 30_000},
            "[chain] unknown_recheck_seconds (30000) is above the default"
            " unknown_recheck_max_seconds (21600)",
        ),
        (
            {"unknown_recheck_seconds": 60, "unknown_recheck_max_seconds": 30},
            "[chain] unknown_recheck_seconds (60) is above unknown_recheck_max_seconds (30)",
        ),
    ],
)
def test_the_back_off_settings_are_checked(chain: dict[str, Any], error: str) -> None:
    with pytest.raises(ConfigError) as caught:
        AuditConfig(chain=chain)
    assert error in str(caught.value), str(caught.value)


def test_the_settings_are_read_from_the_file(tmp_path: Path) -> None:
    from asg_audit.config import load_config

    path = tmp_path / "asg_audit.toml"
    path.write_text("[chain]\nunknown_recheck_seconds = 30\nunknown_recheck_max_seconds = 3600\n")
    config = load_config(path, env={})
    assert config.chain["unknown_recheck_seconds"] == 30
    path.write_text("[chain]\nunknown_recheck_max_seconds = 10\n")
    with pytest.raises(ConfigError, match="unknown_recheck_seconds \\(60\\) is above"):
        load_config(path, env={})


def test_a_store_from_before_counts_its_unknown_rows_as_one_answer(tmp_path: Path) -> None:
    import duckdb

    db = tmp_path / "old.duckdb"
    con = duckdb.connect(str(db))
    con.execute(
        "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name VARCHAR NOT NULL,"
        " applied_at TIMESTAMPTZ NOT NULL)"
    )
    number = next(
        i for i, m in enumerate(MIGRATIONS) if m.name.endswith("back-off of unknown txids")
    )
    for version, migration in enumerate(MIGRATIONS[:number], start=1):
        for statement in migration.statements:
            con.execute(statement)
        con.execute("INSERT INTO schema_migrations VALUES (?, ?, now())", [version, migration.name])
    for txid, status in (("a" * 64, "unknown"), ("b" * 64, "unconfirmed")):
        con.execute(
            "INSERT INTO chain_txs (txid, status, first_checked_at, fetched_at)"
            " VALUES (?, ?, now(), now())",
            [txid, status],
        )
    con.close()
    with open_store(db) as store:
        rows = store.con.execute("SELECT txid, unknown_streak FROM chain_txs ORDER BY 1")
        assert rows.fetchall() == [("a" * 64, 1), ("b" * 64, None)]


def test_the_command_line_backs_off_and_rechecks_on_request(
    world: Scenario, db: Path, tmp_path: Path
) -> None:
    unknown = _unknown(world)

    def run(*extra: str) -> str:
        done = subprocess.run(
            asg_audit("verify-chain", "--db", str(db), "--quiet", *extra),
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=clean_env(ASG_CHAIN_URL=world.sim.chain_url),
            timeout=120,
        )
        assert done.returncode in (0, 1), done.stderr  # 1: findings at fail_on
        return done.stdout

    run()
    second = run()
    assert f"unknown txids not asked this run (back-off): {len(unknown)}; the next" in second
    assert "(--recheck-unknown asks them all now)" in second
    third = run("--recheck-unknown")
    assert "back-off" not in third, third
    assert {s[0] for s in _stored_unknown(db).values()} == {1}  # asked again, back-off restarted
    assert "--recheck-unknown" in run("--help")


def test_an_answer_stored_with_a_time_to_come_is_asked_again_now(
    world: Scenario, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clock that was ahead (then corrected), or a store copied from such a host: the row's
    answer is "later" than now. It is asked again now and stored with this clock's time, not
    held back until the clock catches up with a due time that moves with every run."""
    unknown = _unknown(world)
    verify_chain(db, world.config)
    with open_store(db) as store:
        store.con.execute(
            "UPDATE chain_txs SET fetched_at = fetched_at + INTERVAL 2 DAY WHERE status = 'unknown'"
        )
    with served(world, monkeypatch) as asked:
        again = verify_chain(db, world.config)
    assert unknown <= set(asked["txids"])
    assert again.unknown_backed_off == 0 and again.unknown == len(unknown)
    [(latest,)] = query(db, "SELECT max(fetched_at) FROM chain_txs WHERE status = 'unknown'")
    assert latest <= datetime.now(UTC)  # stored with this clock's time: the back-off resumes
    assert verify_chain(db, world.config).unknown_backed_off == len(unknown)


def test_an_unknown_answered_within_the_grace_is_no_finding_until_asked_after_it(
    world: Scenario, db: Path
) -> None:
    """`chain.txid_unknown` says "unknown to this chain index N s after settlement": N is when
    the index gave the stored answer. An answer given within `unknown_after_seconds` of the
    settlement, not asked again since (the back-off), proves nothing past the grace, however
    old the task is now; asked again past it and still unknown, it is a finding."""
    unknown = _unknown(world)
    verify_chain(db, world.config)
    found = _chain_findings(db, world.config)
    assert set(found["entity_id"]) == unknown  # answered long after settlement: findings
    with open_store(db) as store:  # as if each was answered 10 s after its settlement
        store.con.execute(
            "UPDATE chain_txs c SET fetched_at = r.settled_at + INTERVAL 10 SECOND"
            " FROM (SELECT lower(bsv_txid) AS txid, min(settled_at) AS settled_at FROM results"
            " GROUP BY ALL) r WHERE c.txid = r.txid AND c.status = 'unknown'"
        )
    assert _chain_findings(db, world.config).height == 0
    verify_chain(db, world.config)  # those answers are old: due, asked again, still unknown
    again = _chain_findings(db, world.config)
    assert set(again["entity_id"]) == unknown
    assert again["message"].str.contains(r"unknown to this chain index \d+ s after").all()


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"recheck_unknown": "no"}, "recheck_unknown: expected True or False, got str"),
        ({"unknown_recheck": None}, "unknown_recheck: expected"),
        ({"unknown_recheck": (60, 30)}, "the first not above the cap"),
        ({"unknown_recheck": (-5, 10)}, "unknown_recheck: expected"),
        ({"unknown_recheck": (float("nan"), 10)}, "unknown_recheck: expected"),
        ({"unknown_recheck": ("60", "x")}, "unknown_recheck: expected"),
        ({"unknown_recheck": 60}, "unknown_recheck: expected"),
    ],
)
def test_pending_txid_count_checks_its_arguments_as_verify_chain_does(
    db: Path, kwargs: dict[str, Any], error: str
) -> None:
    # an audit's probe counts with it: a slip must not count differently from verify_chain
    with pytest.raises((TypeError, ValueError), match=re.escape(error)):
        pending_txid_count(db, **kwargs)


def test_the_stores_back_off_query_agrees_with_unknown_recheck_delay() -> None:
    # verify_chain decides in SQL (`_backed_off`); the documented delay is the Python function:
    # the two must not drift apart
    import duckdb

    from asg_audit.chain_verify import _backed_off

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(
        "CREATE TABLE chain_txs (txid VARCHAR, status VARCHAR, fetched_at TIMESTAMPTZ,"
        " unknown_streak INTEGER)"
    )
    answered = 1_800_000_000.0
    streaks = [None, 0, 1, 2, 3, 5, 9, 10, 40, 2000]
    for i, streak in enumerate(streaks):
        con.execute(
            "INSERT INTO chain_txs VALUES (?, 'unknown', to_timestamp(?), ?)",
            [f"t{i}", answered, streak],
        )
    for first_s, max_s in ((60.0, 21_600.0), (1.0, 2.0), (0.5, 1e9)):
        due = _backed_off(con, (first_s, max_s), answered + 0.001)
        for i, streak in enumerate(streaks):
            want = answered + unknown_recheck_delay(streak or 1, first_s, max_s)
            assert due[f"t{i}"] == pytest.approx(want), (streak, first_s, max_s)
