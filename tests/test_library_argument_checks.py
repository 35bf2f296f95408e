"""Library arguments of the wrong type or form are refused naming the argument, before
anything is done (tester T2: DuckDB's parser error for `open_store(memory_limit="lots")`, a
bare TypeError for `open_store(5)`, `AuditConfig(audit={"drop_folders": 5})` accepted and
failing the audit's ingest step, `run_audit(log=5)` recorded as a failed run)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pytest
from _offline_config import offline_config
from _records import settled_line

import asg_audit
from asg_audit import store as store_module
from asg_audit.config import AuditConfig
from asg_audit.errors import ConfigError
from asg_audit.jobs import run_audit
from asg_audit.store import open_store


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"memory_limit": "lots"}, ConfigError, "open_store memory_limit: expected a size"),
        ({"memory_limit": 5}, TypeError, "open_store memory_limit: expected a size.* got int"),
        ({"wait_seconds": -1}, ConfigError, "open_store wait_seconds: expected a finite"),
        ({"wait_seconds": math.nan}, ConfigError, "open_store wait_seconds: expected a finite"),
        ({"wait_seconds": "x"}, ConfigError, "open_store wait_seconds: expected a finite"),
    ],
)
@pytest.mark.parametrize("read_only", [False, True])
def test_open_store_names_a_bad_argument_before_opening(
    tmp_path: Path, kwargs: dict[str, object], error: type[Exception], message: str, read_only: bool
) -> None:
    db = tmp_path / "a.duckdb"
    if read_only:
        with open_store(db):
            pass
    with pytest.raises(error, match=message), open_store(db, read_only=read_only, **kwargs):  # type: ignore[arg-type]
        pass
    assert db.exists() == read_only  # a writer's store was not created
    with open_store(db, memory_limit="256MB"):  # a good size is taken
        pass


def test_a_memory_limit_is_read_by_duckdb_once_per_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The probe (an in-memory DuckDB, about 15 ms) ran on every open of a store that passed a
    # memory limit, the same constant of ingest and track included.
    import duckdb

    probes: list[object] = []
    real_connect = duckdb.connect

    def counting_connect(database: object = ":memory:", *args: object, **kwargs: object) -> object:
        if database == ":memory:":
            probes.append(database)
        return real_connect(database, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(duckdb, "connect", counting_connect)
    store_module._readable_memory_limit.cache_clear()  # whatever earlier tests asked
    for _ in range(3):
        with open_store(tmp_path / "a.duckdb", memory_limit="313MB") as store:
            limit = store.con.sql("SELECT current_setting('memory_limit')").fetchall()[0][0]
            assert limit == "298.5 MiB"  # DuckDB's reading of 313MB (10^6 bytes), as it shows it
    assert len(probes) == 1
    for _ in range(2):  # a refused size stays refused
        with (
            pytest.raises(ConfigError, match="open_store memory_limit"),
            open_store(tmp_path / "b.duckdb", memory_limit="317 lots"),
        ):
            pass
    assert len(probes) == 2


def test_open_store_names_a_path_that_is_not_one() -> None:
    with (
        pytest.raises(
            TypeError, match=r"open_store path: expected a path \(str or Path\), got int"
        ),
        open_store(5),
    ):  # type: ignore[arg-type]
        pass


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"db_path": 5}, TypeError, r"AuditConfig db_path: expected a path .* got int"),
        ({"audit": {"drop_folders": 5}}, ConfigError, r"\[audit\] drop_folders: expected an array"),
        ({"audit": {"drop_folders": [5]}}, ConfigError, r"\[audit\] drop_folders: expected an"),
        ({"audit": {"report_dir": 7}}, ConfigError, r"\[audit\] report_dir: expected a string"),
        ({"collector": {"schedule": 3}}, ConfigError, r"\[collector\] schedule: expected one of"),
        ({"webhooks": {"secret_file": 3}}, ConfigError, r"\[webhooks\] secret_file: expected a"),
    ],
)
def test_audit_config_checks_the_types_a_file_is_checked_for(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        AuditConfig(**kwargs)  # type: ignore[arg-type]


def test_audit_config_takes_paths_and_tuples_where_a_file_has_text_and_arrays() -> None:
    config = AuditConfig(
        db_path="x.duckdb",
        audit={"drop_folders": (Path("a"), "b"), "report_dir": Path("r")},
    )
    assert config.db_path == Path("x.duckdb")
    assert config.audit["drop_folders"] == (Path("a"), "b")


def test_run_audit_refuses_a_log_that_is_no_stream_before_recording_a_run(tmp_path: Path) -> None:
    config, _job = offline_config(tmp_path, tasks=5)
    with pytest.raises(TypeError, match=r"run_audit log: expected a text stream .* got int"):
        run_audit(config, log=5)  # type: ignore[arg-type]
    if Path(config.db_path).exists():  # the job's store: no audit run in it
        with open_store(config.db_path, read_only=True) as store:
            runs = store.con.execute("SELECT count(*) FROM runs WHERE command = 'audit'")
            assert runs.fetchone() == (0,)


def test_audit_config_takes_none_where_webhook_settings_default_to_it() -> None:
    # `WebhookSettings` holds None for secret_file and forwarded_allow_ips: "not given"
    import dataclasses

    from asg_audit.webhooks import WebhookSettings

    defaults = {
        f.name: getattr(WebhookSettings(), f.name) for f in dataclasses.fields(WebhookSettings)
    }
    assert defaults["secret_file"] is None
    assert AuditConfig(webhooks=defaults).webhooks["secret_file"] is None


@pytest.mark.parametrize("read_only", ["yes", 1, None])
def test_open_store_names_a_read_only_that_is_no_bool(tmp_path: Path, read_only: object) -> None:
    """Tester T3: DuckDB's own `connect(): incompatible function arguments` named nothing."""
    db = tmp_path / "a.duckdb"
    with (
        pytest.raises(TypeError, match=r"open_store read_only: expected a bool, got "),
        open_store(db, read_only=read_only),  # type: ignore[arg-type]
    ):
        pass
    assert not db.exists()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        # tester T3: an empty compare (an unset `$PREV`) compared with nothing, unsaid
        ({"compare": ""}, ConfigError, r"run_audit compare: expected a run id or 'previous'"),
        ({"compare": 5}, TypeError, r"run_audit compare: expected a str or None, got int"),
        ({"out_dir": 5}, TypeError, r"run_audit out_dir: expected a path .* got int"),
    ],
)
def test_run_audit_names_a_bad_compare_or_out_dir_before_recording_a_run(
    tmp_path: Path, kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    config, _job = offline_config(tmp_path, tasks=5)
    with pytest.raises(error, match=message):
        run_audit(config, log=io.StringIO(), **kwargs)  # type: ignore[arg-type]
    if Path(config.db_path).exists():
        with open_store(config.db_path, read_only=True) as store:
            runs = store.con.execute("SELECT count(*) FROM runs WHERE command = 'audit'")
            assert runs.fetchone() == (0,)


def test_render_refuses_an_empty_compare(tmp_path: Path) -> None:
    export = tmp_path / "r.ndjson"
    export.write_text(settled_line("t1") + "\n")
    asg_audit.ingest(tmp_path / "s.duckdb", export)
    audit = asg_audit.analyze(tmp_path / "s.duckdb")
    with pytest.raises(ConfigError, match=r"render compare: expected a run id or 'previous'"):
        asg_audit.render(audit, tmp_path / "reports", formats="json", compare="")
    assert not (tmp_path / "reports").exists()


def test_ingest_refuses_a_mapping_of_paths(tmp_path: Path) -> None:
    """Tester T3: `{"a": 1}` was read as the list of its keys ("a: no such file")."""
    with pytest.raises(TypeError, match=r"ingest paths: expected a path .* got dict"):
        asg_audit.ingest(tmp_path / "s.duckdb", {"a": 1})  # type: ignore[arg-type]
