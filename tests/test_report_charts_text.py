"""The report's charts say what they show: counts on the chain bars, the legend off the data,
units on the age axis, tick labels that tell labels apart and show control characters escaped.

Tester D: chain status bars on a linear scale hid 2 unconfirmed and 2 unknown next to 732
confirmed; the latency-per-day legend (`loc="best"`) covered the last p95 point; the
Kaplan-Meier x label said "task age (s)" under ticks reading 1m, 1h, 1d; agreement-by-label
ticks were cut to a prefix, so two long labels sharing one read the same; a newline or terminal
escape in a label drew as a missing-glyph box. The charts' matplotlib figures are read here
(their text artists and label strings), not their pixels.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import polars as pl
import pytest
from _analyses_frames import T0, result, results_frame, submission, submissions_frame
from matplotlib.figure import Figure

from asg_audit.audit import analyze_frames
from asg_audit.config import AuditConfig
from asg_audit.report import charts

PREFIX = "https://example.com/images/batch-0001/"
LONG_A, LONG_B = PREFIX + "cat", PREFIX + "dog"
ODD = "cat\n\x1b[31mred"


@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Figure]]:
    """The figure of each chart drawn, by chart name (captured as it is saved to PNG)."""
    drawn: list[Figure] = []

    def keep(fig: Figure) -> bytes:
        fig.canvas.draw()  # lay the text out as savefig would
        drawn.append(fig)
        return b"\x89PNG"

    monkeypatch.setattr(charts, "_png", keep)
    out: dict[str, Figure] = {}

    def draw(frames: Any) -> dict[str, Figure]:
        drawn.clear()
        names = list(charts.draw_charts(frames, slo_seconds=60))
        out.update(zip(names, drawn, strict=True))
        return out

    yield draw  # type: ignore[misc]


def _frames() -> dict[str, pl.DataFrame]:
    labels = [LONG_A, LONG_B, ODD, "cat "]
    rows, subs = [], []
    for day in range(5):
        for i, label in enumerate(labels):
            task = f"t{day}_{i}"
            created = T0 + timedelta(days=day)
            # the last day is slow: its p95 point sits top right, where "best" put the legend
            latency = 400 if day == 4 else 30 + i
            rows.append(
                result(
                    task,
                    consensus_label=label,
                    created_at=created,
                    settled_at=created + timedelta(seconds=latency),
                )
            )
            subs.append(submission(task, options=[label]))
    rows.append(result("waiting", status="pending", settled_at=None, bsv_txid=None))
    subs.append(submission("waiting"))
    audit = analyze_frames(
        results_frame(rows),
        submissions_frame(subs),
        config=AuditConfig(),
        as_of=T0 + timedelta(days=6),
    )
    frames = dict(audit.frames)
    frames["chain_status"] = pl.DataFrame(
        {"status": ["confirmed", "unconfirmed", "unknown"], "txids": [732, 2, 2]},
        schema={"status": pl.String, "txids": pl.UInt32},
    )
    return frames


def _texts(fig: Figure) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in ax.texts]


def test_chain_bars_carry_their_counts(figures: Any) -> None:
    fig = figures(_frames())["chain"]
    assert _texts(fig) == ["732", "2", "2"]
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.get_yticklabels()] == ["confirmed", "unconfirmed", "unknown"]
    # the largest count's label is inside the plot area
    label = max(ax.texts, key=lambda t: t.get_window_extent().x1)
    assert label.get_window_extent().x1 <= ax.get_window_extent().x1


def test_latency_per_day_legend_is_outside_the_plot_area(figures: Any) -> None:
    fig = figures(_frames())["latency_over_time"]
    (ax,) = fig.axes
    legend = ax.get_legend()
    assert legend is not None
    box, plot = legend.get_window_extent(), ax.get_window_extent()
    assert box.x0 >= plot.x1  # right of the plot area: no data point under it
    assert box.x1 <= fig.bbox.x1  # and inside the picture
    assert [t.get_text() for t in legend.get_texts()] == ["p50", "p95", "SLO 60 s"]


def test_kaplan_meier_axis_label_has_no_unit_the_ticks_contradict(figures: Any) -> None:
    fig = figures(_frames())["survival"]
    km = fig.axes[0]
    assert km.get_xlabel() == "task age"
    ticks = [t.get_text() for t in km.get_xticklabels()]
    assert "1m" in ticks and "1h" in ticks


def test_agreement_label_ticks_tell_long_labels_apart_and_escape_controls(
    figures: Any,
) -> None:
    fig = figures(_frames())["agreement"]
    ticks = [t.get_text() for t in fig.axes[1].get_yticklabels()]
    assert len(ticks) == 5 and len(set(ticks)) == 5  # with the pending task's "cat"
    assert all(len(t) <= 18 for t in ticks)
    cut = [t for t in ticks if "…" in t]
    assert sorted(t[-3:] for t in cut) == ["cat", "dog"]  # the ends are kept
    assert any(t.startswith("https://") for t in cut)
    assert "cat\\x0a\\x1b[31mred" in ticks  # escaped, as in the report
    assert "'cat '" in ticks  # a trailing space shows
    assert not any(c in t for t in ticks for c in "\n\x1b")


def test_tick_labels_cut_in_the_middle_and_numbered_when_still_alike() -> None:
    assert charts._short("abcdefghijklmnopqrstuvwxyz", 9) == "abcd…wxyz"
    assert charts._short("short") == "short"
    assert charts._short(None) == "(none)"
    same_ends = ["aaaa" + "x" * 30 + "zzzz", "aaaa" + "y" * 30 + "zzzz", "other"]
    got = charts._tick_labels(same_ends, 9)
    assert len(set(got)) == 3 and got[2] == "other"
    assert got[0].startswith("[1]") and got[1].startswith("[2]")
