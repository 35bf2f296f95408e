"""`consensus.label_outside_options` spells a character the same in expected and actual.

Expected (the options) was a JSON list, whose control characters are JSON escapes (ESC as
`\\u001b`, a quote as `\\"`), while actual (the label) is shown as the report shows data
(`model.printable`: ESC as `\\x1b`): a reader comparing the two saw two spellings of one
character. Now each option is quoted in a list and written inside its quotes as a label is,
so ESC reads `\\x1b`, a zero-width space `\\u200b` and a quote `"` on both sides, in the
HTML, the Markdown and summary.json alike.
"""

from __future__ import annotations

import html
import json

import pytest
from _analyses_frames import result, submission
from _report_store import report_store, settled
from test_checks_rules import _findings

from asg_audit.audit import analyze
from asg_audit.checks.consensus import _label_outside_row
from asg_audit.model import printable
from asg_audit.report import render

CHECK = "consensus.label_outside_options"
LABEL = 'say "hi"\x1b\u200b'
OPTIONS = ['say "hi"\x1b', "cat\u200b"]
# as the report shows them (`printable`): ESC, the zero-width space and the quote alike
SHOWN_EXPECTED = '[\'say "hi"\\x1b\', "cat\\u200b"]'
SHOWN_ACTUAL = 'say "hi"\\x1b\\u200b'


def test_expected_and_actual_spell_esc_zero_width_space_and_quote_alike() -> None:
    got = _findings(
        [result("q", consensus_label=LABEL)], [submission("q", options=OPTIONS)], check_id=CHECK
    )
    (row,) = got.to_dicts()
    assert printable(row["expected"]) == SHOWN_EXPECTED
    assert printable(row["actual"]) == SHOWN_ACTUAL
    for text in (row["expected"], row["actual"], row["message"]):
        assert "\\u001b" not in text and '\\"' not in text  # no JSON escape anywhere
    assert "it differs from the option 'say \"hi\"\x1b' only" in row["message"]


@pytest.mark.parametrize(
    ("label", "options", "actual", "expected"),
    [
        ("cat\xa0 ", ["cat\xa0"], "'cat\\xa0 '", '["cat\\xa0"]'),  # a no-break space at an end
        ("x\u200d\u200d", ["x\u200d"], "x\u200d\u200d", '["x\\u200d"]'),  # a joiner at the end
        ("ca\nt", ["ca\nt2"], "'ca\\x0at'", '["ca\\x0at2"]'),  # a line break inside
        ("a", ['a", "b', "c"], "a", '[\'a", "b\', "c"]'),  # holding quotes, still one option
        # both kinds of quote: a backslash before each double quote (and backslash), so one
        # option never reads as two (`["cat", "dog's"]` would)
        ("cat", ['cat", "dog\'s'], "cat", '["cat\\", \\"dog\'s"]'),
        ("x", ["a\\\"b'"], "x", '["a\\\\\\"b\'"]'),
        # a label starting with a quote is quoted: `"cat"` alone reads as the option cat
        ('"cat"', ["cat"], "'\"cat\"'", '["cat"]'),
    ],
)
def test_options_are_escaped_where_a_label_would_be(
    label: str, options: list[str], actual: str, expected: str
) -> None:
    """Inside its quotes an option is escaped on one line where a label would be (a space at
    an end, a line break) and where the quote beside it would make the report keep a joiner
    unescaped; otherwise it is as it is, for the report to escape as it escapes the label."""
    row = _label_outside_row(label, options)
    assert (row["actual"], row["expected"]) == (actual, expected)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("label_escapes")
    db = report_store(tmp, [settled("q", label=LABEL)], options=OPTIONS)
    rendered = render(analyze(db), tmp / "reports", run_id="r1")
    return {f: p.read_text(encoding="utf-8") for f, p in rendered.paths.items()}


def test_report_pages_spell_both_sides_alike(report: dict[str, str]) -> None:
    page = html.unescape(report["html"])
    assert f"<td>{SHOWN_EXPECTED}</td><td>{SHOWN_ACTUAL}</td>" in page
    (row,) = [line for line in report["md"].splitlines() if line.startswith("| fail | task: q")]
    cells = row.split(" | ")
    expected, actual = cells[2], cells[3]
    # Markdown escapes its own characters ([, ]) but writes ESC and U+200B as the page does
    assert expected == '\\[\'say "hi"\\x1b\', "cat\\u200b"\\]'
    assert actual == SHOWN_ACTUAL
    assert "u001b" not in row and '\\"' not in row


def test_summary_json_holds_both_sides_alike(report: dict[str, str]) -> None:
    summary = json.loads(report["json"])
    (found,) = [f for f in summary["findings"] if f["check_id"] == CHECK]
    assert found["actual"] == LABEL
    assert found["expected"] == '[\'say "hi"\x1b\', "cat\u200b"]'  # the characters, not escapes
