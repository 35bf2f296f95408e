"""The check registry: `@register_check` functions turning a `CheckContext` into findings."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Final

import polars as pl

from asg_audit.analyses._tasks import enrich_tasks
from asg_audit.config import AuditConfig, CheckLevels
from asg_audit.model import EXACT_DIFFERENCE, FINDINGS_SCHEMA, Severity

__all__ = [
    "PLUGIN_MODULES",
    "Check",
    "CheckContext",
    "CheckFunction",
    "as_text",
    "finding",
    "findings_with_kinds",
    "load_check_plugins",
    "no_findings",
    "register_check",
    "registered_checks",
    "run_checks",
]

# Modules owned by other features that register their own checks on import (chain, billing).
PLUGIN_MODULES: Final = ("asg_audit.chain", "asg_audit.billing")
# Columns a check function returns; `value` (optional) is compared with the warn/fail levels.
_ROW_COLUMNS: Final = ("entity_type", "entity_id", "expected", "actual", "difference", "message")


class CheckContext:
    """What a check can see: the store's tables as lazy frames, the config and `as_of`.

    `tasks` is the enriched per-task frame (results joined with submissions, see
    `analyses.enrich_tasks`), computed once and shared by every check.
    """

    def __init__(
        self,
        tables: Mapping[str, pl.LazyFrame | pl.DataFrame],
        *,
        config: AuditConfig,
        as_of: datetime,
        tasks: pl.DataFrame | None = None,
        frames: Mapping[str, pl.DataFrame] | None = None,
    ) -> None:
        self._tables = {k: v.lazy() for k, v in tables.items() if v is not None}
        self.config = config
        self.as_of = as_of
        # Analysis frames already computed by `analyze` (e.g. shared_txids), reused by checks.
        self.frames: Mapping[str, pl.DataFrame] = frames or {}
        if tasks is not None:
            self.__dict__["tasks"] = tasks.lazy()

    def has_table(self, name: str) -> bool:
        """Return whether a table was given (it may still be empty)."""
        return name in self._tables

    def table(self, name: str) -> pl.LazyFrame:
        """Return a table as a lazy frame; a table nobody gave is an empty frame."""
        return self._tables.get(name, pl.LazyFrame())

    @cached_property
    def tasks(self) -> pl.LazyFrame:
        """Return the enriched per-task frame, materialised once."""
        subs = self._tables.get("submissions")
        return enrich_tasks(self.table("results"), subs).collect().lazy()

    def levels(self, check_id: str) -> CheckLevels:
        """Return the configured levels of a registered check, or its documented default."""
        return self.config.levels(check_id, _REGISTRY[check_id].default)

    def lowest_level(self, check_id: str) -> float:
        """Return the smallest configured level of a check (rows below it are no finding).

        Checks filter on it before formatting messages, which keeps them cheap on big data.
        A check with a fixed severity reports every row: then minus infinity.
        """
        levels = self.levels(check_id)
        if levels.severity is not None:
            return float("-inf")
        found = [x for x in (levels.warn, levels.fail) if x is not None]
        return min(found) if found else float("inf")


CheckFunction = Callable[[CheckContext], pl.LazyFrame | pl.DataFrame]


@dataclass(frozen=True, slots=True)
class Check:
    """A registered check: its id, the spec claim it tests, the anomaly kind it finds, and
    the unit of its findings' `difference` (None: its findings have no difference)."""

    check_id: str
    func: CheckFunction
    default: CheckLevels
    claim: int | None
    kind: str | None
    description: str
    unit: str | None = None


_REGISTRY: dict[str, Check] = {}


def register_check(
    check_id: str,
    *,
    default: CheckLevels,
    claim: int | None = None,
    kind: str | None = None,
    unit: str | None = None,
) -> Callable[[CheckFunction], CheckFunction]:
    """Register a check function under `check_id` (a decorator).

    The function takes a `CheckContext` and returns a (lazy) frame with the columns
    `entity_type, entity_id, expected, actual, difference, message` and optionally `value`:
    a measure compared with the check's levels (at or above `fail` a failure, at or above
    `warn` a warning, below both no finding). Without `value`, every row is a finding of the
    fixed `severity` level. `kind` names the simulator anomaly kind the check detects.
    `unit` is the unit of the rows' `difference` (`sats`, `s`, `tasks`; the report's
    Difference column says it); leave it None only for a check whose rows have no difference.
    """

    def decorate(func: CheckFunction) -> CheckFunction:
        if check_id in _REGISTRY and _REGISTRY[check_id].func is not func:
            raise ValueError(f"check {check_id!r} is already registered")
        _REGISTRY[check_id] = Check(check_id, func, default, claim, kind, _description(func), unit)
        return func

    return decorate


def _description(func: CheckFunction) -> str:
    """Return the first paragraph of a check's docstring as one line (its description).

    A summary may wrap over several lines; only its first line would stop mid-sentence.
    """
    paragraph = inspect.cleandoc(func.__doc__ or "").split("\n\n", 1)[0]
    return " ".join(line.strip() for line in paragraph.splitlines() if line.strip())


def registered_checks() -> dict[str, Check]:
    """Return every registered check by id (built-in and plugins loaded so far), sorted."""
    return dict(sorted(_REGISTRY.items()))


def load_check_plugins(modules: Iterable[str] = PLUGIN_MODULES) -> None:
    """Import the feature modules that register checks, skipping those not installed yet."""
    for name in modules:
        if importlib.util.find_spec(name) is not None:
            importlib.import_module(name)


# a time in a finding's text: ISO 8601 in UTC, fractional seconds only when not zero (0, 3, 6
# or 9 digits), as the report writes every time (`2026-10-11T02:55:39+00:00`)
_ISO_UTC: Final = "%Y-%m-%dT%H:%M:%S%.f%:z"


def _series_text(values: pl.Series) -> pl.Series:
    """Return a column as text; a time column (Datetime) as ISO 8601 in UTC, a time without a
    zone taken as UTC. Text is returned as it is: a label that looks like a time is data."""
    dtype = values.dtype
    if isinstance(dtype, pl.Datetime):
        utc = (
            values.dt.replace_time_zone("UTC")
            if dtype.time_zone is None
            else values.dt.convert_time_zone("UTC")
        )
        return utc.dt.strftime(_ISO_UTC)
    return values.cast(pl.String)


def as_text(value: pl.Expr) -> pl.Expr:
    """Return an expression as text, as findings hold it: a time (Datetime) in ISO 8601 UTC
    (`2026-10-11T02:55:39+00:00`, not polars' `2026-10-11 02:55:39.000000+00:00`), anything
    else cast to text. Decided by the column's type, never by what its text looks like."""
    return value.map_batches(_series_text, return_dtype=pl.String, is_elementwise=True)


def fmt(template: str, *args: pl.Expr) -> pl.Expr:
    """Return `template` with each `{}` replaced by the next expression (null if one is null).

    Used instead of `pl.format`: polars 2.1 panics in `str.format` ("assertion failed:
    i < self.len()") on some frames read from DuckDB, while `concat_str` does not. A time is
    written as the report writes times (`as_text`): `2026-10-11T02:55:39+00:00`.
    """
    parts = template.split("{}")
    if len(parts) != len(args) + 1:
        raise ValueError(f"template {template!r} has {len(parts) - 1} slots for {len(args)} values")
    exprs: list[pl.Expr] = []
    for i, part in enumerate(parts):
        if part:
            exprs.append(pl.lit(part))
        if i < len(args):
            exprs.append(as_text(args[i]))
    return pl.concat_str(exprs) if exprs else pl.lit("")


def finding(
    *,
    entity_type: str,
    entity_id: pl.Expr,
    expected: pl.Expr,
    actual: pl.Expr,
    difference: pl.Expr | None,
    message: pl.Expr,
    value: pl.Expr | None = None,
) -> list[pl.Expr]:
    """Return the select expressions of a check's rows (see `register_check`)."""
    exprs = [
        pl.lit(entity_type).alias("entity_type"),
        as_text(entity_id).alias("entity_id"),
        as_text(expected).alias("expected"),
        as_text(actual).alias("actual"),
        # as computed: `run_checks` keeps a whole number exactly (EXACT_DIFFERENCE) before the
        # float column of FINDINGS_SCHEMA rounds it
        (difference if difference is not None else pl.lit(None, dtype=pl.Float64)).alias(
            "difference"
        ),
        as_text(message).alias("message"),
    ]
    if value is not None:
        exprs.append(value.cast(pl.Float64).alias("value"))
    return exprs


def no_findings() -> pl.LazyFrame:
    """Return an empty check result (for checks whose inputs are absent)."""
    schema: dict[str, pl.DataType] = {c: pl.String() for c in _ROW_COLUMNS}
    schema["difference"] = pl.Float64()
    return pl.LazyFrame(schema=schema)


def _severity(levels: CheckLevels, default: CheckLevels, has_value: bool) -> pl.Expr:
    if levels.severity is not None or not has_value:
        fixed = levels.severity or default.severity or Severity.FAIL.value
        return pl.lit(fixed)
    v = pl.col("value")
    none = pl.lit(None, dtype=pl.String)
    warn = none if levels.warn is None else pl.when(v >= levels.warn).then(pl.lit("warn"))
    if levels.fail is None:
        return warn
    return pl.when(v >= levels.fail).then(pl.lit(Severity.FAIL.value)).otherwise(warn)


def _exact_difference(dtype: pl.DataType | None) -> pl.Expr:
    """Return the EXACT_DIFFERENCE column of a check's rows whose `difference` is `dtype`.

    A whole number (an integer, or a decimal without fraction such as DuckDB's HUGEINT sums)
    is kept as DECIMAL(38, 0); anything else (seconds, shares, no difference) is null, and so is
    a whole number of more than 38 digits (only Int128 arithmetic can make one).
    """
    exact = pl.Decimal(38, 0)
    whole = dtype is not None and (
        dtype.is_integer() or (isinstance(dtype, pl.Decimal) and dtype.scale == 0)
    )
    if whole:
        return pl.col("difference").cast(exact, strict=False).alias(EXACT_DIFFERENCE)
    return pl.lit(None, dtype=exact).alias(EXACT_DIFFERENCE)


def run_checks(ctx: CheckContext, *, only: Iterable[str] | None = None) -> pl.DataFrame:
    """Return the findings of every enabled registered check, in id order.

    Columns: FINDINGS_SCHEMA (its last, EXACT_DIFFERENCE, the difference as an exact integer).
    """
    load_check_plugins()
    wanted = set(only) if only is not None else None
    plans: list[pl.LazyFrame] = []
    for check in registered_checks().values():
        if wanted is not None and check.check_id not in wanted:
            continue
        levels = ctx.levels(check.check_id)
        if not levels.enabled:
            continue
        rows = check.func(ctx).lazy()
        schema = rows.collect_schema()
        has_value = "value" in schema.names()
        plans.append(
            rows.with_columns(
                pl.lit(check.check_id).alias("check_id"),
                _severity(levels, check.default, has_value).alias("severity"),
                pl.col("proves").cast(pl.String)
                if "proves" in schema.names()
                else pl.lit(None, dtype=pl.String).alias("proves"),
                _exact_difference(schema.get("difference")),
            )
            .filter(pl.col("severity").is_not_null())
            .select(list(FINDINGS_SCHEMA))
            .cast(FINDINGS_SCHEMA)  # type: ignore[arg-type]
        )
    if not plans:
        return pl.DataFrame(schema=FINDINGS_SCHEMA)
    # One plan at a time: collect_all runs them concurrently, and their intermediates (group-bys
    # over every txid) would then all be in memory together. With projection pushdown each
    # plan reads only the columns its check uses: no check copies whole rows. (Messages use
    # `fmt`, never `pl.format`, which panics in polars 2.1 on frames read from DuckDB.)
    found = [plan.collect() for plan in plans]
    return pl.concat([pl.DataFrame(schema=FINDINGS_SCHEMA), *found]).sort(
        "check_id", "entity_type", "entity_id", maintain_order=True
    )


def findings_with_kinds(findings: pl.DataFrame) -> pl.DataFrame:
    """Return the findings with the anomaly `kind` and spec `claim` of their check."""
    checks = registered_checks()
    kinds = pl.DataFrame(
        {
            "check_id": list(checks),
            "kind": [c.kind for c in checks.values()],
            "claim": [c.claim for c in checks.values()],
        },
        schema={"check_id": pl.String, "kind": pl.String, "claim": pl.Int64},
    )
    return findings.join(kinds, on="check_id", how="left")
