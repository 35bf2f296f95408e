"""`WebhookSettings` built in Python checks its values by the config file's rules: a value the
config file refuses is a ValueError naming the field (it answered 413 to everything, or failed
in Starlette with an AssertionError)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from asg_audit.config import load_config
from asg_audit.errors import ConfigError
from asg_audit.webhooks import WebhookSettings

# (field, a value the config file refuses, the nearest value it takes)
BOUNDS = [
    ("max_body_bytes", -1, 64),
    ("max_body_bytes", 63, 64),
    ("max_body_bytes", 2**30 + 1, 2**30),
    ("freshness_seconds", -1, 0),
    ("commit_max_batch", 0, 1),
    ("commit_max_wait_ms", -0.5, 0.0),
    ("normalise_interval_ms", -1, 0),
    ("graceful_shutdown_seconds", 86_401, 86_400),
    ("dedupe_window_seconds", 0, 0.5),
    ("dedupe_max_events", 0, 1),
    ("request_timeout_seconds", 0, 0.1),
    ("request_timeout_seconds", 3_601, 3_600),
    ("max_connections", 0, 1),
    ("max_connections", 1.5, 2),
    ("path", "webhooks", "/webhooks"),
    ("http", "uvloop", "h11"),
]


@pytest.mark.parametrize(("name", "bad", "good"), BOUNDS)
def test_webhook_settings_refuse_what_the_config_file_refuses(tmp_path, name, bad, good):
    with pytest.raises(ValueError, match=rf"^WebhookSettings\.{name}: expected "):
        WebhookSettings(**{name: bad})
    assert getattr(WebhookSettings(**{name: good}), name) == good
    # the config file draws the same line
    cfg = tmp_path / "asg_audit.toml"
    cfg.write_text(f"[webhooks]\n{name} = {_toml(bad)}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=name):
        load_config(cfg, env={})
    cfg.write_text(f"[webhooks]\n{name} = {_toml(good)}\n", encoding="utf-8")
    assert load_config(cfg, env={}).webhooks[name] == good


def _toml(value: object) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


@pytest.mark.parametrize(
    ("name", "bad"),
    [
        ("max_body_bytes", True),
        ("max_body_bytes", "65536"),
        ("freshness_seconds", math.nan),
        ("freshness_seconds", math.inf),
        ("commit_max_batch", None),
        ("path", None),
        ("http", 1),
        ("forwarded_allow_ips", ["127.0.0.1"]),
        ("secret_file", 3),
    ],
)
def test_webhook_settings_refuse_values_of_the_wrong_type(name, bad):
    with pytest.raises(ValueError, match=rf"^WebhookSettings\.{name}: expected "):
        WebhookSettings(**{name: bad})


def test_webhook_settings_error_never_quotes_a_text_value():
    with pytest.raises(ValueError) as caught:
        WebhookSettings(path="whsec_pasted_here")
    assert "whsec_pasted_here" not in str(caught.value)


def test_webhook_settings_defaults_and_paths_are_accepted():
    assert WebhookSettings().max_body_bytes == 65_536
    assert WebhookSettings(secret_file=Path("/run/secret")).secret_file == Path("/run/secret")


def test_webhook_settings_from_mapping_still_raises_config_error_naming_the_key():
    with pytest.raises(
        ConfigError, match=r"^webhooks\.max_body_bytes: expected an integer from 64"
    ):
        WebhookSettings.from_mapping({"max_body_bytes": -1})
    with pytest.raises(ConfigError, match=r"^webhooks\.path: expected a path starting with /$"):
        WebhookSettings.from_mapping({"path": "webhooks"})
