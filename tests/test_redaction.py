"""The one URL check (`check_http_url`) and what messages show of URLs and secrets."""

from __future__ import annotations

import pytest

from asg_audit.chain import ChainClient
from asg_audit.config import AuditConfig, load_config
from asg_audit.errors import ConfigError
from asg_audit.redaction import Secret, check_http_url, display_url, redact
from asg_audit.webhooks import check_callback_url


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://user:pw-SECRET@host/x?token=Q-SECRET", "does not start with http:// or https://"),
        ("not a url", "does not start with http:// or https://"),
        ("127.0.0.1:8080", "does not start with http:// or https://"),
        ("http://", "names no host"),
        ("http:///v1/bsv/main", "names no host"),
        ("http://host:99999/", "its port is not a number from 1 to 65535"),
        ("http://host:SECRET/", "its port is not a number from 1 to 65535"),
        ("http://[::1/v1", "its [IPv6] host is malformed"),
        ("http://host:0/", "port 0"),
        ("http://exa mple.com/", "white space or control characters"),
        ("http://ex\x01.com/", "white space or control characters"),
        ("https://host/a\tb", "white space or control characters"),
    ],
)
def test_an_unusable_url_names_the_setting_the_reason_and_the_hint(url: str, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        check_http_url(url, "base_url", "set by ASG_BASE_URL")
    message = str(err.value)
    assert message.startswith("base_url ")
    assert "is not an absolute http:// or https:// URL with a host" in message
    assert problem in message
    assert message.endswith("(the value is not shown; set by ASG_BASE_URL)")
    assert "SECRET" not in message
    assert repr(url) not in message and repr(display_url(url)) not in message


@pytest.mark.parametrize(
    "url",
    [
        "https://api.asgrefinery.io",
        "HTTP://127.0.0.1:8080/v1",
        "http://[::1]:8080/x",
        "https://bücher.example/",
        "https://user:pw@host/path?q=1",
    ],
)
def test_a_usable_url_is_returned_unchanged(url: str) -> None:
    assert check_http_url(url, "chain_url", "x") is url


def test_a_url_that_is_not_text_says_so() -> None:
    with pytest.raises(ConfigError, match=r"^chain_url: expected a URL \(text\), got int$"):
        check_http_url(8080, "chain_url", "x")


def test_display_url_drops_credentials_query_and_keys() -> None:
    shown = display_url("https://me:pw@host:8443/v1/sk_live_abc123/x?api_key=sk_test_Z#frag")
    assert shown == "https://host:8443/v1/***/x"
    assert display_url("http://[::1/x") == "<unparsable URL>"
    assert redact("Bearer tok-1 and sk_test_abc", [Secret("tok-1")]) == "Bearer *** and ***"


def test_every_url_setting_goes_through_the_one_check() -> None:
    # the same message shape, whichever of the four URLs is wrong, at the moment it is given
    env = {"ASG_BASE_URL": "ftp://host/x"}
    with pytest.raises(ConfigError, match=r"^base_url is not an absolute") as e1:
        load_config(None, env=env)
    assert "set by ASG_BASE_URL in the environment" in str(e1.value)
    with pytest.raises(ConfigError, match=r"^chain_url is not an absolute") as e2:
        load_config(None, env={"ASG_CHAIN_URL": "http://exa mple.com"})
    assert "white space" in str(e2.value)
    with pytest.raises(ConfigError, match=r"^chain_url is not an absolute"):
        ChainClient("ftp://x/v1")
    with pytest.raises(ConfigError, match=r"^callback URL is not an absolute"):
        check_callback_url("://hooks")
    # a library caller's AuditConfig is checked when it is built, before any step uses it
    with pytest.raises(ConfigError, match=r"^base_url is not an absolute.*given to AuditConfig"):
        AuditConfig(base_url="gopher://gw", api_key=Secret("sk_test_KEY"))
    with pytest.raises(ConfigError, match=r"^chain_url is not an absolute.*given to AuditConfig"):
        AuditConfig().replace(chain_url="ftp://x/v1")


def test_the_gateway_client_refuses_a_key_no_header_can_carry() -> None:
    from asg_audit.gateway import GatewayClient

    with pytest.raises(ConfigError, match=r"^GatewayClient api_key: the secret holds a non-ASCII"):
        GatewayClient("http://127.0.0.1:9", Secret("sk_live_TOPSECRETé"))
    with pytest.raises(ConfigError, match="control character") as err:
        GatewayClient("http://127.0.0.1:9", "sk_live_TOP\nSECRET")
    assert "TOP" not in str(err.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://hooks.slack.com/services/T0/B0/SECRETPATH", "https://hooks.slack.com/…"),
        ("http://u:pw@127.0.0.1:8080/hook?token=Q", "http://127.0.0.1:8080/…"),
        ("https://alerts.example", "https://alerts.example"),
        ("https://alerts.example/", "https://alerts.example"),
        ("no scheme/SECRETPATH", "<URL>"),
    ],
)
def test_display_origin_shows_no_path_of_an_alert_webhook(url: str, shown: str) -> None:
    from asg_audit.redaction import display_origin

    assert display_origin(url) == shown


def test_a_runs_error_text_masks_the_secrets_of_any_error() -> None:
    """`runs.stats.error` (collect, ingest, audit): one shared line, secrets masked, also in a
    bug's text (which may quote anything), the error named by its type."""
    from asg_audit.errors import StoreError
    from asg_audit.redaction import error_text

    key = "sk_live_abcdefghijklmnop1234"
    bug = ValueError(f"bad header Authorization: Bearer {key}\nsecond line")
    text = error_text(bug, [key])
    assert key not in text and text.startswith("ValueError: bad header") and "\n" not in text
    assert error_text(StoreError("x.duckdb: database busy")) == "x.duckdb: database busy"
    assert error_text(KeyError()) == "KeyError"
    whsec = "whsec_0123456789abcdef"
    assert whsec not in error_text(RuntimeError(f"signed with {whsec}"), [whsec])
