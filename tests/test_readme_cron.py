"""The README's cron line, followed literally, gives the audit the settings of its env file.

The env file is the systemd unit's `EnvironmentFile` (plain `NAME=value` lines, no `export`):
sourcing it without exporting would run the audit without its API key, and collect and
billing would be skipped with exit 0.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _cron_command() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"```cron\n(.*?)```", readme, re.S)
    assert block is not None, "the README's cron example is gone"
    line = next(ln for ln in block.group(1).splitlines() if ln and not ln.startswith("#"))
    return line.split(None, 5)[5]  # after the five time fields


def test_readme_cron_line_exports_the_env_file(tmp_path: Path) -> None:
    command = _cron_command()
    assert command.startswith("cd /srv/asg-audit && ")
    # Up to the audit itself: the cd and the sourcing of `env`, run in the cron's plain sh
    # with the near-empty environment cron gives.
    prefix = command.split(".venv/bin/asg-audit", 1)[0].replace("/srv/asg-audit", str(tmp_path))
    (tmp_path / "env").write_text(
        "ASG_API_KEY=key-from-env-file\nASG_BASE_URL=http://127.0.0.1:9\n"
    )
    shown = "import os; print(os.environ.get('ASG_API_KEY'), os.environ.get('ASG_BASE_URL'))"
    out = subprocess.run(
        ["/bin/sh", "-c", f'{prefix}{sys.executable} -c "{shown}"'],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == ["key-from-env-file", "http://127.0.0.1:9"]


def test_readme_systemd_units_have_no_comment_after_a_value() -> None:
    # systemd has no inline comments: `EnvironmentFile=/srv/env   # note` names a file
    # "/srv/env   # note", which does not exist, and the unit runs without its API key.
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    units = re.findall(r"```ini\n(.*?)```", readme, re.S)
    assert any("[Service]" in unit for unit in units), "the README's systemd unit is gone"
    for unit in units:
        for line in unit.splitlines():
            if not line.strip() or line.lstrip().startswith(("#", ";", "[")):
                continue
            key, sep, value = line.partition("=")
            assert sep and key.strip() and key == key.strip(), line
            assert "#" not in value and ";" not in value, f"a comment after a value: {line}"
    service = next(unit for unit in units if "[Service]" in unit)
    env_file = re.search(r"^EnvironmentFile=(.*)$", service, re.M)
    assert env_file is not None and " " not in env_file.group(1)
