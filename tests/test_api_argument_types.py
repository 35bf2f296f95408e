"""An argument of the wrong type is a TypeError naming the function and the argument.

Before: `render(formats=None)` was "'NoneType' object is not iterable", `formats=[1]` an
AttributeError, `load_config(5)` and `track_file(5, ...)` errors from deep in pathlib,
`compute_txid("00")` hashlib's "Strings must be encoded before hashing", `sign_body("abc", ...)`
the same, `headline(None)` an AttributeError; `render(formats=("pdf",))` quoted the CLI's
`--format`. The command line keeps its flag names.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import asg_audit
from asg_audit.audit import Audit
from asg_audit.errors import ConfigError
from asg_audit.rawtx import compute_txid, parse_raw_tx
from asg_audit.report import headline, parse_formats, render, render_summary_html
from asg_audit.report.content import build_summary
from asg_audit.store import open_store
from asg_audit.track import track_file
from asg_audit.webhooks import sign_body, verify_signature

# a real transaction's bytes: version 1, one input, one output, locktime 0
RAW_TX = bytes.fromhex(
    "01000000" + "01" + "11" * 32 + "00000000" + "00" + "ffffffff"
    "01" + "e803000000000000" + "19" + "76a914" + "22" * 20 + "88ac" + "00000000"
)


@pytest.fixture(scope="module")
def audit(tmp_path_factory: pytest.TempPathFactory) -> Audit:
    db = tmp_path_factory.mktemp("store") / "a.duckdb"
    with open_store(db):
        pass
    return asg_audit.analyze(db)


@pytest.mark.parametrize(
    ("formats", "got"),
    [
        (None, "got NoneType"),
        (5, "got int"),
        ([1], "got an iterable holding int"),
        (b"html", "got bytes"),
    ],
)
def test_render_formats_of_the_wrong_type(
    audit: Audit, tmp_path: Path, formats: Any, got: str
) -> None:
    with pytest.raises(
        TypeError, match=rf"^render formats: expected some of html,md,json .*{got}$"
    ):
        render(audit, tmp_path / "r", formats=formats)
    assert not (tmp_path / "r").exists()


def test_render_formats_unknown_names_the_argument_not_the_flag(
    audit: Audit, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match=r"^render formats: expected some of html,md,json") as e:
        render(audit, tmp_path / "r", formats=("pdf",))
    assert "--format" not in str(e.value)
    # the command line's own parse keeps its flag name
    with pytest.raises(ConfigError, match=r"^--format: expected some of html,md,json"):
        parse_formats("pdf")
    assert render(audit, tmp_path / "r", formats=["json"], run_id="ok").paths.keys() == {"json"}


@pytest.mark.parametrize(
    ("compare", "message"),
    [
        ("nosuch", "render compare: no report 'nosuch' in "),
        ("previous", "render compare previous: no earlier report with a summary in "),
        ("..", "render compare: '..' is not a run id"),
    ],
)
def test_render_compare_names_the_argument_not_the_flag(
    audit: Audit, tmp_path: Path, compare: str, message: str
) -> None:
    # tester T3: a library caller was told of `--compare`, a flag it never passed
    with pytest.raises(ConfigError) as e:
        render(audit, tmp_path / "r", formats="json", compare=compare)
    assert str(e.value).startswith(message)
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_the_cli_still_names_its_format_flag(tmp_path: Path) -> None:
    db = tmp_path / "a.duckdb"
    args = ["report", "--db", str(db), "--out", str(tmp_path / "r"), "--format", "pdf"]
    proc = subprocess.run(
        [sys.executable, "-m", "asg_audit", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 2, proc.stderr
    assert "--format: expected some of html,md,json" in proc.stderr


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: headline(None), TypeError, r"^headline audit: expected an Audit .*got NoneType$"),
        (
            lambda: render_summary_html("x"),
            TypeError,
            r"^render_summary_html audit: expected an Audit .*got str$",
        ),
        (
            lambda: build_summary({}, run_id="r", generated_at=None, charts=[], tool_version="0"),
            TypeError,
            r"^build_summary audit: expected an Audit .*got dict$",
        ),
        (
            lambda: asg_audit.load_config(5),
            TypeError,
            r"^load_config config_file: expected a path \(str or Path\) or None, got int$",
        ),
        (
            lambda: asg_audit.load_config(None, env=["A=1"]),
            TypeError,
            r"^load_config env: expected a mapping or None, got list$",
        ),
        (
            lambda: asg_audit.load_config(None, env={}, overrides="x"),
            TypeError,
            r"^load_config overrides: expected a mapping or None, got str$",
        ),
        (
            lambda: parse_raw_tx(None),
            TypeError,
            r"^parse_raw_tx raw: expected bytes or hex text, got NoneType$",
        ),
        (lambda: compute_txid("00"), TypeError, r"^compute_txid raw: expected .* bytes .*got str$"),
        (lambda: sign_body("abc", "k"), TypeError, r"^sign_body body: expected .* bytes, got str$"),
        (
            lambda: verify_signature("abc", None, "k"),
            TypeError,
            r"^verify_signature body: expected .* bytes, got str$",
        ),
        (
            lambda: verify_signature(b"abc", b"sha256=00", "k"),
            TypeError,
            r"^verify_signature header: expected .* str or None, got bytes$",
        ),
    ],
    ids=[
        "headline",
        "render_summary_html",
        "build_summary",
        "load_config",
        "load_config-env",
        "load_config-overrides",
        "parse_raw_tx",
        "compute_txid",
        "sign_body",
        "verify_signature-body",
        "verify_signature-header",
    ],
)
def test_a_wrong_type_is_named(
    call: Callable[[], Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        call()


def test_the_right_types_still_work() -> None:
    # bytes-like is bytes: the same txid, the same signature
    assert compute_txid(bytearray(RAW_TX)) == compute_txid(RAW_TX) == parse_raw_tx(RAW_TX).txid
    assert parse_raw_tx(memoryview(RAW_TX)) == parse_raw_tx(RAW_TX) == parse_raw_tx(RAW_TX.hex())
    header = sign_body(bytearray(b"{}"), "k")
    assert header == sign_body(b"{}", "k")
    assert verify_signature(memoryview(b"{}"), header, "k") == 0
    assert verify_signature(b"{}", None, "k") is None


def test_track_file_names_a_wrong_argument_before_reading(tmp_path: Path) -> None:
    db = tmp_path / "t.duckdb"
    export = tmp_path / "subs.ndjson"
    export.write_text("")
    with pytest.raises(TypeError, match=r"^track_file db: expected a path .*got int$"):
        track_file(5, export)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^track_file path: expected the path .*got int$"):
        track_file(db, 5)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^track_file wait_seconds: expected a finite number"):
        track_file(db, export, wait_seconds=-1)
    assert not db.exists()
    # a path as bytes is a path, as `ingest` takes it
    summary = track_file(str(db), bytes(export))
    assert summary.rows == 0 and db.exists()
