"""A database path holding control characters, or only white space: exit 2 (tester finding 4).

A CRLF env file sourced as the README recommends (`set -a; . ./env`) leaves `\\r` at the end of
`ASG_AUDIT_DB`: `audit` created and audited a new, empty store named `store.duckdb\\r` and
exited 0, and `ASG_AUDIT_DB="   "` made a store named by three spaces. The path is refused,
naming the variable, flag or key (as `ASG_BASE_URL` is), never stripped into another name.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from _hardening_procs import asg_audit, clean_env, run_asg_audit

from asg_audit.config import AuditConfig, load_config
from asg_audit.errors import EXIT_USAGE, ConfigError

BAD = {
    "carriage return": "store.duckdb\r",
    "white space only": "   ",
    "tab": "a\tb.duckdb",
    "line break": "store\n.duckdb",
    "escape": "s\x1b[31m.duckdb",
}


def sourced(folder: Path, lines: str, *command: str) -> subprocess.CompletedProcess[str]:
    """Run `set -a; . ./env; asg-audit COMMAND` in `folder`, `env` holding `lines` as given."""
    (folder / "env").write_bytes(lines.encode())
    argv = " ".join(f"'{a}'" for a in command)
    return subprocess.run(
        ["bash", "-c", f"set -a; . ./env; exec {argv}"],
        cwd=folder,
        env=clean_env(drop_prefix="ASG_"),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("command", [("audit",), ("db", "info"), ("ingest", "x.ndjson")])
def test_crlf_env_file_db_is_refused_and_no_store_is_made(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    (tmp_path / "x.ndjson").write_text("")
    done = sourced(tmp_path, "ASG_AUDIT_DB=store.duckdb\r\n", *asg_audit(*command))
    assert done.returncode == EXIT_USAGE, done.stderr
    assert done.stderr.startswith("asg-audit: error: ASG_AUDIT_DB in the environment:")
    assert "control characters (\\r, a carriage return)" in done.stderr
    assert "CRLF env file" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["env", "x.ndjson"]


@pytest.mark.parametrize("case", BAD)
def test_env_db_path_is_refused_naming_the_variable(tmp_path: Path, case: str) -> None:
    env = clean_env(drop_prefix="ASG_", ASG_AUDIT_DB=BAD[case])
    done = run_asg_audit("db", "info", cwd=tmp_path, env=env)
    assert done.returncode == EXIT_USAGE, done.stderr
    assert done.stderr.startswith("asg-audit: error: ASG_AUDIT_DB in the environment: the database")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("case", BAD)
def test_flag_db_path_is_refused_naming_the_flag(tmp_path: Path, case: str) -> None:
    (tmp_path / "x.ndjson").write_text("")
    done = run_asg_audit("ingest", "--db", BAD[case], "x.ndjson", cwd=tmp_path)
    assert done.returncode == EXIT_USAGE, done.stderr
    assert done.stderr.startswith("asg-audit: error: --db (load_config overrides: db_path): the")
    assert [p.name for p in tmp_path.iterdir()] == ["x.ndjson"]


@pytest.mark.parametrize("case", BAD)
def test_config_file_db_is_refused_naming_the_key(tmp_path: Path, case: str) -> None:
    (tmp_path / "c.toml").write_text(f"db = {json.dumps(BAD[case])}\n")  # a TOML string
    with pytest.raises(ConfigError, match=r"c\.toml: db: the database path"):
        load_config(tmp_path / "c.toml", env={})
    done = run_asg_audit("db", "info", "--config", "c.toml", cwd=tmp_path)
    assert done.returncode == EXIT_USAGE, done.stderr
    assert done.stderr.startswith("asg-audit: error: c.toml: db: the database path")
    assert [p.name for p in tmp_path.iterdir()] == ["c.toml"]


@pytest.mark.parametrize("case", BAD)
def test_library_db_path_is_refused(case: str) -> None:
    with pytest.raises(ConfigError, match=r"^AuditConfig db_path: the database path"):
        AuditConfig(db_path=BAD[case])
    with pytest.raises(ConfigError, match=r"load_config overrides: db_path\): the database"):
        load_config(env={}, overrides={"db_path": Path(BAD[case])})


def test_a_flag_overrides_a_bad_env_value_and_plain_names_still_work(tmp_path: Path) -> None:
    # the environment's value is refused only when it is the one used
    config = load_config(env={"ASG_AUDIT_DB": "s.duckdb\r"}, overrides={"db_path": "ok.duckdb"})
    assert config.db_path == Path("ok.duckdb")
    assert load_config(env={"ASG_AUDIT_DB": ""}).db_path == Path("asg_audit.duckdb")
    assert load_config(env={"ASG_AUDIT_DB": "my store é.duckdb"}).db_path == Path(
        "my store é.duckdb"
    )
    assert load_config(env={"ASG_AUDIT_DB": " lead.duckdb"}).db_path == Path(" lead.duckdb")
