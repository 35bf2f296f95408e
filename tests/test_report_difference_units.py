"""The findings table says the Difference column's unit and writes Expected/Actual figures like
the Difference; one finding is "1 finding".

Tester D #6: the Difference column had no unit (sats for cost checks, seconds for time checks),
Expected/Actual showed `1233592` beside a Difference of `1,232,617`, and the Markdown said
"(info, 1 findings)".
"""

from __future__ import annotations

import re

import pytest
from _report_store import report_pages, report_store, settled

from asg_audit.checks import load_check_plugins, registered_checks
from asg_audit.report.units import difference_unit


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    tmp = tmp_path_factory.mktemp("units")
    records = [
        settled("dear", "007", cost_sats=1_233_592),  # cost.mismatch: 1,232,617 sats too many
        settled(
            "early", "007", created_at="2026-10-01T00:00:40Z", settled_at="2026-10-01T00:00:10Z"
        ),
    ]
    return report_pages(report_store(tmp, records), tmp / "r")


def _check(text: str, check_id: str) -> str:
    start = text.index(check_id)
    return text[start : start + 3000]


def test_report_difference_has_its_unit(pages: tuple[str, str]) -> None:
    for text in pages:
        assert "Difference (sats)" in _check(text, "cost.mismatch")
        assert "Difference (s)" in _check(text, "task.settled_before_created")


def test_report_expected_and_actual_figures_are_formatted(pages: tuple[str, str]) -> None:
    page, md = pages
    cells = next(line for line in md.splitlines() if line.startswith("| fail | task: dear"))
    expected, actual, difference = (c.strip() for c in cells.split("|")[3:6])
    assert (expected, actual, difference) == ("975", "1,233,592", "1,232,617")
    row = re.search(r"<tr><td class=\"sev-\w+\">\w+</td><td class=\"id\">task: dear.*?</tr>", page)
    assert row is not None and "1,233,592" in row.group(0) and "1,232,617" in row.group(0)


def test_report_markdown_says_1_finding(pages: tuple[str, str]) -> None:
    _, md = pages
    assert "1 findings" not in md
    assert re.search(r"### cost.mismatch \(\w+, 1 finding\)", md)


def test_every_check_with_a_difference_has_a_unit() -> None:
    load_check_plugins()
    without = {
        "record.aliases_disagree", "txid.missing", "txid.malformed", "status.undocumented",
        "consensus.label_outside_options", "task.unknown", "collection.webhook_poll_disagree",
        "billing.invalid_figure", "chain.txid_unknown", "settled_at.missing",
    }  # fmt: skip
    for check_id in registered_checks():
        if check_id not in without:
            assert difference_unit(check_id), check_id
