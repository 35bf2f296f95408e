"""`[chain]` fee rates compared as in effect, and unknown section keys refused from Python.

`fee_rate_min_sat_per_kb = 2000` alone was accepted although the default maximum is 1000 (the
two were compared only when both were given). `AuditConfig(chain={"bogus": 1})` (and the other
tables) silently kept a key the file refuses with exit 2.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from _config_file import write_config
from _hardening_procs import asg_audit, clean_env

from asg_audit.config import AuditConfig, load_config
from asg_audit.errors import ConfigError

LOW = "fee_rate_min_sat_per_kb"
HIGH = "fee_rate_max_sat_per_kb"


@pytest.mark.parametrize(
    ("chain", "message"),
    [
        ({LOW: 2000}, f"[chain] {LOW} (2000) is above the default {HIGH} (1000)"),
        ({HIGH: 0.5}, f"[chain] the default {LOW} (1) is above {HIGH} (0.5)"),
        ({LOW: 20, HIGH: 10}, f"[chain] {LOW} (20) is above {HIGH} (10)"),
    ],
)
def test_fee_rates_in_effect_are_compared(
    tmp_path: Path, chain: dict[str, float], message: str
) -> None:
    text = "[chain]\n" + "".join(f"{k} = {v}\n" for k, v in chain.items())
    path = write_config(tmp_path, text, "c.toml")
    with pytest.raises(ConfigError) as from_file:
        load_config(path, env={})
    assert str(from_file.value) == f"{path}: {message}"
    with pytest.raises(ConfigError) as from_python:
        AuditConfig(chain=chain)
    assert str(from_python.value) == f"settings: {message}"


def test_fee_rates_within_the_defaults_are_accepted(tmp_path: Path) -> None:
    for chain in ({LOW: 1000}, {HIGH: 1}, {LOW: 5000, HIGH: 5000}, {}):
        assert AuditConfig(chain=chain).chain == chain


def test_fee_rate_alone_is_exit_2_from_the_command_line(tmp_path: Path) -> None:
    path = write_config(tmp_path, f"[chain]\n{LOW} = 2000\n", "c.toml")
    db = tmp_path / "s.duckdb"
    done = subprocess.run(
        asg_audit("runs", "--db", str(db), "--config", str(path)),
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        f"asg-audit: error: {path}: [chain] {LOW} (2000) is above the default {HIGH} (1000)"
    ]
    assert not db.exists()


@pytest.mark.parametrize("section", ["collector", "webhooks", "chain", "billing", "audit"])
def test_audit_config_refuses_an_unknown_key_as_the_file_does(tmp_path: Path, section: str) -> None:
    path = write_config(tmp_path, f"[{section}]\nbogus = 1\n", "c.toml")
    with pytest.raises(ConfigError) as from_file:
        load_config(path, env={})
    with pytest.raises(ConfigError) as from_python:
        AuditConfig(**{section: {"bogus": 1}})  # type: ignore[arg-type]
    assert str(from_python.value).startswith(f"settings: unknown key(s) in [{section}]: bogus (")
    assert str(from_python.value).removeprefix("settings") == str(from_file.value).removeprefix(
        str(path)
    )
    with pytest.raises(ConfigError, match=r"unknown key\(s\)"):
        AuditConfig().replace(**{section: {"bogus": 1}})


def test_report_takes_no_keys_from_python() -> None:
    with pytest.raises(ConfigError) as caught:
        AuditConfig(report={"title": "nightly"})
    assert str(caught.value) == "settings: unknown key(s) in [report]: title (it takes no keys)"


def test_an_unknown_key_holding_a_secret_is_not_echoed() -> None:
    key = "sk_live_FIX10LSECRET"
    with pytest.raises(ConfigError) as caught:
        AuditConfig(api_key=key, chain={key: 1})
    assert "FIX10LSECRET" not in str(caught.value)
    assert "<a name holding a secret, not shown>" in str(caught.value)


def test_known_keys_are_still_accepted_from_python() -> None:
    config = AuditConfig(
        collector={"max_rps": 5},
        webhooks={"path": "/hooks"},
        chain={"rps": 2, "fetch_parents": False},
        billing={"max_retries": 1},
        audit={"report_dir": "r", "verify_chain": False},
    )
    assert config.chain["rps"] == 2 and config.audit["verify_chain"] is False
