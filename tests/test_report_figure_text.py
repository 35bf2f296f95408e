"""The Expected and Actual of a check with a unit: a whole number gets thousands separators,
a fraction is shown exactly as the check wrote it.

Review (R4 #3): fractions went through `format_number` (4 significant figures): a confidence
`1.0004` showed as `1.000` beside an expected `A/W=1.0...`, and `12345678901234567.5` lost
digits.
"""

from __future__ import annotations

import polars as pl

from asg_audit.model import FINDINGS_SCHEMA
from asg_audit.report.content import findings_by_check


def _finding(check_id: str, entity_id: str, expected: str, actual: str) -> dict[str, object]:
    row: dict[str, object] = dict.fromkeys(FINDINGS_SCHEMA)
    row.update(
        check_id=check_id, severity="fail", entity_type="task", entity_id=entity_id,
        expected=expected, actual=actual, difference=1.0, message="m",
    )  # fmt: skip
    return row


def test_fractions_are_shown_as_written_and_whole_numbers_with_separators() -> None:
    rows = [
        _finding("confidence.out_of_range", "c", "A/W=1.0 or A/T", "1.0004"),
        _finding("cost.mismatch", "big", "12345678901234567.5", "1233592"),
        _finding("cost.mismatch", "neg", "-0.00012345678", "-1234"),
    ]
    frame = pl.DataFrame(rows, schema=FINDINGS_SCHEMA, orient="row")
    shown = {
        e["entity_id"]: (e["expected"], e["actual"])
        for group in findings_by_check(frame)
        for e in group["worst"]
    }
    assert shown["c"] == ("A/W=1.0 or A/T", "1.0004")
    assert shown["big"] == ("12345678901234567.5", "1,233,592")
    assert shown["neg"] == ("-0.00012345678", "-1,234")
