"""`base_url` and `chain_url` are the bases request paths are appended to: refused, when the
config is read, if they hold a user or password, a query or a fragment.

Found by a security tester: with `ASG_BASE_URL=http://gwuser:pw@host`, httpx sent the URL's
user and password as Basic auth in place of the `Authorization: Bearer <api_key>` header, the
Gateway answered 401 and the audit blamed the key; with `http://host/?token=T` every request
went to `/?token=T/v1/...`. The chain index's URL had the same two problems (the WoC key goes in
its Authorization header). Both are now exit 2 before any request, from the file, the
environment, `load_config(overrides=...)` and `AuditConfig(...)` alike, with the reason and
where it was set, never the value. `[audit] alert_url` is POSTed to as it is (never a base):
a query or a user there is still taken. A real Gateway stand-in records whether any request
arrives.
"""

from __future__ import annotations

import http.server
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from _config_file import write_config
from _hardening_procs import asg_audit, clean_env

from asg_audit.config import AuditConfig, load_config
from asg_audit.errors import ConfigError
from asg_audit.ingest_files import ingest_paths

USER, PASSWORD, TOKEN = "gwuser", "pw-Sekr3t", "tok-Sekr3t"


class _Sink(http.server.BaseHTTPRequestHandler):
    seen: list[tuple[str, str | None]] = []

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("Authorization")))
        self.send_response(401)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def gateway() -> Iterator[tuple[str, list[tuple[str, str | None]]]]:
    """A Gateway stand-in on 127.0.0.1 that records each request's path and Authorization."""
    seen: list[tuple[str, str | None]] = []
    handler = type("Sink", (_Sink,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def store(tmp_path: Path) -> Path:
    export = tmp_path / "e.ndjson"
    export.write_text('{"task_id": "t1", "status": "pending"}\n')
    db = tmp_path / "s.duckdb"
    ingest_paths(db, [export])
    return db


def _no_secret(text: str) -> None:
    for secret in (USER, PASSWORD, TOKEN):
        assert secret not in text, text


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        (f"http://{USER}:{PASSWORD}@{{host}}", "it holds a user name or password before the host"),
        (f"http://{{host}}/?token={TOKEN}", "it holds a query (?...)"),
        (f"http://{{host}}/api#{TOKEN}", "it holds a fragment (#...)"),
    ],
)
def test_billing_refuses_such_a_base_url_before_any_request(
    gateway: tuple[str, list[tuple[str, str | None]]], store: Path, url: str, reason: str
) -> None:
    host, seen = gateway
    env = clean_env(ASG_API_KEY="sk_test_G5key", ASG_BASE_URL=url.format(host=host))
    done = subprocess.run(
        asg_audit("billing", "--db", str(store), "--month", "2026-10"),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "base_url cannot be the base URL of requests: " + reason in done.stderr
    assert "set by ASG_BASE_URL in the environment" in done.stderr
    _no_secret(done.stdout + done.stderr)
    assert seen == []  # nothing was sent


def test_a_plain_base_url_with_a_path_still_reaches_the_gateway_with_the_key(
    gateway: tuple[str, list[tuple[str, str | None]]], store: Path
) -> None:
    host, seen = gateway
    env = clean_env(ASG_API_KEY="sk_test_G5key", ASG_BASE_URL=f"http://{host}/api/")
    subprocess.run(
        asg_audit("billing", "--db", str(store), "--month", "2026-10"),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert seen and all(p.startswith("/api/v1/") for p, _ in seen), seen
    assert all(auth == "Bearer sk_test_G5key" for _, auth in seen), seen


@pytest.mark.parametrize("key", ["base_url", "chain_url"])
@pytest.mark.parametrize(
    "url",
    [
        f"https://{USER}:{PASSWORD}@example.test/v1/bsv/main",
        f"https://{USER}@example.test/v1/bsv/main",
        f"https://example.test/v1/bsv/main?token={TOKEN}",
        f"https://example.test/v1/bsv/main#{TOKEN}",
    ],
)
def test_every_source_refuses_it(tmp_path: Path, key: str, url: str) -> None:
    env_name = {"base_url": "ASG_BASE_URL", "chain_url": "ASG_CHAIN_URL"}[key]
    path = write_config(tmp_path, f'{key} = "{url}"\n')
    attempts = [
        (lambda: load_config(path, env={}), f"set by {key} in {path}"),
        (lambda: load_config(None, env={env_name: url}), f"set by {env_name} in the environment"),
        (lambda: load_config(None, env={}, overrides={key: url}), "given to load_config"),
        (lambda: AuditConfig(**{key: url}), "given to AuditConfig"),
        (lambda: AuditConfig().replace(**{key: url}), "given to AuditConfig"),
    ]
    for attempt, where in attempts:
        with pytest.raises(ConfigError) as caught:
            attempt()
        text = str(caught.value)
        assert text.startswith(f"{key} cannot be the base URL of requests: it holds a"), text
        assert where in text
        _no_secret(text)


def test_a_chain_url_and_base_url_without_them_are_taken(tmp_path: Path) -> None:
    config = load_config(
        None,
        env={
            "ASG_BASE_URL": "http://127.0.0.1:8080/gw/",
            "ASG_CHAIN_URL": "https://[::1]:8443/v1/bsv/main/",
        },
    )
    assert config.base_url == "http://127.0.0.1:8080/gw/"
    assert config.chain_url == "https://[::1]:8443/v1/bsv/main/"


def test_an_alert_url_is_still_taken_with_a_query_or_a_user(tmp_path: Path) -> None:
    # POSTed to as it is, never a base of paths: a token in its query is how some take it
    url = f"https://{USER}:{PASSWORD}@alerts.example.test/hook?token={TOKEN}"
    path = write_config(tmp_path, f'[audit]\nalert_url = "{url}"\n')
    assert load_config(path, env={}).audit["alert_url"] == url
