"""A check's unit (of its findings' difference) is part of its registration.

The units lived in a table of the report (`report/units.py`), apart from the checks: a new
check could be registered without one and its Difference column would say no unit. Now
`register_check(..., unit="sats")` holds it (`Check.unit`, default None: no difference) and
the report reads it from the registry.
"""

from __future__ import annotations

from collections.abc import Iterator

import polars as pl
import pytest

from asg_audit.checks import _registry, load_check_plugins, register_check, registered_checks
from asg_audit.config import CheckLevels
from asg_audit.model import FINDINGS_SCHEMA
from asg_audit.report import content
from asg_audit.report.content import difference_header
from asg_audit.report.units import difference_unit

# The unit each check's Difference column has shown (the report's table before the move).
SHOWN: dict[str, str] = {
    "billing.daily_sum": "sats",
    "billing.fee_share": "sats",
    "billing.invoice_vs_usage": "sats",
    "billing.sats_not_comparable": "sats",
    "billing.total_parts": "sats",
    "billing.vs_results": "sats",
    "chain.block_time": "s",
    "chain.fee_rate": "sat/kB",
    "chain.op_return_value": "sats",
    "chain.outputs_below_cost": "sats",
    "chain.shared_outputs_below_cost": "sats",
    "chain.unconfirmed": "s",
    "chain.zero_payout": "outputs",
    "collection.seen_one_way": "tasks",
    "confidence.formula_untestable": "confidence",
    "confidence.neither_formula": "confidence",
    "confidence.out_of_range": "confidence",
    "consensus.agreement_above_workers": "workers",
    "consensus.agreement_below_majority": "workers",
    "consensus.workers_below_threshold": "workers",
    "cost.mismatch": "sats",
    "cost.unknown": "tasks",
    "input.no_status": "records",
    "input.rejected": "records",
    "input.unnormalised": "records",
    "latency.mean_outside_documented": "s",
    "latency.share_over_slo": "share, 0 to 1",
    "result.changed_after_settlement": "changes",
    "task.created_after_as_of": "tasks",
    "task.not_collected": "tasks",
    "task.settled_before_created": "s",
    "task.stuck": "s",
    "txid.shared_spread": "s",
    "webhook.delivered_before_settled": "s",
}
# The checks whose findings have no difference, so no unit.
WITHOUT: frozenset[str] = frozenset(
    {
        "billing.invalid_figure",
        "chain.txid_unknown",
        "collection.webhook_poll_disagree",
        "consensus.label_outside_options",
        "record.aliases_disagree",
        "settled_at.missing",
        "status.undocumented",
        "task.unknown",
        "txid.malformed",
        "txid.missing",
    }
)


def _one_finding(check_id: str) -> pl.DataFrame:
    row = {
        "check_id": check_id,
        "severity": "warn",
        "entity_type": "task",
        "entity_id": "t1",
        "expected": "1",
        "actual": "2",
        "difference": 1.0,
        "message": "m",
    }
    return pl.DataFrame([row]).with_columns(
        pl.lit(None, dtype=pl.String).alias("proves"), pl.lit(None).alias("difference_exact")
    )


def test_every_registered_check_has_the_unit_the_report_shows() -> None:
    load_check_plugins()
    checks = registered_checks()
    assert set(checks) == set(SHOWN) | WITHOUT  # a new check: give it a unit, or list it
    for check_id, check in checks.items():
        assert check.unit == SHOWN.get(check_id), check_id
        assert difference_unit(check_id) == check.unit, check_id
        (group,) = content.findings_by_check(_one_finding(check_id))
        assert group["unit"] == check.unit, check_id
        header = difference_header(group["unit"])
        assert header == (f"Difference ({check.unit})" if check.unit else "Difference")


@pytest.fixture
def widget_check() -> Iterator[str]:
    check_id = "test.widgets_units"

    @register_check(check_id, default=CheckLevels(severity="warn"), unit="widgets")
    def widgets(ctx: _registry.CheckContext) -> pl.LazyFrame:
        """Widgets counted."""
        return _registry.no_findings()

    yield check_id
    _registry._REGISTRY.pop(check_id)


def test_a_new_check_says_its_unit_where_it_is_registered(widget_check: str) -> None:
    assert registered_checks()[widget_check].unit == "widgets"
    (group,) = content.findings_by_check(_one_finding(widget_check))
    assert group["unit"] == "widgets"
    assert difference_header(group["unit"]) == "Difference (widgets)"


def test_a_check_registered_without_a_unit_has_none() -> None:
    check_id = "test.no_unit"

    @register_check(check_id, default=CheckLevels(severity="warn"))
    def plain(ctx: _registry.CheckContext) -> pl.LazyFrame:
        """Nothing measured."""
        return _registry.no_findings()

    try:
        assert registered_checks()[check_id].unit is None
        assert difference_unit(check_id) is None
    finally:
        _registry._REGISTRY.pop(check_id)


def test_findings_schema_is_what_the_test_frames_mimic() -> None:
    assert set(_one_finding("x").columns) <= set(FINDINGS_SCHEMA)
