"""The command line and public API contract: help everywhere, exit codes, sorted __all__."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import asg_audit
from asg_audit.cli import _build_parser, main

REPO = Path(__file__).parents[1]


def _commands() -> list[list[str]]:
    parser = _build_parser()
    out: list[list[str]] = []
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name, p in sub.choices.items():  # type: ignore[union-attr]
        nested = [a for a in p._actions if a.__class__.__name__ == "_SubParsersAction"]
        if nested:
            out.extend([name, n] for n in nested[0].choices)  # type: ignore[union-attr]
        else:
            out.append([name])
    return out


def test_public_all_is_sorted_and_importable() -> None:
    assert asg_audit.__all__ == sorted(asg_audit.__all__)
    for name in asg_audit.__all__:
        assert hasattr(asg_audit, name), name


@pytest.mark.parametrize("command", _commands(), ids=lambda c: " ".join(c))
def test_cli_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*command, "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "usage:" in out and len(out) > 80


@pytest.mark.parametrize("command", _commands(), ids=lambda c: " ".join(c))
def test_cli_every_command_is_documented_in_the_readme(command: list[str]) -> None:
    readme = (REPO / "README.md").read_text()
    assert f"asg-audit {' '.join(command)}" in readme


def test_cli_module_entry_point_runs() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "asg_audit", "--help"], capture_output=True, text=True
    )
    assert proc.returncode == 0 and "ingest" in proc.stdout


def test_cli_bad_config_file_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("this is = = not toml")
    assert main(["db", "info", "--config", str(cfg), "--db", str(tmp_path / "x.duckdb")]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_cli_unknown_config_key_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("slo_secs = 30\n")
    assert main(["db", "info", "--config", str(cfg)]) == 2
    assert "unknown key(s): slo_secs" in capsys.readouterr().err


def test_cli_db_info_prints_counts_and_version(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "a.duckdb"
    assert (
        main(
            [
                "ingest",
                "--quiet",
                "--db",
                str(db),
                str(REPO / "asg_audit/data/sample_results.jsonl"),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["db", "info", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "schema version:" in out
    assert any(line.split()[:2] == ["results", "180"] for line in out.splitlines())


def test_public_all_lists_exactly_the_lazy_exports() -> None:
    from asg_audit import _EXPORTS

    assert set(asg_audit.__all__) == {*_EXPORTS, "__version__"}
