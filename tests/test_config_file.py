"""The config file: the shipped example is complete and valid; secrets stay out of it."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from asg_audit.config import AuditConfig, CostModel, Secret, load_config
from asg_audit.errors import ConfigError
from asg_audit.pollwriter import CollectorSettings
from asg_audit.webhooks import WebhookSettings

EXAMPLE = Path(__file__).parents[1] / "asg_audit.toml.example"


def test_config_example_loads_and_equals_the_defaults() -> None:
    config = load_config(EXAMPLE, env={})
    assert config.costs == CostModel()
    assert config.slo_seconds == AuditConfig().slo_seconds
    assert CollectorSettings.from_mapping(config.collector) == CollectorSettings()
    assert WebhookSettings.from_mapping(config.webhooks) == WebhookSettings()


@pytest.mark.parametrize(
    "section, cls", [("collector", CollectorSettings), ("webhooks", WebhookSettings)]
)
def test_config_example_documents_every_key(section: str, cls: type) -> None:
    raw = tomllib.loads(EXAMPLE.read_text())
    text = EXAMPLE.read_text()
    for f in dataclasses.fields(cls):
        assert f.name in raw[section] or f"# {f.name} =" in text, (
            f"[{section}] {f.name} undocumented"
        )


def _uncommented(text: str) -> str:
    """Return the example with every commented setting and table header uncommented."""
    lines = []
    for line in text.splitlines():
        body = line[2:] if line.startswith("# ") else None
        if body is not None and (body.startswith("[") or " = " in body.split("#")[0]):
            lines.append(body)
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


def test_config_example_with_every_commented_setting_uncommented_loads(tmp_path: Path) -> None:
    full = tmp_path / "asg_audit.toml"
    full.write_text(_uncommented(EXAMPLE.read_text()))
    config = load_config(full, env={})
    # the commented sections are really read: check ids and keys that exist
    assert config.checks["latency.share_over_slo"].warn == 0.10
    assert config.checks["cost.unknown"].enabled is False
    assert config.audit["alert_url"].startswith("https://")
    assert config.webhooks["secret_file"]


def test_config_environment_beats_file_and_flags_beat_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('base_url = "http://file"\ndb = "file.duckdb"\n')
    config = load_config(
        cfg,
        env={"ASG_BASE_URL": "http://env", "ASG_AUDIT_DB": "env.duckdb"},
        overrides={"db_path": "flag.duckdb"},
    )
    assert config.base_url == "http://env" and config.db_path == Path("flag.duckdb")


def test_config_api_key_from_either_variable_and_never_printed() -> None:
    assert load_config(env={"API_KEY": "sk_live_a"}).api_key == Secret("sk_live_a")
    config = load_config(env={"ASG_API_KEY": "sk_live_b", "API_KEY": "sk_live_a"})
    assert config.api_key == Secret("sk_live_b")
    assert "sk_live_b" not in repr(config) and "sk_live_b" not in str(config)


def test_config_refuses_secrets_in_the_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text('api_key = "sk_live_x"\n')
    with pytest.raises(ConfigError, match="secrets belong in the environment"):
        load_config(cfg, env={})


def test_config_rotating_webhook_secrets_are_comma_separated() -> None:
    config = load_config(env={"ASG_WEBHOOK_SECRET": "whsec_new, whsec_old"})
    assert config.webhook_secrets == (Secret("whsec_new"), Secret("whsec_old"))


@pytest.mark.parametrize(
    "text, message",
    [
        ('[costs]\nkind = "free"\n', r"\[costs\] kind: expected 'per_worker' or 'fixed'"),
        (
            "[costs]\npayout_per_worker_sats = 32.5\n",
            r"payout_per_worker_sats: expected an integer",
        ),
        ("[costs]\nfee_percent = 150\n", "fee_percent"),
        ('fail_on = "panic"\n', "fail_on"),
        ('[checks]\n"x.y" = 3\n', "must be a table"),
        ("[chain]\nconfirmation = 6\n", r"unknown key\(s\) in \[chain\]: confirmation \(known: "),
        ("[billing]\nretries = 2\n", r"unknown key\(s\) in \[billing\]: retries"),
    ],
)
def test_config_bad_values_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(cfg, env={})


def test_config_example_documents_every_key_of_every_table() -> None:
    """Every key the loader accepts is in the example (set or commented out), with the tables
    the dataclass test above does not cover: [chain], [billing], [audit] (its demo key too)."""
    from asg_audit.config import _SECTION_TYPES, _TOP_TYPES

    raw = tomllib.loads(_uncommented(EXAMPLE.read_text()))
    for key in _TOP_TYPES:
        assert key in raw, f"{key} undocumented"
    for section, keys in _SECTION_TYPES.items():
        for key in keys:
            assert key in raw.get(section, {}), f"[{section}] {key} undocumented"
