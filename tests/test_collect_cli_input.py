"""`asg-audit collect` as a subprocess: bad input and an unreachable API give one error line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from asg_audit.ingest_files import track_file
from asg_audit.sim import WorldConfig, generate_world, run_simulator
from asg_audit.store import open_store


def _collect(
    args: list[str], tmp_path: Path, *, url: str = "http://127.0.0.1:1", key: str = "sk_x"
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ASG_API_KEY", "API_KEY")}
    env.update(ASG_API_KEY=key, ASG_BASE_URL=url)
    return subprocess.run(
        [sys.executable, "-m", "asg_audit", "collect", "--db", str(tmp_path / "a.duckdb"), *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _runs(tmp_path: Path) -> list[str]:
    db = tmp_path / "a.duckdb"
    if not db.exists():
        return []
    with open_store(db) as store:
        return [r[0] for r in store.con.execute("SELECT status FROM runs").fetchall()]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_collect_cli_non_finite_max_rps_is_a_usage_error(tmp_path: Path, value: str) -> None:
    done = _collect([f"--max-rps={value}"], tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("asg-audit: error: collector.max_rps must be a positive")
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1
    assert "running" not in _runs(tmp_path)


def test_collect_cli_missing_task_ids_file_is_an_input_error(tmp_path: Path) -> None:
    done = _collect(["--task-ids", "nope.txt"], tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("asg-audit: error: cannot read task ids from nope.txt")
    assert "Traceback" not in done.stderr and len(done.stderr.splitlines()) == 1
    assert "running" not in _runs(tmp_path)


def test_collect_cli_unreachable_api_exits_3_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "ids.txt").write_text("tsk_a\ntsk_b\ntsk_c\n")
    done = _collect(["--task-ids", "ids.txt"], tmp_path)
    assert done.returncode == 3, done.stderr
    errors = [line for line in done.stderr.splitlines() if "asg-audit: error:" in line]
    assert len(errors) == 1 and "cannot reach the Gateway at http://127.0.0.1:1" in errors[0]
    assert _runs(tmp_path) == ["failed"]


def test_collect_cli_names_each_unsafe_task_id_and_counts_them(tmp_path: Path) -> None:
    world = generate_world(WorldConfig(seed=41, tasks=5, live_fraction=0.0, anomalies="none"))
    track_file(tmp_path / "a.duckdb", world.write_submissions(tmp_path / "subs.ndjson"))
    good = [t["task_id"] for t in world.ground_truth()["tasks"]][:2]
    (tmp_path / "ids.txt").write_text(f"{good[0]}\n\n../etc/passwd\n# note\ntsk_a b\n{good[1]}\n")
    with run_simulator(world) as sim:
        done = _collect(
            ["--task-ids", "ids.txt", "--max-rps", "50"],
            tmp_path,
            url=sim.gateway_url,
            key=sim.api_key,
        )
    assert done.returncode == 0, done.stderr
    assert "ids.txt:3: skipped task id '../etc/passwd'" in done.stderr
    assert "ids.txt:5: skipped task id 'tsk_a b'" in done.stderr
    assert "2 unsafe ids skipped" in done.stdout
    assert "tasks: 2 polled" in done.stdout


def test_task_id_file_with_a_bom_and_crlf_reads_every_id(tmp_path: Path) -> None:
    from asg_audit.collector import read_task_id_file

    path = tmp_path / "ids.txt"
    path.write_bytes(b"\xef\xbb\xbftsk_first\r\ntsk_second\r\n \xef\xbb\xbftsk_inner\n")
    got = read_task_id_file(path)
    # only the encoding mark at the start of the file is dropped; one inside a line is no id
    assert got.ids == ["tsk_first", "tsk_second"]
    assert [(line, text) for line, text, _ in got.skipped] == [(3, "\ufefftsk_inner")]
