"""`audit` stopped by a signal whose interrupt a library caught, or that DuckDB turned into
its own error outside a step (tester T1, with real signals against `asg-audit audit`):

- 2 of about 130 tries: a SIGINT or SIGTERM as the analysis began was lost; the audit ran on
  for 2-3 s, wrote its report and recorded itself `ok`, exit 0;
- 1 try: a SIGINT as the findings were written came out as DuckDB's `RuntimeError: Query
  interrupted`, and the run was recorded `failed` as a bug.

Both now end the run `interrupted` (a KeyboardInterrupt). The signals are real, raised
in-process at those two moments through the real audit and store.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from _offline_config import offline_config

from asg_audit import audit as audit_module
from asg_audit.jobs import run_audit
from asg_audit.store import Store, open_store


def _audit_runs(db: Path) -> list[tuple[str, str | None]]:
    with open_store(db, read_only=True) as store:
        rows = store.con.execute(
            "SELECT status, json_extract_string(stats, '$.error') FROM runs"
            " WHERE command = 'audit' ORDER BY started_at"
        ).fetchall()
    return [(str(s), e) for s, e in rows]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_a_library_caught_during_the_analysis_still_stops_the_audit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sig: signal.Signals
) -> None:
    config, _job = offline_config(tmp_path, tasks=20)
    analyze = audit_module.analyze
    caught: list[BaseException] = []

    def analyze_catching_a_stop(*args: Any, **kwargs: Any) -> Any:
        try:  # a library calling back into Python catches the handler's interrupt
            signal.raise_signal(sig)
            time.sleep(0.01)
        except KeyboardInterrupt as exc:
            caught.append(exc)
        return analyze(*args, **kwargs)

    monkeypatch.setattr(audit_module, "analyze", analyze_catching_a_stop)
    # the command line's handlers, as `asg-audit audit` has them (SIGINT too)
    from asg_audit import stopsignals

    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    monkeypatch.setitem(stopsignals._scope, "process_wide", True)
    monkeypatch.setitem(stopsignals._one_run, "command", None)
    monkeypatch.setattr(sys, "unraisablehook", sys.unraisablehook)
    stopsignals._stopping.clear()  # as a fresh process has it (other tests' stops are done)
    stopsignals._swallowed.clear()
    stopsignals.stop_on_signals()
    try:
        with pytest.raises(KeyboardInterrupt):
            run_audit(config)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        stopsignals._stopping.clear()
        stopsignals._raised.clear()
    assert len(caught) == 1
    assert _audit_runs(config.db_path) == [("interrupted", "interrupted")]
    assert not list(Path(config.audit["report_dir"]).rglob("summary.json"))


def test_duckdb_s_form_of_an_interrupt_while_findings_are_written_is_the_interrupt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, _job = offline_config(tmp_path, tasks=20)

    def interrupted_write(self: Store, *args: object) -> None:
        raise RuntimeError("Query interrupted")

    monkeypatch.setattr(Store, "write_findings", interrupted_write)
    with pytest.raises(KeyboardInterrupt, match="audit interrupted"):
        run_audit(config)
    assert _audit_runs(config.db_path) == [("interrupted", "interrupted")]


@pytest.mark.parametrize("where", ["main_thread", "worker_thread"])
def test_an_earlier_interrupted_call_does_not_stop_a_later_audit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    # a notebook: an ingest interrupted by a real SIGINT (its handler notes the stop), then an
    # audit, on this thread or another: the earlier stop is over and stops nothing
    import threading

    from _records import settled_record
    from _signal_at_commit import sigint_after_commit

    from asg_audit.ingest_files import ingest_paths

    config, _job = offline_config(tmp_path, tasks=20)
    export = tmp_path / "export.ndjson"
    export.write_text(json.dumps(settled_record("tsk_interrupted")) + "\n")
    other = tmp_path / "other.duckdb"
    with monkeypatch.context() as patch:
        sigint_after_commit(patch, "SELECT count(*) FROM ingested_files")
        with pytest.raises(KeyboardInterrupt):
            ingest_paths(other, [export, export.with_name("second.ndjson")], progress=False)
    outcomes: list[Any] = []
    if where == "main_thread":
        outcomes.append(run_audit(config))
    else:
        worker = threading.Thread(target=lambda: outcomes.append(run_audit(config)))
        worker.start()
        worker.join(120)
    assert [o.exit_code for o in outcomes] in ([0], [1])
    assert _audit_runs(config.db_path) == [("ok", None)]


def test_an_error_of_other_code_that_says_interrupted_is_no_stop(tmp_path: Path) -> None:
    # only DuckDB's own forms are a stop: this one keeps its traceback (a failed run)
    from asg_audit.errors import IncompleteRunError

    config, _job = offline_config(tmp_path, tasks=5)

    def on_start(outcome: object) -> None:
        raise RuntimeError("upload interrupted by peer")

    with pytest.raises(IncompleteRunError, match="RuntimeError: upload interrupted by peer"):
        run_audit(config, on_start=on_start)
    assert _audit_runs(config.db_path) == [("failed", "RuntimeError: upload interrupted by peer")]
