"""Settings with a fixed set of allowed values (`chain_network`, `[collector] schedule`,
`[webhooks] http`, ...) are checked when the config is read, by every command that reads it:
exit 2 naming the file, the table and key and the allowed values, never the value given (it may
be a misplaced secret), and nothing done. Library callers building `AuditConfig` get the same
ConfigError."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from _hardening_procs import asg_audit, clean_env

from asg_audit.config import AuditConfig, load_config
from asg_audit.errors import ConfigError

SECRET = "sk_live_CHOICESECRET123"

CASES = [
    ("chain_network", "", "chain_network", "main, test"),
    ("schedule", "[collector]", "[collector] schedule", "fixed, documented, adaptive"),
    ("http", "[webhooks]", "[webhooks] http", "auto, h11, httptools"),
    ("fail_on", "", "fail_on", "info, warn, fail"),
    ("fail_on", "[audit]", "[audit] fail_on", "info, warn, fail"),
    ("alert_on", "[audit]", "[audit] alert_on", "info, warn, fail"),
]


def _write(tmp_path: Path, key: str, table: str, value: str) -> Path:
    cfg = tmp_path / "c.toml"
    head = f"{table}\n" if table else ""
    cfg.write_text(f'{head}{key} = "{value}"\n')
    return cfg


@pytest.mark.parametrize("key, table, name, allowed", CASES)
def test_config_fix_value_outside_its_choices_is_refused_when_read(
    tmp_path: Path, key: str, table: str, name: str, allowed: str
) -> None:
    cfg = _write(tmp_path, key, table, SECRET)
    with pytest.raises(ConfigError) as caught:
        load_config(cfg, env={})
    assert str(caught.value) == f"{cfg}: {name}: expected one of {allowed}"


@pytest.mark.parametrize("key, table, name, allowed", CASES)
def test_config_fix_allowed_values_are_accepted(
    tmp_path: Path, key: str, table: str, name: str, allowed: str
) -> None:
    for value in allowed.split(", "):
        cfg = _write(tmp_path, key, table, value)
        # chain_network must match chain_url (whose default is a main-net one)
        env = (
            {"ASG_CHAIN_URL": f"https://woc.example/v1/bsv/{value}"}
            if key == "chain_network"
            else {}
        )
        config = load_config(cfg, env=env)
        if not table:
            assert getattr(config, key) == value
        else:
            assert getattr(config, table.strip("[]"))[key] == value


def test_config_fix_webhooks_path_must_start_with_a_slash(tmp_path: Path) -> None:
    cfg = _write(tmp_path, "path", "[webhooks]", SECRET)
    with pytest.raises(ConfigError) as caught:
        load_config(cfg, env={})
    assert str(caught.value) == f"{cfg}: [webhooks] path: expected a path starting with /"
    assert load_config(_write(tmp_path, "path", "[webhooks]", "/hooks"), env={})


@pytest.mark.parametrize(
    "changes, name",
    [
        ({"chain_network": SECRET}, "chain_network"),
        ({"fail_on": SECRET}, "fail_on"),
        ({"collector": {"schedule": SECRET}}, "[collector] schedule"),
        ({"webhooks": {"http": SECRET}}, "[webhooks] http"),
        ({"audit": {"alert_on": SECRET}}, "[audit] alert_on"),
    ],
)
def test_config_fix_library_audit_config_checks_the_choices(
    changes: dict[str, object], name: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        AuditConfig(**changes)  # type: ignore[arg-type]
    assert f"settings: {name}: expected one of " in str(caught.value)
    assert SECRET not in str(caught.value)
    with pytest.raises(ConfigError):
        AuditConfig().replace(**changes)


@pytest.mark.parametrize(
    "key, table, name",
    [
        ("chain_network", "", "chain_network"),
        ("schedule", "[collector]", "[collector] schedule"),
        ("http", "[webhooks]", "[webhooks] http"),
    ],
)
@pytest.mark.parametrize("command", [("runs",), ("verify-chain",), ("audit",)])
def test_config_fix_every_command_exits_2_without_echoing_the_value(
    tmp_path: Path, key: str, table: str, name: str, command: tuple[str, ...]
) -> None:
    cfg = _write(tmp_path, key, table, SECRET)
    db = tmp_path / "s.duckdb"
    done = subprocess.run(
        asg_audit(*command, "--db", str(db), "--config", str(cfg)),
        capture_output=True,
        text=True,
        env=clean_env(ASG_BASE_URL="http://127.0.0.1:9", ASG_CHAIN_URL="http://127.0.0.1:9"),
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        f"asg-audit: error: {cfg}: {name}: expected one of "
        + {"chain_network": "main, test", "schedule": "fixed, documented, adaptive"}.get(
            key, "auto, h11, httptools"
        )
    ]
    assert "CHOICESECRET" not in done.stdout + done.stderr
    assert not db.exists()  # nothing done, no run recorded
