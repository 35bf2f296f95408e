"""Durations in reports keep their seconds to a tenth (tester T2: a p50 of 139 s read "2.3 min",
138 s; review: hours and days showed whole seconds and the unit first, and 7,199.96 s read
"120.0 min")."""

from __future__ import annotations

import pytest

from asg_audit.report.content import format_seconds


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0.0, "0.0 s"),
        (59.54, "59.5 s"),
        (119.94, "119.9 s"),
        (119.96, "120.0 s (2.0 min)"),  # the unit of the figure as shown
        (139.0, "139.0 s (2.3 min)"),
        (396.4, "396.4 s (6.6 min)"),
        (7199.96, "7,200.0 s (2.0 h)"),
        (90_000.25, "90,000.2 s (25.0 h)"),
        (259_200.0, "259,200.0 s (3.0 d)"),
        (-130.0, "-130.0 s (-2.2 min)"),  # a negative latency (settled before created)
    ],
)
def test_a_duration_is_its_seconds_with_the_unit_that_reads_best(
    seconds: float, shown: str
) -> None:
    assert format_seconds(seconds) == shown
