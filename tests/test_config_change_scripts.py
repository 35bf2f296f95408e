"""`[chain] change_scripts` must be hex locking scripts: anything else is refused when read.

A value that can never equal an output's script made the single-task cost check an equality
against payouts that include the change: ~200 false `chain.outputs_below_cost` fails in a
300-task world (tester S), with exit 0 from `report`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from asg_audit.config import AuditConfig, load_config
from asg_audit.errors import EXIT_USAGE, ConfigError

SCRIPT = "76a914" + "ab" * 20 + "88ac"


@pytest.mark.parametrize("bad", ["0x" + SCRIPT, " " + SCRIPT, "", "zz", SCRIPT[:-1], SCRIPT + " "])
def test_a_change_script_that_is_not_hex_is_refused(tmp_path: Path, bad: str) -> None:
    config = tmp_path / "asg_audit.toml"
    config.write_text(f'[chain]\nchange_scripts = ["{SCRIPT}", "{bad}"]\n')
    with pytest.raises(ConfigError, match=r"\[chain\] change_scripts\[1\]: expected a locking"):
        load_config(config, env={})
    proc = subprocess.run(
        [sys.executable, "-m", "asg_audit", "report", "--config", str(config), "--db", "x.duckdb"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == EXIT_USAGE, proc.stderr
    assert "change_scripts[1]: expected a locking script in hex" in proc.stderr
    assert not (tmp_path / "x.duckdb").exists()


def test_library_settings_are_checked_too() -> None:
    with pytest.raises(ConfigError, match="change_scripts: expected an array of strings"):
        AuditConfig(chain={"change_scripts": SCRIPT})  # one string, not a list
    with pytest.raises(ConfigError, match=r"change_scripts\[0\]"):
        AuditConfig(chain={"change_scripts": ["0x" + SCRIPT]})
    ok = AuditConfig(chain={"change_scripts": [SCRIPT.upper(), SCRIPT]})  # either case
    assert ok.chain["change_scripts"] == [SCRIPT.upper(), SCRIPT]
