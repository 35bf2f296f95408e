"""Impossible billing figures, bad Gateway URLs and bad arguments of `fetch_billing`.

A figure that cannot be a count of tasks or an amount of sats (negative, fractional, beyond
int64) is stored as null, named in a note of the run and reported by `billing.invalid_figure`;
it never crashes the store (a DuckDB ConversionException for 2**70) nor feeds a check that
then contradicts itself (fee "differs by 0 sats" from a negative task count). Real simulator on
127.0.0.1, with a real garbling HTTP server in front of its Gateway; the real command in a
subprocess where the exit code matters.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest
from _chain_sim import Scenario, scenario
from _hardening_procs import asg_audit, clean_env, query
from _http_server import serve

from asg_audit.billing import USAGE_FIGURES, fetch_billing, figure_problems, parse_usage
from asg_audit.config import AuditConfig, Secret
from asg_audit.errors import ConfigError
from asg_audit.store import open_store

Garble = Callable[[str, dict[str, Any]], dict[str, Any]]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    with scenario(tmp_path_factory.mktemp("figures"), seed=5, tasks=300) as sc:
        yield sc


class _Proxy:
    """A real HTTP server that forwards GETs to the Gateway and garbles the JSON answers."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.garble: Garble = lambda path, body: body
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                answer = httpx.get(
                    proxy.upstream + self.path,
                    headers={"Authorization": self.headers.get("Authorization", "")},
                    timeout=30,
                )
                data = answer.content
                if answer.status_code == 200:
                    data = json.dumps(proxy.garble(self.path, answer.json())).encode()
                self.send_response(answer.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._served = ExitStack()
        self.url = self._served.enter_context(serve(Handler))

    def close(self) -> None:
        self._served.close()


@pytest.fixture
def proxy(world: Scenario) -> Iterator[_Proxy]:
    p = _Proxy(world.sim.gateway_url)
    try:
        yield p
    finally:
        p.close()


def _fresh_store(world: Scenario, tmp_path: Path) -> Path:
    db = tmp_path / "b.duckdb"
    db.write_bytes(world.db.read_bytes())
    return db


def _billing(db: Path, base_url: str, key: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        asg_audit("billing", "--db", str(db), *extra),
        capture_output=True,
        text=True,
        env=clean_env(ASG_BASE_URL=base_url, ASG_API_KEY=key),
        timeout=180,
    )


def _usage_garble(**figures: Any) -> Garble:
    def garble(path: str, body: dict[str, Any]) -> dict[str, Any]:
        return {**body, **figures} if path.startswith("/v1/billing/usage") else body

    return garble


@pytest.mark.parametrize(
    "figures, why",
    [
        ({"total_cost_sats": 2**70}, "beyond int64"),
        ({"worker_payouts_sats": -(2**70)}, "negative"),
        ({"total_cost_sats": -500, "tasks_settled": -3}, "negative"),
        ({"platform_fee_sats": "12.5"}, "not a whole number"),
    ],
)
def test_billing_impossible_usage_figure_is_null_with_a_note_and_a_finding(
    world: Scenario, proxy: _Proxy, tmp_path: Path, figures: dict[str, Any], why: str
) -> None:
    proxy.garble = _usage_garble(**figures)
    db = _fresh_store(world, tmp_path)
    done = _billing(db, proxy.url, world.sim.api_key)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.returncode == 1, done.stderr[-3000:]  # a fail finding: the bill is impossible
    months = world.sim.world.months
    for key in figures:
        notes = [ln for ln in done.stdout.splitlines() if ln.startswith("note: ") and key in ln]
        assert len(notes) == len(months), done.stdout
        assert all(f"({why})" in n and "stored as null" in n for n in notes)
        stored = query(db, f"SELECT month, {key} FROM billing_usage ORDER BY month")
        assert stored == [(m, None) for m in months]
    assert "billing.invalid_figure [fail]" in done.stdout
    # no check contradicts itself from an impossible figure (a fee that "differs by 0 sats")
    assert "by 0 sats" not in done.stdout
    # the provider's answer is kept as evidence, as it came
    for (raw,) in query(db, "SELECT raw FROM billing_usage"):
        assert all(json.loads(raw)[k] == v for k, v in figures.items())
    ((status, stats),) = query(db, "SELECT status, stats FROM runs WHERE command = 'billing'")
    assert status == "ok"
    assert len(json.loads(stats)["invalid_figures"]) == len(months) * len(figures)
    assert world.sim.api_key not in done.stdout + done.stderr


def test_billing_impossible_daily_and_invoice_figures_are_null_with_notes(
    world: Scenario, proxy: _Proxy, tmp_path: Path
) -> None:
    def garble(path: str, body: dict[str, Any]) -> dict[str, Any]:
        if path.startswith("/v1/billing/usage") and body.get("daily_breakdown"):
            first = {**body["daily_breakdown"][0], "cost_sats": 2**64}
            return {**body, "daily_breakdown": [first, *body["daily_breakdown"][1:]]}
        if path.startswith("/v1/billing/invoices"):
            return {"invoices": [{**i, "tasks_settled": -1} for i in body["invoices"]]}
        return body

    proxy.garble = garble
    db = _fresh_store(world, tmp_path)
    done = _billing(db, proxy.url, world.sim.api_key)
    assert "Traceback" not in done.stderr and done.returncode == 1, done.stderr[-3000:]
    invoices = query(db, "SELECT invoice_id, tasks_settled FROM billing_invoices")
    assert invoices and all(tasks is None for _, tasks in invoices)
    for invoice_id, _ in invoices:
        assert f"note: invoice {invoice_id}: the provider reported tasks_settled = -1" in (
            done.stdout
        )
    assert "daily_breakdown[" in done.stdout and ".cost_sats = 18446744073709551616" in done.stdout
    days = query(db, "SELECT daily_breakdown[1].cost_sats FROM billing_usage")
    assert days and all(cost is None for (cost,) in days)
    # the invoices' impossible figures are findings too, not only notes
    from asg_audit.audit import analyze

    found = analyze(db).findings.filter(pl.col("check_id") == "billing.invalid_figure")
    by_invoice = found.filter(pl.col("entity_type") == "invoice")
    assert sorted(by_invoice["entity_id"].to_list()) == sorted(i for i, _ in invoices)
    assert all(a == "tasks_settled = -1" for a in by_invoice["actual"].to_list())


def test_billing_invoice_time_beyond_utc_years_is_null_not_a_crash(
    world: Scenario, proxy: _Proxy, tmp_path: Path
) -> None:
    def garble(path: str, body: dict[str, Any]) -> dict[str, Any]:
        if path.startswith("/v1/billing/invoices"):
            times = ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"]
            return {
                "invoices": [
                    {**inv, "issued_at": times[i % 2]} for i, inv in enumerate(body["invoices"])
                ]
            }
        return body

    proxy.garble = garble
    db = _fresh_store(world, tmp_path)
    done = _billing(db, proxy.url, world.sim.api_key)
    assert "Traceback" not in done.stderr and done.returncode in (0, 1), done.stderr[-3000:]
    issued = query(db, "SELECT issued_at FROM billing_invoices")
    assert issued and all(at is None for (at,) in issued)


class _RetryAfter(BaseHTTPRequestHandler):
    """Answers 503 with a Retry-After that `time.sleep` cannot take, then the real answer."""

    upstream = ""
    answered: list[str] = []

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.answered.append(self.path)
        if len(self.answered) <= 2:
            self.send_response(503)
            self.send_header("Retry-After", ["nan", "inf"][len(self.answered) - 1])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        answer = httpx.get(
            self.upstream + self.path,
            headers={"Authorization": self.headers.get("Authorization", "")},
            timeout=30,
        )
        self.send_response(answer.status_code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)


def test_billing_retry_after_nan_or_inf_is_a_short_wait_not_a_crash(
    world: Scenario, tmp_path: Path
) -> None:
    handler = type("H", (_RetryAfter,), {"upstream": world.sim.gateway_url, "answered": []})
    with serve(handler) as base:
        db = _fresh_store(world, tmp_path)
        url = base
        started = time.monotonic()
        done = _billing(db, url, world.sim.api_key)
        assert time.monotonic() - started < 60
    assert "Traceback" not in done.stderr and done.returncode in (0, 1), done.stderr[-3000:]
    assert len(handler.answered) > 2  # asked again after each 503
    assert query(db, "SELECT count(*) FROM billing_usage")[0][0] == len(world.sim.world.months)


def test_billing_parse_usage_nulls_impossible_figures_and_names_them() -> None:
    body = {
        "month": "2026-10",
        "customer_id": {"nested": 1},
        "tasks_settled": -3,
        "total_cost_sats": 2**63,
        "worker_payouts_sats": 2**63 - 1,
        "platform_fee_sats": 1.5,
        "total_cost_usd_estimate": 1e300,
        "daily_breakdown": [{"date": "2026-10-01", "tasks": True, "cost_sats": 0}],
    }
    parsed = parse_usage(body)
    assert parsed["tasks_settled"] is None and parsed["total_cost_sats"] is None
    # sats above the 21M BSV supply are impossible, however well they fit in int64
    assert parsed["worker_payouts_sats"] is None
    assert parsed["platform_fee_sats"] is None and parsed["total_cost_usd_estimate"] is None
    assert parsed["customer_id"] is None
    assert parsed["daily_breakdown"][0]["tasks"] is None
    assert parsed["daily_breakdown"][0]["cost_sats"] == 0
    problems = {key: why for key, _, why in figure_problems(body, USAGE_FIGURES)}
    assert problems == {
        "tasks_settled": "negative",
        "total_cost_sats": "beyond int64",
        "worker_payouts_sats": "beyond the 21M BSV supply",
        "platform_fee_sats": "not a whole number",
        "daily_breakdown[2026-10-01].tasks": "not a number",
        "total_cost_usd_estimate": "not an amount the store can hold",
    }


# -- a Gateway URL that can never work: exit 2 at once, no credentials -------------------------


@pytest.mark.parametrize(
    "url", ["ftp://user:pw-SECRET@127.0.0.1/x", "not a url", "http://", "127.0.0.1:8080"]
)
def test_billing_unusable_base_url_is_a_config_error_at_once(
    world: Scenario, tmp_path: Path, url: str
) -> None:
    db = _fresh_store(world, tmp_path)
    started = time.monotonic()
    done = _billing(db, url, "sk-test-KEY789")
    assert time.monotonic() - started < 30  # not retried as a transport glitch
    assert done.returncode == 2, done.stderr[-3000:]
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("asg-audit: error: base_url "), done.stderr
    assert "http:// or https://" in lines[0]
    assert "pw-SECRET" not in done.stderr + done.stdout
    assert "sk-test-KEY789" not in done.stderr + done.stdout
    assert query(db, "SELECT count(*) FROM runs WHERE command = 'billing'")[0][0] == 0


# -- the Python API names a bad argument ------------------------------------------------------


def test_fetch_billing_one_month_string_is_one_month(world: Scenario, tmp_path: Path) -> None:
    db = _fresh_store(world, tmp_path)
    month = world.sim.world.months[0]
    summary = fetch_billing(db, world.config, months=month)
    assert summary.months == [month]
    assert query(db, "SELECT month FROM billing_usage") == [(month,)]


def test_fetch_billing_api_key_given_as_a_string_is_wrapped(
    world: Scenario, tmp_path: Path
) -> None:
    db = _fresh_store(world, tmp_path)
    assert world.config.api_key is not None
    config = world.config.replace(api_key=world.config.api_key.reveal())
    assert isinstance(config.api_key, Secret)
    assert world.config.api_key.reveal() not in repr(config)
    summary = fetch_billing(db, config, months=[world.sim.world.months[0]])
    assert len(summary.months) == 1


@pytest.mark.parametrize(
    "db, config, kwargs, error, names",
    [
        ("STORE", None, {}, TypeError, "fetch_billing config: expected an AuditConfig"),
        ("STORE", "asg_audit.toml", {}, TypeError, "fetch_billing config"),
        (None, "CONFIG", {}, TypeError, "fetch_billing db: expected a path"),
        ("STORE", "CONFIG", {"months": 202610}, TypeError, "fetch_billing months"),
        ("STORE", "CONFIG", {"months": ["2026-10", 5]}, TypeError, "fetch_billing months"),
        ("STORE", "CONFIG", {"months": "2026-13"}, ConfigError, "month must be YYYY-MM"),
        ("STORE", "CONFIG", {"months": "2026-10\n"}, ConfigError, "month must be YYYY-MM"),
        ("STORE", "CONFIG", {"transport": "x"}, TypeError, "fetch_billing transport"),
    ],
)
def test_fetch_billing_bad_argument_is_named(
    tmp_path: Path,
    db: Any,
    config: Any,
    kwargs: dict[str, Any],
    error: type[Exception],
    names: str,
) -> None:
    store = tmp_path / "s.duckdb"
    with open_store(store):
        pass
    db = store if db == "STORE" else db
    config = AuditConfig(api_key=Secret("sk-x")) if config == "CONFIG" else config
    with pytest.raises(error, match=names):
        fetch_billing(db, config, **kwargs)
    assert query(store, "SELECT count(*) FROM runs")[0][0] == 0


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"api_key": 5}, "AuditConfig api_key: expected a str or Secret or None"),
        ({"chain": None}, r"AuditConfig chain: expected a mapping"),
        ({"costs": {}}, "AuditConfig costs: expected a CostModel"),
    ],
)
def test_config_replace_with_a_wrong_type_names_the_argument(
    changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(TypeError, match=message):
        AuditConfig().replace(**changes)


def test_billing_answers_echoing_the_key_are_stored_and_printed_masked(
    world: Scenario, proxy: _Proxy, tmp_path: Path
) -> None:
    key = world.sim.api_key

    def garble(path: str, body: dict[str, Any]) -> dict[str, Any]:
        if path.startswith("/v1/billing/invoices"):
            invoices = body["invoices"]
            return {
                "invoices": [
                    {**inv, "invoice_id": f"inv-{i}-{key}"} for i, inv in enumerate(invoices)
                ]
            }
        return {**body, "echo": f"you sent Bearer {key}"}

    proxy.garble = garble
    db = _fresh_store(world, tmp_path)
    done = _billing(db, proxy.url, key)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert key not in done.stdout + done.stderr
    usage = query(db, "SELECT raw FROM billing_usage")
    invoices = query(db, "SELECT invoice_id, raw FROM billing_invoices ORDER BY invoice_id")
    assert usage and invoices
    assert all(json.loads(raw)["echo"] == "you sent Bearer ***" for (raw,) in usage)
    assert [i for i, _ in invoices] == sorted(f"inv-{n}-***" for n in range(len(invoices)))
    for table in ("billing_usage", "billing_invoices", "runs", "findings"):
        for row in query(db, f"SELECT * FROM {table}"):
            assert key not in repr(row), (table, row)
