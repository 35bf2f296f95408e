"""Deliveries a killed receiver acknowledged but never normalised are an `input.unnormalised`
finding until the receiver starts again (tester T8: after a `kill -9`, 817 of 1,688
acknowledged deliveries were in no result, and nothing said so)."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import polars as pl
from _webhooks_server import SECRET, free_port, payload, receiver_process, signed

from asg_audit.audit import analyze
from asg_audit.webhooks import WEBHOOK_PATH


def _unnormalised(db: Path) -> list[dict[str, object]]:
    found = analyze(db).findings
    return found.filter(pl.col("check_id") == "input.unnormalised").to_dicts()


def test_acknowledged_deliveries_not_normalised_are_a_finding_until_the_next_start(
    tmp_path: Path,
) -> None:
    db = tmp_path / "hooks.duckdb"
    config = tmp_path / "asg_audit.toml"
    config.write_text("[webhooks]\nnormalise_interval_ms = 600000\n")  # not before the kill
    port = free_port()
    with receiver_process(db, port, extra=("--config", str(config))) as proc:
        for i in range(3):
            raw, headers = signed(payload(f"tsk_unnorm_{i}"), SECRET)
            r = httpx.post(f"http://127.0.0.1:{port}{WEBHOOK_PATH}", content=raw, headers=headers)
            assert r.status_code == 200, r.text
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    [row] = _unnormalised(db)
    assert row["severity"] == "warn" and row["difference"] == 3
    assert str(row["message"]).startswith(
        "3 acknowledged webhook delivery(ies) not normalised yet, so in no result"
        " (serve-webhooks normalises them when it starts again on this store); the first"
        " tsk_unnorm_0 (delivery "
    )
    # the next start normalises them first: the finding is gone, the results are there
    with receiver_process(db, free_port()):
        pass
    assert _unnormalised(db) == []
    assert analyze(db).summary()["tasks"] == 3
