"""`[checks."<id>"]` levels: a key not given keeps the check's registered default.

`warn = 0.5` alone for `cost.mismatch` turned "fail at |difference| >= 1 sat" into warn-only,
and `warn = 1800` alone for `task.stuck` lost "fail at age >= 3600 s": findings that failed only
warned, so `--fail-on fail` missed them. Levels that contradict each other once merged (warn
above fail), warn/fail on a check of fixed severity and a fixed severity on a measured check are
refused, from a file and from `AuditConfig(checks=...)` alike. Real stores.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from _config_file import write_config
from _records import settled_line

from asg_audit.audit import analyze
from asg_audit.config import AuditConfig, CheckLevels, load_config
from asg_audit.errors import ConfigError
from asg_audit.ingest_files import ingest

AS_OF = "2026-11-01T12:00:00Z"  # the in-progress task is two hours old


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store with one task 2 sats off the per-worker cost and one in progress for 2 hours."""
    folder = tmp_path_factory.mktemp("levels")
    export = folder / "export.ndjson"
    lines = [
        settled_line("off", cost_sats=977),  # 3 x 325 = 975 expected
        settled_line("slow", status="in_progress", settled_at=None, bsv_txid=None),
    ]
    export.write_text("\n".join(lines) + "\n")
    db = folder / "levels.duckdb"
    ingest(db, export)
    return db


def _severities(db: Path, config: AuditConfig, check_id: str) -> list[str]:
    found = analyze(db, config=config, as_of=AS_OF).findings
    return list(found.filter(found["check_id"] == check_id)["severity"])


@pytest.mark.parametrize(
    ("check_id", "warn"),
    [("cost.mismatch", 0.5), ("task.stuck", 1800)],
)
def test_warn_alone_keeps_the_default_fail_level(
    store: Path, tmp_path: Path, check_id: str, warn: float
) -> None:
    assert _severities(store, AuditConfig(), check_id) == ["fail"]
    from_file = load_config(
        write_config(tmp_path, f'[checks."{check_id}"]\nwarn = {warn}\n'), env={}
    )
    assert _severities(store, from_file, check_id) == ["fail"]
    for given in ({"warn": warn}, CheckLevels(warn=warn)):
        config = AuditConfig(checks={check_id: given})
        assert config.checks == from_file.checks
        assert _severities(store, config, check_id) == ["fail"]


def test_fail_alone_keeps_the_default_warn_level(store: Path, tmp_path: Path) -> None:
    # latency.share_over_slo warns at share >= 0.5 by default; the one settled task took 40 s
    slo = "slo_seconds = 10\n"
    config = load_config(
        write_config(tmp_path, slo + '[checks."latency.share_over_slo"]\nfail = 2\n'), env={}
    )
    assert config.checks["latency.share_over_slo"] == CheckLevels(warn=0.5, fail=2)
    assert _severities(store, config, "latency.share_over_slo") == ["warn"]


def test_the_level_given_still_counts(store: Path) -> None:
    relaxed = AuditConfig(checks={"task.stuck": {"warn": 1800, "fail": 3 * 3600}})
    assert _severities(store, relaxed, "task.stuck") == ["warn"]
    later = AuditConfig(checks={"cost.mismatch": {"fail": 3}})
    assert _severities(store, later, "cost.mismatch") == []  # 2 sats: below fail, no warn level


def test_merged_levels_survive_replace() -> None:
    config = AuditConfig(checks={"task.stuck": {"warn": 1800}})
    assert config.checks["task.stuck"] == CheckLevels(warn=1800, fail=3600)
    assert config.replace(slo_seconds=30).checks == config.checks


@pytest.mark.parametrize(
    ("table", "message"),
    [
        (
            "warn = 9000\nfail = 100\n",
            '[checks."task.stuck"]: warn (9000) is above fail (100): the check warns at values'
            " >= warn and fails at values >= fail, so warn must not be above fail",
        ),
        (
            "warn = 9000\n",
            '[checks."task.stuck"]: warn (9000) is above the default fail (3600): the check'
            " warns at values >= warn and fails at values >= fail, so warn must not be above fail",
        ),
    ],
)
def test_warn_above_fail_is_refused(tmp_path: Path, table: str, message: str) -> None:
    path = write_config(tmp_path, f'[checks."task.stuck"]\n{table}')
    with pytest.raises(ConfigError) as from_file:
        load_config(path, env={})
    assert str(from_file.value) == f"{path}: {message}"
    given = dict(line.split(" = ") for line in table.splitlines())
    with pytest.raises(ConfigError) as from_python:
        AuditConfig(checks={"task.stuck": {k: int(v) for k, v in given.items()}})
    assert str(from_python.value) == f"settings: {message}"


def test_default_warn_above_a_given_fail_names_the_default(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        AuditConfig(checks={"latency.share_over_slo": CheckLevels(fail=0.3)})
    assert "the default warn (0.5) is above fail (0.3)" in str(caught.value)


def test_levels_on_a_check_of_fixed_severity_are_refused(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[checks."txid.missing"]\nwarn = 1\nfail = 2\n')
    message = (
        '[checks."txid.missing"] warn, fail: this check has a fixed severity (fail) and no'
        " warn/fail levels; set severity or enabled instead"
    )
    with pytest.raises(ConfigError) as from_file:
        load_config(path, env={})
    assert str(from_file.value) == f"{path}: {message}"
    with pytest.raises(ConfigError, match=r'\[checks."txid.missing"\] fail: this check has'):
        AuditConfig(checks={"txid.missing": CheckLevels(fail=1)})


def test_severity_and_enabled_of_a_fixed_check_still_work(tmp_path: Path) -> None:
    path = write_config(tmp_path, '[checks."txid.missing"]\nseverity = "warn"\n')
    assert load_config(path, env={}).checks["txid.missing"] == CheckLevels(severity="warn")
    off = AuditConfig(checks={"txid.missing": CheckLevels(enabled=False)})
    assert off.checks["txid.missing"] == CheckLevels(enabled=False, severity="fail")


def test_a_fixed_severity_on_a_measured_check_is_refused(store: Path, tmp_path: Path) -> None:
    # it made every row a finding: every settled task, its cost right or not
    path = write_config(tmp_path, '[checks."cost.mismatch"]\nseverity = "warn"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert str(caught.value) == (
        f'{path}: [checks."cost.mismatch"] severity: this check is measured against warn/fail'
        " levels (default: fail at >= 1); set warn or fail instead of a fixed severity"
    )
    with pytest.raises(ConfigError, match="severity: this check is measured"):
        AuditConfig(checks={"cost.mismatch": CheckLevels(severity="warn")})


@pytest.mark.parametrize(
    ("levels", "within"),
    [({}, "3600"), ({"fail": 5400}, "5400"), ({"warn": 1800}, "1800")],
)
def test_stuck_task_says_the_time_it_was_given(
    store: Path, levels: dict[str, float], within: str
) -> None:
    # `fail = 5400` alone used to say "settled within 3600 s" for a task it flagged at 5400 s
    found = analyze(store, config=AuditConfig(checks={"task.stuck": levels}), as_of=AS_OF).findings
    stuck = found.filter(found["check_id"] == "task.stuck")
    assert list(stuck["expected"]) == [f"settled within {within} s"]
