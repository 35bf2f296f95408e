"""What a report says, as plain data: headline figures, findings by check, configuration, summary.

Both the HTML and the Markdown renderers and `summary.json` are built from these values, so the
three formats cannot disagree. Nothing here escapes anything: escaping belongs to each format.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import polars as pl

from asg_audit.analyses.costs import describe_model
from asg_audit.config import AuditConfig
from asg_audit.model import EXACT_DIFFERENCE, is_well_formed_txid
from asg_audit.redaction import Secret, mask_secrets, shown_setting
from asg_audit.report.cells import cut_value
from asg_audit.report.units import difference_header, difference_unit
from asg_audit.report.words import counted, plural

if TYPE_CHECKING:
    from asg_audit.audit import Audit

__all__ = [
    "DEFAULT_WORST_ENTITIES",
    "HEADLINE_FIELDS",
    "MAX_SUMMARY_FINDINGS",
    "SUMMARY_SCHEMA",
    "SUMMARY_SCHEMA_VERSION",
    "TX_EXPLORER_URL",
    "Headline",
    "backlog_note",
    "build_summary",
    "check_audit",
    "config_rows",
    "created_after_as_of",
    "difference_header",
    "exact_difference",
    "fair_shares",
    "fee_coverage",
    "figure_text",
    "findings_by_check",
    "format_change",
    "format_number",
    "format_seconds",
    "format_value",
    "headline",
    "proves_counts",
    "store_identity",
    "summary_value",
    "tasks_note",
    "tracked_not_collected",
    "txid_url",
    "utc_iso",
]

SUMMARY_SCHEMA: Final = "asg_audit.summary"
# 2: findings[].difference is an exact integer when the difference is a whole number (it was a
# float, rounded past 2^53); findings[].proves and checks[].proves added. Later, still 2 (an
# added key is compatible): fee_coverage (null when the store holds no chain transactions).
SUMMARY_SCHEMA_VERSION: Final = 2
DEFAULT_WORST_ENTITIES: Final = 10
# summary.json lists findings so that `--compare` can tell new from resolved ones; past this
# many it keeps the worst and says it truncated.
MAX_SUMMARY_FINDINGS: Final = 100_000
TX_EXPLORER_URL: Final = "https://whatsonchain.com/tx/{txid}"
_SEVERITIES: Final = ("fail", "warn", "info")
_SEVERITY_RANK: Final = {"fail": 0, "warn": 1, "info": 2}
_SECRETISH: Final = re.compile(r"(key|secret|token|password|passwd|auth|credential)", re.I)


@dataclass(frozen=True, slots=True)
class Headline:
    """One headline figure: summary key, label, value, how to print it, and a note said
    with it (`300 tracked, none collected` beside Tasks 0), or None."""

    key: str
    label: str
    value: Any
    kind: str  # count | seconds | share | ratio | sats | text
    note: str | None = None


# (key, label, kind): the order of the headline block.
HEADLINE_FIELDS: Final = (
    ("tasks", "Tasks", "count"),
    ("settled", "Settled", "count"),
    ("pending", "Pending", "count"),
    ("other_status", "Other status", "count"),
    ("stuck", "Stuck", "count"),
    ("latency_p50_s", "Latency p50", "seconds"),
    ("latency_p95_s", "Latency p95", "seconds"),
    ("share_over_slo", "Share over SLO", "share"),
    ("confidence_mean", "Mean confidence", "ratio"),
    ("agreement_rate", "Agreement rate", "share"),
    ("spent_sats", "Sats spent", "sats"),
    ("findings_fail", "Findings: fail", "count"),
    ("findings_warn", "Findings: warn", "count"),
    ("findings_info", "Findings: info", "count"),
)


def _plain(value: Any) -> Any:
    """Return a JSON-friendly scalar (NaN becomes None, datetimes ISO text)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def utc_iso(when: datetime | None, timespec: str = "auto") -> str | None:
    """Return a time as ISO 8601 text in UTC (`+00:00`); a time without a zone is taken as UTC."""
    if when is None:
        return None
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return when.isoformat(timespec=timespec)


_WHOLE_FIGURE: Final = re.compile(r"-?(?:0|[1-9]\d*)")


def figure_text(value: Any, *, figure: bool = True) -> str | None:
    """Return an expected or actual value as display text, as the check wrote it (its times
    are ISO 8601 UTC already, `checks._registry.as_text`). Only when `figure` (the value is a
    figure, not a label that may look like one) is a whole number (`1233592`) written as the
    report writes whole figures (`1,233,592`); a fraction keeps every digit the check wrote
    (`1.0004`, `12345678901234567.5`): rounded it could read as the value it is compared with."""
    if value is None:
        return None
    text = str(value)
    if figure and _WHOLE_FIGURE.fullmatch(text):
        return f"{int(text):,}"
    return text


def _first(frame: pl.DataFrame | None, column: str) -> Any:
    if frame is None or frame.height == 0 or column not in frame.columns:
        return None
    return _plain(frame[column][0])


def tracked_not_collected(audit: Audit) -> int | None:
    """Return how many tracked tasks (submitted, or polled for) the store holds no status of
    (`summary()['tracked_not_collected']`; None for an Audit made by hand without the frame).
    They are not among the headline's tasks, which counts stored results: with no result at
    all, every tracked task is one of them."""
    value = audit.summary().get("tracked_not_collected")
    return None if value is None else int(value)


def tasks_note(tasks: int | None, not_collected: int | None) -> str | None:
    """Return what the headline says beside its task count about the tracked tasks it does
    not count (`300 tracked, none collected`; `and 300 tracked, not collected` beside tasks
    that were), or None when every tracked task is counted or the number is unknown."""
    if not not_collected:
        return None
    if not tasks:
        return f"{not_collected:,} tracked, none collected"
    return f"and {not_collected:,} tracked, not collected"


def _spent_sats(s: dict[str, Any]) -> Any:
    """The sats the settled tasks are known to have cost: 0 when none settled, None (not
    measurable) when tasks settled but none stated a cost (a webhook-only store showed
    "0 sats", tester T6)."""
    settled = int(s["settled"] or 0)
    unknown = int(s["unknown_costs"] or 0) + int(s["no_cost_reported"] or 0)
    if settled and unknown >= settled:
        return None
    known = s["known_cost_sats"]  # a SATS_SUM: exact past int64
    return known if known is not None else 0


def headline_values(audit: Audit) -> dict[str, Any]:
    """Return the headline figures by key, taken from the audit's summary and frames."""
    s = audit.summary()
    f = audit.findings
    stuck = int(f.filter(pl.col("check_id") == "task.stuck").height) if f.height else 0
    return {
        "tasks": s["tasks"],
        # tracked tasks with no status in the store, so not among `tasks` (None: unknown)
        "tracked_not_collected": s.get("tracked_not_collected"),
        "settled": s["settled"],
        # pending, in_progress or verified; undocumented statuses (failed, timed_out: final
        # ones among them) are other_status, not pending
        "pending": s["pending"],
        "other_status": s["other_status"],
        "stuck": stuck,
        "created_after_as_of": created_after_as_of(audit),
        "latency_p50_s": s["latency_p50_s"],
        "latency_p95_s": s["latency_p95_s"],
        "latency_mean_s": s["latency_mean_s"],
        "share_over_slo": s["share_over_slo"],
        "slo_seconds": s["slo_seconds"],
        "confidence_mean": s.get("confidence_mean"),
        "agreement_rate": s["agreement_rate"],
        "agreement_wilson_low": _first(audit.frames.get("agreement_overall"), "wilson_low"),
        "agreement_wilson_high": _first(audit.frames.get("agreement_overall"), "wilson_high"),
        "spent_sats": _spent_sats(s),
        "unknown_costs": s["unknown_costs"],
        "no_cost_reported": s["no_cost_reported"],
        "confidence_follows": s["confidence_follows"],
        "best_cost_model": s["best_cost_model"],
        **{f"findings_{sev}": int(s["findings"].get(sev, 0)) for sev in _SEVERITIES},
        "worst_severity": s["worst_severity"],
    }


def created_after_as_of(audit: Audit) -> int:
    """Return how many tasks were created after the audit's as-of time, so are not aged."""
    frame = audit.frames.get("created_after_as_of")
    return int(frame["tasks"][0] or 0) if frame is not None and frame.height else 0


def backlog_note(audit: Audit) -> str | None:
    """Return the line under the backlog table about tasks too new to age, or None."""
    n = created_after_as_of(audit)
    if not n:
        return None
    return (
        f"{counted(n, 'task')} created after the as-of time "
        f"{plural(n, 'is', 'are')} not aged: the backlog ages and the survival curve leave "
        f"{'them' if n != 1 else 'it'} out."
    )


def check_audit(audit: object, caller: str) -> None:
    """Raise TypeError naming `caller`'s `audit` argument unless it is an Audit."""
    from asg_audit.audit import Audit

    if not isinstance(audit, Audit):
        raise TypeError(
            f"{caller} audit: expected an Audit (asg_audit.analyze()), got {type(audit).__name__}"
        )


def headline(audit: Audit) -> list[Headline]:
    """Return the headline block, in display order."""
    check_audit(audit, "headline")
    values = headline_values(audit)
    notes = {"tasks": tasks_note(values["tasks"], values["tracked_not_collected"])}
    return [
        Headline(k, label, values.get(k), kind, notes.get(k)) for k, label, kind in HEADLINE_FIELDS
    ]


def format_value(value: Any, kind: str = "text") -> str:
    """Return a figure as display text (`n/a` when unknown, `yes`/`no` for a flag).

    Every cell of every table, HTML and Markdown alike, is written through this one function.
    Kinds: count | sats | seconds | share | ratio | num (a figure that may be whole or not:
    `1`, `1.12`) | text. A time is ISO 8601 in UTC whatever the kind (`2026-10-01T00:00:40+00:00`;
    a time without a zone is taken as UTC).
    """
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if isinstance(value, bool):  # before the numbers: a bool is an int to Python
        return "yes" if value else "no"
    if isinstance(value, datetime):  # in UTC, as the headline and summary.json give times
        return str(utc_iso(value))
    if kind == "num" and isinstance(value, int):
        return f"{value:,}"
    if kind == "num" and isinstance(value, float):
        return format_number(value)
    if kind in ("count", "sats"):
        return counted(int(value), "sat") if kind == "sats" else f"{int(value):,}"
    if kind == "seconds":
        return format_seconds(float(value))
    if kind == "share":
        return f"{100 * float(value):.1f}%"
    if kind == "ratio":
        return f"{float(value):.3f}"
    if isinstance(value, float):
        return format_number(value)
    return str(value)


def format_number(value: float) -> str:
    """Return a plain figure as the headline writes figures: never rounded away, no exponent.

    A whole number (sats, seconds, counts, even when held as a float) is written exactly, with
    thousands separators (`1,233,592`). A true fraction keeps its whole part exactly and at least
    4 significant figures (`6,109,333.25`, `0.3333`, `0.0001235`); trailing zeros are dropped
    unless the fraction rounds to a whole number (`2.000`).
    """
    if not math.isfinite(value):
        return "n/a"
    if value.is_integer():
        return f"{int(value):,}"
    size = abs(value)
    decimals = 3 if size >= 1 else 3 - math.floor(math.log10(size))
    if decimals > 15:
        # below float noise for any sats or seconds figure: written as such, not as 0
        return f"{value:.4g}"
    text = f"{value:,.{decimals}f}"
    short = text.rstrip("0").rstrip(".")
    # a fraction that rounds to a whole number keeps its zeros (`2.000`), so it never reads as
    # the exact whole number
    return short if "." in short else text


def format_seconds(seconds: float) -> str:
    """Return a duration in seconds, to a tenth, and from 2 min on the unit that reads best
    beside it: `59.5 s`, `139.0 s (2.3 min)`, `7,200.0 s (2.0 h)`, `259,200.0 s (3.0 d)`.
    Minutes alone rounded a p50 of 139 s to "2.3 min", 138 s (tester T2)."""
    shown = round(seconds, 1)  # the unit is chosen for the figure as shown
    size = abs(shown)
    if size < 120:
        return f"{shown:,.1f} s"
    unit, per = ("min", 60) if size < 7200 else ("h", 3600) if size < 172800 else ("d", 86400)
    return f"{shown:,.1f} s ({shown / per:,.1f} {unit})"


def format_change(value: Any, kind: str = "text") -> str:
    """Return how a figure moved as display text (`+1,204`, `-2.5 pts`, `no change`)."""
    if value is None:
        return "n/a"
    if value == 0:
        return "no change"
    sign = "+" if value > 0 else "-"
    if kind == "share":
        return f"{sign}{abs(100 * float(value)):.1f} pts"
    return sign + format_value(abs(value), kind)


def txid_url(entity_type: str | None, entity_id: str | None) -> str | None:
    """Return the chain explorer link of a well-formed txid entity, else None."""
    if entity_type != "txid" or not entity_id or not is_well_formed_txid(entity_id):
        return None
    return TX_EXPLORER_URL.format(txid=entity_id)


def exact_difference(findings: pl.DataFrame) -> pl.Expr:
    """Return the findings' exact integer difference as `_exact` (DECIMAL(38, 0)):
    `difference_exact` from `run_checks`, null for a fractional difference or a frame built
    without it."""
    if EXACT_DIFFERENCE in findings.columns:
        return pl.col(EXACT_DIFFERENCE).cast(pl.Decimal(38, 0), strict=False).alias("_exact")
    return pl.lit(None, dtype=pl.Decimal(38, 0)).alias("_exact")


def _difference(row: Mapping[str, Any]) -> Any:
    """Return a finding's difference: an int of every digit when exact, else the float."""
    exact = row.get("_exact")
    return int(exact) if exact is not None else _plain(row.get("difference"))


def proves_counts(findings: pl.DataFrame) -> list[tuple[str, int]]:
    """Return what a check's findings prove (`exact`, `aggregate only`, ...) with how many
    findings each, most first; findings that state nothing (null) are left out."""
    if "proves" not in findings.columns:
        return []
    counts = (
        findings.filter(pl.col("proves").is_not_null())
        .group_by("proves")
        .agg(pl.len().alias("n"))
        .sort(["n", "proves"], descending=[True, False])
    )
    return [(str(p), int(n)) for p, n in counts.iter_rows()]


def _check_descriptions() -> dict[str, str]:
    from asg_audit.checks import load_check_plugins, registered_checks

    load_check_plugins()  # chain and billing checks register on import
    return {cid: c.description for cid, c in registered_checks().items()}


def findings_by_check(
    findings: pl.DataFrame, *, worst: int = DEFAULT_WORST_ENTITIES
) -> list[dict[str, Any]]:
    """Return one group per check (worst severity first): counts and its worst entities.

    An entity's badness is its |difference| (findings without one come last), ties by id.
    """
    if findings.height == 0:
        return []
    descriptions = _check_descriptions()
    ranked = findings.with_columns(
        pl.col("severity").replace_strict(_SEVERITY_RANK, default=3).alias("_rank"),
        _size_expr(),
        exact_difference(findings),
    )
    if "proves" not in ranked.columns:
        ranked = ranked.with_columns(pl.lit(None, dtype=pl.String).alias("proves"))
    groups = (
        ranked.group_by("check_id")
        .agg(pl.len().alias("n"), pl.col("_rank").min().alias("_rank"))
        .sort("_rank", "n", "check_id", descending=[False, True, False])
    )
    out = []
    for check_id, n, rank in groups.iter_rows():
        unit = difference_unit(str(check_id))
        rows = (
            ranked.filter(pl.col("check_id") == check_id)
            .sort(["_rank", "_size", "entity_id"], descending=[False, True, False], nulls_last=True)
            .head(worst)
        )
        entities = [
            {
                **{k: r[k] for k in ("severity", "entity_type", "entity_id", "proves")},
                # as the check wrote it (its times ISO 8601 UTC already); a plain figure of a
                # check with a unit written like the difference beside it (`1,233,592`)
                "message": r["message"],
                **{k: figure_text(r[k], figure=unit is not None) for k in ("expected", "actual")},
                "difference": _difference(r),
                "url": txid_url(r["entity_type"], r["entity_id"]),
            }
            for r in rows.iter_rows(named=True)
        ]
        of_check = ranked.filter(pl.col("check_id") == check_id)
        by_sev = of_check["severity"].value_counts()
        proves = proves_counts(of_check)
        out.append(
            {
                "check_id": check_id,
                "description": descriptions.get(check_id, ""),
                # the unit of the Difference column (sats, s, tasks), or None
                "unit": unit,
                # what the check's findings prove, most first: one value for most checks;
                # several (exact for one task's txid, aggregate only for a shared one) are
                # also shown per finding
                "proves": proves,
                "proves_mixed": len(proves) > 1,
                "severity": next((s for s, r in _SEVERITY_RANK.items() if r == rank), "info"),
                "findings": int(n),
                "by_severity": {str(s): int(c) for s, c in by_sev.iter_rows()},
                "worst": entities,
                "more": int(n) - len(entities),
            }
        )
    return out


def _shown(value: Any, held: Sequence[Secret | None] = ()) -> str:
    """Return a configuration value as the report may show it.

    Every URL (any text holding `://`) goes through `display_url`: no user, password or query,
    where Slack- and Teams-style webhook URLs carry their secret. Any other text is `redact`ed,
    and the configured secrets (`held`) are masked in all text, so a key pasted into the wrong
    setting is `***`; lists show each item so.
    """
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_shown(v, held) for v in value) + "]"
    if isinstance(value, bool):
        return format_value(value)  # `yes`/`no`, as in every table
    return shown_setting("", str(value), held)


def _section_rows(
    name: str, section: Mapping[str, Any], held: Sequence[Secret | None] = ()
) -> list[tuple[str, str]]:
    rows = []
    for key, value in sorted(section.items()):
        if isinstance(value, Secret) or _SECRETISH.search(str(key)):
            continue  # never print a secret, nor anything named like one
        setting = f"{name}.{mask_secrets(str(key), held)}"
        if isinstance(value, Mapping):
            rows += _section_rows(setting, value, held)
        elif isinstance(value, str):
            rows.append((setting, shown_setting(str(key), value, held)))
        else:
            rows.append((setting, _shown(value, held)))
    return rows


def config_rows(config: AuditConfig) -> list[tuple[str, str]]:
    """Return the configuration used as (setting, value) rows, without any secret.

    Secrets (`Secret` values and anything named like a key, token or password) are left out,
    not masked: a report is shared more widely than the config. Every URL (`base_url`,
    `chain_url`, `[audit] alert_url`, any other) is shown without user, password or query, and
    a configured secret found in another setting is shown as `***`.
    """
    if not isinstance(config, AuditConfig):
        raise TypeError(f"config_rows config: expected an AuditConfig, got {type(config).__name__}")
    held = (config.api_key, config.woc_api_key, *config.webhook_secrets)
    rows = [
        ("base_url", _shown(config.base_url, held)),
        ("chain_url", _shown(config.chain_url, held)),
        ("chain_network", _shown(config.chain_network, held)),
        ("slo_seconds", f"{config.slo_seconds:g}"),
        ("fail_on", config.fail_on),
        ("costs", describe_model(config.costs) + f" ({config.costs.kind})"),
    ]
    for check_id, levels in sorted(config.checks.items()):
        parts = [
            f"{k}={getattr(levels, k)}"
            for k in ("warn", "fail", "severity")
            if getattr(levels, k) is not None
        ]
        if not levels.enabled:
            parts.append("disabled")
        rows.append((f"checks.{check_id}", ", ".join(parts) or "default"))
    for name in ("collector", "webhooks", "chain", "billing", "report", "audit"):
        rows += _section_rows(name, getattr(config, name), held)
    return rows


FEE_CHECK_ID: Final = "chain.fee_rate"
_FEE_EXACT: Final = "exact"  # chain_verify.FEE_EXACT: the fees the check could compute


def fee_coverage(audit: Audit) -> dict[str, Any] | None:
    """Return how many stored chain transactions' fees `chain.fee_rate` could check, or None
    when the analysis has no `fee_coverage` frame (the store holds no chain transactions).

    `{"check_id", "checked", "txids", "proves": {"exact": n, "not checkable (reason)": n},
    "line"}`; `line` says it as `verify-chain` prints it (`fees checked (chain.fee_rate): X of Y
    txids; n not checkable (reason)`). No fee finding where none could be checked proves nothing
    about the fees: this says how many were.
    """
    frame = audit.frames.get("fee_coverage")
    if frame is None or not {"proves", "txids"} <= set(frame.columns):
        return None
    proves: dict[str, int] = {}
    for what, n in frame.select("proves", "txids").iter_rows():
        if what is not None:
            proves[str(what)] = proves.get(str(what), 0) + int(n or 0)
    checked = proves.get(_FEE_EXACT, 0)
    total = sum(proves.values())
    others = [f"{n:,} {what}" for what, n in proves.items() if what != _FEE_EXACT]
    line = f"fees checked ({FEE_CHECK_ID}): {checked:,} of {counted(total, 'txid')}" + "".join(
        f"; {part}" for part in others
    )
    return {
        "check_id": FEE_CHECK_ID,
        "checked": checked,
        "txids": total,
        "proves": proves,
        "line": line,
    }


def fair_shares(counts: Mapping[str, int], cap: int) -> dict[str, int]:
    """Return how many findings of each check summary.json keeps when `cap` must hold them.

    Every check gets an equal share of `cap`; a check with fewer findings keeps them all and
    leaves the rest of its share to the others (smallest first). So no check is crowded out by
    a larger one: each keeps min(its findings, cap / number of checks) at least.
    """
    shares: dict[str, int] = {}
    left = cap
    ordered = sorted(counts.items(), key=lambda item: (item[1], item[0]))
    for i, (check_id, n) in enumerate(ordered):
        take = min(n, left // (len(ordered) - i))
        shares[check_id] = take
        left -= take
    return shares


def _size_expr() -> pl.Expr:
    """|difference| for ranking findings: none (or NaN) is null, so it comes last."""
    return pl.col("difference").cast(pl.Float64).abs().fill_nan(None).alias("_size")


def _summary_findings(
    findings: pl.DataFrame,
) -> tuple[list[dict[str, Any]], dict[str, tuple[int, int]]]:
    """Return the findings of summary.json, worst first, and per check how many it holds and
    how many were left out.

    Worst first: by severity, then by |difference| (largest first; none, or NaN, last), then by
    check id and entity id. Past MAX_SUMMARY_FINDINGS each check keeps its share (`fair_shares`)
    of its worst findings (fail first, then the largest), so every check is represented and the
    rows the report shows for it are among them.
    """
    cols = ["check_id", "severity", "entity_type", "entity_id", "expected", "actual", "difference"]
    proves = pl.col("proves") if "proves" in findings.columns else pl.lit(None, dtype=pl.String)
    frame = (
        findings.select(*cols, proves.alias("proves"), exact_difference(findings))
        .with_columns(
            pl.col("severity").replace_strict(_SEVERITY_RANK, default=3).alias("_rank"),
            _size_expr(),
        )
        .sort(
            ["_rank", "_size", "check_id", "entity_id"],
            descending=[False, True, False, False],
            nulls_last=True,
        )
        .drop("_rank", "_size")
    )
    counts = {str(c): int(n) for c, n in frame.group_by("check_id").len().iter_rows()}
    shares = fair_shares(counts, MAX_SUMMARY_FINDINGS)
    if frame.height > MAX_SUMMARY_FINDINGS:
        quota = pl.DataFrame(
            {"check_id": list(shares), "_quota": list(shares.values())},
            schema={"check_id": pl.String, "_quota": pl.Int64},
        )
        frame = (
            frame.with_columns(pl.int_range(pl.len()).over("check_id").alias("_pos"))
            .join(quota, on="check_id", how="left", maintain_order="left")
            .filter(pl.col("_pos") < pl.col("_quota"))
            .drop("_pos", "_quota")
        )
    held = {c: (shares[c], counts[c] - shares[c]) for c in counts}
    # the difference exact: a whole number as a JSON integer of every digit (2^63 - 1 sats
    # is 9223372036854775807, not 9.223372036854776e+18); a fraction as a float
    rows = [
        {
            **{k: _plain(r[k]) for k in cols},
            # a long value (a 900,000-character junk txid) cut, with its digest: `summary_value`
            **{k: summary_value(r[k]) for k in _CUT_IN_SUMMARY},
            "difference": _difference(r),
            "proves": r["proves"],
        }
        for r in frame.iter_rows(named=True)
    ]
    return rows, held


# the fields of summary.json's findings that hold data values, cut past CELL_LIMIT characters
_CUT_IN_SUMMARY: Final = ("entity_id", "expected", "actual")


def summary_value(value: Any) -> Any:
    """Return a finding's entity id, expected or actual value as summary.json holds it: text
    longer than `cells.CELL_LIMIT` characters cut to them and `… (N more characters; sha256
    <16 hex>)` (the whole value's digest: two long ids stay apart); anything else as it is.
    A value so cut already is kept as it is, so comparing reports cuts each key alike."""
    return cut_value(value, digest=True) if isinstance(value, str) else value


def more_findings_line(
    more: int, in_summary: int, left_out: int, shown: int, stored_run_id: str | None
) -> str:
    """Return where the findings of a check that the report does not show are.

    `more` are not shown; of the check's findings summary.json holds `in_summary` (the `shown`
    ones among them) and left out `left_out`. Never "all in summary.json" when some were cut.
    """
    if not left_out:
        return f"and {more:,} more, all in summary.json"
    listed = max(in_summary - shown, 0)
    if stored_run_id is not None:
        rest = f"{left_out:,} only in the store's findings table (run id {stored_run_id})"
    else:
        rest = (
            f"{left_out:,} in no file: summary.json keeps at most {MAX_SUMMARY_FINDINGS:,}"
            " findings and this report's findings were not stored (asg-audit audit stores every"
            " finding in the store's findings table)"
        )
    return f"and {more:,} more: {listed:,} in summary.json, {rest}"


def store_identity(audit: Audit) -> dict[str, Any] | None:
    """Return which store the audit read, as summary.json records it under `store`: the id and
    start time of the store's first run (`{"first_run_id": ..., "first_run_started_at": ...}`),
    or None when no run is known (a store no command has run on, an Audit made from frames).

    The store's `runs` table is read whole, whatever the window, and a run is never removed,
    so its first run stays the same for the life of the store and differs between stores (a
    run id holds a random part). A copy of a store file has the first run of the original.
    """
    frame = audit.frames.get("http_by_run")
    if frame is None or not {"run_id", "started_at"} <= set(frame.columns):
        return None
    runs = frame.filter(pl.col("run_id").is_not_null() & pl.col("started_at").is_not_null())
    if runs.height == 0:
        return None
    first = runs.sort("started_at", "run_id").row(0, named=True)
    started = first["started_at"]
    return {
        "first_run_id": str(first["run_id"]),
        "first_run_started_at": utc_iso(started) if isinstance(started, datetime) else str(started),
    }


def build_summary(
    audit: Audit,
    *,
    run_id: str,
    generated_at: datetime,
    charts: list[str],
    tool_version: str,
    stored_run_id: str | None = None,
    groups: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Return the `summary.json` document (schema `asg_audit.summary`, version 2).

    `stored_run_id`: the run id under which the store's `findings` table holds every finding
    of this audit (`asg-audit audit` stores them before the report), or None when not stored.
    `groups`: `findings_by_check(audit.findings)` when the caller has it already (`render`
    shows the same groups); only their counts are read, whatever `worst` they were made with.
    """
    check_audit(audit, "build_summary")
    values = headline_values(audit)
    if groups is None:
        groups = findings_by_check(audit.findings, worst=0)
    findings, held = _summary_findings(audit.findings)
    left_out = sum(out for _, out in held.values())
    return {
        "schema": SUMMARY_SCHEMA,
        "schema_version": SUMMARY_SCHEMA_VERSION,
        "tool_version": tool_version,
        "run_id": run_id,
        # which store it reports on (its first run), so that `--compare previous` picks a
        # report of the same store from a folder several stores report into; null: unknown
        "store": store_identity(audit),
        "generated_at": utc_iso(generated_at),
        "as_of": utc_iso(audit.as_of),
        "window": {"since": utc_iso(audit.since), "until": utc_iso(audit.until)},
        "headline": {k: _plain(v) for k, v in values.items()},
        "findings_by_severity": {sev: values[f"findings_{sev}"] for sev in _SEVERITIES},
        "checks": [
            {
                **{
                    k: g[k]
                    for k in ("check_id", "severity", "findings", "by_severity", "description")
                },
                # what its findings prove, with how many each: {"aggregate only": 2}
                "proves": dict(g["proves"]),
                # how many of its findings `findings` lists, and how many it left out
                "in_summary": held[g["check_id"]][0],
                "left_out": held[g["check_id"]][1],
            }
            for g in groups
        ],
        "findings": findings,
        "findings_truncated": left_out > 0,
        "findings_left_out": left_out,
        "findings_cap": MAX_SUMMARY_FINDINGS,
        # the run id under which the store's `findings` table holds every finding, or null
        "findings_stored_run_id": stored_run_id,
        "charts": charts,
        # how many chain transactions' fees chain.fee_rate could check (None: no chain data)
        "fee_coverage": _summary_fees(audit),
    }


def _summary_fees(audit: Audit) -> dict[str, Any] | None:
    fees = fee_coverage(audit)
    return None if fees is None else {k: v for k, v in fees.items() if k != "line"}
