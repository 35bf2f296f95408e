"""`billing` stopped by a signal just after its answers were committed (the moment the same
race in `track` failed CI: rows committed, then the run recorded `interrupted` over them).

The usage answers and the run's `ok` are now one transaction: whenever the store holds a
run's answers, that run is `ok`; a signal before the commit leaves neither. The signal is sent
in-process at each of the two moments, through the real store and a real fake Gateway.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from _billing_months import _GATEWAY, _USAGE, KEY, MONTH, month_usage, months_gateway, settled
from _signal_at_commit import sigint_after_commit

from asg_audit.billing import fetch_billing
from asg_audit.config import load_config
from asg_audit.ingest_files import ingest
from asg_audit.store import open_store


def _store(tmp_path: Path) -> Path:
    db = tmp_path / "b.duckdb"
    export = tmp_path / "results.ndjson"
    export.write_text(json.dumps(settled("t1", 3, 120)) + "\n")
    ingest(db, export)
    return db


def _billing_state(db: Path) -> tuple[int, list[str]]:
    with open_store(db) as store:
        (usage,) = store.con.execute("SELECT count(*) FROM billing_usage").fetchone() or (0,)
        runs = store.con.execute(
            "SELECT status FROM runs WHERE command = 'billing' ORDER BY started_at"
        ).fetchall()
    return int(usage), [status for (status,) in runs]


@pytest.mark.parametrize("moment", ["after_commit", "before_commit"])
def test_a_signal_around_the_commit_never_leaves_answers_of_an_interrupted_run(
    moment: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from asg_audit import billing as billing_module
    from asg_audit.billing import _store_answers as store_answers

    db = _store(tmp_path)
    sent: list[int] = []

    def signal_before_commit(*args: object) -> None:
        store_answers(*args)  # type: ignore[arg-type]
        sent.append(1)
        signal.raise_signal(signal.SIGINT)

    if moment == "after_commit":
        sent = sigint_after_commit(monkeypatch, "SELECT count(*) FROM billing_usage")
    else:
        monkeypatch.setattr(billing_module, "_store_answers", signal_before_commit)
    monkeypatch.setitem(_USAGE, MONTH, month_usage(1, 120))
    monkeypatch.setattr(_GATEWAY, "invoices", (200, {"invoices": []}, {}))
    with months_gateway() as gateway:
        config = load_config(None, env={"ASG_API_KEY": KEY, "ASG_BASE_URL": gateway})
        with pytest.raises(KeyboardInterrupt):
            fetch_billing(db, config, months=MONTH)
    assert sent == [1]
    usage, runs = _billing_state(db)
    if moment == "after_commit":  # the work was done: it stays, and its run says so
        assert (usage, runs) == (1, ["ok"])
    else:
        assert (usage, runs) == (0, ["interrupted"])
