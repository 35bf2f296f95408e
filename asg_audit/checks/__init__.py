"""Audit checks: a registry of small functions, each turning the data into findings.

Every check is registered with `@register_check(check_id, default=CheckLevels(...), claim=...,
kind=..., unit=...)` (`unit`: of its findings' difference, `sats`, `s`, `tasks`, which the
report's Difference column names; None for a check whose findings have no difference) and takes
a `CheckContext` (the store's tables as lazy frames, the enriched per-task frame, the config and
`as_of`). Other features (chain, billing) register theirs the same way in
their own modules, listed in `PLUGIN_MODULES`, which `run_checks` imports when present.

Precedence between checks, so that one broken field yields one finding: tasks with invalid
counts (A > W, A below the majority, A < 1) are reported by the count checks only; the
confidence-formula, confidence-range and cost checks run on tasks with valid counts; unknown
(0) costs are counted by `cost.unknown`, never compared.
"""

from __future__ import annotations

from asg_audit.checks import collection, consensus, costs, inputs, latency, tasks
from asg_audit.checks._registry import (
    PLUGIN_MODULES,
    Check,
    CheckContext,
    CheckFunction,
    finding,
    findings_with_kinds,
    load_check_plugins,
    no_findings,
    register_check,
    registered_checks,
    run_checks,
)

__all__ = [
    "PLUGIN_MODULES",
    "Check",
    "CheckContext",
    "CheckFunction",
    "collection",
    "consensus",
    "costs",
    "finding",
    "findings_with_kinds",
    "inputs",
    "latency",
    "load_check_plugins",
    "no_findings",
    "register_check",
    "registered_checks",
    "run_checks",
    "tasks",
]
