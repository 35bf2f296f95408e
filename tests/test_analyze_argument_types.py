"""`analyze()` and `render()` with arguments of the wrong type: an error naming the argument and
the type expected, as `run_audit` and `verify_chain` give, not a bare AttributeError from deep
inside; `config={}` no longer runs silently with the defaults. Real stores, real folders.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from _records import settled_line

from asg_audit.audit import Audit, analyze
from asg_audit.config import AuditConfig
from asg_audit.errors import ConfigError
from asg_audit.ingest_files import ingest_paths
from asg_audit.report import render
from asg_audit.store import open_store


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("store")
    export = folder / "one.ndjson"
    export.write_text(settled_line("t1") + "\n")
    path = folder / "one.duckdb"
    ingest_paths(path, [export], progress=False)
    return path


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"db": None}, r"analyze db: expected a path \(str or Path\) or an open store.*NoneType"),
        ({"db": b"one.duckdb"}, r"analyze db: expected .* got bytes"),
        ({"db": 3}, r"analyze db: expected .* got int"),
        ({"config": "asg_audit.toml"}, r"analyze config: expected an AuditConfig.* got str"),
        ({"config": {"slo_seconds": 30}}, r"analyze config: expected an AuditConfig.* got dict"),
        ({"config": {}}, r"analyze config: expected an AuditConfig.* got dict"),
        ({"config": 0}, r"analyze config: expected an AuditConfig.* got int"),
    ],
)
def test_analyze_names_a_wrong_typed_argument(
    db: Path, kwargs: dict[str, object], pattern: str
) -> None:
    args: dict[str, object] = {"db": db, **kwargs}
    with pytest.raises(TypeError, match=pattern):
        analyze(**args)  # type: ignore[arg-type]


def test_analyze_still_takes_a_path_text_an_open_store_and_a_config(db: Path) -> None:
    config = AuditConfig(slo_seconds=30)
    assert analyze(str(db)).summary()["tasks"] == 1
    assert analyze(db, config=None).summary()["slo_seconds"] == AuditConfig().slo_seconds
    assert analyze(db, config=config).summary()["slo_seconds"] == 30
    with open_store(db, read_only=True) as store:
        assert analyze(store).summary()["tasks"] == 1


@pytest.mark.parametrize(
    ("audit_arg", "kwargs", "error", "pattern"),
    [
        ("x", {}, TypeError, r"render audit: expected an Audit .* got str"),
        (None, {}, TypeError, r"render audit: expected an Audit .* got NoneType"),
        (
            ...,
            {"generated_at": "2026-01-01"},
            TypeError,
            r"render generated_at: expected a datetime or None, got str",
        ),
        (..., {"run_id": 7}, TypeError, r"render run_id: expected a str or None, got int"),
        (..., {"compare": 1}, TypeError, r"render compare: expected a str or None, got int"),
        (..., {"out_dir": None}, TypeError, r"render out_dir: expected a path .* got NoneType"),
        (..., {"run_id": "."}, ConfigError, r"render run_id '\.'"),
    ],
)
def test_render_names_a_wrong_typed_argument(
    db: Path,
    tmp_path: Path,
    audit_arg: object,
    kwargs: dict[str, object],
    error: type[Exception],
    pattern: str,
) -> None:
    audit = analyze(db) if audit_arg is ... else audit_arg
    args: dict[str, object] = {"out_dir": tmp_path / "reports", **kwargs}
    with pytest.raises(error, match=pattern):
        render(audit, **args)  # type: ignore[arg-type]
    assert not (tmp_path / "reports").exists()  # refused before anything is written


def test_render_still_takes_a_datetime(db: Path, tmp_path: Path) -> None:
    audit: Audit = analyze(db)
    when = datetime(2026, 1, 1, tzinfo=UTC)
    report = render(audit, tmp_path / "reports", formats="json", generated_at=when)
    assert report.run_id.startswith("20260101T000000Z-")
