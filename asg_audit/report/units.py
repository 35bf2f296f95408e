"""How the report shows the unit of a check's Difference column (`Difference (sats)`).

The unit itself is part of the check's registration (`register_check(..., unit="sats")`,
`Check.unit`): a check whose findings have no difference has none.
"""

from __future__ import annotations

__all__ = ["difference_header", "difference_unit"]


def difference_unit(check_id: str) -> str | None:
    """Return the unit of a check's differences (`sats`, `s`, `tasks`) as registered, or None
    (no difference, or a check that is not registered)."""
    from asg_audit.checks import load_check_plugins, registered_checks

    load_check_plugins()  # chain and billing checks register on import
    check = registered_checks().get(check_id)
    return check.unit if check is not None else None


def difference_header(unit: str | None) -> str:
    """Return the Difference column's header with its unit: `Difference (sats)`."""
    return f"Difference ({unit})" if unit else "Difference"
