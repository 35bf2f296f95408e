"""The HTML report in a real headless Chromium: it renders, logs no error, runs no script."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from _browser import chromium, console_lines
from _report_world import HOSTILE_LABEL, build_audit

from asg_audit.report import render

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("report_browser")
    return render(build_audit(tmp), tmp / "reports", formats="html").paths["html"]


def test_report_browser_screenshot_renders_the_page(page: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    run = chromium(page, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,2000")
    assert shot.stat().st_size > 50_000, run.stderr  # a drawn page, not a blank one
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    console = console_lines(run)
    assert console == [], console  # no console message at all, so no error


def test_report_browser_runs_no_injected_script(page: Path, tmp_path: Path) -> None:
    run = chromium(page, tmp_path / "profile", "--dump-dom")
    dom = run.stdout
    title = re.search(r"<title>(.*?)</title>", dom, re.S)
    assert title is not None and "PWNED" not in title.group(1)
    assert title.group(1).startswith("ASG settlement audit")
    escaped = HOSTILE_LABEL.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert escaped in dom  # the label is in the DOM as text
    assert not re.search(r"<img[^>]*onerror", dom)  # and never as an element
    console = console_lines(run)
    assert console == [], console


def test_report_browser_checks_would_catch_a_script(tmp_path: Path) -> None:
    # The control: the same checks do see a script that runs, so their silence above means it.
    page = tmp_path / "hostile.html"
    page.write_text(
        "<title>t</title><script>console.error('ran')</script>"
        "<img src=x onerror=\"document.title='PWNED'\">",
        encoding="utf-8",
    )
    run = chromium(page, tmp_path / "profile", "--dump-dom")
    assert "PWNED" in run.stdout
    assert console_lines(run)
