"""A config shown (repr, str, a notebook's display) holds no secret.

`repr(load_config())` showed `base_url` with its user, password and query and `[audit]
alert_url` whole (a Slack webhook's path is its secret); only the `Secret` fields were masked.
It now shows what the report shows: URLs without user, password or query, `alert_url` by its
scheme and host alone, and a configured secret found in another setting as `***`.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from asg_audit import load_config
from asg_audit.config import AuditConfig
from asg_audit.errors import ConfigError
from asg_audit.report.content import config_rows

PASSWORD = "hunter2pw"
API_KEY = "SECRETKEY123"
WOC_KEY = "WOCSECRET456"
HOOK_SECRET = "WHSECRET789"
SLACK_TOKEN = "SLACKSECRETXYZ"
SECRETS = (PASSWORD, API_KEY, WOC_KEY, HOOK_SECRET, SLACK_TOKEN)
# base_url and chain_url cannot hold a user, password or query (fixer G5: refused as config);
# alert_url can, and the secrets below sit in the places still allowed
BASE_URL = "https://api.example.com/v1"
ALERT_URL = f"https://u:{PASSWORD}@hooks.slack.com/services/T000/B000/{SLACK_TOKEN}"
ENV = {
    "ASG_BASE_URL": BASE_URL,
    "ASG_API_KEY": API_KEY,
    "WOC_API_KEY": WOC_KEY,
    "ASG_WEBHOOK_SECRET": HOOK_SECRET,
    "ASG_CHAIN_URL": "https://chain.example.com/v1/bsv/main",
}


@pytest.fixture
def config(tmp_path: Path) -> AuditConfig:
    toml = tmp_path / "sec.toml"
    toml.write_text(
        f'base_url = "https://api.example.com/v1"\n\n[audit]\nalert_url = "{ALERT_URL}"\n'
        # keys pasted into settings that take any text
        f'drop_folders = ["/data/{API_KEY}", "{HOOK_SECRET}"]\n'
        f'report_dir = "reports-{WOC_KEY}"\n'
    )
    return load_config(toml, env=ENV)


def _assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, text


def test_repr_and_str_of_a_config_hold_no_secret(config: AuditConfig, tmp_path: Path) -> None:
    # relative paths in the file are taken from the file's folder (fixer X): shown resolved
    here = os.path.realpath(tmp_path)
    # the real values are still there: requests are sent to them
    assert config.base_url == BASE_URL and config.audit["alert_url"] == ALERT_URL
    for shown in (repr(config), str(config), f"{config}", repr([config]), repr({"c": config})):
        _assert_no_secret(shown)
        assert "https://api.example.com/v1" in shown  # scheme, host and path stay
        assert "https://chain.example.com/v1/bsv/main" in shown
        assert "'alert_url': 'https://hooks.slack.com/…'" in shown
        assert f"'drop_folders': ['/data/***', '{here}/***']" in shown
        assert f"'report_dir': '{here}/reports-***'" in shown
        assert "api_key=Secret('***')" in shown
        assert "AuditConfig(db_path=" in shown


def test_a_notebook_shows_a_config_without_its_secrets(config: AuditConfig) -> None:
    pretty = pytest.importorskip("IPython.lib.pretty")
    _assert_no_secret(pretty.pretty(config))
    html = getattr(config, "_repr_html_", None)
    if html is not None:
        _assert_no_secret(html())


def test_a_replaced_config_and_a_library_built_one_hold_no_secret(config: AuditConfig) -> None:
    replaced = config.replace(base_url="http://127.0.0.1:9/x")
    _assert_no_secret(repr(replaced))
    assert "http://127.0.0.1:9/x" in repr(replaced)
    # a base_url with credentials or a query is refused, and the refusal shows neither
    with pytest.raises(ConfigError) as refused:
        config.replace(base_url=f"http://a:{PASSWORD}@127.0.0.1:9/x?q={SLACK_TOKEN}")
    _assert_no_secret(str(refused.value))
    built = AuditConfig(api_key=API_KEY, audit={"alert_url": ALERT_URL})
    _assert_no_secret(repr(built))


def test_the_report_masks_a_configured_key_pasted_into_another_setting(
    config: AuditConfig, tmp_path: Path
) -> None:
    rows = dict(config_rows(config))
    _assert_no_secret(repr(rows))
    here = os.path.realpath(tmp_path)  # relative paths are taken from the file's folder
    assert rows["audit.drop_folders"] == f"[/data/***, {here}/***]"
    assert rows["audit.report_dir"] == f"{here}/reports-***"
    assert rows["audit.alert_url"] == "https://hooks.slack.com/…"


def test_asdict_still_gives_the_real_values(config: AuditConfig) -> None:
    # By design: dataclasses.asdict copies the fields, which hold what requests are sent to.
    # Its secrets stay Secret objects; the URLs are the real ones.
    plain = dataclasses.asdict(config)
    assert plain["base_url"] == BASE_URL
    assert repr(plain["api_key"]) == "Secret('***')"
