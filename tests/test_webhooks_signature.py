"""The pure part of the webhook receiver: signatures, timestamps, event identity, settings."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

import pytest

from asg_audit.config import Secret
from asg_audit.errors import ConfigError
from asg_audit.webhooks import (
    WebhookSettings,
    event_key,
    parse_delivery_timestamp,
    read_secret_file,
    sign_body,
    verify_signature,
)

BODY = b'{"event":"task.settled","task_id":"t1","timestamp":"2026-04-08T21:00:48Z"}'


def test_sign_body_is_documented_hmac_sha256_hex():
    expected = "sha256=" + hmac.new(b"whsec_a", BODY, hashlib.sha256).hexdigest()
    assert sign_body(BODY, "whsec_a") == expected
    assert sign_body(BODY, Secret("whsec_a")) == expected


def test_verify_signature_accepts_the_signing_secret():
    assert verify_signature(BODY, sign_body(BODY, "whsec_a"), [Secret("whsec_a")]) == 0


def test_verify_signature_returns_index_of_rotated_secret():
    secrets = [Secret("whsec_new"), Secret("whsec_old")]
    assert verify_signature(BODY, sign_body(BODY, "whsec_old"), secrets) == 1
    assert verify_signature(BODY, sign_body(BODY, "whsec_new"), secrets) == 0


def test_verify_signature_refuses_other_secret():
    assert verify_signature(BODY, sign_body(BODY, "whsec_b"), [Secret("whsec_a")]) is None


def test_verify_signature_refuses_tampered_body():
    header = sign_body(BODY, "whsec_a")
    assert verify_signature(BODY.replace(b"t1", b"t2"), header, [Secret("whsec_a")]) is None


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "sha256=",
        "sha1=" + "a" * 40,
        "sha256=" + "g" * 64,
        "sha256=" + "a" * 63,
        "SHA256=" + "a" * 64,
    ],
)
def test_verify_signature_refuses_malformed_header(header):
    assert verify_signature(BODY, header, [Secret("whsec_a")]) is None


def test_verify_signature_refuses_uppercase_hex():
    header = sign_body(BODY, "whsec_a")
    assert verify_signature(BODY, "sha256=" + header[7:].upper(), [Secret("whsec_a")]) is None


def test_verify_signature_with_no_secret_refuses():
    assert verify_signature(BODY, sign_body(BODY, "whsec_a"), []) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-04-08T21:00:48Z", datetime(2026, 4, 8, 21, 0, 48, tzinfo=UTC)),
        ("2026-04-08T23:00:48.5+02:00", datetime(2026, 4, 8, 21, 0, 48, 500000, tzinfo=UTC)),
        (1775682048, datetime(2026, 4, 8, 21, 0, 48, tzinfo=UTC)),
    ],
)
def test_parse_delivery_timestamp_accepts_rfc3339_and_epoch(value, expected):
    assert parse_delivery_timestamp(value) == expected


@pytest.mark.parametrize("value", [None, "", "yesterday", "2026-04-08T21:00:48", True, [], 1e300])
def test_parse_delivery_timestamp_refuses_unusable_values(value):
    assert parse_delivery_timestamp(value) is None


def test_event_key_ignores_delivery_timestamp_only():
    a = {"task_id": "t1", "consensus_label": "cat", "timestamp": "2026-04-08T21:00:48Z"}
    b = {"consensus_label": "cat", "task_id": "t1", "timestamp": "2026-04-08T21:05:00Z"}
    c = {**a, "consensus_label": "dog"}
    assert event_key(a) == event_key(b)
    assert event_key(a) != event_key(c)


def test_settings_refuse_unknown_keys_and_secrets():
    with pytest.raises(ConfigError, match="unknown"):
        WebhookSettings.from_mapping({"max_body": 10})
    with pytest.raises(ConfigError, match="secret"):
        WebhookSettings.from_mapping({"secret": "whsec_x"})


def test_settings_refuse_bad_values():
    with pytest.raises(ConfigError, match="max_body_bytes"):
        WebhookSettings.from_mapping({"max_body_bytes": 0})
    with pytest.raises(ConfigError, match="freshness_seconds"):
        WebhookSettings.from_mapping({"freshness_seconds": -1})


def test_settings_defaults_to_five_minute_window():
    assert WebhookSettings.from_mapping({}).freshness_seconds == 300


def test_read_secret_file_reads_lines_and_commas(tmp_path):
    path = tmp_path / "secrets"
    path.write_text("# current first\nwhsec_new\nwhsec_old, whsec_older\n")
    secrets = read_secret_file(path)
    assert [s.reveal() for s in secrets] == ["whsec_new", "whsec_old", "whsec_older"]
    assert "whsec" not in repr(secrets)


def test_read_secret_file_refuses_empty_file(tmp_path):
    path = tmp_path / "secrets"
    path.write_text("# nothing\n")
    with pytest.raises(ConfigError, match="no secret"):
        read_secret_file(path)
