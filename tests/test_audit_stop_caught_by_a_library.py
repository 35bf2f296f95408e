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
