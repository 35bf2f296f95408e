"""`load_config(overrides=...)` fails as the config file does: unknown keys are named with the
known ones, and a value of the wrong type or shape is a ConfigError naming its key (never a
TypeError from AuditConfig's constructor); tables are read in the file's shape."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from asg_audit import load_config
from asg_audit.config import CheckLevels, CostModel
from asg_audit.errors import ConfigError

W = "load_config overrides"


def test_an_unknown_key_is_named_with_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, env={}, overrides={"slo_secondz": 3})
    text = str(caught.value)
    assert text.startswith(f"{W}: unknown key(s): slo_secondz (known: ")
    assert "slo_seconds" in text and "db_path" in text and "collector" in text
    # the same mistake in the file
    toml = tmp_path / "c.toml"
    toml.write_text("slo_secondz = 3\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\): slo_secondz \(known: "):
        load_config(toml, env={})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"costs": {"kind": "bogus"}}, f"{W}: [costs] kind: expected 'per_worker' or 'fixed'"),
        ({"costs": {"kindz": 1}}, f"{W}: unknown key(s) in [costs]: kindz (known: "),
        ({"costs": {"fee_percent": "1"}}, f"{W}: [costs] fee_percent: expected a number"),
        ({"costs": "per_worker"}, f"{W}: costs: expected a table (mapping)"),
        ({"slo_seconds": "x"}, f"{W}: slo_seconds: expected a number, got a string"),
        ({"slo_seconds": -5}, f"{W}: slo_seconds: expected a positive number"),
        ({"fail_on": "bad"}, f"{W}: fail_on: expected one of info, warn, fail"),
        ({"base_url": 5}, f"{W}: base_url: expected a string, got an integer"),
        ({"db_path": 3}, f"{W}: db_path: expected a path (str or Path), got an integer"),
        ({"collector": 5}, f"{W}: collector: expected a table (mapping)"),
        ({"collector": {"max_rps": "5"}}, f"{W}: [collector] max_rps: expected a number"),
        ({"collector": {"max_rpz": 5}}, f"{W}: unknown key(s) in [collector]: max_rpz"),
        ({"collector": {"max_rps": -1}}, f"{W}: [collector] max_rps: expected a positive"),
        ({"checks": 3}, f"{W}: checks: expected a table (mapping)"),
        ({"checks": {"task.stuk": {"warn": 1}}}, f'{W}: [checks."task.stuk"]: unknown check'),
        ({"api_key": 5}, f"{W}: api_key: expected a string or Secret, got an integer"),
        ({"webhook_secrets": [1]}, f"{W}: webhook_secrets: expected a string or Secret"),
        ({"audit": {"report_dir": ""}}, f"{W}: [audit] report_dir: expected a path, got an"),
        ({"audit": {"drop_folders": "d"}}, f"{W}: [audit] drop_folders: expected an array"),
    ],
)
def test_a_wrong_value_is_a_config_error_naming_the_key(
    overrides: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, env={}, overrides=overrides)
    assert str(caught.value).startswith(message), str(caught.value)


def test_a_secret_given_in_a_wrong_place_is_not_shown() -> None:
    secret = "s3cr3t-value-of-the-key"
    with pytest.raises(ConfigError) as caught:
        load_config(None, env={"ASG_API_KEY": secret}, overrides={"collector": {secret: 1}})
    assert secret not in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        load_config(None, env={}, overrides={"slo_seconds": secret})
    assert secret not in str(caught.value)


def test_tables_are_read_in_the_file_shape() -> None:
    config = load_config(
        None,
        env={},
        overrides={
            "db_path": "x.duckdb",
            "costs": {"kind": "fixed", "reward_sats": 500, "fee_percent": 0.15},
            "slo_seconds": 3,
            "collector": {"deadline_s": 20.0, "max_rps": 50.0},
            "checks": {"task.stuck": {"warn": 1800}},
            "audit": {"report_dir": Path("r"), "drop_folders": (Path("d"),)},
            "webhook_secrets": ["s1", "s2"],
            "base_url": None,  # not given
        },
    )
    assert config.db_path == Path("x.duckdb")
    assert config.costs == CostModel(kind="fixed", reward_sats=500, fee_percent=Decimal("0.15"))
    assert config.slo_seconds == 3.0 and isinstance(config.slo_seconds, float)
    assert config.collector == {"deadline_s": 20.0, "max_rps": 50.0}
    assert config.checks["task.stuck"].warn == 1800
    assert config.audit == {"report_dir": "r", "drop_folders": ["d"]}
    assert len(config.webhook_secrets) == 2
    assert config.base_url == "https://api.asgrefinery.io"


def test_built_objects_are_taken_as_they_are() -> None:
    costs = CostModel(kind="fixed")
    config = load_config(
        None, env={}, overrides={"costs": costs, "checks": {"task.stuck": CheckLevels(warn=5)}}
    )
    assert config.costs is costs
    assert config.checks["task.stuck"].warn == 5


def test_the_readme_overrides_still_work(tmp_path: Path) -> None:
    toml = tmp_path / "asg_audit.toml"
    toml.write_text('db = "file.duckdb"\nslo_seconds = 30\n')
    config = load_config(
        toml,
        env={"ASG_API_KEY": "k"},
        overrides={"db_path": "flag.duckdb", "base_url": "http://127.0.0.1:19160"},
    )
    assert config.db_path == Path("flag.duckdb")
    assert config.base_url == "http://127.0.0.1:19160"
    assert config.slo_seconds == 30.0
