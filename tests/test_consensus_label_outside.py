"""`consensus.label_outside_options` shows labels that differ from an option invisibly apart.

Tester D: with options ["cat", "dog"], the labels `cat\\u200b`, `cat `, `cat\\u00a0`, `\\ufeffcat`,
`cat\\u2060`, `cat\\n` and `ca\\u0074\\u0301` all read "Expected: cat, dog | Actual: cat" in the
report, and an option `a, b` read as two options. Now expected is the options as a JSON list,
actual the label, quoted with its control characters escaped when it starts or ends with
whitespace (`'cat '`; the report escapes the invisible characters), and the message says when
the label differs from an option only in what is hard to see.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _analyses_frames import result, submission
from _hardening_procs import report_via_cli
from test_checks_rules import _findings

CHECK = "consensus.label_outside_options"
LABELS = {
    "inv0": "cat\u200b",
    "inv1": "cat ",
    "inv2": "cat\u00a0",
    "inv3": "\ufeffcat",
    "inv4": "cat\u2060",
    "inv5": "cat\n",
    "inv6": "ca\u0074\u0301",
}
# each finding's actual: the label, quoted (`model.printable(quote_edges=True)`) when it has
# whitespace at an end
SHOWN = {
    "inv0": "cat\u200b",
    "inv1": "'cat '",
    "inv2": "'cat\\xa0'",
    "inv3": "\ufeffcat",
    "inv4": "cat\u2060",
    "inv5": "'cat\\x0a'",
    "inv6": "ca\u0074\u0301",
}


def test_label_outside_options_expected_is_json_actual_shows_the_edges() -> None:
    rows = [result(t, consensus_label=label) for t, label in LABELS.items()]
    rows.append(result("comma", consensus_label="a"))
    subs = [submission(t) for t in LABELS]
    subs.append(submission("comma", options=["a, b", "c"]))
    got = {r["entity_id"]: r for r in _findings(rows, subs, check_id=CHECK).to_dicts()}
    assert set(got) == {*LABELS, "comma"}
    for task_id, label in LABELS.items():
        assert got[task_id]["expected"] == '["cat", "dog"]'
        assert got[task_id]["actual"] == SHOWN[task_id]
        assert (
            'differs from the option "cat" only in characters hard to see'
            in (got[task_id]["message"])
        )
    # a label starting with a quote is quoted: a shown label never starts with `'` otherwise
    quoted = _findings([result("q", consensus_label="'x")], [submission("q")], check_id=CHECK)
    assert quoted["actual"].to_list() == ["''x'"]
    assert got["inv1"]["message"].startswith("label 'cat ' is not one of")  # quoted: edge space
    assert got["inv0"]["message"].startswith("label cat\u200b is not one of")  # report escapes it
    # one option holding a comma is one option
    assert json.loads(got["comma"]["expected"]) == ["a, b", "c"]
    assert got["comma"]["message"] == "label a is not one of the submitted options"


def test_label_outside_options_names_an_option_differing_only_in_case() -> None:
    rows = [result("bad", consensus_label="Dog")]
    got = _findings(rows, [submission("bad")], check_id=CHECK)
    assert got["message"].to_list() == [
        'label Dog is not one of the submitted options; it differs from the option "dog"'
        " only in letter case"
    ]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("label_outside")
    subs, results = tmp / "subs.ndjson", tmp / "results.ndjson"
    with subs.open("w") as s, results.open("w") as r:
        for i, (task_id, label) in enumerate(LABELS.items()):
            s.write(
                json.dumps(
                    {
                        "task_id": task_id,
                        "task_type": "a",
                        "consensus_threshold": 3,
                        "label_spec": {"options": ["cat", "dog"]},
                        "created_at": "2026-10-01T00:00:00Z",
                    }
                )
                + "\n"
            )
            r.write(
                json.dumps(
                    {
                        "task_id": task_id,
                        "status": "settled",
                        "consensus_label": label,
                        "confidence": 1.0,
                        "worker_count": 3,
                        "agreement_count": 3,
                        "created_at": "2026-10-01T00:00:00Z",
                        "settled_at": "2026-10-01T00:00:40Z",
                        "cost_sats": 975,
                        "bsv_txid": f"{i + 1:064x}",
                    }
                )
                + "\n"
            )
    return report_via_cli(tmp, subs, results)


def test_label_outside_options_report_rows_read_apart(report: Path) -> None:
    md = (report / "report.md").read_text(encoding="utf-8")
    rows = [line.split(" | ") for line in md.splitlines() if line.startswith("| fail | task: inv")]
    shown = {row[1]: (row[2], row[3]) for row in rows}
    assert set(shown) == {f"task: {t}" for t in LABELS}
    assert {expected for expected, _ in shown.values()} == {'\\["cat", "dog"\\]'}
    actual = [a for _, a in shown.values()]
    assert len(set(actual)) == len(LABELS)  # no two read the same
    assert "cat" not in actual  # none reads as the option itself
    assert shown["task: inv0"][1] == "cat\\u200b"
    assert shown["task: inv1"][1] == "'cat '"
    assert shown["task: inv2"][1] == "'cat\\\\xa0'"  # report.md escapes the backslash
    summary = json.loads((report / "summary.json").read_text(encoding="utf-8"))
    found = [f for f in summary["findings"] if f["check_id"] == CHECK]
    assert {f["expected"] for f in found} == {'["cat", "dog"]'}
    assert {f["actual"] for f in found} == set(SHOWN.values())
    page = (report / "index.html").read_text(encoding="utf-8")
    assert "<td>cat\\u200b</td>" in page and "\u200b" not in page


def test_width_and_marks_are_not_called_case_or_accents() -> None:
    """A full-width letter is not 'only letter case'; a Devanagari vowel sign is a mark, and
    the message says so rather than calling it an accent."""
    from asg_audit.checks.consensus import _label_outside_row

    wide = _label_outside_row("\uff23at", ["cat"])["message"]
    assert "only in letter case" not in wide and "how they are composed" in wide
    assert "only in letter case" in _label_outside_row("Cat", ["cat"])["message"]
    vowel = _label_outside_row("\u0915\u0941", ["\u0915"])["message"]
    assert "combining marks" in vowel
