"""How `asg-audit runs` shows an audit by its exit code: an audit that exits 2 (unreadable
input, "fix the job definition") is `failed`, never `ok`. The real command in subprocesses, a
real store, offline (no API key, no chain step)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from _hardening_procs import clean_env, query, run_asg_audit

from asg_audit.store import open_store

_LINE = (
    '{{"task_id":"w{i}","status":"settled","consensus_label":"cat","confidence":1.0,'
    '"worker_count":3,"agreement_count":3,"bsv_txid":"{i:064x}",'
    '"created_at":"2026-04-08T21:00:00Z","settled_at":"2026-04-08T21:00:47Z","cost_sats":975}}\n'
)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return run_asg_audit(*args, env=clean_env())


def _job(tmp_path: Path, folders: list[Path]) -> Path:
    db = tmp_path / "audit.duckdb"
    with open_store(db):
        pass
    listed = ", ".join(f'"{p}"' for p in folders)
    config = tmp_path / "asg_audit.toml"
    config.write_text(
        f'db = "{db}"\n[audit]\ndrop_folders = [{listed}]\n'
        f'report_dir = "{tmp_path / "reports"}"\nverify_chain = false\n'
    )
    return config


def _audit_status_in_runs(config: Path) -> list[str]:
    """Return the status column of the audit rows that `asg-audit runs` prints."""
    listed = _run("runs", "--config", str(config))
    assert listed.returncode == 0, listed.stderr
    # run, command, date, time, seconds, status[, the error's first line]
    return [line.split()[5] for line in listed.stdout.splitlines() if " audit " in line]


def test_audit_exit_2_for_a_missing_drop_folder_shows_failed_in_runs(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "export.ndjson").write_text("".join(_LINE.format(i=i) for i in range(1, 4)))
    config = _job(tmp_path, [drop, tmp_path / "nope"])
    done = _run("audit", "--config", str(config))
    assert done.returncode == 2, done.stdout + done.stderr
    assert _audit_status_in_runs(config) == ["failed"]
    listed = _run("runs", "--config", str(config)).stdout
    error = f"unreadable input: {tmp_path / 'nope'}: drop folder does not exist"
    # `runs` shows at most 120 characters of it (the temp path's length varies)
    assert f"failed  {error if len(error) <= 120 else error[:117] + '...'}" in listed
    (stats,) = query(tmp_path / "audit.duckdb", "SELECT stats FROM runs WHERE command = 'audit'")
    recorded = json.loads(stats[0])
    assert recorded["exit_code"] == 2
    assert recorded["error"] == f"unreadable input: {tmp_path / 'nope'}: drop folder does not exist"
    # the good folder was still ingested and the report written
    assert query(tmp_path / "audit.duckdb", "SELECT count(*) FROM results")[0][0] == 3
    assert (tmp_path / "reports" / "latest" / "summary.json").is_file()


def test_audit_exit_0_still_shows_ok_in_runs(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "export.ndjson").write_text("".join(_LINE.format(i=i) for i in range(1, 4)))
    config = _job(tmp_path, [drop])
    done = _run("audit", "--config", str(config))
    assert done.returncode == 0, done.stdout + done.stderr
    assert _audit_status_in_runs(config) == ["ok"]
    (stats,) = query(tmp_path / "audit.duckdb", "SELECT stats FROM runs WHERE command = 'audit'")
    assert "error" not in json.loads(stats[0])
