"""Webhook secrets given to the Python API: one str (or Secret) is one secret, never a sequence
of one-character secrets; anything else, or an empty secret, is refused naming the argument and
never showing a value."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from _webhooks_server import ThreadServer

from asg_audit.errors import ConfigError
from asg_audit.redaction import Secret
from asg_audit.webhooks import (
    create_webhook_app,
    register_webhook,
    serve_webhooks,
    sign_body,
    verify_signature,
)

SECRET = "whsec_longsecret"


def _body(task_id: str) -> bytes:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return json.dumps(
        {
            "event": "task.settled",
            "task_id": task_id,
            "consensus_label": "cat",
            "confidence": 1.0,
            "bsv_txid": "ab" * 32,
            "settled_at": now,
            "timestamp": now,
        }
    ).encode()


def _outcomes(db: Path, secrets: Any, signers: list[str]) -> list[tuple[int, str]]:
    """Post one delivery signed with each of `signers`; return the (status, outcome) answers."""
    app = create_webhook_app(db, secrets)
    answers = []
    with ThreadServer(app) as srv:
        for i, signer in enumerate(signers):
            body = _body(f"tsk_sig{i}")
            r = httpx.post(
                srv.hook_url, content=body, headers={"X-ASG-Signature": sign_body(body, signer)}
            )
            answers.append((r.status_code, r.json()["outcome"]))
    return answers


@pytest.mark.parametrize("given", [SECRET, Secret(SECRET)], ids=["str", "Secret"])
def test_create_webhook_app_takes_one_secret_as_one_secret(db, given):
    # the real secret is accepted; one of its characters is not a secret of its own
    assert _outcomes(db, given, [SECRET, "e", "w"]) == [
        (200, "stored"),
        (401, "bad_signature"),
        (401, "bad_signature"),
    ]


def test_create_webhook_app_takes_a_list_and_a_generator_of_secrets(db):
    assert _outcomes(db, (s for s in ["whsec_new", SECRET]), [SECRET, "e"]) == [
        (200, "stored"),
        (401, "bad_signature"),
    ]


@pytest.mark.parametrize("given", [SECRET, Secret(SECRET), [SECRET]], ids=["str", "Secret", "list"])
def test_verify_signature_takes_one_secret_as_one_secret(given):
    body = _body("tsk_v")
    assert verify_signature(body, sign_body(body, SECRET), given) == 0
    for char in set(SECRET):
        assert verify_signature(body, sign_body(body, char), given) is None


BAD_SECRETS = [
    (5, TypeError, r"^secrets: expected a str, a Secret or a list of them, got int$"),
    (None, TypeError, r"^secrets: .* got NoneType$"),
    (SECRET.encode(), TypeError, r"^secrets: .* got bytes$"),
    ({"current": SECRET}, TypeError, r"^secrets: .* got dict$"),
    ([SECRET, 3], TypeError, r"^secrets\[1\]: expected a str or a Secret, got int$"),
    ([SECRET, ""], ValueError, r"^secrets\[1\] is empty"),
    ("", ValueError, r"^secrets is empty"),
    (Secret(""), ValueError, r"^secrets is empty"),
    ([Secret(SECRET), Secret("")], ValueError, r"^secrets\[1\] is empty"),
    (SECRET + "\ud800", ValueError, r"^secrets: not encodable as UTF-8$"),
]
BAD_IDS = [
    "int",
    "None",
    "bytes",
    "dict",
    "list-int",
    "list-empty",
    "empty",
    "Secret-empty",
    "l-S",
    "surrogate",
]


@pytest.mark.parametrize(("given", "error", "message"), BAD_SECRETS, ids=BAD_IDS)
def test_verify_signature_refuses_what_is_not_secrets(given, error, message):
    body = _body("tsk_v")
    with pytest.raises(error, match=message) as caught:
        verify_signature(body, sign_body(body, SECRET), given)
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(("given", "error", "message"), BAD_SECRETS, ids=BAD_IDS)
def test_create_webhook_app_refuses_what_is_not_secrets(db, given, error, message):
    with pytest.raises(error, match=message) as caught:
        create_webhook_app(db, given)
    assert SECRET not in str(caught.value)
    assert not db.exists()


def test_create_webhook_app_refuses_no_secret(db):
    with pytest.raises(ConfigError, match="no webhook secret"):
        create_webhook_app(db, [])


def test_verify_signature_with_an_empty_list_verifies_nothing():
    body = _body("tsk_v")
    assert verify_signature(body, sign_body(body, SECRET), []) is None


@pytest.mark.parametrize(
    ("given", "error"), [("", ValueError), (["", SECRET], ValueError), (7, TypeError)]
)
def test_serve_webhooks_refuses_bad_secrets_before_listening(db, capsys, given, error):
    with pytest.raises(error, match=r"^secrets"):
        serve_webhooks(db, given, port=0)
    assert "listening" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("given", "error"),
    [("", ValueError), (Secret(""), ValueError), (None, TypeError), (b"k", TypeError)],
)
def test_sign_body_refuses_what_is_not_one_secret(given, error):
    with pytest.raises(error, match=r"^secret"):
        sign_body(b"{}", given)


def test_register_webhook_refuses_an_empty_secret_before_sending():
    # nothing listens on port 1: had the request been sent, the error would be ApiTransientError
    for key, secret, name in [("sk_test_k", "", "secret"), ("", SECRET, "api_key")]:
        with pytest.raises(ValueError, match=f"^{name} is empty"):
            register_webhook("http://127.0.0.1:1", key, "https://hooks.example/x", secret)
