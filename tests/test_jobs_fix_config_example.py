"""`asg_audit.toml.example` describes `[collector] deadline_s` as the collector counts it: from
when the collector first saw the task, on our clock (pollrun: deadline_at = first seen +
deadline_s), as `collect --help` says of `--deadline`, not from the task's creation."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

from _hardening_procs import asg_audit, clean_env

from asg_audit.config import load_config

EXAMPLE = Path(__file__).parents[1] / "asg_audit.toml.example"


def _comment_of(key: str) -> str:
    """Return the comment of `key` in the example, with its continuation comment lines."""
    lines = EXAMPLE.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{key} ="))
    parts = [lines[start].split("#", 1)[1]]
    for line in lines[start + 1 :]:
        if not line.lstrip().startswith("#") or not line.startswith(" "):
            break
        parts.append(line.split("#", 1)[1])
    return " ".join(p.strip() for p in parts)


def test_example_deadline_counts_from_first_seen_as_collect_help_says() -> None:
    comment = _comment_of("deadline_s")
    assert "first saw" in comment and "our clock" in comment, comment
    assert "after creation" not in comment
    shown = subprocess.run(
        asg_audit("collect", "--help"), capture_output=True, text=True, env=clean_env()
    )
    assert "after we first saw it" in " ".join(shown.stdout.split())
    # the example is still a valid config, whose value is the default
    assert tomllib.loads(EXAMPLE.read_text())["collector"]["deadline_s"] == 3600.0
    assert load_config(EXAMPLE, env={}).collector["deadline_s"] == 3600.0
