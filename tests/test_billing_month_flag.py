"""`billing --month` with a value that is no month names the flag, not an internal function
(fixer H2), by the rule fetch_billing applies."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asg_audit.cli import main
from asg_audit.ingest_files import track_file
from asg_audit.sim import WorldConfig, generate_world, run_simulator
from asg_audit.store import open_store

BAD = ["2026-13", "2026-9", "2026-00", "26-01", "2026-01x", "2026/01", ""]


def _billing_runs(db: Path) -> list[tuple[str, str]]:
    with open_store(db) as store:
        return store.con.execute(
            "SELECT status, stats FROM runs WHERE command = 'billing'"
        ).fetchall()


@pytest.mark.parametrize("month", BAD)
def test_billing_month_that_is_no_month_names_the_flag(
    month: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ASG_BASE_URL", "http://127.0.0.1:9")  # never asked
    monkeypatch.setenv("ASG_API_KEY", "sk_sandbox_H2")
    db = tmp_path / "c.duckdb"
    capsys.readouterr()
    code = main(["billing", "--db", str(db), "--month", "2026-01", "--month", month])
    err = capsys.readouterr().err
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("asg-audit: error: --month ")
    assert repr(month) in lines[0]
    assert "fetch_billing" not in err
    # refused before the command ran: nothing asked, no run recorded
    assert not db.exists() or _billing_runs(db) == []


def test_billing_months_fetch_billing_takes_pass_the_flag_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    world = generate_world(WorldConfig(seed=7, tasks=5, live_fraction=0.0))
    db = tmp_path / "c.duckdb"
    track_file(db, world.write_submissions(tmp_path / "submissions.ndjson"))
    monkeypatch.chdir(tmp_path)
    with run_simulator(world, time_scale=0.005) as sim:
        monkeypatch.setenv("ASG_BASE_URL", sim.gateway_url)
        monkeypatch.setenv("ASG_API_KEY", sim.api_key)
        capsys.readouterr()
        main(["billing", "--db", str(db), "--month", "2026-01", "--month", "2026-12"])
    err = capsys.readouterr().err
    assert "--month" not in err
    runs = _billing_runs(db)
    assert len(runs) == 1
    assert "--month" not in (json.loads(runs[0][1]).get("error") or "")
