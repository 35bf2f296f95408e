"""A signed delivery whose body quotes a secret: the secret never reaches the store.

A real `asg-audit serve-webhooks` on 127.0.0.1 with a rotation list of webhook secrets and an
API key: bodies signed with the current secret that quote the current secret, the old one or
the API key (as a label, as the task id, JSON-escaped) are stored with each masked as `***`,
and after the receiver stops (the store checkpointed and closed) no form of any secret is in
the .duckdb file, in any row, or in an answer.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import httpx
import pytest
from _webhooks_server import free_port, payload, receiver_process, signed

from asg_audit.webhooks import WEBHOOK_PATH

NEW = 'whsec_N3w&t+/%"<x>_rotation'
OLD = "whsec_0ld_still_accepted_9f8e"
API_KEY = "sk_live_4f9a-7bc2-91de-SECRETTAIL"


def _forms(secret: str) -> list[bytes]:
    """The secret as sent and as JSON writes it (a quote escaped)."""
    return [secret.encode(), json.dumps(secret)[1:-1].encode()]


def test_webhook_secrets_quoted_in_a_signed_body_never_reach_the_store(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASG_API_KEY", API_KEY)
    monkeypatch.delenv("API_KEY", raising=False)
    port = free_port()
    url = f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
    cases = {
        "tsk_label_new": payload("tsk_label_new", label=NEW),
        "tsk_label_old": payload("tsk_label_old", label=f"before {OLD} after"),
        "tsk_label_key": payload("tsk_label_key", label=API_KEY),
        "tsk_extra": {**payload("tsk_extra"), "note": {"k": [NEW, OLD, API_KEY]}},
    }
    answers: list[bytes] = []
    with receiver_process(db, port, secrets=f"{NEW},{OLD}"):
        for body in cases.values():
            raw, headers = signed(body, NEW)
            r = httpx.post(url, content=raw, headers=headers)
            answers.append(r.content)
            assert r.status_code == 200 and r.json()["outcome"] == "stored", r.text
        # signed with the old secret, its task id the API key
        raw, headers = signed(payload(API_KEY), OLD)
        r = httpx.post(url, content=raw, headers=headers)
        answers.append(r.content)
        assert r.status_code == 200 and r.json()["outcome"] == "stored", r.text
        # a body with no secret is stored as sent, with no note
        raw, headers = signed(payload("tsk_plain"), NEW)
        assert httpx.post(url, content=raw, headers=headers).status_code == 200
    # the receiver stopped: the store is checkpointed and closed
    leftovers = [p.name for p in db.parent.iterdir() if p.name.startswith(db.name + ".")]
    assert leftovers == [], leftovers  # no WAL left behind
    stored = db.read_bytes()
    for secret in (NEW, OLD, API_KEY):
        for form in _forms(secret):
            assert form not in stored, f"{secret[:6]}... in the .duckdb file"
            for answer in answers:
                assert form not in answer

    con = duckdb.connect(str(db), read_only=True)
    try:
        deliveries = con.execute(
            "SELECT task_id, body, detail, secret_index FROM webhook_deliveries"
            " ORDER BY received_at"
        ).fetchall()
        labels = dict(con.execute("SELECT task_id, consensus_label FROM results").fetchall())
        observed = con.execute("SELECT task_id, consensus_label, raw FROM observations").fetchall()
    finally:
        con.close()
    assert [(t, i) for t, _, _, i in deliveries] == [
        ("tsk_label_new", 0),
        ("tsk_label_old", 0),
        ("tsk_label_key", 0),
        ("tsk_extra", 0),
        ("***", 1),
        ("tsk_plain", 0),
    ]
    for task_id, raw_body, detail, _ in deliveries:
        text = bytes(raw_body).decode()
        if task_id == "tsk_plain":
            assert detail is None and "***" not in text
        else:
            assert detail == "the body quoted a configured secret (masked as *** before storing)"
            assert "***" in text
            json.loads(text)  # still JSON
    assert labels["tsk_label_new"] == "***"
    assert labels["tsk_label_old"] == "before *** after"
    assert labels["tsk_label_key"] == "***"
    assert labels["tsk_plain"] == "cat"
    assert {t for t, _, _ in observed} >= {*cases, "tsk_plain"}, observed
    text = repr((deliveries, labels, observed))
    for secret in (NEW, OLD, API_KEY):
        for form in _forms(secret):
            assert form.decode() not in text
