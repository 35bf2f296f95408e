"""A TOML config file written for a test."""

from __future__ import annotations

from pathlib import Path


def write_config(tmp_path: Path, text: str, name: str = "asg_audit.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path
