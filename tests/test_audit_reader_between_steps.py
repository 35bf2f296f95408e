"""An audit whose store another process opens between two steps waits for it (its `--wait`,
10 s at least) instead of failing the next step at once (tester T8: a notebook reading the
store made `verify-chain`, `billing` and the findings fail "database busy", exit 3)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

from asg_audit.config import AuditConfig
from asg_audit.jobs import AuditOutcome, run_audit
from asg_audit.store import open_store

# a reader of another process: opens the store read-only, says so, holds it, closes it
_HOLD = (
    "import duckdb, sys, time\n"
    "con = duckdb.connect(sys.argv[1], read_only=True)\n"
    "print('open', flush=True)\n"
    "time.sleep(float(sys.argv[2]))\n"
    "con.close()\n"
)
HOLD_S = 2.0


def test_a_reader_that_opens_the_store_between_steps_delays_the_next_one(tmp_path: Path) -> None:
    db = tmp_path / "audit.duckdb"
    with open_store(db):
        pass
    drop = tmp_path / "drop"
    drop.mkdir()
    record = {
        "task_id": "tsk_1", "status": "settled", "consensus_label": "cat", "confidence": 1.0,
        "worker_count": 3, "agreement_count": 3, "bsv_txid": "ab" * 32, "cost_sats": 975,
        "created_at": "2026-10-01T12:00:00Z", "settled_at": "2026-10-01T12:00:40Z",
    }  # fmt: skip
    (drop / "export.ndjson").write_text(json.dumps(record) + "\n")
    config = AuditConfig(
        db_path=db,
        audit={
            "drop_folders": [str(drop)],
            "report_dir": str(tmp_path / "reports"),
            "verify_chain": False,  # offline: the store's steps only
        },
    )
    readers: list[subprocess.Popen[str]] = []
    opened_at: list[float] = []

    def on_start(outcome: AuditOutcome) -> None:
        # the run is recorded and its store closed: another process opens it before the
        # first step (ingest) does
        reader = subprocess.Popen(
            [sys.executable, "-c", _HOLD, str(db), str(HOLD_S)], stdout=subprocess.PIPE, text=True
        )
        readers.append(reader)
        assert reader.stdout is not None and reader.stdout.readline().strip() == "open"
        opened_at.append(time.monotonic())

    log = io.StringIO()
    try:
        outcome = run_audit(config, on_start=on_start, log=log)
    finally:
        for reader in readers:
            reader.wait(30)
    took = time.monotonic() - opened_at[0]
    assert outcome.exit_code in (0, 1), log.getvalue()
    assert not outcome.incomplete, outcome.steps
    assert "busy" not in log.getvalue()
    assert took >= HOLD_S - 0.5  # the ingest step waited for the reader
    with open_store(db, read_only=True) as store:
        assert store.count("results") == 1


def test_a_run_that_waited_for_another_audit_is_named_by_when_it_started(tmp_path: Path) -> None:
    # tester T8: with --wait the id carried the time waiting began, not when the run started
    import threading
    from datetime import UTC, datetime

    from asg_audit.jobs import audit_lock

    db = tmp_path / "audit.duckdb"
    config = AuditConfig(
        db_path=db, audit={"report_dir": str(tmp_path / "reports"), "verify_chain": False}
    )
    held, release = threading.Event(), threading.Event()

    def other_audit() -> None:
        with audit_lock(db):
            held.set()
            release.wait(30)

    other = threading.Thread(target=other_audit)
    other.start()
    held.wait(30)
    released: list[datetime] = []

    def free() -> None:
        released.append(datetime.now(UTC))
        release.set()

    threading.Timer(2.0, free).start()
    outcome = run_audit(config, wait_seconds=30, log=io.StringIO())
    other.join()
    named = datetime.strptime(outcome.run_id.split("-")[0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    assert outcome.exit_code in (0, 1)
    # named after the other audit let go (its id has whole seconds)
    assert named >= released[0].replace(microsecond=0), (outcome.run_id, released)
