"""`asg-audit audit` stores every finding under its run id, and its report says so.

summary.json's `findings_stored_run_id` is the run's id (so a reader of a cut summary knows where
the rest are); a report rendered on its own (`asg-audit report`) stores nothing and says null.
"""

from __future__ import annotations

import json
from pathlib import Path

from _offline_config import offline_config

from asg_audit import analyze, render
from asg_audit.jobs import run_audit
from asg_audit.store import open_store


def test_audit_says_its_findings_are_stored(tmp_path: Path) -> None:
    config, _job = offline_config(tmp_path, tasks=40)
    outcome = run_audit(config)
    assert outcome.run_id is not None and outcome.report_dir is not None
    summary = json.loads((Path(outcome.report_dir) / "summary.json").read_text())
    assert summary["findings_stored_run_id"] == outcome.run_id
    with open_store(config.db_path, read_only=True) as store:
        stored = store.con.execute(
            "SELECT count(*) FROM findings WHERE run_id = ?", [outcome.run_id]
        ).fetchone()
    assert stored is not None and stored[0] == summary["findings_by_severity"]["fail"] + (
        summary["findings_by_severity"]["warn"] + summary["findings_by_severity"]["info"]
    )
    # the same store reported on its own: nothing stored by that, so nothing claimed
    alone = render(analyze(config.db_path, config=config), tmp_path / "alone")
    assert alone.summary["findings_stored_run_id"] is None
