"""Report charts: small PNGs drawn with matplotlib (Agg) from the audit's aggregate frames.

Every chart is drawn from aggregates (histogram bins, ECDF steps, per-day rows), never from one
point per task, so a chart costs the same for a thousand tasks as for ten million. Long curves
are thinned to at most `MAX_CURVE_POINTS` steps. Each chart carries alt text that states the
figures it shows, so the report reads without images too.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, cast

import matplotlib
import matplotlib.dates
import matplotlib.ticker

matplotlib.use("Agg")  # never a GUI backend, whatever the environment asks

import numpy as np
import polars as pl
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.scale import SymmetricalLogTransform

from asg_audit.model import printable
from asg_audit.report.words import counted, plural

__all__ = ["CHART_NAMES", "MAX_CURVE_POINTS", "Chart", "draw_charts"]

MAX_CURVE_POINTS: Final = 1500
# The latency histogram has at most this many bins, whatever the longest latency.
MAX_HISTOGRAM_BINS: Final = 200
# Per-day spend is drawn as bars up to this many days, as one line collection beyond.
MAX_BAR_DAYS: Final = 400
# Durations that span decades (task age, long latencies) go on a symlog axis, linear to here.
_SYMLOG_LINTHRESH: Final = 60.0
# A daily p95 this many times the SLO puts the latency-over-time axis on a symlog scale.
_WIDE_LATENCY: Final = 100
DPI: Final = 90
# A chart with its legend right of the plot area ends the plot here (of the figure's width).
_LEGEND_RIGHT: Final = 0.85
MAX_BAR_LABELS: Final = 15
_BLUE, _ORANGE, _RED, _GREY = "#1f5fa8", "#e08a1e", "#c0392b", "#777777"
# Data strings (labels) are drawn as plain text: `$` must not start mathtext.
_RC: Final = {
    "text.parse_math": False,
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.titley": 1.02,  # a fixed title position skips a costly per-draw tick layout pass
}


@dataclass(frozen=True, slots=True)
class Chart:
    """One rendered chart: a file-safe name, a title, alt text and the PNG bytes."""

    name: str
    title: str
    alt: str
    png: bytes


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    # No timestamp or software metadata: the same audit gives the same bytes.
    with warnings.catch_warnings():
        # A label with control characters has no glyph; matplotlib's warning would echo the
        # raw character (an escape sequence) to the terminal of `report`.
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _figure(cols: int = 1, *, left: float = 0.1) -> tuple[Figure, list[Axes]]:
    # Fixed margins, not a layout engine: constrained layout costs most of a chart's time.
    fig = Figure(figsize=(4.4 * cols if cols > 1 else 8.0, 3.2), dpi=DPI)
    fig.subplots_adjust(
        left=max(0.08, left / cols) if cols > 1 else left,
        right=0.98,
        bottom=0.2,
        top=0.9,
        wspace=0.25 + left,
    )
    axes = fig.subplots(1, cols, squeeze=False)[0]
    for ax in axes:
        ax.grid(True, alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
    return fig, list(axes)


def _thin(frame: pl.DataFrame, limit: int = MAX_CURVE_POINTS) -> pl.DataFrame:
    """Return at most `limit` rows spread evenly, always keeping the last one."""
    if frame.height <= limit:
        return frame
    step = -(-frame.height // limit)
    return pl.concat([frame.gather_every(step), frame.tail(1)]).unique(maintain_order=True)


def _short(text: Any, width: int = 18) -> str:
    """Return a data value as a tick label of at most `width` characters: escaped as in the
    report (`model.printable`: a newline or terminal escape is `\\x0a`, `\\x1b`, never a
    missing-glyph box; a value with whitespace at its ends quoted, `'cat '`), and a longer one
    cut in the middle (`https://exa…/page-two`), so that two labels sharing a prefix differ."""
    s = "(none)" if text is None else printable(text, one_line=True, quote_edges=True)
    if len(s) <= width:
        return s
    head = (width - 1) // 2
    return s[:head] + "…" + s[len(s) - (width - 1 - head) :]


def _tick_labels(values: Any, width: int = 18) -> list[str]:
    """Return `_short` labels of `values`, numbered (`[2] …`) where two would read the same
    (a long label cut to the same ends), so that every tick names one value."""
    labels = [_short(v, width) for v in values]
    if len(set(labels)) == len(labels):
        return labels
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        n = seen[label]
        out.append(label if labels.count(label) == 1 else _short(f"[{n}] {label}", width + 4))
    return out


def _s(value: Any) -> str:
    return f"{float(value):,.1f} s" if value is not None else "n/a"


_UNITS: Final = (("days", 86400.0), ("hours", 3600.0), ("minutes", 60.0), ("seconds", 1.0))


def _dur(seconds: float) -> str:
    from asg_audit.report.content import format_seconds

    return format_seconds(seconds)


def _pct(value: Any) -> str:
    return f"{100 * float(value):.1f}%" if value is not None else "n/a"


def _histogram_bins(hist: pl.DataFrame) -> tuple[np.ndarray, np.ndarray, bool]:
    """Return (counts, edges, log_spaced): at most `MAX_HISTOGRAM_BINS` bins holding every task.

    `hist` has one row per occupied fixed-width bin (`latency_histogram`). When the occupied
    range fits in `MAX_HISTOGRAM_BINS` of those bins they are drawn as they are. Otherwise (a
    latency of days or years among seconds) the bins are merged into at most that many bins,
    evenly spaced on the symlog axis they are drawn on, with edges on the fixed-width grid, so
    each row falls in exactly one bin. The cost follows the rows, never the longest latency.
    """
    width = float(hist["upper_s"][0] - hist["lower_s"][0])
    low = float(hist["lower_s"][0])
    index = ((hist["lower_s"] - low) / width).round().cast(pl.Int64).to_numpy()
    weights = hist["count"].to_numpy().astype(float)
    span = int(index.max()) + 1  # fixed-width bins from the first occupied to the last one
    if span <= MAX_HISTOGRAM_BINS:
        counts = np.bincount(index, weights=weights, minlength=span)
        return counts, low + width * np.arange(span + 1), False
    scale = SymmetricalLogTransform(10, _SYMLOG_LINTHRESH, 1)
    ends = scale.transform(np.array([low, low + width * span]))
    target = scale.inverted().transform(np.linspace(ends[0], ends[1], MAX_HISTOGRAM_BINS + 1))
    grid = np.unique(np.clip(np.round((target - low) / width), 0, span).astype(np.int64))
    grid[0], grid[-1] = 0, span  # the grid is sorted and clipped: this only pins the ends
    grid = np.unique(grid)
    counts = np.bincount(
        np.searchsorted(grid, index, side="right") - 1, weights=weights, minlength=len(grid) - 1
    )
    return counts, low + width * grid.astype(float), True


def _latency_distribution(f: Mapping[str, pl.DataFrame], slo: float) -> Chart | None:
    hist, ecdf, overall = f["latency_histogram"], f["latency_ecdf"], f["latency_overall"]
    if hist.height == 0:
        return None
    fig, (ax1, ax2) = _figure(2)
    # One artist for all bins, not one patch per bin: empty bins (absent rows) count 0.
    counts, edges, log_spaced = _histogram_bins(hist)
    ax1.stairs(counts, edges, fill=True, color=_BLUE)
    curve = _thin(ecdf)
    ax2.step(curve["latency_s"], curve["cum_share"], where="post", color=_BLUE)
    unit = "" if log_spaced else " (s)"
    ax1.set(
        title="Latency histogram" + (" (log-spaced bins)" if log_spaced else ""),
        xlabel="settlement latency" + unit,
        ylabel="tasks per bin" if log_spaced else "tasks",
    )
    ax2.set(title="Latency ECDF", xlabel="settlement latency" + unit, ylabel="share settled")
    ax2.set_ylim(0, 1.02)
    longest = float(cast(float, hist["upper_s"].max()))
    for ax in (ax1, ax2):
        if log_spaced:  # before anything asks for the limits: they follow the scale
            _age_axis(ax, longest)
        ax.axvline(slo, color=_RED, linestyle="--", label=f"SLO {slo:g} s")
        if log_spaced:  # a lone slow task is a bar of height 1: name it in the legend
            max_s = overall["max_s"][0] if overall.height else None
            ax.plot([], [], " ", label=f"longest {_dur(float(max_s or longest))}")
        ax.legend(loc="best")
    row = overall.row(0, named=True)
    alt = (
        f"Histogram and ECDF of settlement latency for {counted(row['n'], 'settled task')}: "
        f"median {_s(row['p50_s'])}, p95 {_s(row['p95_s'])}, "
        f"{_pct(row['share_over_slo'])} slower than the {slo:g} s SLO (dashed line)."
    )
    if log_spaced:
        alt += (
            f" The longest latency is {_dur(float(row['max_s']))}, so the latency axis is "
            f"logarithmic beyond {_SYMLOG_LINTHRESH:g} s and the "
            f"{counted(len(counts), 'bin')} widen "
            "with latency; every task is in a bin."
        )
    return Chart("latency_distribution", "Settlement latency", alt, _png(fig))


def _day(value: Any) -> str:
    """Return the day of a date or datetime as YYYY-MM-DD (strftime drops year 1's zeros)."""
    return str((value.date() if isinstance(value, datetime) else value).isoformat())


def _date_axis(ax: Axes, fig: Figure) -> None:
    """Slant the date labels and keep the view inside matplotlib's dates (years 1 to 9999).

    Days far apart (a year-2000 task beside a year-2100 one, or a settlement in 9999) stretch
    the axis; its margins must not step past what matplotlib can name, or drawing fails.
    """
    # The dates matplotlib can draw: years 1 to 9999.
    first, last = cast(Any, matplotlib.dates).date2num(
        [datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59)]
    )
    low, high = ax.get_xlim()
    ax.set_xlim(max(low, float(first)), min(high, float(last)))
    fig.autofmt_xdate()


def _break_at_gaps(by_day: pl.DataFrame) -> pl.DataFrame:
    """Return `day`, `p50_s` and `p95_s` by day, with a NaN row the day after each day whose
    next day with data is later: a line through NaN stops, so two days with no data between
    them are not joined as if the days between had been measured."""
    rows = by_day.select(
        "day", pl.col("p50_s").cast(pl.Float64), pl.col("p95_s").cast(pl.Float64)
    ).sort("day")
    next_day = pl.col("day").shift(-1)
    breaks = rows.filter(next_day - pl.col("day") > pl.duration(days=1)).select(
        pl.col("day") + pl.duration(days=1),
        p50_s=pl.lit(math.nan),
        p95_s=pl.lit(math.nan),
    )
    return pl.concat([rows, breaks]).sort("day").fill_null(math.nan)


def _latency_over_time(f: Mapping[str, pl.DataFrame], slo: float) -> Chart | None:
    by_day = f["latency_by_day"].filter(pl.col("day").is_not_null())
    if by_day.height == 0:
        return None
    fig, (ax,) = _figure()
    # One line per percentile (one artist each), however many days and however far apart;
    # it stops where days without data come between (a dot alone is a day alone).
    line = _break_at_gaps(by_day)
    ax.plot(line["day"], line["p50_s"], marker=".", color=_BLUE, label="p50")
    ax.plot(line["day"], line["p95_s"], marker=".", color=_ORANGE, label="p95")
    worst_s = float(cast(float, by_day["p95_s"].max()) or 0)
    wide = worst_s > _WIDE_LATENCY * max(slo, 1.0)
    if wide:  # a day of years-long latencies would flatten every other day to zero
        _age_axis(ax, worst_s, axis="y")
    ax.axhline(slo, color=_RED, linestyle="--", label=f"SLO {slo:g} s")
    ax.set(
        title="p50/p95 latency per day of creation (UTC days)",
        ylabel="latency" if wide else "seconds",
    )
    # outside the plot area, right of it: never over the last days' points
    fig.subplots_adjust(right=_LEGEND_RIGHT)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    _date_axis(ax, fig)
    worst = by_day.sort("p95_s", descending=True, nulls_last=True).row(0, named=True)
    alt = (
        f"Daily p50 and p95 settlement latency on {counted(by_day.height, 'day')} of creation "
        f"(UTC days) from "
        f"{by_day['day'][0]} to {by_day['day'][-1]}; the worst p95 was "
        f"{_s(worst['p95_s'])} on {worst['day']}; SLO {slo:g} s shown dashed."
    )
    return Chart("latency_over_time", "p50/p95 per day (UTC days)", alt, _png(fig))


_YEAR: Final = 31536000
_AGE_TICKS: Final = (
    (0, "0"),
    (60, "1m"),
    (600, "10m"),
    (3600, "1h"),
    (21600, "6h"),
    (86400, "1d"),
    (604800, "7d"),
    (2592000, "30d"),
    (_YEAR, "1y"),
    (10 * _YEAR, "10y"),
    (100 * _YEAR, "100y"),
    (1000 * _YEAR, "1000y"),
    (10000 * _YEAR, "10000y"),
)
_CHAR_PX: Final = 6.5  # width of a tick label character at DPI, about


def _age_axis(ax: Axes, longest: float, *, axis: str = "x") -> None:
    """Put a duration on a symlog axis with plain labels (data spans seconds to days or years).

    Labels that would overlap are left out, so a span of years does not pile them up.
    """
    scaled = ax.xaxis if axis == "x" else ax.yaxis
    (ax.set_xscale if axis == "x" else ax.set_yscale)("symlog", linthresh=_SYMLOG_LINTHRESH)
    # Limits worked out before (any get/set of a limit does it) kept linear margins, which
    # on a symlog axis are decades of negative durations: work them out again.
    ax.relim()
    ax.autoscale_view(scalex=axis == "x", scaley=axis == "y")
    ticks = [(t, label) for t, label in _AGE_TICKS if t <= longest * 1.5] or [(0, "0")]
    scale = SymmetricalLogTransform(10, _SYMLOG_LINTHRESH, 1)
    places = scale.transform(np.array([float(t) for t, _ in ticks]))
    # Drop a label that would touch the one before it (a span of years has many decades).
    length = ax.bbox.width if axis == "x" else ax.bbox.height
    per_unit = length / max(float(places[-1] - places[0]), 1.0)
    kept, last = [ticks[0]], float(places[0])
    for tick, place in zip(ticks[1:], places[1:], strict=True):
        room = (len(kept[-1][1]) + len(tick[1])) / 2 * _CHAR_PX + 6 if axis == "x" else 14
        if (place - last) * per_unit >= room:
            kept.append(tick)
            last = float(place)
    scaled.set_ticks([t for t, _ in kept], [label for _, label in kept])
    scaled.set_minor_locator(matplotlib.ticker.NullLocator())


def _survival(f: Mapping[str, pl.DataFrame]) -> Chart | None:
    surv, ageing = f["survival"], f["ageing"]
    if surv.height == 0:
        return None
    fig, (ax1, ax2) = _figure(2)
    curve = _thin(surv)
    ax1.step(curve["t"], curve["survival"], where="post", color=_BLUE)
    # the ticks name their unit (1m, 1h, 1d)
    ax1.set(title="Still unsettled (Kaplan-Meier)", xlabel="task age", ylabel="share")
    ax1.set_ylim(0, 1.02)
    _age_axis(ax1, float(cast(float, surv["t"].max()) or 60))
    backlog = (
        ageing.group_by("age", maintain_order=True)
        .agg(pl.col("tasks").sum(), pl.col("oldest_s").max())
        .sort("oldest_s")
    )
    if backlog.height:
        ax2.barh([_short(a) for a in backlog["age"]], backlog["tasks"], color=_ORANGE, height=0.5)
    else:
        ax2.text(0.5, 0.5, "no backlog", ha="center", va="center", transform=ax2.transAxes)
    ax2.set(title="Backlog by age", xlabel="unsettled tasks")
    censored = int(surv["censored"].sum())
    alt = (
        f"Kaplan-Meier curve of the share of tasks still unsettled against task age; "
        f"{counted(censored, 'unsettled task')} {plural(censored, 'is', 'are')} counted as "
        "censored. Backlog by age: "
        + (
            ", ".join(f"{a}: {t:,}" for a, t in backlog.select("age", "tasks").iter_rows())
            or "none"
        )
        + "."
    )
    return Chart("survival", "Survival and backlog", alt, _png(fig))


def _confidence(f: Mapping[str, pl.DataFrame]) -> Chart | None:
    dist = f["confidence_distribution"]
    if dist.height == 0:
        return None
    inside = dist.filter(pl.col("range") == "in_range")
    outside = int(dist.filter(pl.col("range") != "in_range")["count"].sum())
    fig, (ax,) = _figure()
    ax.bar(inside["lower"], inside["count"], width=0.05, align="edge", color=_BLUE)
    ax.set(title="Confidence distribution", xlabel="confidence", ylabel="tasks", xlim=(0, 1))
    ax.axvline(0.5, color=_GREY, linestyle=":", label="0.5 (documented floor)")
    ax.legend(loc="upper left")
    total = int(dist["count"].sum())
    top = inside.sort("count", descending=True).row(0, named=True) if inside.height else None
    alt = (
        f"Histogram of confidence for {counted(total, 'task')} in 20 bins over [0, 1]"
        + (
            f"; the most common bin starts at {top['lower']:.2f} ({counted(top['count'], 'task')})"
            if top
            else ""
        )
        + f"; {counted(outside, 'value')} outside [0, 1]."
    )
    return Chart("confidence", "Confidence", alt, _png(fig))


def _bar(upper: float | None, lower: float | None) -> float:
    """Return `upper - lower` as an error-bar length: 0 when negative, unknown or not finite."""
    if upper is None or lower is None:
        return 0.0
    length = upper - lower
    return length if math.isfinite(length) and length > 0 else 0.0


def _rate_panel(ax: Axes, frame: pl.DataFrame, key: str, title: str) -> None:
    labels = _tick_labels(frame[key])
    rate = frame["rate"].to_list()
    # Error bars are lengths: a bound on the wrong side of its rate (frames built elsewhere, a
    # rounding error) or a missing one is drawn as no bar, never a negative length.
    low = [_bar(r, lo) for r, lo in zip(rate, frame["wilson_low"], strict=True)]
    high = [_bar(hi, r) for r, hi in zip(rate, frame["wilson_high"], strict=True)]
    ax.errorbar(rate, labels, xerr=[low, high], fmt="o", color=_BLUE, capsize=3)
    ax.set(title=title, xlabel="agreement A/W (95% Wilson)")
    ax.invert_yaxis()


def _agreement(f: Mapping[str, pl.DataFrame]) -> Chart | None:
    by_t, by_l = f["agreement_by_threshold"], f["agreement_by_label"]
    if by_t.height == 0 and by_l.height == 0:
        return None
    by_l = by_l.sort("tasks", descending=True).head(MAX_BAR_LABELS)
    fig, (ax1, ax2) = _figure(2, left=0.26)
    _rate_panel(ax1, by_t, "threshold", "By threshold T")
    _rate_panel(ax2, by_l, "label", f"By label (top {by_l.height} by tasks)")
    overall = f["agreement_overall"]
    rate = overall["rate"][0] if overall.height else None
    alt = (
        f"Agreement rate A/W with 95% Wilson intervals per threshold "
        f"({counted(by_t.height, 'group')}) and for the "
        f"{counted(by_l.height, 'most common label')}; overall rate {_pct(rate)}."
    )
    return Chart("agreement", "Agreement rate", alt, _png(fig))


def _formula_fit(f: Mapping[str, pl.DataFrame]) -> Chart | None:
    fit = f["formula_fit"]
    if fit.height == 0 or not fit["tasks"][0]:
        return None
    row = fit.row(0, named=True)
    names = [
        "A/T only",
        "A/W only",
        "both",
        "neither",
        "A/W, T unknown",
        "undetermined (T unknown)",
    ]
    keys = [
        "fit_only_a_over_t",
        "fit_only_a_over_w",
        "fit_both",
        "fit_neither",
        "fit_a_over_w_t_unknown",
        "undetermined",
    ]
    values = [int(row[k]) for k in keys]
    follows = row["follows"] or "undetermined (no task with a known threshold)"
    fig, (ax,) = _figure(left=0.22)
    ax.barh(names, values, color=[_BLUE, _BLUE, _GREY, _RED, _GREY, _GREY])
    ax.invert_yaxis()
    ax.set(title=f"Which confidence formula fits: {follows}", xlabel="tasks")
    alt = (
        f"Tasks whose confidence fits each formula, out of {int(row['tasks']):,}: "
        + ", ".join(f"{n} {v:,}" for n, v in zip(names, values, strict=True))
        + f". The data follows {follows}."
    )
    return Chart("formula_fit", "Confidence formula fit", alt, _png(fig))


def _costs(f: Mapping[str, pl.DataFrame]) -> Chart | None:
    cmp = f["cost_comparison"]
    if cmp.height == 0:
        return None
    fig, (ax,) = _figure()
    ok = cmp.filter(pl.col("difference_sats") == 0)
    off = cmp.filter(pl.col("difference_sats") != 0)
    scale = 400 / max(int(cast(int, cmp["tasks"].max()) or 1), 1)
    for part, colour, label in ((ok, _BLUE, "as expected"), (off, _RED, "mismatch")):
        if part.height:
            sizes = [max(12.0, t * scale) for t in part["tasks"]]
            ax.scatter(
                part["expected_sats"],
                part["reported_sats"],
                s=sizes,
                color=colour,
                alpha=0.6,
                label=label,
            )
    top = max(
        int(cast(int, cmp["expected_sats"].max()) or 0),
        int(cast(int, cmp["reported_sats"].max()) or 0),
    )
    ax.plot([0, top], [0, top], color=_GREY, linestyle=":", label="reported = expected")
    ax.set(
        title="Reported vs expected cost (marker size: tasks)",
        xlabel="expected sats",
        ylabel="reported sats",
    )
    ax.legend(loc="upper left")
    mismatched = int(off["tasks"].sum())
    alt = (
        f"Reported against expected cost per task, grouped: "
        f"{counted(int(cmp['tasks'].sum()), 'task')} with a known cost, {mismatched:,} of them "
        f"{plural(mismatched, 'differs', 'differ')} from the configured model."
    )
    return Chart("costs", "Reported vs expected cost", alt, _png(fig))


def _spend(f: Mapping[str, pl.DataFrame]) -> Chart | None:
    spend = f["spend_by_day"].filter(pl.col("period_start").is_not_null())
    if spend.height == 0:
        return None
    fig, (ax,) = _figure()
    # sats summed exactly (Decimal(38, 0), past int64 where NumPy has no integers): floats
    # for the axis only
    days, sats = spend["period_start"], spend["cost_sats"].fill_null(0).cast(pl.Float64)
    if spend.height <= MAX_BAR_DAYS:
        # The edge keeps a day visible when the axis spans years (a bar is then under a pixel).
        ax.bar(days, sats, color=_BLUE, edgecolor=_BLUE, linewidth=0.8, width=0.8)
    else:
        # One artist for all days rather than one bar patch each.
        ax.vlines(days, 0, sats, color=_BLUE, linewidth=1.0)
        ax.set_ylim(bottom=0)
    ax.set(title="Spend per day (known costs; UTC days)", ylabel="sats")
    _date_axis(ax, fig)
    total = int(spend["cost_sats"].sum() or 0)
    peak = spend.sort("cost_sats", descending=True, nulls_last=True).row(0, named=True)
    alt = (
        f"Known spend per settlement day (UTC days) on {counted(spend.height, 'day')} from "
        f"{_day(days[0])} to {_day(days[-1])}, {counted(total, 'sat')} in total; "
        f"peak {counted(peak['cost_sats'], 'sat')} on {_day(peak['period_start'])}."
    )
    return Chart("spend", "Spend per day (UTC days)", alt, _png(fig))


# said of what is counted over every stored chain transaction when the report has a window
STORE_WIDE: Final = " (every txid in the store, not only this window's)"


def _chain(f: Mapping[str, pl.DataFrame], windowed: bool = False) -> Chart | None:
    status = f.get("chain_status")
    # the stored chain transactions are counted store-wide (README): under --since/--until the
    # chart says so, not to be read as the window's
    whole = STORE_WIDE if windowed and status is not None and status.height else ""
    if status is None or status.height == 0:
        status = f.get("chain_coverage")
    if status is None or status.height == 0:
        return None
    key = next((c for c, t in status.schema.items() if t == pl.String), None)
    count = next((c for c, t in status.schema.items() if t.is_integer()), None)
    if key is None or count is None:
        return None
    fig, (ax,) = _figure(left=0.3)
    counts = [int(v or 0) for v in status[count]]
    bars = ax.barh(_tick_labels(status[key], 40), counts, color=_BLUE)
    # each bar names its count: 2 unconfirmed beside 732 confirmed is a bar too thin to see
    ax.bar_label(bars, labels=[f"{v:,}" for v in counts], padding=3)
    ax.set_xlim(0, max(max(counts, default=0), 1) * 1.15)  # room for the largest one's label
    ax.invert_yaxis()
    ax.set(title=f"Chain verification status{whole}", xlabel=count)
    alt = (
        f"Chain verification status{whole}: "
        + ", ".join(f"{k}: {int(v):,}" for k, v in status.select(key, count).iter_rows())
        + "."
    )
    return Chart("chain", "Chain verification", alt, _png(fig))


def _collection(f: Mapping[str, pl.DataFrame]) -> Chart | None:
    polls, delay = f["polls_per_task"], f["detection_delay"]
    panels = []
    if polls.height > 0 and polls["tasks"][0]:
        row = polls.row(0, named=True)
        values = [float(row[s] or 0) for s in ("mean", "p50", "p90", "max")]
        text = f"polls per task mean {values[0]:.1f}, p90 {values[2]:g}, max {values[3]:g}"
        panels.append(("Polls per task", "polls", values, _BLUE, text))
    if delay.height > 0 and delay["tasks"][0]:
        row = delay.row(0, named=True)
        secs = [float(row[f"{s}_s"] or 0) for s in ("mean", "p50", "p90", "max")]
        unit, div = next((u, d) for u, d in _UNITS if max(secs) >= d * 2 or d == 1)
        text = f"detection delay median {_dur(secs[1])}, p90 {_dur(secs[2])}"
        panels.append(("Detection delay", unit, [v / div for v in secs], _ORANGE, text))
    if not panels:
        return None
    fig, axes = _figure(len(panels))
    for ax, (title, ylabel, values, colour, _) in zip(axes, panels, strict=True):
        ax.bar(["mean", "p50", "p90", "max"], values, color=colour)
        ax.set(title=title, ylabel=ylabel)
    alt = "Collection health: " + "; ".join(p[4] for p in panels) + "."
    return Chart("collection", "Collection health", alt, _png(fig))


_DRAWERS: Final[dict[str, Callable[..., Chart | None]]] = {
    "latency_distribution": _latency_distribution,
    "latency_over_time": _latency_over_time,
    "survival": _survival,
    "confidence": _confidence,
    "agreement": _agreement,
    "formula_fit": _formula_fit,
    "costs": _costs,
    "spend": _spend,
    "chain": _chain,
    "collection": _collection,
}
CHART_NAMES: Final = tuple(_DRAWERS)
_NEEDS_SLO: Final = {"latency_distribution", "latency_over_time"}


def draw_charts(
    frames: Mapping[str, pl.DataFrame], *, slo_seconds: float, windowed: bool = False
) -> dict[str, Chart]:
    """Return the charts that have data, by name (see `CHART_NAMES`), in report order
    (`windowed`: the audit has a --since/--until window; store-wide charts say so)."""
    out: dict[str, Chart] = {}
    with matplotlib.rc_context(cast(Any, _RC)):
        for name, draw in _DRAWERS.items():
            if name in _NEEDS_SLO:
                chart = draw(frames, slo_seconds)
            elif name == "chain":
                chart = _chain(frames, windowed)
            else:
                chart = draw(frames)
            if chart is not None:
                out[name] = chart
    return out
