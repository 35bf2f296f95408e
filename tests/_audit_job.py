"""An offline audit job for tests: an empty store, a drop folder of settled results, a config.

`offline_job(tmp_path, tasks)` returns the paths (`db`, `config`, `reports`, `drop`) of a job
that `asg-audit audit --config CONFIG` runs without any API (no key, no chain step);
`run_audit_json(config, *options)` runs `audit --json` on it in a subprocess.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from _hardening_procs import asg_audit, clean_env

from asg_audit.store import open_store

# The keys of `audit --json`'s outcome, whatever happens.
OUTCOME_KEYS = {"run_id", "exit_code", "steps", "report", "summary", "error"}

RESULT_LINE = (
    '{{"task_id":"w{i}","status":"{status}","consensus_label":"cat","confidence":1.0,'
    '"worker_count":3,"agreement_count":3,"bsv_txid":"{i:064x}",'
    '"created_at":"2026-04-08T21:00:00Z","settled_at":"2026-04-08T21:00:47Z","cost_sats":975}}\n'
)


def result_lines(tasks: int, status: str = "settled") -> str:
    """Return NDJSON of `tasks` settled results w1..wN (each consistent: no finding)."""
    return "".join(RESULT_LINE.format(i=i, status=status) for i in range(1, tasks + 1))


def offline_job(tmp_path: Path, tasks: int) -> dict[str, Path]:
    db = tmp_path / "audit.duckdb"
    with open_store(db):
        pass
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "export.ndjson").write_text(result_lines(tasks))
    config = tmp_path / "asg_audit.toml"
    config.write_text(
        f'db = "{db}"\n[audit]\ndrop_folders = ["{drop}"]\nreport_dir = "{tmp_path / "reports"}"\n'
        "verify_chain = false\n"
    )
    return {"db": db, "config": config, "reports": tmp_path / "reports", "drop": drop}


def run_audit_json(
    config: Path, *extra: str, env: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], str]:
    """Run `audit --json` (`env`: added to a clean environment); return its exit code, its
    stdout parsed (one JSON line), its stderr."""
    done = subprocess.run(
        asg_audit("audit", "--config", str(config), "--json", *extra),
        capture_output=True,
        text=True,
        env=clean_env(**(env or {})),
        timeout=180,
    )
    lines = done.stdout.splitlines()
    assert len(lines) == 1, (done.stdout, done.stderr)
    outcome = json.loads(lines[0])
    assert set(outcome) == OUTCOME_KEYS
    assert outcome["exit_code"] == done.returncode
    return done.returncode, outcome, done.stderr
