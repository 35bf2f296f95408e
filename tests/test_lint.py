"""The package stays clean: ruff's rules and formatting, and mypy --strict (pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).parents[1]


def test_lint_ruff_finds_nothing_in_the_package_tests_and_benchmarks() -> None:
    # the same paths as `make lint`
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "asg_audit", "tests", "benchmarks"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_lint_ruff_format_leaves_every_file_as_it_is() -> None:
    # the same paths as `make lint`: `ruff format asg_audit tests benchmarks` fixes a failure
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "asg_audit", "tests", "benchmarks"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_lint_mypy_strict_passes_on_the_package() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-incremental"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:]
