"""`audit`'s verify-chain and billing steps say what they did (fixer G1).

1. A chain index that served bytes not hashing to the txid: `verify-chain` prints `refused 1`
   and exits 3, but `audit` printed `verify-chain  ok: ...`, exited 1 and recorded the run `ok`.
   Now its verify-chain step is not ok (`failed: ..., refused 1 ...`), the run exits 3 and is
   recorded `incomplete`, as the standalone command. Real simulator, its chain index serving
   other bytes under one txid.
2. `[audit] billing = false` (or `verify_chain = false`) with the Gateway down (or the store
   refusing writes) showed the run's verdict (`failed: the Gateway ... not asked again`,
   `skipped (the store ...)`) instead of `skipped (disabled in [audit])`. A disabled step now
   always says so.
3. A GuardedStream is never asked for an attribute that only a GuardedStream has
   (`AttributeError: '_io.TextIOWrapper' object has no attribute ...`): `audit --json` with its
   output to a file, to a pipe, and `run_audit` nested in a command-line run.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _audit_job import offline_job
from _chain_sim import Scenario, scenario
from _hardening_procs import asg_audit, clean_env, query
from _tampered_chain import run_status, tampered_txid

from asg_audit import jobs
from asg_audit.cli import main as cli_main
from asg_audit.config import AuditConfig, Secret
from asg_audit.errors import EXIT_INCOMPLETE, ApiError, StoreError
from asg_audit.jobs import run_audit

DISABLED = "skipped (disabled in [audit])"


# -- 1. refused chain answers ------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    with scenario(tmp_path_factory.mktemp("g1chain"), tasks=300) as sc:
        yield sc


@pytest.fixture
def tampered(world: Scenario) -> Iterator[str]:
    with tampered_txid(world) as txid:
        yield txid


def _chain_config(sc: Scenario, reports: Path) -> AuditConfig:
    # no API key: collect and billing skipped, the chain index is the one API asked
    return AuditConfig(
        db_path=sc.db,
        chain_url=sc.sim.chain_url,
        chain={"rps": 1000},
        audit={"report_dir": str(reports)},
    )


def test_audit_with_a_refused_chain_answer_is_incomplete_as_verify_chain(
    world: Scenario, tampered: str, tmp_path: Path
) -> None:
    log = io.StringIO()
    outcome = run_audit(_chain_config(world, tmp_path / "reports"), log=log)
    step = outcome.steps["verify-chain"]
    assert step.startswith("failed: ") and "refused 1 " in step, step
    assert tampered in step  # the first refusal names its txid
    assert outcome.exit_code == EXIT_INCOMPLETE, outcome
    (line,) = [x for x in log.getvalue().splitlines() if x.startswith("verify-chain")]
    assert "refused 1" in line and " ok" not in line, line
    status, stats = run_status(world.db, outcome.run_id)
    assert status == "incomplete" and stats["exit_code"] == EXIT_INCOMPLETE, (status, stats)
    assert outcome.report_dir is not None  # the report is still written
    [(stored,)] = query(world.db, "SELECT status FROM chain_txs WHERE txid = ?", [tampered])
    assert stored == "refused"


def test_cli_audit_json_with_a_refused_chain_answer_exits_3(
    world: Scenario,
    tampered: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "asg_audit.toml"
    config.write_text(
        f'db = "{world.db}"\nchain_url = "{world.sim.chain_url}"\n[chain]\nrps = 1000\n'
        f'[audit]\nreport_dir = "{tmp_path / "reports"}"\n'
    )
    for name in ("ASG_API_KEY", "API_KEY", "ASG_AUDIT_DB", "ASG_BASE_URL", "ASG_CHAIN_URL"):
        monkeypatch.delenv(name, raising=False)
    code = cli_main(["audit", "--config", str(config), "--json"])
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert code == EXIT_INCOMPLETE and out["exit_code"] == EXIT_INCOMPLETE, (code, out)
    assert "refused 1 " in out["steps"]["verify-chain"], out["steps"]


def test_audit_with_no_refused_answer_is_still_ok(world: Scenario, tmp_path: Path) -> None:
    """The untampered index: the step is `ok` and says nothing of refusals."""
    outcome = run_audit(_chain_config(world, tmp_path / "reports"), log=io.StringIO())
    step = outcome.steps["verify-chain"]
    assert step.startswith("ok: ") and "refused" not in step, step
    assert outcome.exit_code != EXIT_INCOMPLETE, outcome


# -- 2. a disabled step says so whatever else the run found ------------------------------------


def _offline(tmp_path: Path, **audit: Any) -> AuditConfig:
    job = offline_job(tmp_path, tasks=5)
    return AuditConfig(
        db_path=job["db"],
        api_key=Secret("sk_sandbox_g1"),
        audit={"drop_folders": [str(job["drop"])], "report_dir": str(job["reports"]), **audit},
    )


def test_billing_disabled_with_the_gateway_down_reads_disabled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _offline(tmp_path, billing=False, verify_chain=False)
    down = f"the Gateway at {config.base_url} is unreachable (ConnectError; no HTTP answer in 0 s)"

    def collect(*args: Any) -> str:
        raise jobs._GatewayUnreachable(down)

    monkeypatch.setattr(jobs, "_collect", collect)
    outcome = run_audit(config, log=io.StringIO())
    assert outcome.steps["collect"].startswith("failed: the Gateway at"), outcome.steps
    assert outcome.steps["billing"] == DISABLED, outcome.steps
    assert outcome.steps["verify-chain"] == DISABLED, outcome.steps


def test_billing_enabled_with_the_gateway_down_still_fails_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _offline(tmp_path, verify_chain=False)

    def collect(*args: Any) -> str:
        raise jobs._GatewayUnreachable(f"the Gateway at {config.base_url} is unreachable (x)")

    def billing(*args: Any) -> str:
        raise AssertionError("billing asked the Gateway found down")

    monkeypatch.setattr(jobs, "_collect", collect)
    monkeypatch.setattr(jobs, "_billing", billing)
    outcome = run_audit(config, log=io.StringIO())
    assert outcome.steps["billing"].endswith("(found by collect in this run; not asked again)")


def test_disabled_steps_with_the_store_refusing_writes_read_disabled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _offline(tmp_path, billing=False, verify_chain=False)

    def collect(*args: Any) -> str:
        raise StoreError(f"{config.db_path}: cannot write the database (No space left on device)")

    monkeypatch.setattr(jobs, "_collect", collect)
    outcome = run_audit(config, log=io.StringIO())
    assert outcome.steps["verify-chain"] == DISABLED, outcome.steps
    assert outcome.steps["billing"] == DISABLED, outcome.steps
    assert outcome.steps["findings"].startswith("skipped (not stored"), outcome.steps


def test_enabled_writer_with_the_store_refusing_writes_is_still_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _offline(tmp_path, verify_chain=False)

    def collect(*args: Any) -> str:
        raise StoreError(f"{config.db_path}: cannot write the database (No space left on device)")

    def billing(*args: Any) -> str:
        raise ApiError("billing ran against a store that refuses writes")

    monkeypatch.setattr(jobs, "_collect", collect)
    monkeypatch.setattr(jobs, "_billing", billing)
    outcome = run_audit(config, log=io.StringIO())
    assert outcome.steps["billing"].startswith("skipped (the store cannot be written"), (
        outcome.steps
    )


# -- 3. guarded output: no attribute a plain stream lacks --------------------------------------


def _offline_config_file(tmp_path: Path) -> Path:
    return offline_job(tmp_path, tasks=5)["config"]


def test_audit_json_to_a_file_and_to_a_pipe_closed_early(tmp_path: Path) -> None:
    config = _offline_config_file(tmp_path)
    out = tmp_path / "out.json"
    with out.open("w") as f:
        done = subprocess.run(
            asg_audit("audit", "--config", str(config), "--json"),
            stdout=f,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
            timeout=180,
        )
    assert "AttributeError" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert json.loads(out.read_text())["exit_code"] == done.returncode
    # the reader reads nothing and goes away
    proc = subprocess.Popen(
        [*asg_audit("audit", "--config", str(config)), "--wait", "30"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean_env(),
    )
    assert proc.stdout is not None
    proc.stdout.close()
    _, err = proc.communicate(timeout=180)
    assert "AttributeError" not in err and "Traceback" not in err, err


def test_run_audit_nested_in_a_command_line_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run_audit (log=None) inside another run_audit inside `asg-audit audit --json`: the
    outer streams are GuardedStreams already, used as they are."""
    config = _offline_config_file(tmp_path)
    (tmp_path / "inner").mkdir()
    inner_config = _offline(tmp_path / "inner", billing=False, verify_chain=False)
    inner_config = inner_config.replace(api_key=None)
    seen: list[Any] = []
    real_billing = jobs._billing

    def billing(config: Any, settings: Any) -> str:
        if config.db_path != inner_config.db_path:  # the outer run's billing: nest one run
            seen.append((type(sys.stdout).__name__, type(sys.stderr).__name__))
            inner = run_audit(inner_config)  # log=None: sys.stdout, the command line's
            seen.append((inner.exit_code, inner.output_lost))
        return real_billing(config, settings)

    monkeypatch.setattr(jobs, "_billing", billing)
    for name in ("ASG_API_KEY", "API_KEY", "ASG_AUDIT_DB", "ASG_BASE_URL", "ASG_CHAIN_URL"):
        monkeypatch.delenv(name, raising=False)
    code = cli_main(["audit", "--config", str(config), "--json"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code in (0, 1), lines
    assert seen[0] == ("GuardedStream", "GuardedStream")
    assert seen[1][0] in (0, 1) and seen[1][1] == {}, seen
    assert json.loads(lines[-1])["exit_code"] == code
