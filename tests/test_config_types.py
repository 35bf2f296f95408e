"""Every config value is type-checked: the error names the file, the key and the type expected,
never the value (it might be a misplaced secret); exit 2 from any command that reads the file."""

from __future__ import annotations

import dataclasses
import subprocess
import tomllib
from pathlib import Path

import pytest
from _hardening_procs import asg_audit, clean_env

from asg_audit.config import _SECTION_TYPES, load_config
from asg_audit.errors import ConfigError
from asg_audit.pollwriter import CollectorSettings
from asg_audit.webhooks import WebhookSettings

EXAMPLE = Path(__file__).parents[1] / "asg_audit.toml.example"
SECRET = "sk-test-SECRET123"


def _load(tmp_path: Path, text: str):
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    return load_config(cfg, env={})


@pytest.mark.parametrize(
    "text, key, expected",
    [
        ('[costs]\nfee_included = "false"\n', "[costs] fee_included", "a boolean"),
        ("[costs]\nfee_included = 0\n", "[costs] fee_included", "a boolean"),
        ("slo_seconds = true\n", "slo_seconds", "a number"),
        (f'slo_seconds = "{SECRET}"\n', "slo_seconds", "a number"),
        ("slo_seconds = nan\n", "slo_seconds", "a number"),
        ("[costs]\nfee_percent = true\n", "[costs] fee_percent", "a number"),
        ("[costs]\nreward_sats = true\n", "[costs] reward_sats", "an integer"),
        ("[costs]\nkind = 1\n", "[costs] kind", "a string"),
        ('[checks."task.stuck"]\nwarn = "x"\n', '[checks."task.stuck"] warn', "a number"),
        ('[checks."task.stuck"]\nenabled = "no"\n', '[checks."task.stuck"] enabled', "a boolean"),
        ('[checks."task.stuck"]\nseverity = 2\n', '[checks."task.stuck"] severity', "a string"),
        ('[audit]\ncollect_seconds = "x"\n', "[audit] collect_seconds", "a number"),
        ('[audit]\nverify_chain = "yes"\n', "[audit] verify_chain", "a boolean"),
        ('[audit]\ndrop_folders = "in"\n', "[audit] drop_folders", "an array of strings"),
        ('[chain]\nrps = "x"\n', "[chain] rps", "a number"),
        ("[chain]\nchange_scripts = [1]\n", "[chain] change_scripts", "an array of strings"),
        ('[billing]\nmax_retries = "5"\n', "[billing] max_retries", "an integer"),
        ("[collector]\nbatch_size = true\n", "[collector] batch_size", "an integer"),
        ("[webhooks]\npath = 1\n", "[webhooks] path", "a string"),
        ("db = 5\n", "db", "a string"),
    ],
)
def test_config_value_of_the_wrong_type_names_file_key_and_type(
    tmp_path: Path, text: str, key: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'c.toml'}: {key}: expected {expected}"), message
    assert "SECRET" not in message and '"x"' not in message and "'x'" not in message


def test_config_booleans_are_read_as_written(tmp_path: Path) -> None:
    config = _load(tmp_path, "[costs]\nfee_included = false\nfee_percent = 25\n")
    assert config.costs.fee_included is False
    assert _load(tmp_path, "[costs]\nfee_included = true\n").costs.fee_included is True


@pytest.mark.parametrize(
    "text, message",
    [
        ('[checks."no.such"]\nwarn = 1\n', r'\[checks."no.such"\]: unknown check id; known: '),
        ('[checks."task.stuk"]\nwarn = 1\n', r"unknown check id; did you mean task\.stuck"),
        ('[checks."chain.unconfirmd"]\nwarn = 1\n', r"did you mean chain\.unconfirmed"),
        ('[checks."task.stuck"]\nwarning = 1\n', r"unknown key\(s\) in \[checks.\"task.stuck\"\]"),
        ("[audit]\nreport_folder = 1\n", r"unknown key\(s\) in \[audit\]: report_folder"),
        ("[report]\ntitle = 1\n", r"unknown key\(s\) in \[report\]: title \(it takes no keys\)"),
        ("[collector]\nmax_rsp = 1\n", r"unknown key\(s\) in \[collector\]: max_rsp"),
        ('[audit]\nalert_on = "loud"\n', r"\[audit\] alert_on: expected one of info, warn, fail"),
        ("[audit]\ncollect_seconds = -1\n", r"\[audit\] collect_seconds"),
        ("slo_seconds = 0\n", "slo_seconds: expected a positive number"),
        ('[webhooks]\nsecret = "whsec_x"\n', "secrets belong in ASG_WEBHOOK_SECRET"),
    ],
)
def test_config_unknown_ids_keys_and_values_are_errors(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, text)


def test_config_known_check_ids_are_accepted(tmp_path: Path) -> None:
    config = _load(tmp_path, '[checks."task.stuck"]\nwarn = 2\n[checks."chain.unconfirmed"]\n')
    assert config.checks["task.stuck"].warn == 2


@pytest.mark.parametrize(
    "section, cls", [("collector", CollectorSettings), ("webhooks", WebhookSettings)]
)
def test_config_types_cover_exactly_the_settings_fields(section: str, cls: type) -> None:
    assert set(_SECTION_TYPES[section]) == {f.name for f in dataclasses.fields(cls)}


def test_config_types_cover_every_key_of_the_example() -> None:
    raw = tomllib.loads(EXAMPLE.read_text())
    for section in ("chain", "billing", "audit", "costs"):
        assert set(raw[section]) <= set(_SECTION_TYPES[section]), section
    load_config(EXAMPLE, env={})


def test_config_error_from_the_command_is_one_line_without_the_value(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'slo_seconds = "{SECRET}"\n')
    done = subprocess.run(
        asg_audit("report", "--db", str(tmp_path / "s.duckdb"), "--config", str(cfg)),
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr == f"asg-audit: error: {cfg}: slo_seconds: expected a number, got a string\n"
    assert SECRET not in done.stdout + done.stderr
    assert not (tmp_path / "s.duckdb").exists()
