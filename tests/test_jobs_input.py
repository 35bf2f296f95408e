"""The audit job's input problems: unreadable drop-folder files, missing folders, no API key,
an inverted window, a store that does not exist. The real command in a subprocess, real stores,
offline (no API key, no chain step) unless a test says otherwise."""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import pytest
from _hardening_procs import asg_audit, clean_env, query

from asg_audit.store import open_store

_LINE = (
    '{{"task_id":"w{i}","status":"settled","consensus_label":"cat","confidence":1.0,'
    '"worker_count":3,"agreement_count":3,"bsv_txid":"{i:064x}",'
    '"created_at":"2026-04-08T21:00:00Z","settled_at":"2026-04-08T21:00:47Z","cost_sats":975}}\n'
)


def _job(tmp_path: Path, *, folders: list[Path] | None = None, audit: str = "") -> Path:
    """Write a store, a drop folder with 9 good results, and an offline config; return it."""
    db = tmp_path / "audit.duckdb"
    with open_store(db):
        pass
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "export.ndjson").write_text("".join(_LINE.format(i=i) for i in range(1, 10)))
    listed = ", ".join(f'"{p}"' for p in (folders if folders is not None else [drop]))
    config = tmp_path / "asg_audit.toml"
    config.write_text(
        f'db = "{db}"\n[audit]\ndrop_folders = [{listed}]\n'
        f'report_dir = "{tmp_path / "reports"}"\nverify_chain = false\n{audit}'
    )
    return config


def _run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        asg_audit(*args), capture_output=True, text=True, env=clean_env(**env), timeout=180
    )


def _audit_runs(db: Path) -> list[tuple[str, str]]:
    return query(db, "SELECT status, stats->>'exit_code' FROM runs WHERE command = 'audit'")


def test_audit_unreadable_drop_file_still_runs_every_step_and_exits_2(tmp_path: Path) -> None:
    config = _job(tmp_path)
    broken = gzip.compress(b'{"task_id":"x1","status":"settled"}\n' * 50)
    (tmp_path / "drop" / "bad.jsonl.gz").write_bytes(broken[: len(broken) // 2])
    done = _run("audit", "--config", str(config))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "warning: unreadable input:" in done.stdout and "bad.jsonl.gz" in done.stdout
    # the good file is ingested and the report written from it
    assert query(tmp_path / "audit.duckdb", "SELECT count(*) FROM results")[0][0] == 9
    assert (tmp_path / "reports" / "latest" / "summary.json").is_file()
    # exit 2 ("fix the job definition") is never `ok` in `runs`
    assert _audit_runs(tmp_path / "audit.duckdb") == [("failed", "2")]


def test_audit_missing_drop_folder_is_reported_and_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder"
    config = _job(tmp_path, folders=[tmp_path / "drop", missing])
    done = _run("audit", "--config", str(config))
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"warning: unreadable input: {missing}: drop folder does not exist" in done.stdout
    assert query(tmp_path / "audit.duckdb", "SELECT count(*) FROM results")[0][0] == 9


def test_audit_without_api_key_warns_and_still_runs_offline(tmp_path: Path) -> None:
    done = _run("audit", "--config", str(_job(tmp_path)))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "warning: no ASG_API_KEY" in done.stdout
    assert "require_api = true" in done.stdout


def test_audit_without_api_key_under_require_api_exits_2_before_any_step(
    tmp_path: Path,
) -> None:
    config = _job(tmp_path, audit="require_api = true\n")
    done = _run("audit", "--config", str(config))
    assert done.returncode == 2
    assert "no API key" in done.stderr and "Traceback" not in done.stderr
    assert _audit_runs(tmp_path / "audit.duckdb") == []


@pytest.mark.parametrize("command", ["audit", "report"])
def test_inverted_window_is_a_usage_error(tmp_path: Path, command: str) -> None:
    config = _job(tmp_path)
    window = ("--since", "2026-10-02", "--until", "2026-10-01")
    extra = ("--out", str(tmp_path / "reports")) if command == "report" else ()
    done = _run(command, "--config", str(config), *window, *extra)
    assert done.returncode == 2
    assert "--since" in done.stderr and "must be before --until" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "reports").exists()


@pytest.mark.parametrize("command", ["verify-chain", "billing"])
def test_chain_and_billing_refuse_a_store_that_does_not_exist(tmp_path: Path, command: str) -> None:
    typo = tmp_path / "typo.duckdb"
    done = _run(
        command,
        "--db",
        str(typo),
        ASG_CHAIN_URL="http://127.0.0.1:9/v1/bsv/main",
        ASG_BASE_URL="http://127.0.0.1:9",
        ASG_API_KEY="k",
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "no database here yet" in done.stderr
    assert not typo.exists()
