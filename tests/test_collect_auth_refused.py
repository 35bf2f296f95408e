"""A collect run the Gateway refuses the key of (401) records its error and the 401's status,
as a failed run records its own (fixer H2)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from asg_audit.cli import main
from asg_audit.ingest_files import track_file
from asg_audit.sim import WorldConfig, generate_world, run_simulator
from asg_audit.store import open_store


def test_auth_refused_collect_records_its_error_and_the_401(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    world = generate_world(WorldConfig(seed=5, tasks=5, live_fraction=0.0))
    db = tmp_path / "audit.duckdb"
    track_file(db, world.write_submissions(tmp_path / "submissions.ndjson"))
    wrong_key = "sk_sandbox_wrong_H2_key"
    monkeypatch.chdir(tmp_path)
    with run_simulator(world, time_scale=0.005) as sim:
        monkeypatch.setenv("ASG_BASE_URL", sim.gateway_url)
        monkeypatch.setenv("ASG_API_KEY", wrong_key)
        capsys.readouterr()
        code = main(["collect", "--db", str(db)])
    err = capsys.readouterr().err
    assert code == 3
    lines = [line for line in err.splitlines() if line.startswith("asg-audit: error: ")]
    assert len(lines) == 1, err
    stderr_error = lines[0].removeprefix("asg-audit: error: ")
    with open_store(db) as store:
        rows = store.con.execute(
            "SELECT status, stats FROM runs WHERE command = 'collect'"
        ).fetchall()
    assert [r[0] for r in rows] == ["auth_refused"]
    stats = json.loads(rows[0][1])
    # the same line stderr shows, the key masked
    assert stats["error"] == stderr_error
    assert wrong_key not in stats["error"]
    assert "401" in stats["error"]
    # every answer counted in http_other has its status in http_other_statuses
    assert stats["http_other"] >= 1
    assert sum(stats["http_other_statuses"].values()) == stats["http_other"]
    assert set(stats["http_other_statuses"]) == {"401"}
    # and `runs` shows it
    capsys.readouterr()
    assert main(["runs", "--db", str(db), "--limit", "1"]) == 0
    out = capsys.readouterr().out
    shown = next(line for line in out.splitlines() if "auth_refused" in line)
    assert "the Gateway refused the API key" in shown
