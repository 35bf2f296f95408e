"""Checks of spec claims 1 and 2: confidence formula and the consensus invariants.

Precedence (each planted anomaly is reported once, by its own check): a task whose counts are
broken (A > W, A below the majority, A < 1) is reported by the count check only; the derived
checks (confidence formula, confidence range, cost) run only on tasks with valid counts.
"""

from __future__ import annotations

import math
import unicodedata
from typing import Final

import polars as pl

from asg_audit.checks._registry import CheckContext, finding, fmt, register_check
from asg_audit.config import CheckLevels
from asg_audit.model import printable

A = pl.col("agreement_count")
W = pl.col("worker_count")
T = pl.col("consensus_threshold")
C = pl.col("confidence")
TOLERANCE = 1e-6


@register_check(
    "consensus.agreement_above_workers",
    default=CheckLevels(severity="fail"),
    unit="workers",
    claim=2,
    kind="agreement_above_workers",
)
def agreement_above_workers(ctx: CheckContext) -> pl.LazyFrame:
    """More workers agreed than were counted (agreement_count > worker_count)."""
    return ctx.tasks.filter(A > W).select(
        finding(
            entity_type="task",
            entity_id=pl.col("task_id"),
            expected=fmt("agreement_count <= {}", W),
            actual=A,
            difference=A - W,
            message=fmt("agreement_count {} exceeds worker_count {}", A, W),
        )
    )


@register_check(
    "consensus.agreement_below_majority",
    default=CheckLevels(severity="fail"),
    unit="workers",
    claim=2,
    kind="agreement_below_majority",
)
def agreement_below_majority(ctx: CheckContext) -> pl.LazyFrame:
    """Consensus without a majority: A < floor(T/2)+1 (2 under the fixed 2-of-3 rule), or
    A <= W/2 when T is unknown."""
    need = pl.when(T.is_not_null()).then(pl.col("majority")).otherwise(W // 2 + 1)
    below = need > A
    rule = (
        pl.when(T.is_not_null())
        .then(fmt("majority {} for T={}, W={}", pl.col("majority"), T, W))
        .otherwise(fmt("more than half of W={}", W))
    )
    return ctx.tasks.filter(A.is_not_null() & W.is_not_null() & (A <= W) & below).select(
        finding(
            entity_type="task",
            entity_id=pl.col("task_id"),
            expected=fmt("agreement_count >= {}", need),
            actual=A,
            difference=A - need,
            message=fmt("agreement_count {} is below the majority ({})", A, rule),
        )
    )


@register_check(
    "consensus.workers_below_threshold",
    default=CheckLevels(severity="warn"),
    unit="workers",
    claim=2,
)
def workers_below_threshold(ctx: CheckContext) -> pl.LazyFrame:
    """Fewer workers than the threshold T, outside the fixed 3-label rule (W = 3)."""
    return ctx.tasks.filter(pl.col("counts_valid") & (W < T) & (W != 3)).select(
        finding(
            entity_type="task",
            entity_id=pl.col("task_id"),
            expected=fmt("worker_count >= {}", T),
            actual=W,
            difference=W - T,
            message=fmt("worker_count {} is below the threshold {}", W, T),
        )
    )


def _deviation() -> pl.Expr:
    """Return |confidence - the nearest formula value| (any threshold of 2 to 10 without T)."""
    return (C - pl.col("nearest_fit")).abs()


@register_check(
    "confidence.neither_formula",
    default=CheckLevels(fail=TOLERANCE),
    unit="confidence",
    claim=1,
    kind="confidence_neither_formula",
)
def confidence_neither_formula(ctx: CheckContext) -> pl.LazyFrame:
    """Confidence fits neither A/T nor A/W; the level is the tolerance on |confidence - fit|.

    Without the submission (T unknown), A/T is tested against every threshold the API accepts
    (2 to 10): a task is reported only if none of them, nor A/W, gives its confidence. One
    that misses A/W but fits some A/t is `confidence.formula_untestable` (info), not this.
    """
    a = A.cast(pl.Float64)
    nearest, nearest_t = pl.col("nearest_fit"), pl.col("nearest_fit_t")  # enrich_tasks
    deviation = (C - nearest).abs()
    lowest = ctx.lowest_level("confidence.neither_formula")
    keep = pl.col("counts_valid") & C.is_not_null() & (deviation.fill_nan(float("inf")) >= lowest)
    a_over_w = (a / W).round(6)
    expected = (
        pl.when(T.is_not_null())
        .then(fmt("A/T={} or A/W={}", (a / T).round(6), a_over_w))
        .otherwise(
            fmt(
                "A/W={} or A/T for a T of 2 to 10 (nearest {}{})",
                a_over_w,
                nearest.round(6),
                pl.when(nearest_t.is_null()).then(pl.lit("")).otherwise(fmt(", T={}", nearest_t)),
            )
        )
    )
    message = (
        pl.when(T.is_not_null())
        .then(fmt("confidence {} fits neither A/T nor A/W (A={}, W={}, T={})", C, A, W, T))
        .otherwise(
            fmt(
                "confidence {} fits neither A/W nor A/T for any T of 2 to 10 (A={}, W={}, "
                "T unknown)",
                C,
                A,
                W,
            )
        )
    )
    return ctx.tasks.filter(keep).select(
        finding(
            entity_type="task",
            entity_id=pl.col("task_id"),
            expected=expected,
            actual=C,
            difference=C - nearest,
            message=message,
            value=deviation.fill_nan(float("inf")),
        )
    )


@register_check(
    "confidence.formula_untestable",
    default=CheckLevels(severity="info"),
    unit="confidence",
    claim=1,
)
def confidence_formula_untestable(ctx: CheckContext) -> pl.LazyFrame:
    """Confidence misses A/W and T is unknown (no submission), so A/T cannot be tested.

    The confidence equals A/t for some threshold t of 2 to 10, so the task may follow A/T: it
    is not known to fit neither formula. Tracking the submissions makes it testable.
    """
    a = A.cast(pl.Float64)
    nearest, nearest_t = pl.col("nearest_fit"), pl.col("nearest_fit_t")  # enrich_tasks
    tol = ctx.lowest_level("confidence.neither_formula")
    if not math.isfinite(tol):
        tol = TOLERANCE
    miss_w = (C - a / W).abs()
    keep = (
        pl.col("counts_valid")
        & T.is_null()
        & C.is_not_null()
        & (miss_w >= tol)
        & ((C - nearest).abs() < tol)
    )
    return ctx.tasks.filter(keep).select(
        finding(
            entity_type="task",
            entity_id=pl.col("task_id"),
            expected=fmt("A/W={} or A/T (T unknown)", (a / W).round(6)),
            actual=C,
            difference=C - a / W,
            message=fmt(
                "confidence {} misses A/W (A={}, W={}); A/T is untestable without the "
                "submission's threshold: it fits A/T if T={}",
                C,
                A,
                W,
                nearest_t,
            ),
        )
    )


@register_check(
    "confidence.out_of_range", default=CheckLevels(severity="warn"), unit="confidence", claim=2
)
def confidence_out_of_range(ctx: CheckContext) -> pl.LazyFrame:
    """Confidence outside (0.5, 1] although it fits a formula (else neither_formula reports it)."""
    tol = ctx.levels("confidence.neither_formula").fail or TOLERANCE
    return ctx.tasks.filter(
        pl.col("counts_valid") & ((C <= 0.5) | (C > 1)) & (_deviation() < tol)
    ).select(
        finding(
            entity_type="task",
            entity_id=pl.col("task_id"),
            expected=pl.lit("0.5 < confidence <= 1"),
            actual=C,
            difference=pl.when(C > 1).then(C - 1).otherwise(C - 0.5),
            message=fmt("confidence {} is outside (0.5, 1]", C),
        )
    )


@register_check(
    "consensus.label_outside_options",
    default=CheckLevels(severity="fail"),
    claim=2,
    kind="label_outside_options",
)
def label_outside_options(ctx: CheckContext) -> pl.LazyFrame:
    """The consensus label is not one of the submission's options (exact string compare).

    Expected is the options as a list, each option quoted (`["cat", "dog"]`: an option `a, b`
    stays one) and inside its quotes written as a label is (`_shown_option`); actual is the
    label, quoted (`'cat '`, `'cat\\x0a'`) when it starts or ends with whitespace or holds a
    line break or tab, so that a label differing from an option by a trailing space or newline
    does not read the same as it. The report shows an invisible character (U+200B, U+00A0,
    ESC) on both sides as the same escape (`model.printable`: `cat\\u200b`, `cat\\x1b`). The
    message says when the label differs from an option only in such characters, accents or
    letter case."""
    shown = pl.struct("consensus_label", "options").map_batches(
        _label_outside_rows, return_dtype=_SHOWN, is_elementwise=True
    )
    return (
        ctx.tasks.filter(pl.col("label_outside_options"))
        .with_columns(shown.alias("_shown"))
        .select(
            finding(
                entity_type="task",
                entity_id=pl.col("task_id"),
                expected=pl.col("_shown").struct.field("expected"),
                actual=pl.col("_shown").struct.field("actual"),
                difference=None,
                message=pl.col("_shown").struct.field("message"),
            )
        )
    )


_SHOWN: Final = pl.Struct({"expected": pl.String, "actual": pl.String, "message": pl.String})
# Characters that do not show, or hardly: controls, format characters (U+200B, U+FEFF),
# separators and spaces, combining marks (accents), lone surrogates.
_HARD_TO_SEE: Final = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp", "Mn", "Me", "Cs"})


def _skeleton(text: str) -> str:
    """Return `text` without the characters that are hard to see (after NFKD, which splits
    an accented letter into its letter and accent and maps compatibility forms)."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if unicodedata.category(c) not in _HARD_TO_SEE)


def _spelled_out(text: str) -> bool:
    """Return whether a label or option is shown with every control character escaped, on
    one line (`model.printable(text, one_line=True)`) rather than as it is: when it is empty,
    starts or ends with whitespace (which would not show) or holds a line break or tab (which
    the report would show as a line break or a space)."""
    return not text or text[0].isspace() or text[-1].isspace() or "\n" in text or "\t" in text


def _shown_label(label: str | None) -> str:
    """Return a label as it is (the report escapes an invisible character in it: `cat\\u200b`),
    or, when `_spelled_out` or starting with a quote, between single quotes with every control
    character escaped, on one line (`'cat '`, `'cat\\x0a'`, `'ca\\x0at'`:
    `model.printable(label, one_line=True)`, the report's own notation)."""
    if label is None:
        return "(none)"
    if not _spelled_out(label) and label[0] not in "'\"":
        # (a label starting with a quote is quoted too: `"cat"` alone would read as an option)
        return label
    return "'" + printable(label, one_line=True) + "'"


# The characters `model.printable` keeps between two visible characters that are not
# whitespace (zero-width non-joiner and joiner): at an option's end, the quote beside it would
# keep them unescaped, where the label alone has them escaped.
_JOINERS: Final = ("\u200c", "\u200d")


def _shown_option(option: str) -> str:
    """Return an option as the expected list and the message show it: between double quotes
    (single quotes when it holds a double quote and no single one, so that `a", "b` stays one
    option; one holding both has a backslash before each double quote and backslash), and
    inside them as a label is shown (`_shown_label`): as it is, for the report to escape (ESC
    `\\x1b`, U+200B `\\u200b`), or escaped on one line (`"cat\\xa0"`, `"ca\\x0at"`) where a
    label would be. So each character reads as in the label beside it.
    Not JSON: JSON would write ESC `\\u001b` and a quote `\\"`."""
    quote = "'" if '"' in option and "'" not in option else '"'
    if '"' in option and "'" in option:
        # both quotes: a backslash before each double quote (and before a backslash, so that
        # `\"` stays readable), so that `cat", "dog's` stays one option
        option = option.replace("\\", "\\\\").replace('"', '\\"')
    if _spelled_out(option) or option.startswith(_JOINERS) or option.endswith(_JOINERS):
        return quote + printable(option, one_line=True) + quote
    return quote + option + quote


def _shown_options(options: list[str]) -> str:
    """Return the options as one list (`["cat", "dog"]`), each as `_shown_option`."""
    return "[" + ", ".join(_shown_option(o) for o in options) + "]"


def _label_outside_row(label: str | None, options: list[str] | None) -> dict[str, str]:
    """Return a label_outside_options finding's expected, actual and message."""
    options = list(options or [])
    named = _shown_label(label)
    message = f"label {named} is not one of the submitted options"
    if label is not None:
        skeleton = _skeleton(label)
        alike = [o for o in options if _skeleton(o) == skeleton]
        if alike:
            message += (
                f"; it differs from the option {_shown_option(alike[0])} only"
                " in characters hard to see or in how its characters are composed (spaces, line"
                " breaks, invisible characters, accents and other combining marks, compatibility"
                " forms such as ligatures or full-width letters)"
            )
        else:
            alike = [o for o in options if _skeleton(o).casefold() == skeleton.casefold()]
            if alike:
                how = (
                    "only in letter case"
                    if alike[0].casefold() == label.casefold()
                    else "in letter case and in characters hard to see or how they are composed"
                )
                message += f"; it differs from the option {_shown_option(alike[0])} {how}"
    return {
        "expected": _shown_options(options),
        "actual": named,
        "message": message,
    }


def _label_outside_rows(rows: pl.Series) -> pl.Series:
    """`_label_outside_row` for each task of a batch (only tasks already found outside)."""
    return pl.Series(
        [_label_outside_row(r["consensus_label"], r["options"]) for r in rows.to_list()],
        dtype=_SHOWN,
    )
