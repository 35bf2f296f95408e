"""A `chain_network` that does not match `chain_url` is a config error when the config is read.

It was found only when the chain client was built: `audit` ran ingest and collect, failed the
verify-chain step and exited 3 ("retry later") with the run recorded `incomplete`. Now it is
exit 2 before any step, nothing done and no run recorded, wherever the URL came from (the file,
ASG_CHAIN_URL, `AuditConfig(...)`). A real store, the real command line.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from _config_file import write_config
from _hardening_procs import asg_audit, clean_env, query
from _records import settled_line

from asg_audit.config import AuditConfig, load_config
from asg_audit.errors import ConfigError
from asg_audit.ingest_files import ingest

MAIN = "https://api.whatsonchain.com/v1/bsv/main"
TEST = "https://api.whatsonchain.com/v1/bsv/test"
MISMATCH = "but chain_network is {!r}: a txid of one network is not found on the other"


def test_network_from_the_file_against_the_default_url(tmp_path: Path) -> None:
    path = write_config(tmp_path, 'chain_network = "test"\n', "net.toml")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert str(caught.value) == (
        "chain_url ends in /main " + MISMATCH.format("test") + " (chain_url is the default,"
        f" chain_network set by chain_network in {path})"
    )


def test_url_from_the_environment_names_the_variable(tmp_path: Path) -> None:
    path = write_config(tmp_path, 'chain_network = "test"\n', "net.toml")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={"ASG_CHAIN_URL": MAIN + "/"})
    assert "chain_url set by ASG_CHAIN_URL in the environment" in str(caught.value)
    assert load_config(path, env={"ASG_CHAIN_URL": TEST}).chain_network == "test"
    with pytest.raises(ConfigError, match="chain_url ends in /test " + MISMATCH.format("main")):
        load_config(None, env={"ASG_CHAIN_URL": TEST})


def test_url_from_the_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, f'chain_url = "{TEST}"\n', "net.toml")
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert f"(chain_url set by chain_url in {path}, chain_network is the default)" in str(
        caught.value
    )


def test_audit_config_refuses_a_mismatch() -> None:
    with pytest.raises(ConfigError) as caught:
        AuditConfig(chain_network="test")
    assert str(caught.value) == (
        "chain_url ends in /main " + MISMATCH.format("test") + " (given to AuditConfig)"
    )
    with pytest.raises(ConfigError, match="chain_url ends in /test"):
        AuditConfig().replace(chain_url=TEST)
    assert AuditConfig().replace(chain_url=TEST, chain_network="test").chain_network == "test"
    # a URL naming no network (a self-hosted index, the simulator's path aside) is not judged
    assert AuditConfig(chain_url="http://127.0.0.1:9/index", chain_network="test")


@pytest.mark.parametrize(
    ("config_text", "env"),
    [
        ('chain_network = "test"\n', {}),
        ('chain_network = "test"\n', {"ASG_CHAIN_URL": MAIN}),
        ("", {"ASG_CHAIN_URL": TEST}),
    ],
)
def test_audit_exits_2_with_nothing_done(
    tmp_path: Path, config_text: str, env: dict[str, str]
) -> None:
    db = tmp_path / "s.duckdb"
    export = tmp_path / "export.ndjson"
    export.write_text(settled_line("t1") + "\n")
    ingest(db, export)
    runs_before = query(db, "SELECT run_id, status FROM runs ORDER BY run_id")
    path = write_config(tmp_path, config_text + '[audit]\nreport_dir = "reports"\n', "net.toml")
    done = subprocess.run(
        asg_audit("audit", "--db", str(db), "--config", str(path)),
        capture_output=True,
        text=True,
        env=clean_env(ASG_BASE_URL="http://127.0.0.1:9", **env),
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    first = done.stderr.splitlines()[0]
    assert first.startswith("asg-audit: error: chain_url ends in /"), done.stderr
    assert query(db, "SELECT run_id, status FROM runs ORDER BY run_id") == runs_before
    assert not (tmp_path / "reports").exists()
