"""A stop signal that lands inside a DuckDB statement of an audit step comes out of DuckDB as
`RuntimeError: Query interrupted` (the signal handler's KeyboardInterrupt is consumed by the
statement). The step is interrupted and the audit stops (exit 3, "interrupted"); it is not a
step that failed while the audit went on to write its report (clean-clone CI on ccb1548:
SIGTERM 0.9 s into `audit` printed "verify-chain failed: RuntimeError: Query interrupted",
wrote the report and exited 3 with no "interrupted" line)."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator

import duckdb
import pytest

from asg_audit.config import AuditConfig
from asg_audit.interrupts import is_interrupt
from asg_audit.jobs import AuditOutcome, _step


def _interrupted_statement() -> str:
    con = duckdb.connect()
    con.execute("SET threads = 1")  # one thread: the statement checks for an interrupt often
    timer = threading.Timer(0.3, con.interrupt)
    timer.start()
    try:
        con.execute("SELECT count(*) FROM range(1000000000000) t(x) WHERE x % 7 = 3").fetchall()
    finally:
        timer.cancel()
        con.close()
    return "ok"


def test_a_step_whose_statement_was_interrupted_stops_the_audit() -> None:
    outcome = AuditOutcome(run_id="r1")
    log = io.StringIO()
    with pytest.raises(KeyboardInterrupt) as raised:
        _step(outcome, "verify-chain", _interrupted_statement, log, AuditConfig())
    assert outcome.steps == {"verify-chain": "interrupted"}
    assert "Query interrupted" in str(raised.value.__cause__) or isinstance(
        raised.value.__cause__, duckdb.InterruptException
    )


def test_a_step_with_a_real_error_still_fails_alone() -> None:
    def broken() -> str:
        with duckdb.connect() as con:
            con.execute("SELECT no_such_column FROM range(3)")
        return "ok"

    outcome = AuditOutcome(run_id="r2")
    log = io.StringIO()
    _step(outcome, "verify-chain", broken, log, AuditConfig())
    assert outcome.steps["verify-chain"].startswith("failed: BinderException"), outcome.steps
    assert "verify-chain  failed: BinderException" in log.getvalue()


def _scan_of_a_frame_a_signal_broke() -> str:
    # DuckDB calls Python to read a registered Arrow stream; a stop signal's KeyboardInterrupt
    # raised there comes back as a DuckDB error naming it, with no cause
    import pyarrow as pa

    schema = pa.schema([("a", pa.int64())])

    def batches() -> Iterator[pa.RecordBatch]:
        yield pa.record_batch([pa.array([1, 2])], schema=schema)
        raise KeyboardInterrupt

    with duckdb.connect() as con:
        con.register("_chain_new", pa.RecordBatchReader.from_batches(schema, batches()))
        con.execute("SELECT count(*) FROM _chain_new").fetchall()
    return "ok"


def test_a_step_whose_frame_scan_a_signal_broke_stops_the_audit() -> None:
    outcome = AuditOutcome(run_id="r3")
    with pytest.raises(KeyboardInterrupt) as raised:
        _step(
            outcome, "verify-chain", _scan_of_a_frame_a_signal_broke, io.StringIO(), AuditConfig()
        )
    assert outcome.steps == {"verify-chain": "interrupted"}
    assert isinstance(raised.value.__cause__, duckdb.Error)
    assert is_interrupt(raised.value.__cause__)
