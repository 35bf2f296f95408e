"""Secrets with stray white space or characters an HTTP header cannot carry.

A key read from a CRLF env file ends in a carriage return; it is stripped when the secrets are
loaded and the request goes out with the clean key. A key that still holds a control character
or a non-ASCII character is refused at once (exit 2, one error line naming the variable, never
the value), before any request, by every command. `redact` also masks the escaped forms of a
secret (a repr of the header bytes), and the billing and chain error paths pass through it.
"""

from __future__ import annotations

import http.server
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from _hardening_procs import asg_audit, clean_env
from _http_server import serve

from asg_audit.billing import fetch_billing
from asg_audit.chain import ChainClient
from asg_audit.config import AuditConfig, load_config
from asg_audit.errors import ApiTransientError, ConfigError
from asg_audit.redaction import Secret, redact
from asg_audit.store import open_store

MARK = "TOPSECRET"  # in every secret below: found anywhere in the output, it is a leak
BAD_SECRETS = [
    ("carriage return inside", f"sk_live_{MARK}\r99", "a control character"),
    ("line feed inside", f"sk_live_{MARK}\n99", "a control character"),
    ("tab inside", f"sk_live_{MARK}\t99", "a control character"),
    ("NUL", f"sk_live_{MARK}\x0099", "a control character"),
    ("non-ASCII", f"sk_live_{MARK}é", "a non-ASCII character"),
    ("non-ASCII inside a plain key", f"woc{MARK}ü42", "a non-ASCII character"),
]
# an environment cannot hold NUL
ENV_SECRETS = [case for case in BAD_SECRETS if "\x00" not in case[1]]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Refuser(http.server.BaseHTTPRequestHandler):
    """Answers 401 to every request and records the credential headers it received."""

    seen: list[str] = []

    def _refuse(self) -> None:
        self.seen.append(self.headers.get("Authorization", ""))
        self.send_response(401)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST = _refuse

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def refuser() -> Iterator[tuple[str, list[str]]]:
    seen: list[str] = []
    handler = type("Handler", (_Refuser,), {"seen": seen})
    with serve(handler) as base:
        yield base, seen


def _store_with_a_txid(db: Path) -> None:
    with open_store(db) as store:
        store.con.execute(
            "INSERT INTO results (task_id, status, bsv_txid) VALUES (?, 'settled', ?)",
            ["tsk_a", "ab" * 32],
        )


def _run(tmp_path: Path, env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        asg_audit(*argv),
        capture_output=True,
        text=True,
        env=clean_env(**env),
        cwd=tmp_path,
        timeout=120,
    )


# -- library -----------------------------------------------------------------------------------


@pytest.mark.parametrize("label, value, reason", BAD_SECRETS)
def test_secrets_fix_audit_config_refuses_a_secret_no_header_can_carry(
    label: str, value: str, reason: str
) -> None:
    for field, secret in (
        ("api_key", value),
        ("api_key", Secret(value)),
        ("woc_api_key", value),
        ("webhook_secrets", ("fine_secret", value)),
    ):
        with pytest.raises(ConfigError) as caught:
            AuditConfig(**{field: secret})  # type: ignore[arg-type]
        message = str(caught.value)
        assert message.startswith(f"AuditConfig {field}:") and reason in message, message
        assert MARK not in message and MARK not in repr(caught.value)


def test_secrets_fix_surrounding_white_space_is_stripped() -> None:
    config = AuditConfig(
        api_key=" sk_live_abc\r\n",  # type: ignore[arg-type]
        woc_api_key=Secret("\twoc_key\r"),
        webhook_secrets=(Secret("whsec_1\r"), "\r\n"),
    )
    assert config.api_key is not None and config.api_key.reveal() == "sk_live_abc"
    assert config.woc_api_key is not None and config.woc_api_key.reveal() == "woc_key"
    assert [s.reveal() for s in config.webhook_secrets] == ["whsec_1"]
    assert AuditConfig(api_key="\r\n").api_key is None  # type: ignore[arg-type]

    env = {
        "ASG_API_KEY": "sk_live_abc\r",
        "WOC_API_KEY": "woc_key\r\n",
        "ASG_WEBHOOK_SECRET": "whsec_1\r, whsec_2\t\r",
    }
    loaded = load_config(env=env)
    assert loaded.api_key is not None and loaded.api_key.reveal() == "sk_live_abc"
    assert loaded.woc_api_key is not None and loaded.woc_api_key.reveal() == "woc_key"
    assert [s.reveal() for s in loaded.webhook_secrets] == ["whsec_1", "whsec_2"]
    # an ASG_API_KEY of white space only is unset: API_KEY is used
    fallback = load_config(env={"ASG_API_KEY": "\r", "API_KEY": "sk_live_fallback\r"})
    assert fallback.api_key is not None and fallback.api_key.reveal() == "sk_live_fallback"


@pytest.mark.parametrize("label, value, reason", BAD_SECRETS)
@pytest.mark.parametrize(
    "env_name", ["ASG_API_KEY", "API_KEY", "WOC_API_KEY", "ASG_WEBHOOK_SECRET"]
)
def test_secrets_fix_load_config_names_the_variable_never_the_value(
    env_name: str, label: str, value: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(env={env_name: value})
    message = str(caught.value)
    assert message.startswith(f"{env_name}:") and reason in message, message
    assert MARK not in message


# -- redact, and the billing and chain error paths -----------------------------------------------


def test_secrets_fix_redact_masks_escaped_forms() -> None:
    key = Secret("tok3n\r")
    woc = "w0c\u00e9"
    message = "LocalProtocolError(\"Illegal header value b'Bearer tok3n\\\\r'\")"
    assert "tok3n" not in redact(message, [key])
    assert "tok3n" not in redact(repr(message), [key])  # escaped twice
    assert "w0c" not in redact("bad header b'w0c\\xc3\\xa9'", [woc])
    assert "w0c" not in redact("bad value 'w0c\\xe9'", [woc])
    assert "w0c" not in redact('{"e": "w0c\\u00e9"}', [woc])
    assert redact("plain tok3n here", [key]) == "plain *** here"


class _RaisingTransport(httpx.BaseTransport):
    """A transport whose every request fails with an error naming the given text."""

    def __init__(self, text: str) -> None:
        self.text = text

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"cannot connect ({self.text})", request=request)


def test_secrets_fix_billing_and_chain_errors_are_redacted(tmp_path: Path) -> None:
    key = f"plain{MARK}key"  # no sk_ prefix: only the configured secret can mask it
    db = tmp_path / "s.duckdb"
    with open_store(db):
        pass
    config = AuditConfig(base_url="http://127.0.0.1:9", api_key=key, billing={"max_retries": 0})  # type: ignore[arg-type]
    with pytest.raises(ApiTransientError) as caught:
        fetch_billing(db, config, months="2026-01", transport=_RaisingTransport(repr(key)))
    assert MARK not in str(caught.value) and "***" in str(caught.value)

    client = ChainClient(
        "http://127.0.0.1:9/v1/bsv/main",
        api_key=Secret(key),
        max_retries=0,
        transport=_RaisingTransport(key),
    )
    with client, pytest.raises(ApiTransientError) as caught_chain:
        client.chain_info()
    assert MARK not in str(caught_chain.value) and "***" in str(caught_chain.value)


def test_secrets_fix_chain_client_refuses_a_bad_key() -> None:
    with pytest.raises(ConfigError) as caught:
        ChainClient("http://127.0.0.1:9/v1/bsv/main", api_key=Secret(f"{MARK}\r1"))
    assert MARK not in str(caught.value)


# -- the command line --------------------------------------------------------------------------


@pytest.mark.parametrize("label, value, reason", ENV_SECRETS)
def test_secrets_fix_commands_refuse_a_bad_key_with_one_line_and_exit_2(
    tmp_path: Path, label: str, value: str, reason: str
) -> None:
    db = tmp_path / "s.duckdb"
    _store_with_a_txid(db)
    closed = f"http://127.0.0.1:{_closed_port()}"
    cfg = tmp_path / "c.toml"
    cfg.write_text("[audit]\nverify_chain = true\nalert_url = 'http://127.0.0.1:9/hook'\n")
    urls = {"ASG_BASE_URL": closed, "ASG_CHAIN_URL": f"{closed}/v1/bsv/main"}
    runs = [
        ("ASG_API_KEY", ("billing",)),
        ("API_KEY", ("collect",)),
        ("WOC_API_KEY", ("verify-chain",)),
        ("ASG_API_KEY", ("audit", "--config", str(cfg), "--out", "r", "--json")),
        ("ASG_WEBHOOK_SECRET", ("runs",)),
    ]
    for env_name, argv in runs:
        done = _run(tmp_path, {**urls, env_name: value}, *argv, "--db", str(db))
        lines = done.stderr.splitlines()
        assert done.returncode == 2, (argv, done.stderr[-2000:])
        assert len(lines) == 1 and lines[0].startswith(f"asg-audit: error: {env_name}:"), lines
        assert reason in lines[0]
        assert MARK not in done.stdout + done.stderr, (argv, done.stdout, done.stderr)
    with open_store(db) as store:  # nothing ran: no run recorded
        assert store.con.execute("SELECT count(*) FROM runs").fetchone() == (0,)
    assert MARK.encode() not in db.read_bytes()


def test_secrets_fix_crlf_key_is_sent_stripped_and_never_printed(
    tmp_path: Path, refuser: tuple[str, list[str]]
) -> None:
    url, seen = refuser
    db = tmp_path / "s.duckdb"
    _store_with_a_txid(db)
    billing = _run(
        tmp_path,
        {"ASG_BASE_URL": url, "ASG_API_KEY": f"sk_live_{MARK}\r"},
        "billing",
        "--db",
        str(db),
    )
    chain = _run(
        tmp_path,
        {"ASG_CHAIN_URL": f"{url}/v1/bsv/main", "WOC_API_KEY": f"woc{MARK}\r\n"},
        "verify-chain",
        "--quiet",
        "--db",
        str(db),
    )
    for done in (billing, chain):
        assert done.returncode == 3, done.stderr[-2000:]  # the listener refuses the key: 401
        assert "refused the key (401)" in done.stderr
        assert MARK not in done.stdout + done.stderr
    assert f"Bearer sk_live_{MARK}" in seen and f"woc{MARK}" in seen
    assert MARK.encode() not in db.read_bytes()
