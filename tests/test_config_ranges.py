"""Every numeric setting of every config table is range-checked when the config is built: a
value out of range is one ConfigError naming the key and the allowed range (exit 2 from any
command, before any run is recorded), never a traceback from deep inside a step. The flags that
set the same values (`verify-chain --rps`, `collect --max-rps`, ...) are checked the same way.
Real stores, the real command in a subprocess."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from _hardening_procs import clean_env, query, run_asg_audit

from asg_audit.config import _RANGES, _SECTION_TYPES, _TOP_TYPES, AuditConfig, load_config
from asg_audit.errors import ConfigError
from asg_audit.store import open_store

_NUMERIC = ("an integer", "a number")


def _load(tmp_path: Path, text: str) -> AuditConfig:
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    return load_config(cfg, env={})


@pytest.mark.parametrize(
    "text, key, allowed",
    [
        ("[chain]\nmax_retries = -1\n", "[chain] max_retries", "an integer from 0 to 100"),
        ("[chain]\ntimeout_seconds = -1\n", "[chain] timeout_seconds", "a positive number"),
        ("[chain]\ntimeout_seconds = 0\n", "[chain] timeout_seconds", "a positive number"),
        ("[chain]\nrps = 1e308\n", "[chain] rps", "a positive number, at most 10,000"),
        ("[chain]\nrps = 0\n", "[chain] rps", "a positive number, at most 10,000"),
        ("[chain]\nconcurrency = 0\n", "[chain] concurrency", "an integer from 1 to 256"),
        ("[chain]\nconfirmations = -1\n", "[chain] confirmations", "an integer from 0"),
        ("[chain]\nunknown_after_seconds = -5\n", "[chain] unknown_after_seconds", "from 0"),
        ("[chain]\nfee_rate_max_sat_per_kb = -1\n", "[chain] fee_rate_max_sat_per_kb", "from 0"),
        ("[billing]\nmax_retries = -1\n", "[billing] max_retries", "an integer from 0 to 100"),
        ("[billing]\nmax_retries = 10000\n", "[billing] max_retries", "an integer from 0 to 100"),
        ("[billing]\ntimeout_seconds = -1\n", "[billing] timeout_seconds", "a positive number"),
        ("[collector]\nmax_rps = 1e308\n", "[collector] max_rps", "a positive number"),
        ("[collector]\nconcurrency = 0\n", "[collector] concurrency", "an integer from 1"),
        ("[collector]\nbatch_size = 0\n", "[collector] batch_size", "an integer from 1"),
        ("[collector]\nlock_wait_s = -1\n", "[collector] lock_wait_s", "a number from 0"),
        ("[webhooks]\nmax_body_bytes = 10\n", "[webhooks] max_body_bytes", "from 64"),
        ("[webhooks]\ndedupe_max_events = 0\n", "[webhooks] dedupe_max_events", "from 1"),
        ("[webhooks]\nfreshness_seconds = -1\n", "[webhooks] freshness_seconds", "from 0"),
        ("[audit]\ncollect_seconds = 1e300\n", "[audit] collect_seconds", "from 0 to"),
        ("[costs]\nreward_sats = 99999999999999999999\n", "[costs] reward_sats", "from 0"),
        ("slo_seconds = 1e300\n", "slo_seconds", "a positive number"),
    ],
)
def test_config_value_out_of_range_names_file_key_and_range(
    tmp_path: Path, text: str, key: str, allowed: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'c.toml'}: {key}: expected "), message
    assert allowed in message and ", got " in message and "\n" not in message


def test_config_every_numeric_key_of_every_table_has_a_range() -> None:
    tables = {"": _TOP_TYPES, **_SECTION_TYPES}
    for section, types in tables.items():
        numeric = {k for k, kind in types.items() if kind in _NUMERIC}
        assert numeric == set(_RANGES.get(section, {})), section


def test_config_ends_of_a_range_are_accepted(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        "[chain]\nmax_retries = 0\nrps = 10000\ntimeout_seconds = 3600\nconfirmations = 0\n"
        "[billing]\nmax_retries = 100\n[collector]\ndeadline_s = 1e9\n",
    )
    assert config.chain["rps"] == 10000 and config.billing["max_retries"] == 100


def test_config_fee_rate_bounds_must_be_in_order(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"fee_rate_min_sat_per_kb \(5\) is above"):
        _load(tmp_path, "[chain]\nfee_rate_min_sat_per_kb = 5\nfee_rate_max_sat_per_kb = 2\n")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"chain": {"max_retries": -1}}, r"\[chain\] max_retries: expected an integer from 0"),
        ({"chain": {"rps": float("nan")}}, r"\[chain\] rps: expected a positive .*got nan"),
        ({"billing": {"timeout_seconds": -1}}, r"\[billing\] timeout_seconds: expected"),
        ({"audit": {"collect_seconds": float("inf")}}, r"\[audit\] collect_seconds: .*got inf"),
        ({"collector": {"max_rps": 1e308}}, r"\[collector\] max_rps: expected a positive"),
    ],
)
def test_config_library_values_are_range_checked_too(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        AuditConfig(**changes)
    with pytest.raises(ConfigError, match=message):
        AuditConfig().replace(**changes)


# -- the commands: exit 2, one line, nothing recorded ------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Path:
    db = tmp_path / "s.duckdb"
    with open_store(db):
        pass
    return db


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return run_asg_audit(
        *argv,
        # real URLs that are never asked: the config or flag is refused first
        env=clean_env(
            ASG_CHAIN_URL="http://127.0.0.1:9/v1/bsv/main",
            ASG_BASE_URL="http://127.0.0.1:9",
            ASG_API_KEY="sk-test-RANGE",
        ),
        timeout=120,
    )


def _one_error_line(done: subprocess.CompletedProcess[str], *parts: str) -> None:
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("asg-audit: error: "), done.stderr
    for part in parts:
        assert part in lines[0], lines[0]


@pytest.mark.parametrize(
    "command, text, key",
    [
        ("verify-chain", "[chain]\nmax_retries = -1\n", "[chain] max_retries"),
        ("verify-chain", "[chain]\ntimeout_seconds = -1\n", "[chain] timeout_seconds"),
        ("verify-chain", "[chain]\nrps = 1e308\n", "[chain] rps"),
        ("billing", "[billing]\nmax_retries = -1\n", "[billing] max_retries"),
        ("billing", "[billing]\ntimeout_seconds = -1\n", "[billing] timeout_seconds"),
    ],
)
def test_command_with_an_out_of_range_config_value_exits_2_with_one_line(
    tmp_path: Path, store: Path, command: str, text: str, key: str
) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    done = _run(command, "--db", str(store), "--config", str(cfg))
    _one_error_line(done, str(cfg), key, "expected")
    assert query(store, "SELECT count(*) FROM runs")[0][0] == 0


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e308", "0", "-3"])
def test_verify_chain_rps_flag_out_of_range_exits_2_with_one_line(store: Path, value: str) -> None:
    done = _run("verify-chain", "--db", str(store), "--quiet", f"--rps={value}")
    _one_error_line(done, "chain.rps must be a positive number, at most 10,000", "(--rps)")
    assert query(store, "SELECT count(*) FROM runs")[0][0] == 0


@pytest.mark.parametrize(
    "flag, value, setting",
    [
        ("--max-rps", "1e308", "collector.max_rps"),
        ("--concurrency", "0", "collector.concurrency"),
        ("--concurrency", "100000000", "collector.concurrency"),
        ("--deadline", "1e300", "collector.deadline_s"),
    ],
)
def test_collect_flags_out_of_range_exit_2_with_one_line(
    store: Path, flag: str, value: str, setting: str
) -> None:
    done = _run("collect", "--db", str(store), f"{flag}={value}")
    _one_error_line(done, f"{setting} must be", f"({flag})")
    assert query(store, "SELECT count(*) FROM runs")[0][0] == 0


def test_audit_with_an_out_of_range_config_value_exits_2_before_any_step(
    tmp_path: Path, store: Path
) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "r.ndjson").write_text(
        '{"task_id":"t1","status":"settled","consensus_label":"cat","confidence":1.0,'
        '"worker_count":3,"agreement_count":3,"created_at":"2026-04-08T21:00:00Z",'
        '"settled_at":"2026-04-08T21:00:47Z","cost_sats":975}\n'
    )
    cfg = tmp_path / "bad.toml"
    cfg.write_text(
        f'db = "{store}"\n[audit]\ndrop_folders = ["{drop}"]\ncollect_seconds = 0\n'
        f'report_dir = "{tmp_path / "reports"}"\n[chain]\nmax_retries = -1\n'
    )
    done = _run("audit", "--config", str(cfg))
    _one_error_line(done, "[chain] max_retries: expected an integer from 0 to 100, got -1")
    assert done.stdout == ""  # no step ran
    assert query(store, "SELECT count(*) FROM runs")[0][0] == 0
    assert query(store, "SELECT count(*) FROM results")[0][0] == 0
    assert not (tmp_path / "reports").exists()


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_audit_wait_flag_out_of_range_exits_2(tmp_path: Path, store: Path, value: str) -> None:
    done = _run("audit", "--db", str(store), "--out", str(tmp_path / "r"), f"--wait={value}")
    _one_error_line(done, "--wait must be a number of seconds from 0 to 86,400")
    assert query(store, "SELECT count(*) FROM runs")[0][0] == 0


@pytest.mark.parametrize(
    "url", ["ftp://user:s3cret@x/v1", "not a url", "http:///x", "127.0.0.1:8080", ""]
)
@pytest.mark.parametrize(
    ("key", "env_name"), [("base_url", "ASG_BASE_URL"), ("chain_url", "ASG_CHAIN_URL")]
)
def test_config_api_urls_must_be_http_with_a_host(url: str, key: str, env_name: str) -> None:
    if not url:
        with pytest.raises(ConfigError, match=key):
            load_config(None, env={}, overrides={key: "mailto:x"})
        return
    with pytest.raises(
        ConfigError,
        match=rf"^{key} .* \(the value is not shown; set by {env_name} in the environment\)$",
    ) as caught:
        load_config(None, env={env_name: url})
    assert "s3cret" not in str(caught.value) and "user" not in str(caught.value)
    assert load_config(None, env={env_name: "https://example.test/v1"}) is not None
