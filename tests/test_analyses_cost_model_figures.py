"""Figures tester F found wrong or hard to read, each fixed at its source.

1. `CostModel(fee_percent=0.15)` (a float, from a notebook) expected 999 sats of 1000 + 0.15%:
   the float's exact binary fraction made the integer fee arithmetic overflow int64. A float
   is now taken as written, as the file loader takes it, and the fee arithmetic cannot leave
   int64 whatever the base.
2. `cost_model_fit` listed "325 sats per agreeing worker" twice when the configured model was
   that one with a fee not included: a fee not charged is the same expectation.
3. `formula_fit` counted `fit_a_over_w` over every task (T unknown too) but `fit_a_over_t`
   over the tasks with T known, so the two figures side by side disagreed with the verdict.
"""

from __future__ import annotations

from decimal import Decimal

import polars as pl
import pytest
from _analyses_frames import result, results_frame, submission, submissions_frame

from asg_audit.analyses import consensus, costs, enrich_tasks
from asg_audit.config import AuditConfig, CostModel, load_config
from asg_audit.errors import ConfigError


def _expected(model: CostModel, agreement: list[int]) -> list[int]:
    frame = pl.DataFrame({"agreement_count": agreement})
    return frame.select(costs.expected_cost_expr(model)).to_series().to_list()


@pytest.mark.parametrize(
    "fee, expected",
    [(0.15, 1002), (8.64, 1086), (25.0, 1250), (0.000001, 1000), (0.05, 1001), (0.049, 1000)],
)
def test_a_float_fee_is_taken_as_written(fee: float, expected: int) -> None:
    model = CostModel(kind="fixed", reward_sats=1000, fee_percent=fee, fee_included=True)  # type: ignore[arg-type]
    assert model.fee_percent == Decimal(repr(fee))
    assert _expected(model, [3]) == [expected]
    via_replace = AuditConfig().replace(costs=model)
    assert _expected(via_replace.costs, [3]) == [expected]


def test_a_float_fee_gives_what_the_same_fee_from_a_file_gives(tmp_path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[costs]\nkind = 'fixed'\nfee_percent = 0.15\nfee_included = true\n")
    from_file = load_config(config, env={}).costs
    in_code = CostModel(kind="fixed", fee_percent=0.15, fee_included=True)  # type: ignore[arg-type]
    assert from_file == in_code
    assert _expected(from_file, [2]) == _expected(in_code, [2]) == [1002]


def test_the_fee_arithmetic_stays_exact_for_a_huge_base() -> None:
    # 4e18 sats (beyond any real payment, within the setting's range): base * 2 * 25 used to
    # wrap around int64
    model = CostModel(
        kind="fixed", reward_sats=4 * 10**18, fee_percent=Decimal(25), fee_included=True
    )
    assert _expected(model, [1]) == [5 * 10**18]
    odd = CostModel(kind="fixed", reward_sats=3, fee_percent=Decimal("50"), fee_included=True)
    assert _expected(odd, [1]) == [5]  # 1.5 rounded half up


@pytest.mark.parametrize(
    "fee",
    [float("nan"), float("inf"), -0.1, 100.5, True, "1", Decimal("0.0000001"), None],
)
def test_a_fee_percent_that_is_not_a_usable_percentage_is_refused(fee: object) -> None:
    with pytest.raises(ConfigError, match=r"^\[costs\] fee_percent: "):
        CostModel(fee_percent=fee)  # type: ignore[arg-type]


def test_seven_decimal_places_are_refused_naming_the_limit() -> None:
    with pytest.raises(ConfigError, match="at most 6 decimal places"):
        CostModel(fee_percent=Decimal("0.1234567"))
    assert CostModel(fee_percent=Decimal("0.1234560")).fee_percent == Decimal("0.123456")


def test_a_fee_not_included_is_one_candidate_with_the_model_without_it() -> None:
    rows = [result(f"t{i}", agreement_count=2, worker_count=3, cost_sats=650) for i in range(3)]
    tasks = enrich_tasks(results_frame(rows).lazy())
    configured = CostModel(payout_per_worker_sats=325, fee_percent=Decimal(25), fee_included=False)
    models = costs.candidate_models(tasks, configured)
    fit = costs.cost_model_fit(tasks, models, configured=configured)
    assert fit["model"].to_list().count("325 sats per agreeing worker") == 1
    row = fit.filter(pl.col("model") == "325 sats per agreeing worker").row(0, named=True)
    assert row["configured"] is True and row["explained"] == 3
    assert fit["model"].is_unique().all()


def test_a_over_t_and_a_over_w_are_counted_over_the_same_tasks() -> None:
    # T=3, W=4, A=3: A/T = 1.0, A/W = 0.75
    known = [
        result("t1", worker_count=4, agreement_count=3, confidence=1.0),
        result("w1", worker_count=4, agreement_count=3, confidence=0.75),
        result("w2", worker_count=4, agreement_count=3, confidence=0.75),
        result("b1", worker_count=3, agreement_count=3, confidence=1.0),  # both: W = T
    ]
    unknown = [
        result(f"u{i}", worker_count=4, agreement_count=3, confidence=0.75) for i in range(3)
    ]
    subs = submissions_frame([submission(r["task_id"]) for r in known]).lazy()
    tasks = enrich_tasks(results_frame(known + unknown).lazy(), subs)
    got = consensus.formula_fit(tasks).row(0, named=True)
    assert (got["tasks"], got["t_known"], got["t_unknown"]) == (7, 4, 3)
    assert got["fit_a_over_t"] == got["fit_both"] + got["fit_only_a_over_t"] == 2
    assert got["fit_a_over_w"] == got["fit_both"] + got["fit_only_a_over_w"] == 3
    assert got["fit_a_over_w_t_unknown"] == 3  # counted apart, not in fit_a_over_w
    assert got["share_a_over_t"] == pytest.approx(2 / 4)
    assert got["share_a_over_w"] == pytest.approx(3 / 4)  # of the same 4 tasks
    assert got["follows"] == "A/W"
