"""`audit`'s verify-chain step asks the chain index only when there is a txid to verify: a
store with none (no settled result yet, or every txid confirmed before) does not fail the
run (exit 3) because the index cannot be reached from this machine."""

from __future__ import annotations

import socket
from pathlib import Path

from _audit_job import offline_job, run_audit_json


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _job(tmp_path: Path, tasks: int, status: str = "settled") -> Path:
    job = offline_job(tmp_path, tasks)
    if status != "settled":
        (job["drop"] / "export.ndjson").write_text(
            (job["drop"] / "export.ndjson").read_text().replace('"settled"', f'"{status}"')
        )
    text = job["config"].read_text().replace("verify_chain = false", "verify_chain = true")
    job["config"].write_text(f'chain_url = "http://127.0.0.1:{_closed_port()}"\n' + text)
    return job["config"]


def test_nothing_to_verify_needs_no_chain_index(tmp_path: Path) -> None:
    code, outcome, err = run_audit_json(_job(tmp_path, 3, status="in_progress"))
    assert code in (0, 1), (outcome, err)  # findings maybe (tasks in progress), not 3
    assert outcome["steps"]["verify-chain"].startswith("ok: 0 checked"), outcome["steps"]


def test_txids_to_verify_with_the_index_unreachable_still_fail_the_run(tmp_path: Path) -> None:
    code, outcome, err = run_audit_json(_job(tmp_path, 3))
    assert code == 3, (outcome, err)
    step = outcome["steps"]["verify-chain"]
    assert step.startswith("failed") and "chain index" in step and "unreachable" in step, step
