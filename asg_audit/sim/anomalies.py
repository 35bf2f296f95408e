"""The planted anomaly kinds and how many of each a world gets."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

__all__ = [
    "MONTH_KINDS",
    "TASK_KINDS",
    "TXID_KINDS",
    "AnomalyKind",
    "resolve_anomaly_counts",
]


class AnomalyKind(StrEnum):
    """Every anomaly the simulator can plant; the value is the ground-truth `kind` string."""

    DUPLICATE_TXID = "duplicate_txid"
    COST_MISMATCH = "cost_mismatch"
    MISSING_TXID = "missing_txid"
    MALFORMED_TXID = "malformed_txid"
    SETTLED_BEFORE_CREATED = "settled_before_created"
    AGREEMENT_ABOVE_WORKERS = "agreement_above_workers"
    AGREEMENT_BELOW_MAJORITY = "agreement_below_majority"
    CONFIDENCE_NEITHER_FORMULA = "confidence_neither_formula"
    LABEL_OUTSIDE_OPTIONS = "label_outside_options"
    UNDOCUMENTED_STATUS = "undocumented_status"
    STUCK_TASK = "stuck_task"
    UNKNOWN_TASK = "unknown_task"
    CHANGED_AFTER_SETTLEMENT = "changed_after_settlement"
    TXID_UNKNOWN_ON_CHAIN = "txid_unknown_on_chain"
    TXID_UNCONFIRMED = "txid_unconfirmed"
    CHAIN_OUTPUTS_BELOW_COST = "chain_outputs_below_cost"
    BILLING_TOTAL_OFF = "billing_total_off"
    BILLING_DAILY_MISMATCH = "billing_daily_mismatch"


TXID_KINDS = (
    AnomalyKind.DUPLICATE_TXID,
    AnomalyKind.TXID_UNKNOWN_ON_CHAIN,
    AnomalyKind.TXID_UNCONFIRMED,
    AnomalyKind.CHAIN_OUTPUTS_BELOW_COST,
)
MONTH_KINDS = (AnomalyKind.BILLING_TOTAL_OFF, AnomalyKind.BILLING_DAILY_MISMATCH)
TASK_KINDS = tuple(k for k in AnomalyKind if k not in TXID_KINDS and k not in MONTH_KINDS)

# `anomalies="all"`: a few of every kind, enough for each check to have something to find.
ALL_COUNTS = {
    **{k: 3 for k in TASK_KINDS},
    **{k: 2 for k in TXID_KINDS},
    **{k: 1 for k in MONTH_KINDS},
}


def resolve_anomaly_counts(
    spec: Mapping[str, float] | str | None, *, tasks: int
) -> dict[AnomalyKind, int]:
    """Return how many of each kind to plant, in AnomalyKind order.

    `spec` is `"all"`, `"none"`/None, or a mapping kind -> rate: a float below 1 is a share
    of the tasks (for month kinds: plant one if the rate is positive), a number >= 1 a count.
    """
    if spec is None or spec == "none":
        return {}
    if spec == "all":
        return dict(ALL_COUNTS)
    if isinstance(spec, str):
        raise ValueError(f"anomalies must be 'all', 'none' or a mapping, not {spec!r}")
    counts: dict[AnomalyKind, int] = {}
    wanted = {AnomalyKind(k): float(v) for k, v in spec.items()}
    for kind in AnomalyKind:
        rate = wanted.get(kind, 0.0)
        if rate <= 0:
            continue
        if rate >= 1:
            counts[kind] = int(rate)
        elif kind in MONTH_KINDS:
            counts[kind] = 1
        else:
            counts[kind] = max(1, round(rate * tasks))
    return counts
