"""A secret too short to be told from data (under `MIN_DATA_SECRET_CHARS`) is not masked
inside an answer's body: masked there, a webhook secret `2026` turned every delivery's
timestamp into `***` (stored as stale, no result) and a key `2026` made every poll answer
costing 2026 sats invalid JSON (review R2). Messages still mask it; a long secret is masked
in bodies as before."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import httpx
from _webhooks_server import free_port, payload, receiver_process, signed

from asg_audit.gateway import GatewayClient
from asg_audit.redaction import MIN_DATA_SECRET_CHARS, data_secrets, redact
from asg_audit.webhooks import WEBHOOK_PATH

SHORT = "2026"
LONG = "whsec_long_enough_2026"


def test_the_threshold_keeps_short_secrets_out_of_data_only() -> None:
    assert len(SHORT) < MIN_DATA_SECRET_CHARS <= len(LONG)
    assert data_secrets([SHORT, LONG, None]) == (LONG,)
    assert redact(f"the Gateway said {SHORT}", [SHORT]) == "the Gateway said ***"


def test_a_poll_answer_keeps_its_data_with_a_short_secret() -> None:
    body = json.dumps({"task_id": "t1", "total_cost_sats": 2026, "note": LONG}).encode()
    client = GatewayClient("http://127.0.0.1:9", "sk_test_key_for_masking", mask=[SHORT, LONG])
    masked = json.loads(client.mask_body(body))
    assert masked == {"task_id": "t1", "total_cost_sats": 2026, "note": "***"}


def test_a_delivery_is_stored_whole_under_a_short_webhook_secret(db: Path) -> None:
    port = free_port()
    at = datetime.now(UTC)
    body = payload("tsk_short", at=at, label=f"cat {SHORT}")
    with receiver_process(db, port, secrets=SHORT):
        raw, headers = signed(body, SHORT)
        r = httpx.post(f"http://127.0.0.1:{port}{WEBHOOK_PATH}", content=raw, headers=headers)
        assert r.status_code == 200 and r.json()["outcome"] == "stored", r.text
    con = duckdb.connect(str(db), read_only=True)
    try:
        [(stored, detail)] = con.execute("SELECT body, detail FROM webhook_deliveries").fetchall()
        [(label,)] = con.execute("SELECT consensus_label FROM results").fetchall()
    finally:
        con.close()
    assert bytes(stored) == raw and detail is None
    assert label == f"cat {SHORT}"
