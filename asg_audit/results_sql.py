"""The SQL that derives `results` (one row per task) from `observations`.

Rules (DESIGN.md, "Store"): a settled observation beats any other; the first settled observation
gives the fields and later settled ones that agree with it (and with every earlier one that
does) only fill fields it lacked (a webhook has no counts or cost, a later poll does); each
other version a later settled observation shows (another label, txid, cost, counts, confidence
or settlement time) is counted once in `conflict_count`, however often it was seen, and never
applied. So is a reversal: a poll's answer with another,
non-blank status (a 202 `in_progress`, a 200 `verified` or `failed`) observed after the task
was first seen settled (spec §8.9: a settled result never changes); the result stays settled.
A task never seen settled shows its latest observation. Order is `obs_id`, assigned in the
order records are written; a reversal is judged on `observed_at`, when each was seen (a poll's
answer is first-hand at that time; a file's records carry their ingest time, so an old export
of pending states ingested after the settlement is no reversal). The query reads the tasks
listed in the temp table `_touched`.
"""

from __future__ import annotations

from typing import Final, NamedTuple

from asg_audit.model import Source

__all__ = ["CHANGES_SQL", "RESULTS_SQL", "RESULT_CHANGES", "SINGLE_RESULT_COLUMNS"]

# The result of a task with one observation: that observation, as a `results` row.
SINGLE_RESULT_COLUMNS: Final = """task_id, status, consensus_label, confidence, worker_count,
    agreement_count, bsv_txid, cost_sats,
    (cost_sats IS NULL AND coalesce(cost_unknown, false)) AS cost_unknown, task_type, created_at,
    settled_at, delivered_at, shape, list_sort(flags) AS flags, observed_at AS first_seen_at,
    CASE WHEN status = 'settled' THEN observed_at END AS settled_seen_at,
    observed_at AS last_seen_at, [source] AS sources, 1::BIGINT AS observation_count,
    0::BIGINT AS conflict_count"""

# Fields of a result chosen from the first settled observation (or the latest otherwise).
_RESULT_FIELDS: Final = (
    "consensus_label",
    "confidence",
    "worker_count",
    "agreement_count",
    "bsv_txid",
    "cost_sats",
    "settled_at",
)


class _Compare(NamedTuple):
    """How a field's values are compared, as SQL templates over `{a}` (and `{b}`)."""

    same: str = "{a} = {b}"  # two values are the same settled result
    form: str = "{a}"  # the one form versions are told apart in (`same` values mostly alike)
    text: str = "{a}"  # the form as ranked, whatever the session's settings


# A webhook may print a confidence differently (0.30000000000000004 for 0.3: the webhook/poll
# comparison of analyses.collection allows 1e-9 too) and a settlement time to another
# precision (milliseconds, or rounded to the second; that comparison reports such a
# difference): no change of the settled result. The text of a TIMESTAMPTZ depends on the
# session's time zone, so a time is ranked by its epoch seconds.
_COMPARE: Final = {
    "confidence": _Compare(same="abs({a} - {b}) <= 1e-9", form="round({a}, 9)"),
    "settled_at": _Compare(
        same="abs(epoch({a}) - epoch({b})) < 1",
        form="date_trunc('second', {a})",
        text="epoch({a})",
    ),
}


def _rule(field: str) -> _Compare:
    return _COMPARE.get(field, _Compare())


def _fits(a: str, b: str) -> str:
    """Return whether observations `a` and `b` (aliases) agree on every field both state.

    Every field a settled result keeps counts: spec §8.9 names label, txid and cost; the
    counts, confidence and settlement time are the same result (tester T4: a version differing
    only in them was merged into the result with no word of it)."""
    return " AND ".join(
        f"({a}.{f} IS NULL OR {b}.{f} IS NULL OR "
        + _rule(f).same.format(a=f"{a}.{f}", b=f"{b}.{f}")
        + ")"
        for f in _RESULT_FIELDS
    )


def _pick(field: str) -> str:
    # The first settled observation's value, else one of a later settled observation that
    # agrees with it on every field both state (`fits`): a webhook without counts is filled
    # from a poll of the same settlement, never from another version; else the latest.
    return (
        f"arg_min({field}, obs_id) FILTER (WHERE status = 'settled' AND fits"
        f" AND {field} IS NOT NULL) AS s_{field},"
        f" arg_max({field}, obs_id) FILTER (WHERE {field} IS NOT NULL) AS l_{field}"
    )


def _version_columns() -> str:
    return ", ".join(_rule(f).form.format(a=f"o.{f}") + f" AS {f}" for f in _RESULT_FIELDS)


def _version_list(alias: str) -> str:
    return ", ".join(f"{alias}.{f}" for f in _RESULT_FIELDS)


def _before(a: str, b: str) -> str:
    return f"({a}.stated > {b}.stated OR ({a}.stated = {b}.stated AND {a}.form < {b}.form))"


def _form(alias: str) -> str:
    # the version as text, to rank versions by
    return ", ".join(_rule(f).text.format(a=f"{alias}.{f}") for f in _RESULT_FIELDS)


def _stated(alias: str) -> str:
    return " + ".join(f"({alias}.{f} IS NOT NULL)::INTEGER" for f in _RESULT_FIELDS)


def _choose(field: str) -> str:
    return f"CASE WHEN any_settled THEN s_{field} ELSE l_{field} END AS {field}"


# Observation order is obs_id: ids are assigned in the order records are written.
RESULTS_SQL: Final = f"""
WITH o_scope AS (
    SELECT * FROM observations
    WHERE status IS NOT NULL AND task_id IN (SELECT task_id FROM _touched)
), o_counts AS (
    SELECT task_id, count(*) AS n_obs FROM o_scope GROUP BY task_id
), o_all AS (
    SELECT o_scope.*, n_obs FROM o_scope JOIN o_counts USING (task_id)
), o AS (
    -- Tasks seen more than once need the rules below; most tasks of a bulk ingest are not.
    SELECT * FROM o_all WHERE n_obs > 1
), first_settled AS (
    SELECT * FROM o WHERE status = 'settled'
    QUALIFY row_number() OVER (PARTITION BY task_id ORDER BY obs_id) = 1
), o_first AS (
    -- whether each observation agrees with the task's first settled one (when it has one)
    SELECT o.*, f.task_id IS NULL OR ({_fits("o", "f")}) AS fits_first
    FROM o LEFT JOIN first_settled f ON f.task_id = o.task_id
), o_fits AS (
    -- ... and with every earlier settled one that does: two later records that each agree
    -- with a webhook but not with each other do not both fill the result (review)
    SELECT o.*, o.fits_first AND NOT EXISTS (
        SELECT 1 FROM o_first e WHERE e.task_id = o.task_id AND e.status = 'settled'
            AND e.fits_first AND e.obs_id < o.obs_id AND NOT ({_fits("e", "o")})) AS fits
    FROM o_first o
), single AS (
    SELECT {SINGLE_RESULT_COLUMNS}
    FROM o_all WHERE n_obs = 1
), agg AS (
    SELECT task_id,
        bool_or(status = 'settled') AS any_settled,
        arg_max(status, obs_id) AS l_status,
        {", ".join(_pick(f) for f in _RESULT_FIELDS)},
        bool_or(cost_unknown) FILTER (WHERE status = 'settled') AS s_cost_unknown,
        arg_max(cost_unknown, obs_id) AS l_cost_unknown,
        arg_min(task_type, obs_id) FILTER (WHERE task_type IS NOT NULL) AS task_type,
        arg_min(created_at, obs_id) FILTER (WHERE created_at IS NOT NULL) AS created_at,
        min(delivered_at) AS delivered_at,
        arg_min(shape, obs_id) FILTER (WHERE status = 'settled') AS s_shape,
        arg_max(shape, obs_id) AS l_shape,
        list(flags) FILTER (WHERE status = 'settled') AS s_flags,
        arg_max(flags, obs_id) AS l_flags,
        min(observed_at) AS first_seen_at,
        min(observed_at) FILTER (WHERE status = 'settled') AS settled_seen_at,
        max(observed_at) AS last_seen_at,
        list_sort(list_distinct(list(source))) AS sources,
        count(*) AS observation_count,
        count(*) FILTER (WHERE status = 'settled') AS settled_count
    FROM o_fits
    GROUP BY task_id
), chosen AS (
    SELECT task_id, any_settled, settled_count,
        CASE WHEN any_settled THEN 'settled' ELSE l_status END AS status,
        {", ".join(_choose(f) for f in _RESULT_FIELDS)},
        CASE WHEN any_settled THEN s_cost_unknown ELSE l_cost_unknown END AS cost_unknown_any,
        task_type, created_at, delivered_at,
        CASE WHEN any_settled THEN s_shape ELSE l_shape END AS shape,
        -- the settled observations' flags, less those about a field's absence that a later
        -- settled observation filled in (a webhook without cost, then a poll with it)
        CASE WHEN any_settled THEN list_filter(list_sort(list_distinct(flatten(s_flags))),
                lambda f: NOT ((f = 'cost_unknown' AND s_cost_sats IS NOT NULL)
                               OR (f = 'txid_missing' AND s_bsv_txid IS NOT NULL)))
             ELSE list_sort(l_flags) END AS flags,
        first_seen_at, settled_seen_at, last_seen_at, sources, observation_count
    FROM agg
), versions AS (
    -- The settled observations that disagree with the result on a field both state, each in
    -- the form versions are told apart by.
    SELECT *, {_stated("d")} AS stated, ({_form("d")})::VARCHAR AS form
    FROM (SELECT DISTINCT o.task_id, {_version_columns()}
        FROM o JOIN chosen c ON o.task_id = c.task_id AND c.settled_count > 1
        WHERE o.status = 'settled' AND NOT ({_fits("o", "c")})) d
), conflicts AS (
    -- Each other version counts once, however often and in whatever order it was seen: a
    -- change seen by a poll, a webhook and an export is one. Versions are ranked fullest
    -- first (then by their text: an order of the set, not of when they came); one agreeing
    -- on all it states with a version ranked before it that agrees with none before that one
    -- is that one (a webhook, no counts and no cost, of a poll's version; a poll without a
    -- txid and a webhook with it).
    SELECT v.task_id, count(*) AS conflict_count
    FROM versions v
    WHERE NOT EXISTS (
        SELECT 1 FROM versions w WHERE w.task_id = v.task_id AND {_before("w", "v")}
            AND {_fits("v", "w")}
            AND NOT EXISTS (
                SELECT 1 FROM versions u WHERE u.task_id = w.task_id AND {_before("u", "w")}
                    AND {_fits("w", "u")}))
    GROUP BY v.task_id
), reversals AS (
    -- a poll's answer, after the task was first seen settled, that it is not settled
    SELECT o.task_id, count(*) AS reversal_count
    FROM o JOIN chosen c ON o.task_id = c.task_id AND c.any_settled
    WHERE o.status <> 'settled' AND trim(o.status) <> '' AND o.source = '{Source.POLL}'
        AND o.observed_at > c.settled_seen_at
    GROUP BY o.task_id
)
SELECT a.task_id, a.status, a.consensus_label, a.confidence, a.worker_count, a.agreement_count,
    a.bsv_txid, a.cost_sats,
    (a.cost_sats IS NULL AND coalesce(a.cost_unknown_any, false)) AS cost_unknown,
    a.task_type, a.created_at, a.settled_at, a.delivered_at, a.shape, a.flags,
    a.first_seen_at, a.settled_seen_at, a.last_seen_at, a.sources, a.observation_count,
    coalesce(c.conflict_count, 0) + coalesce(v.reversal_count, 0) AS conflict_count
FROM chosen a LEFT JOIN conflicts c USING (task_id) LEFT JOIN reversals v USING (task_id)
UNION ALL
SELECT * FROM single
"""


def _changed(field: str) -> str:
    """The settled observations of a changed result stating `field` otherwise than it does."""
    rule = _rule(field)
    same = rule.same.format(a=f"c.{field}", b=f"o.{field}")
    shown = _SHOWN.get(field, "{a}")
    was, became = (shown.format(a=rule.form.format(a=f"{x}.{field}")) for x in ("c", "o"))
    return (
        f"SELECT o.task_id, o.obs_id, '{field}' AS field, ({was})::VARCHAR AS was,"
        f" ({became})::VARCHAR AS became"
        " FROM o JOIN changed c USING (task_id)"
        f" WHERE o.status = 'settled' AND o.{field} IS NOT NULL AND c.{field} IS NOT NULL"
        f" AND NOT ({same})"
    )


# A value as the message shows it: a time in ISO 8601, UTC, as the rest of the output.
_SHOWN: Final = {"settled_at": "strftime(timezone('UTC', {a}), '%Y-%m-%dT%H:%M:%SZ')"}

# The audit's table of CHANGES_SQL's rows.
RESULT_CHANGES: Final = "result_changes"

# What changed in each result seen settled and later otherwise (`conflict_count` > 0): per
# task and field, the result's value and every other value stated (in the order first seen),
# by the rules that count the versions; `status` for a poll's later answer that it was not
# settled. For the finding's message: the count alone did not say whether money, the txid or
# the label changed (tester T2).
CHANGES_SQL: Final = f"""
WITH changed AS MATERIALIZED (
    SELECT task_id, settled_seen_at, {", ".join(_RESULT_FIELDS)}
    FROM results WHERE conflict_count > 0
), o AS MATERIALIZED (
    -- one scan of the observations: their tasks only, the columns compared (no raw bodies)
    SELECT task_id, obs_id, status, source, observed_at, {", ".join(_RESULT_FIELDS)}
    FROM observations WHERE task_id IN (SELECT task_id FROM changed)
), differing AS (
    {" UNION ALL ".join(_changed(f) for f in _RESULT_FIELDS)}
    UNION ALL
    SELECT o.task_id, o.obs_id, 'status', 'settled', o.status
    FROM o JOIN changed c USING (task_id)
    WHERE o.status <> 'settled' AND trim(o.status) <> '' AND o.source = '{Source.POLL}'
        AND o.observed_at > c.settled_seen_at
), firsts AS (
    SELECT task_id, field, was, became, min(obs_id) AS first_obs
    FROM differing GROUP BY ALL
)
SELECT task_id, field, any_value(was) AS was, list(became ORDER BY first_obs) AS became,
    min(first_obs) AS first_obs
FROM firsts GROUP BY task_id, field ORDER BY task_id, first_obs
"""
