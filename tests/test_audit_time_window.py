"""The `--since/--until` window (tester U): which tasks it keeps, per-txid and per-month findings.

1. A task's creation time is the result's `created_at`, else its tracked submission's, else its
   `settled_at` (then its delivery's `timestamp`), else when it was first seen: webhook-only
   results are windowed by the submission, or untracked by their settlement, not by the day
   they were ingested.
2. A txid is judged on all its tasks in the store and reported in any window holding one of
   them: a re-use across the window's edge stays `txid.shared_spread` on both sides, and a
   window never gives a `chain.block_time` measured against part of the txid's tasks.
3. Month-level billing checks judge only the months the window wholly covers.

Small hand-made stores (NDJSON written here, `track` + `ingest`), a real HTTP server serving
hand-made billing answers, and the simulator's chain index for the chain case.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import polars as pl
import pytest
from _hardening_procs import asg_audit, clean_env, query
from _http_server import serve
from _records import settled_record

from asg_audit import analyze
from asg_audit.billing import fetch_billing
from asg_audit.chain import verify_chain
from asg_audit.config import AuditConfig, Secret
from asg_audit.ingest_files import ingest_paths
from asg_audit.sim import WorldConfig, generate_world, run_simulator
from asg_audit.store import open_store
from asg_audit.track import track_file

TXID = "7a" * 32
TXID_CHECKS = (
    "txid.shared_spread",
    "chain.block_time",
    "chain.txid_unknown",
    "chain.unconfirmed",
    "chain.outputs_below_cost",
    "chain.shared_outputs_below_cost",
)


def _ndjson(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _settled(task_id: str, created: str | None, settled: str, **extra: Any) -> dict[str, Any]:
    txid = extra.pop("txid", hashlib.sha256(task_id.encode()).hexdigest())
    row = settled_record(task_id, bsv_txid=txid, created_at=created, settled_at=settled, **extra)
    if created is None:  # a record that says nothing of its creation (a webhook's)
        del row["created_at"]
    return row


def _rows(findings: pl.DataFrame, *check_ids: str) -> set[tuple[str, str, str]]:
    return set(
        findings.filter(pl.col("check_id").is_in(check_ids) | pl.lit(not check_ids))
        .select("check_id", "entity_id", "actual")
        .iter_rows()
    )


# -- 1. a task's creation time ------------------------------------------------------------------


def test_window_keeps_webhook_only_tasks_by_their_submissions_creation(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    subs = [
        {"task_id": t, "task_type": "image_classification", "consensus_threshold": 3,
         "label_spec": {"options": ["cat", "dog"]}, "created_at": c}
        for t, c in (("t_sep", "2026-09-20T10:00:00Z"), ("t_oct", "2026-10-05T10:00:00Z"),
                     ("t_wait", "2026-09-25T10:00:00Z"))
    ]  # fmt: skip
    track_file(db, _ndjson(tmp_path / "subs.ndjson", subs))
    # webhook deliveries: no created_at in the record
    hooks = [
        {"event": "task.settled", "task_id": t, "consensus_label": "cat", "confidence": 1.0,
         "bsv_txid": x * 32, "settled_at": s, "timestamp": s}
        for t, x, s in (("t_sep", "1b", "2026-09-20T10:00:40Z"),
                        ("t_oct", "2c", "2026-10-05T10:01:00Z"))
    ]  # fmt: skip
    ingest_paths(db, [_ndjson(tmp_path / "webhooks.ndjson", hooks)])
    ((first_seen,),) = query(db, "SELECT min(first_seen_at) FROM results")

    def figures(**window: Any) -> tuple[int, int, list[str], list[str]]:
        audit = analyze(db, **window)
        not_collected = audit.findings.filter(pl.col("check_id") == "task.not_collected")
        days = audit["latency_by_day"]
        return (
            audit.summary()["tasks"],
            int(audit["latency_overall"]["n"][0]),
            not_collected["actual"].to_list(),
            sorted(str(d) for d in days[days.columns[0]].to_list()),
        )

    whole = figures()
    assert whole[:3] == (2, 2, ["1 tracked tasks not collected yet"])
    # the months of creation hold every task (was 0 tasks, "3 tracked tasks not collected")
    assert figures(since="2026-09-01", until="2026-11-01") == whole
    assert figures(until="2026-10-01")[:3] == (1, 1, ["1 tracked tasks not collected yet"])
    assert figures(since="2026-10-01")[:3] == (1, 1, [])
    # the day they were ingested holds none (was every task, with September latencies)
    assert figures(since=first_seen - timedelta(hours=1))[:3] == (0, 0, [])
    # the report says the same
    out = tmp_path / "rep"
    done = subprocess.run(
        asg_audit("report", "--db", str(db), "--out", str(out), "--format", "json",
                  "--since", "2026-09-01", "--until", "2026-11-01"),
        env=clean_env(), capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(next(out.glob("*/summary.json")).read_text())
    assert (summary["headline"]["tasks"], summary["headline"]["settled"]) == (2, 2)
    assert summary["headline"]["latency_p50_s"] is not None


def test_window_keeps_untracked_webhook_only_tasks_by_their_settlement(tmp_path: Path) -> None:
    # Nobody says when these tasks were created (no submission tracked, a webhook carries no
    # created_at): they are windowed by their settlement (then the delivery's timestamp), not
    # by the day their delivery log was ingested.
    db = tmp_path / "s.duckdb"
    hooks = [
        {"event": "task.settled", "task_id": "u_sep", "consensus_label": "cat",
         "confidence": 1.0, "bsv_txid": "3d" * 32, "settled_at": "2026-09-20T10:00:40Z",
         "timestamp": "2026-09-20T10:00:41Z"},
        {"event": "task.settled", "task_id": "u_oct", "consensus_label": "dog",
         "confidence": 1.0, "bsv_txid": "4e" * 32, "timestamp": "2026-10-05T10:01:00Z"},
    ]  # fmt: skip
    ingest_paths(db, [_ndjson(tmp_path / "webhooks.ndjson", hooks)])
    ((first_seen,),) = query(db, "SELECT min(first_seen_at) FROM results")

    def tasks(**window: Any) -> int:
        return int(analyze(db, **window).summary()["tasks"])

    assert tasks() == 2
    assert tasks(until="2026-10-01") == 1  # u_sep, by its settled_at (was 0)
    assert tasks(since="2026-10-01", until="2026-11-01") == 1  # u_oct, by its delivery's time
    assert tasks(since="2026-09-20T10:00:40Z", until="2026-09-20T10:00:41Z") == 1  # settled_at
    # the day the log was ingested holds neither (was both)
    assert tasks(since=first_seen - timedelta(hours=1)) == 0


def test_window_keeps_tasks_known_only_from_their_poll_state(tmp_path: Path) -> None:
    # `collect --task-ids` for untracked ids: no result, no submission, only a poll state. A
    # window reads when it was first answered 404 (else last polled): one covering all time
    # gives what no window gives (it used to drop them, and the 404 finding with them).
    db = tmp_path / "s.duckdb"
    ingest_paths(
        db, [_ndjson(tmp_path / "r.ndjson", [_settled("t1", None, "2026-09-01T00:00:00Z")])]
    )
    with open_store(db) as store:
        store.con.execute(
            "INSERT INTO poll_state (task_id, state, attempts, first_404_at, updated_at) VALUES"
            " ('ghost', 'not_found', 4, '2026-09-10T00:00:00Z', '2026-09-11T00:00:00Z'),"
            " ('waiting', 'pending', 1, NULL, '2026-10-05T00:00:00Z')"
        )

    def figures(**window: Any) -> tuple[int, int, list[str]]:
        audit = analyze(db, **window)
        unknown = audit.findings.filter(pl.col("check_id") == "task.unknown")
        s = audit.summary()
        return s["tracked"], s["tracked_not_collected"], unknown["entity_id"].to_list()

    whole = figures()
    assert whole == (2, 2, ["ghost"])
    assert figures(since="2000-01-01") == figures(until="2100-01-01") == whole
    assert figures(since="2026-09-10", until="2026-09-11") == (1, 1, ["ghost"])  # first 404
    assert figures(since="2026-10-01") == (1, 1, [])  # last polled


# -- 2. per-txid findings ----------------------------------------------------------------------


def test_a_txid_reused_across_the_window_edge_is_reported_on_both_sides(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    rows = [
        _settled("a1", "2026-09-20T10:00:00Z", "2026-09-20T10:00:40Z", txid=TXID),
        _settled("a2", "2026-10-05T10:00:00Z", "2026-10-05T10:00:40Z", txid=TXID),
        _settled("b1", "2026-09-21T10:00:00Z", "2026-09-21T10:00:40Z"),
    ]
    ingest_paths(db, [_ndjson(tmp_path / "r.ndjson", rows)])
    whole = analyze(db)
    spread = _rows(whole.findings, "txid.shared_spread")
    assert spread == {("txid.shared_spread", TXID, "2 tasks settled over 1296000.0 s")}
    for window in ({"until": "2026-10-01"}, {"since": "2026-10-01"}):
        audit = analyze(db, **window)  # type: ignore[arg-type]
        assert audit.summary()["tasks"] in (1, 2)
        # was no finding in either window: the re-use vanished from both
        assert _rows(audit.findings, "txid.shared_spread") == spread
        shared = audit["shared_txids"]
        assert shared.select("bsv_txid", "tasks", "task_ids").rows() == [(TXID, 2, ["a1", "a2"])]
    # a window holding none of the txid's tasks does not report it
    none = analyze(db, since="2026-09-21", until="2026-09-22")
    assert none.summary()["tasks"] == 1
    assert _rows(none.findings, "txid.shared_spread") == set()


@pytest.fixture(scope="module")
def chain_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Any]]:
    tmp = tmp_path_factory.mktemp("fix_u_chain")
    world = generate_world(WorldConfig(seed=3, tasks=200, anomalies={"duplicate_txid": 2}))
    db = tmp / "s.duckdb"
    track_file(db, world.write_submissions(tmp / "subs.ndjson"))
    ingest_paths(db, [world.write_results_export(tmp / "results.ndjson")])
    with run_simulator(world, time_scale=0.01) as sim:
        verify_chain(db, AuditConfig(chain={"rps": 1000}, chain_url=sim.chain_url))
    yield db, world


def test_txid_checks_judge_all_of_a_txids_tasks_under_a_window(
    chain_world: tuple[Path, Any],
) -> None:
    db, world = chain_world
    as_of = datetime.fromtimestamp(world.now_at, UTC)
    whole = _rows(analyze(db, as_of=as_of).findings, *TXID_CHECKS)
    planted = [a for a in world.anomalies if a["kind"] == "duplicate_txid"]
    assert len(planted) == 2
    for anomaly in planted:
        txid = anomaly["entity_id"]
        created = sorted(
            c
            for (c,) in query(
                db,
                "SELECT coalesce(r.created_at, s.created_at) FROM results r"
                " LEFT JOIN submissions s USING (task_id) WHERE r.task_id IN (?, ?)",
                anomaly["detail"]["tasks"],
            )
        )
        split = created[0] + (created[1] - created[0]) / 2
        mine = {r for r in whole if r[1] == txid}
        assert {r[0] for r in mine} == {"txid.shared_spread"}  # the whole store: no block_time
        for window in ({"until": split}, {"since": split}):
            found = _rows(analyze(db, as_of=as_of, **window).findings, *TXID_CHECKS)  # type: ignore[arg-type]
            # the re-use shows on both sides, with the whole store's figures
            assert {r for r in found if r[1] == txid} == mine
            # and a window never invents a per-txid finding (was a `chain.block_time` warn
            # "1369412 s from the closest settled_at of 2 task(s)": the closest was the other)
            assert found <= whole, found - whole


# -- 3. month-level billing checks -------------------------------------------------------------


def _usage(month: str, days: list[tuple[str, int, int]], **over: int) -> dict[str, Any]:
    tasks, sats = sum(d[1] for d in days), sum(d[2] for d in days)
    body: dict[str, Any] = {
        "customer_id": "cus_u", "month": month, "tier": "sandbox", "tasks_settled": tasks,
        "total_cost_sats": sats, "total_cost_usd_estimate": 0.01,
        "worker_payouts_sats": sats, "platform_fee_sats": 0,
        "daily_breakdown": [{"date": d, "tasks": n, "cost_sats": c} for d, n, c in days],
    }  # fmt: skip
    body.update(over)
    return body


# September: the total is not payouts + fee (total_parts; so also vs_results). October: a daily
# row 50 sats off (daily_sum), a fee where none is configured (fee_share), and an invoice with
# an impossible task count (invalid_figure).
_ANSWERS: dict[str, Any] = {
    "2026-09": _usage("2026-09", [("2026-09-10", 1, 975), ("2026-09-20", 1, 975)],
                      total_cost_sats=2000),
    "2026-10": _usage("2026-10", [("2026-10-05", 1, 1025), ("2026-10-20", 1, 975)],
                      total_cost_sats=1950, worker_payouts_sats=1850, platform_fee_sats=100),
    "invoices": {"invoices": [
        {"invoice_id": "inv_09", "month": "2026-09", "status": "closed", "tasks_settled": 2,
         "total_cost_sats": 2000, "issued_at": "2026-10-01T00:00:00Z"},
        {"invoice_id": "inv_10", "month": "2026-10", "status": "closed", "tasks_settled": -2,
         "total_cost_sats": 1950, "issued_at": "2026-11-01T00:00:00Z"},
    ]},
}  # fmt: skip


@pytest.fixture
def billing_server() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            url = urlparse(self.path)
            if url.path == "/v1/billing/invoices":
                body = _ANSWERS["invoices"]
            else:
                body = _ANSWERS[parse_qs(url.query)["month"][0]]
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    with serve(Handler) as base:
        yield base


def test_month_billing_checks_judge_only_months_the_window_wholly_covers(
    tmp_path: Path, billing_server: str
) -> None:
    db = tmp_path / "s.duckdb"
    rows = [
        _settled(t, f"{d}T10:00:00Z", f"{d}T10:00:40Z")
        for t, d in (("s1", "2026-09-10"), ("s2", "2026-09-20"), ("o1", "2026-10-05"),
                     ("o2", "2026-10-20"))
    ]  # fmt: skip
    ingest_paths(db, [_ndjson(tmp_path / "r.ndjson", rows)])
    fetch_billing(db, AuditConfig(base_url=billing_server, api_key=Secret("fix-u-key-0123456789")))

    def billing(**window: Any) -> set[tuple[str, str]]:
        findings = analyze(db, **window).findings
        found = findings.filter(pl.col("check_id").str.starts_with("billing."))
        return set(found.select("check_id", "entity_id").iter_rows())

    september = {("billing.total_parts", "2026-09"), ("billing.vs_results", "2026-09")}
    october = {
        ("billing.daily_sum", "2026-10"),
        ("billing.fee_share", "2026-10"),
        ("billing.invalid_figure", "inv_10"),
    }
    assert billing() == september | october
    assert billing(since="2026-09-01", until="2026-11-01") == september | october
    # adjacent windows split at a month's edge: each month once (was every month in both)
    assert billing(until="2026-10-01") == september
    assert billing(since="2026-10-01") == october
    # a window inside one month, or cutting both, judges no month (was every finding but
    # vs_results, for months it does not cover)
    assert billing(since="2026-09-15", until="2026-09-25") == set()
    assert billing(since="2026-09-15", until="2026-10-15") == set()
    assert billing(since="2026-09-15") == october
