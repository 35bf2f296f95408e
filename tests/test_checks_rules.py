"""Each check on tiny hand-made frames: one positive and one negative case, plus the registry."""

from __future__ import annotations

from datetime import timedelta
from html.parser import HTMLParser

import polars as pl
import pytest
from _analyses_frames import T0, result, results_frame, submission, submissions_frame, txid

from asg_audit.audit import analyze_frames
from asg_audit.checks import (
    CheckContext,
    _registry,
    finding,
    register_check,
    registered_checks,
    run_checks,
)
from asg_audit.config import AuditConfig, CheckLevels
from asg_audit.model import FINDINGS_SCHEMA

AS_OF = T0 + timedelta(hours=2)


def _findings(rows, subs=None, *, check_id: str, config: AuditConfig | None = None, **tables):
    subs = subs if subs is not None else [submission(r["task_id"]) for r in rows]
    ctx = CheckContext(
        {"results": results_frame(rows), "submissions": submissions_frame(subs), **tables},
        config=config or AuditConfig(),
        as_of=AS_OF,
    )
    return run_checks(ctx, only=[check_id])


# (check id, the anomalous result, extra submission fields); each compared with result("ok").
CASES = [
    ("consensus.agreement_above_workers", {"agreement_count": 4}, {}),
    (
        "consensus.agreement_below_majority",
        {"agreement_count": 2, "worker_count": 5, "confidence": 0.4},
        {"consensus_threshold": 5},
    ),
    (
        "consensus.workers_below_threshold",
        {"agreement_count": 4, "worker_count": 4, "confidence": 1.0},
        {"consensus_threshold": 5},
    ),
    ("confidence.neither_formula", {"confidence": 0.7}, {}),
    (
        "confidence.out_of_range",
        {"worker_count": 5, "agreement_count": 2, "confidence": 0.4},
        {"consensus_threshold": 3},
    ),
    ("consensus.label_outside_options", {"consensus_label": "Cat"}, {}),
    ("status.undocumented", {"status": "timed_out", "bsv_txid": None}, {}),
    ("task.stuck", {"status": "in_progress", "settled_at": None, "bsv_txid": None}, {}),
    ("task.settled_before_created", {"settled_at": T0 - timedelta(seconds=5)}, {}),
    ("webhook.delivered_before_settled", {"delivered_at": T0 + timedelta(seconds=46)}, {}),
    ("result.changed_after_settlement", {"conflict_count": 1}, {}),
    ("txid.missing", {"bsv_txid": None}, {}),
    ("settled_at.missing", {"settled_at": None}, {}),
    ("txid.malformed", {"bsv_txid": "abc123..."}, {}),
    ("cost.mismatch", {"cost_sats": 975}, {}),
]


@pytest.mark.parametrize(("check_id", "fields", "sub"), CASES, ids=[c[0] for c in CASES])
def test_checks_rule_reports_the_anomalous_task_only(check_id, fields, sub) -> None:
    rows = [result("ok"), result("bad", **fields)]
    subs = [submission("ok"), submission("bad", **sub)]
    got = _findings(rows, subs, check_id=check_id)
    assert got["entity_id"].to_list() == ["bad"]
    assert got.schema == pl.Schema(FINDINGS_SCHEMA)
    assert got["message"][0]


def test_checks_count_checks_take_precedence_over_derived_checks() -> None:
    rows = [result("above", agreement_count=4, confidence=0.3, cost_sats=12345)]
    for check_id in ("confidence.neither_formula", "cost.mismatch"):
        assert _findings(rows, check_id=check_id).height == 0


def test_checks_unknown_cost_is_not_a_mismatch() -> None:
    rows = [result("u", cost_sats=None, cost_unknown=True)]
    assert _findings(rows, check_id="cost.mismatch").height == 0
    info = _findings(rows, check_id="cost.unknown")
    assert info["severity"].to_list() == ["info"]


def _poll_state(*rows: tuple[str, str]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"task_id": pl.String, "state": pl.String}, orient="row")


def test_checks_unknown_task_is_a_tracked_task_the_gateway_answered_404_for() -> None:
    got = _findings(
        [result("seen")],
        [submission("seen"), submission("ghost")],
        check_id="task.unknown",
        poll_state=_poll_state(("seen", "done"), ("ghost", "not_found")),
    )
    assert got["entity_id"].to_list() == ["ghost"]
    assert got["actual"].to_list() == ["404 not found"]


@pytest.mark.parametrize(
    "poll_state",
    [None, _poll_state(("ghost", "pending"))],
    ids=["never polled", "still pending"],
)
def test_checks_unknown_task_leaves_out_tasks_not_collected_yet(poll_state) -> None:
    tables = {} if poll_state is None else {"poll_state": poll_state}
    subs = [submission("seen"), submission("ghost"), submission("other")]
    unknown = _findings([result("seen")], subs, check_id="task.unknown", **tables)
    assert unknown.height == 0
    waiting = _findings([result("seen")], subs, check_id="task.not_collected", **tables)
    assert waiting.select("severity", "entity_type", "difference").rows() == [
        ("info", "collection", 2.0)
    ]
    assert "2 tracked tasks not collected yet" in waiting["message"][0]


def test_checks_not_collected_is_silent_when_every_tracked_task_was_seen() -> None:
    got = _findings([result("seen")], [submission("seen")], check_id="task.not_collected")
    assert got.height == 0


def test_checks_stuck_respects_the_configured_deadline() -> None:
    rows = [result("slow", status="pending", settled_at=None, bsv_txid=None)]  # 2 h old
    config = AuditConfig(checks={"task.stuck": CheckLevels(warn=3600, fail=3 * 3600)})
    got = _findings(rows, check_id="task.stuck", config=config)
    assert got["severity"].to_list() == ["warn"]
    relaxed = AuditConfig(checks={"task.stuck": CheckLevels(fail=4 * 3600)})
    assert _findings(rows, check_id="task.stuck", config=relaxed).height == 0


def test_checks_shared_txid_is_a_finding_only_beyond_the_batch_window() -> None:
    shared, reused = txid("batch"), txid("reused")
    rows = [
        result("b1", bsv_txid=shared, settled_at=T0 + timedelta(seconds=47)),
        result("b2", bsv_txid=shared, settled_at=T0 + timedelta(seconds=48)),
        result("r1", bsv_txid=reused, settled_at=T0 + timedelta(seconds=47)),
        result("r2", bsv_txid=reused, settled_at=T0 + timedelta(hours=1, seconds=47)),
    ]
    got = _findings(rows, check_id="txid.shared_spread")
    assert got.select("entity_type", "entity_id").rows() == [("txid", reused)]


def test_checks_disabled_check_yields_nothing() -> None:
    config = AuditConfig(checks={"txid.missing": CheckLevels(enabled=False)})
    assert (
        _findings([result("x", bsv_txid=None)], check_id="txid.missing", config=config).height == 0
    )


def test_checks_registry_accepts_checks_from_other_modules() -> None:
    @register_check(
        "test.plugin", default=CheckLevels(severity="warn"), claim=6, kind="billing_total_off"
    )
    def plugin(ctx: CheckContext) -> pl.LazyFrame:
        """A month whose usage total is off."""
        usage = ctx.table("billing_usage")
        return usage.select(
            finding(
                entity_type="month",
                entity_id=pl.col("month"),
                expected=pl.lit("0"),
                actual=pl.col("off").cast(pl.String),
                difference=pl.col("off"),
                message=pl.lit("usage off"),
            )
        )

    try:
        ctx = CheckContext(
            {
                "results": results_frame([]),
                "billing_usage": pl.DataFrame({"month": ["2026-09"], "off": [5.0]}),
            },
            config=AuditConfig(),
            as_of=AS_OF,
        )
        got = run_checks(ctx, only=["test.plugin"])
        assert got.select("check_id", "severity", "entity_id").rows() == [
            ("test.plugin", "warn", "2026-09")
        ]
        assert registered_checks()["test.plugin"].kind == "billing_total_off"
    finally:
        _registry._REGISTRY.pop("test.plugin")


def test_checks_every_kind_maps_to_one_check() -> None:
    kinds = [
        c.kind
        for c in registered_checks().values()
        if c.kind and c.func.__module__.startswith("asg_audit.checks.")
    ]
    assert len(kinds) == len(set(kinds)) == 13


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append(tag)

    def handle_data(self, data) -> None:
        self.text.append(data)


def test_audit_html_summary_escapes_data_strings() -> None:
    rows = [result("x", status="<script>alert(1)</script>", bsv_txid=None)]
    audit = analyze_frames(results_frame(rows), config=AuditConfig(), as_of=AS_OF)
    parser = _Text()
    parser.feed(audit._repr_html_())
    assert "script" not in parser.tags
    assert "status.undocumented" in "".join(parser.text)
    assert "Audit as of" in repr(audit)
    assert audit.summary()["worst_severity"] == "fail"


def test_checks_fmt_fills_slots_in_order_and_propagates_null() -> None:
    import polars as pl

    from asg_audit.checks._registry import fmt

    frame = pl.DataFrame({"a": [1, None], "b": ["x", "y"]})
    out = frame.select(fmt("a={} b={}!", pl.col("a"), pl.col("b"))).to_series().to_list()
    assert out == ["a=1 b=x!", None]


def test_checks_fmt_refuses_a_template_that_does_not_match_its_values() -> None:
    import polars as pl
    import pytest

    from asg_audit.checks._registry import fmt

    with pytest.raises(ValueError, match="slots"):
        fmt("{} and {}", pl.col("a"))


def test_checks_registry_description_is_the_whole_first_paragraph() -> None:
    def wrapped(ctx: CheckContext) -> pl.LazyFrame:
        """A summary that wraps
        over two lines.

        Details that are not part of the description.
        """
        return ctx.table("results")

    register_check("test.wrapped", default=CheckLevels(severity="info"))(wrapped)
    try:
        got = registered_checks()["test.wrapped"].description
        assert got == "A summary that wraps over two lines."
    finally:
        _registry._REGISTRY.pop("test.wrapped")


def test_checks_every_registered_description_is_a_whole_sentence() -> None:
    _registry.load_check_plugins()
    checks = registered_checks()
    cut = {k: c.description for k, c in checks.items() if not c.description.endswith(".")}
    assert cut == {}
    assert all("\n" not in c.description for c in checks.values())
    majority = checks["consensus.agreement_below_majority"].description
    assert majority.endswith("or A <= W/2 when T is unknown.")
