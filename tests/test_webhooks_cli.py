"""`asg-audit serve-webhooks` and `webhooks register`, and the receiver's OpenAPI description."""

from __future__ import annotations

import json
import signal
from importlib import resources

import httpx
import pytest
from _webhooks_server import free_port, payload, receiver_process, signed

from asg_audit.cli import _build_parser, main
from asg_audit.store import open_store
from asg_audit.webhook_writer import Outcome
from asg_audit.webhooks import WEBHOOK_PATH, create_webhook_app


@pytest.fixture
def no_secrets(monkeypatch):
    for name in ("ASG_WEBHOOK_SECRET", "ASG_API_KEY", "API_KEY"):
        monkeypatch.delenv(name, raising=False)


def test_cli_serve_webhooks_without_secret_exits_2(no_secrets, db, capsys):
    assert main(["serve-webhooks", "--db", str(db), "--port", str(free_port())]) == 2
    assert "ASG_WEBHOOK_SECRET" in capsys.readouterr().err


def test_cli_serve_webhooks_refuses_unknown_config_key(monkeypatch, db, tmp_path, capsys):
    monkeypatch.setenv("ASG_WEBHOOK_SECRET", "whsec_x")
    config = tmp_path / "asg_audit.toml"
    config.write_text("[webhooks]\nmax_bodybytes = 10\n")
    assert main(["serve-webhooks", "--db", str(db), "--config", str(config)]) == 2
    assert "max_bodybytes" in capsys.readouterr().err


def test_cli_serve_webhooks_port_in_use_exits_2(monkeypatch, db, capsys):
    import socket

    monkeypatch.setenv("ASG_WEBHOOK_SECRET", "whsec_x")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve-webhooks", "--db", str(db), "--port", str(port)]) == 2
    assert "cannot listen" in capsys.readouterr().err


def test_cli_webhooks_register_without_api_key_exits_2(no_secrets, monkeypatch, capsys):
    monkeypatch.setenv("ASG_WEBHOOK_SECRET", "whsec_x")
    assert main(["webhooks", "register", "--url", "http://127.0.0.1:1/webhooks/asg"]) == 2
    assert "ASG_API_KEY" in capsys.readouterr().err


def test_cli_webhook_commands_take_no_secret_argument():
    parser = _build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices
    serve = sub["serve-webhooks"]
    register = next(a for a in sub["webhooks"]._actions if a.dest == "webhooks_command").choices[
        "register"
    ]
    for command in (serve, register):
        options = {o for a in command._actions for o in a.option_strings}
        assert not any("secret" in o and o != "--secret-file" for o in options)


def test_cli_serve_webhooks_reads_secret_file(no_secrets, db, tmp_path):
    secret_file = tmp_path / "webhook-secrets"
    secret_file.write_text("whsec_from_file_new\nwhsec_from_file_old\n")
    port = free_port()
    body, headers = signed(payload("tsk_file"), "whsec_from_file_old")
    with receiver_process(db, port, secrets="", extra=("--secret-file", str(secret_file))):
        r = httpx.post(f"http://127.0.0.1:{port}{WEBHOOK_PATH}", content=body, headers=headers)
    assert r.status_code == 200 and r.json()["outcome"] == "stored"


def _openapi():
    text = resources.files("asg_audit").joinpath("openapi/webhooks.json").read_text()
    return json.loads(text)


def test_openapi_describes_every_route_of_the_app(db):
    app = create_webhook_app(db, ["whsec_x"])
    routes = {(r.path, m) for r in app.routes for m in r.methods if m != "HEAD"}
    described = {(p, m.upper()) for p, ops in _openapi()["paths"].items() for m in ops}
    assert described == routes


def test_openapi_lists_every_outcome_and_status():
    doc = _openapi()
    schema = doc["components"]["schemas"]["DeliveryAnswer"]["properties"]["outcome"]
    assert set(schema["enum"]) == set(Outcome.STATUS)
    responses = doc["paths"][WEBHOOK_PATH]["post"]["responses"]
    assert {int(code) for code in responses} == set(Outcome.STATUS.values())


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_cli_serve_webhooks_stop_signal_drains_and_exits_0(no_secrets, db, stop):
    # A stop is how a service ends: the delivery is stored, the command says it stopped, exit 0.
    port = free_port()
    body, headers = signed(payload("tsk_stop"), "whsec_stop")
    with receiver_process(db, port, secrets="whsec_stop") as proc:
        r = httpx.post(f"http://127.0.0.1:{port}{WEBHOOK_PATH}", content=body, headers=headers)
        assert r.status_code == 200 and r.json()["outcome"] == "stored"
        proc.send_signal(stop)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()
    assert f"webhooks: stopped by {stop.name}; deliveries answered: 1 stored" in out.decode()
    with open_store(db, read_only=True) as store:
        assert store.count("observations") == 1
