"""The unit of each check's Difference column (sats, s, sat/kB, tasks, ...).

The table is read from what each check computes as `difference`. A check whose findings have
no difference, or one unit per finding, has none.
"""

from __future__ import annotations

from typing import Final

__all__ = ["difference_unit"]

_UNITS: Final = {
    # sats
    "cost.mismatch": "sats",
    "chain.outputs_below_cost": "sats",
    "chain.shared_outputs_below_cost": "sats",
    "chain.op_return_value": "sats",
    "billing.total_parts": "sats",
    "billing.fee_share": "sats",
    "billing.invoice_vs_usage": "sats",
    "billing.vs_results": "sats",
    "billing.sats_not_comparable": "sats",
    "billing.daily_sum": "sats",
    # seconds
    "task.stuck": "s",
    "task.settled_before_created": "s",
    "webhook.delivered_before_settled": "s",
    "txid.shared_spread": "s",
    "chain.unconfirmed": "s",
    "chain.block_time": "s",
    "latency.mean_outside_documented": "s",
    # rates and shares
    "chain.fee_rate": "sat/kB",
    "latency.share_over_slo": "share, 0 to 1",
    "confidence.neither_formula": "confidence",
    "confidence.out_of_range": "confidence",
    "confidence.formula_untestable": "confidence",
    # counts
    "chain.zero_payout": "outputs",
    "consensus.agreement_above_workers": "workers",
    "consensus.agreement_below_majority": "workers",
    "consensus.workers_below_threshold": "workers",
    "cost.unknown": "tasks",
    "collection.seen_one_way": "tasks",
    "task.not_collected": "tasks",
    "task.created_after_as_of": "tasks",
    "result.changed_after_settlement": "changes",
}


def difference_unit(check_id: str) -> str | None:
    """Return the unit of a check's differences (`sats`, `s`, `tasks`), or None."""
    return _UNITS.get(check_id)
