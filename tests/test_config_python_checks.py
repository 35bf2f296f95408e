"""`AuditConfig(...)` from a notebook is checked as the TOML loader checks a file.

`checks` in the TOML shape (`{"task.stuck": {"warn": 1800}}`) was accepted and then `analyze`
failed with AttributeError ('dict' has no 'enabled'); an unknown check id was silently ignored;
`base_url="ftp://x"` was accepted and `collect` later said "Gateway down". Real stores.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _records import settled_line

from asg_audit.audit import analyze
from asg_audit.config import AuditConfig, CheckLevels, load_config
from asg_audit.errors import ConfigError
from asg_audit.ingest_files import ingest

_STUCK = {"task.stuck": {"warn": 1800, "fail": 7200}}


@pytest.fixture(scope="module")
def stuck_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("stuck")
    export = folder / "stuck.ndjson"
    line = settled_line("slow", status="in_progress", settled_at=None, bsv_txid=None)
    export.write_text(line + "\n")
    db = folder / "stuck.duckdb"
    ingest(db, export)
    return db


def _stuck_severities(db: Path, config: AuditConfig) -> list[str]:
    audit = analyze(db, config=config, as_of="2026-11-01T11:00:00Z")  # one hour in progress
    found = audit.findings.filter(audit.findings["check_id"] == "task.stuck")
    return list(found["severity"])


def test_audit_config_takes_checks_in_the_toml_shape(stuck_store: Path) -> None:
    config = AuditConfig(checks=_STUCK)
    assert config.checks == {"task.stuck": CheckLevels(warn=1800, fail=7200)}
    assert _stuck_severities(stuck_store, config) == ["warn"]  # the default level says fail
    assert _stuck_severities(stuck_store, AuditConfig()) == ["fail"]


def test_audit_config_checks_are_the_loaders(tmp_path: Path) -> None:
    toml = tmp_path / "asg_audit.toml"
    toml.write_text('[checks."task.stuck"]\nwarn = 1800\nfail = 7200\nenabled = false\n')
    from_file = load_config(toml, env={})
    given = AuditConfig(checks={"task.stuck": {"warn": 1800, "fail": 7200, "enabled": False}})
    assert given.checks == from_file.checks


def test_audit_config_refuses_an_unknown_check_id_as_the_loader_does(tmp_path: Path) -> None:
    toml = tmp_path / "asg_audit.toml"
    toml.write_text('[checks."task.stuk"]\n')
    with pytest.raises(ConfigError) as from_file:
        load_config(toml, env={})
    with pytest.raises(ConfigError) as given:
        AuditConfig(checks={"task.stuk": {}})
    assert "unknown check id; did you mean task.stuck" in str(given.value)
    assert str(given.value).removeprefix("settings") == str(from_file.value).removeprefix(str(toml))
    with pytest.raises(ConfigError, match="unknown check id"):
        AuditConfig(checks={"task.stuk": CheckLevels(warn=1)})


@pytest.mark.parametrize(
    ("checks", "error", "pattern"),
    [
        ({"task.stuck": {"warn": "soon"}}, ConfigError, r"warn: expected a number, got a string"),
        ({"task.stuck": {"level": 1}}, ConfigError, r"unknown key\(s\) in .*: level"),
        ({"task.stuck": {"severity": "loud"}}, ConfigError, r"severity: expected one of"),
        ({"task.stuck": 5}, ConfigError, r"must be a table"),
        ([("task.stuck", {})], TypeError, r"AuditConfig checks: expected a mapping"),
    ],
)
def test_audit_config_refuses_checks_the_loader_refuses(
    checks: object, error: type[Exception], pattern: str
) -> None:
    with pytest.raises(error, match=pattern):
        AuditConfig(checks=checks)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["base_url", "chain_url"])
@pytest.mark.parametrize("url", ["ftp://x", "api.example.com", "http://", ""])
def test_audit_config_refuses_a_url_requests_cannot_go_to(name: str, url: str) -> None:
    pattern = rf"^{name} is not an absolute http:// or https:// URL with a host"
    with pytest.raises(ConfigError, match=pattern):
        AuditConfig(**{name: url})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=pattern):
        AuditConfig().replace(**{name: url})


def test_audit_config_still_takes_http_urls() -> None:
    config = AuditConfig(base_url="http://127.0.0.1:8080", chain_url="https://woc.example/v1")
    assert config.base_url == "http://127.0.0.1:8080"


def test_load_config_names_an_env_value_that_is_no_str() -> None:
    # tester T10: env={"ASG_API_KEY": os.environ.get("KEY")} with KEY unset raised an
    # AttributeError from deep inside; an int or bytes another internal error
    for value, name in ((None, "NoneType"), (5, "int"), (b"x", "bytes")):
        with pytest.raises(TypeError) as caught:
            load_config(None, env={"ASG_API_KEY": value})  # type: ignore[dict-item]
        assert str(caught.value) == (
            f"load_config env: expected str keys and values, the value of ASG_API_KEY is {name}"
        )


def test_run_audit_names_its_own_fail_on_argument(tmp_path: Path) -> None:
    # tester T10: a library caller was told of `--fail-on`, a flag it never used
    from asg_audit.jobs import run_audit

    with pytest.raises(ConfigError, match=r"^--fail-on \(fail_on\): expected one of info"):
        run_audit(AuditConfig(db_path=tmp_path / "s.duckdb"), fail_on="bad")
    assert not (tmp_path / "s.duckdb").exists()
