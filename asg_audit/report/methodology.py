"""The report's methodology: how each figure is computed and what the checks can prove.

Some lines depend on the report: where the findings are (all in summary.json, or cut), and the
chain coverage and fee coverage tables, named only when the report holds them.
"""

from __future__ import annotations

from typing import Final

from asg_audit.report import content

__all__ = ["findings_methodology", "methodology"]

_BEFORE: Final = (
    "Pending counts tasks in a documented status before settled (pending, in_progress, "
    "verified). Tasks in any other status (failed, timed_out, ...: the API documents none, "
    "and some are final) are counted apart as Other status.",
    "Latency is settled_at minus created_at per settled task; percentiles interpolate linearly "
    "between ranks (numpy's default). Tasks settled before they were created are left out of "
    "latency and reported as findings.",
    "Unsettled tasks are not dropped: the survival curve (Kaplan-Meier) counts them as censored "
    "at the audit's as-of time, and the backlog shows their ages. Tasks created after the as-of "
    "time have no age yet: both leave them out, and a note under the backlog counts them.",
    "Agreement is A/W pooled over tasks with 1 <= A <= W, with a 95% Wilson score interval.",
    "The confidence formula is the one (A/T or A/W) that alone explains most tasks with valid "
    "counts whose threshold T is known (tracked); tasks fitting neither are findings. Without T "
    "only A/W can be tested: a task missing it is a finding only if no threshold of 2 to 10 "
    "gives its confidence as A/T; otherwise it is counted as undetermined (info).",
    "Expected costs follow the configured cost model in integer sats; a reported cost of 0 is "
    "unknown and never compared. Sats spent is the sum of known costs of settled tasks.",
)
_AFTER: Final = (
    "Limits of the chain checks: which outputs of a transaction pay the workers is not "
    "published per task. Change back to the payer, OP_RETURN data outputs and batched "
    "settlements (one txid for several tasks) mean a cost is compared with the transaction's "
    "non-data outputs, an upper bound: an overstated cost hidden under change is caught only "
    "when the payer's change scripts are configured. A txid the index does not know proves "
    "only that this index (and network) does not know it, not that no payment happened; an "
    "unconfirmed one is pending, not missing; a block time is the miner's clock, not when the "
    "payment was made.",
)


def findings_methodology(left_out: int, stored_run_id: str | None) -> str:
    """Return the methodology line on where the findings are (all in summary.json, or not)."""
    where = "every finding is in summary.json"
    if left_out:
        where = (
            f"summary.json lists at most {content.MAX_SUMMARY_FINDINGS:,} findings, an equal"
            f" share of each check's worst (severity first), and left {left_out:,} out"
            + (
                f"; every finding is in the store's findings table (run id {stored_run_id})"
                if stored_run_id is not None
                else ", which this report's store did not keep either"
            )
        )
    return (
        "Charts are drawn from aggregates (bins, steps, per-day rows), never from one point per "
        f"task. Findings list the worst entities per check (largest |difference| first); {where}."
        " A difference that is a whole number (sats, counts) is the exact figure, every digit"
        " kept; a fractional one (seconds, shares) is rounded for display."
    )


def _proves_line(chain_coverage: bool) -> str:
    on_chain = (
        "is not a finding but is counted as not checkable (reason) in the chain coverage table"
        if chain_coverage
        else "is not a finding (no chain coverage in this report: no cost was checked on chain)"
    )
    return (
        "What a finding proves is stated under its check (Proves): exact (about one task's own "
        "transaction or one month's own figures), aggregate only (a total is checked, not which "
        "part of it is wrong: a txid shared by several tasks, a month's bill against the sum of "
        "its tasks' costs). A settled task whose cost cannot be checked on chain "
        f"{on_chain}. Checks without a Proves line test the Gateway's own answers against its "
        "documented rules and say nothing about what was paid on chain."
    )


_FEES: Final = (
    "How many stored transactions' fees chain.fee_rate could check is in the fee coverage "
    "table (exact, or not checkable (reason): no transaction bytes, fetch_parents off, a parent "
    "transaction unknown to the index). A fee not checkable is not a finding: no chain.fee_rate "
    "finding says nothing about the fees that were not checked."
)


def methodology(
    *, left_out: int, stored_run_id: str | None, chain_coverage: bool, fee_coverage: bool
) -> list[str]:
    """Return the methodology lines of a report: `left_out` findings summary.json could not
    hold (`stored_run_id`: where the store keeps them all), and whether the report shows the
    chain coverage and fee coverage tables (never referred to when absent)."""
    return [
        *_BEFORE,
        findings_methodology(left_out, stored_run_id),
        _proves_line(chain_coverage),
        *([_FEES] if fee_coverage else []),
        *_AFTER,
    ]
