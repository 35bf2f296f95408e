"""The one normaliser: raw records in, a normalised frame and a rejects frame out.

Every source (file ingest, collector polls, webhook deliveries) goes through `normalise_batch`.
It is vectorised: the JSON is parsed once per record by DuckDB's JSON reader inside an in-memory
connection (a compute engine here, not the store), every field is type-checked with `json_type`,
and no Python code runs per record. It is the only place where fields are interpreted;
what a timestamp is comes from `asg_audit.timestamps` (the same rules as `track`).

A record that cannot be used becomes a reject with a reason code (`RejectReason`), the field at
fault and a human-readable detail. A record that parses but breaks an invariant of the service is
kept, with flags (`Flag`): those are audit findings, not input errors.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import duckdb
import polars as pl

from asg_audit import engine
from asg_audit.jsonload import TooDeepError, nesting_depth_over
from asg_audit.model import (
    DOCUMENTED_STATUSES,
    MAX_SATS,
    MAX_TASK_ID_LENGTH,
    NORMALISED_SCHEMA,
    OBSERVATION_META_SCHEMA,
    REJECTS_SCHEMA,
    TASK_ID_PATTERN,
    TXID_PATTERN,
    Flag,
    RejectReason,
    Shape,
    Source,
)
from asg_audit.timestamps import JSON_INT_TYPES, timestamp_problem_sql, timestamp_sql

__all__ = [
    "DEFAULT_MAX_RECORD_BYTES",
    "NORMALISED_COLUMNS",
    "RAW_SCHEMA",
    "RULES_VERSION",
    "NormalisedBatch",
    "RawRecord",
    "normalise_batch",
    "normalise_records",
    "normalise_sql",
    "raw_frame",
    "split_chunks",
]

# The version of the rules below: what the normaliser accepts, rejects or flags, and how a
# field is read; and of how `results` is derived from observations (`asg_audit.results_sql`).
# Bump it with every change to them (a new reject reason or flag, a timestamp form accepted or
# refused, a new conflict rule, ...): a store whose rows were judged by older rules is judged
# again, from each observation's stored raw text, by the next writer that opens it
# (`asg_audit.rejudge`), and a store judged by newer rules is refused by this code's writers.
# 1: the rules as of the rules version's introduction (no zone or +24:00 is a bad_timestamp).
# 2: an object repeating a key, at any depth, is an `invalid_json` reject (DuckDB reads the
#    first value, Python's json and jq the last), as the webhook receiver answers it.
# 3: a poll answering "not settled" for a task already seen settled (a reversal) counts as a
#    conflict of its result (results_sql); a store's results are derived again by it.
# 4: two aliases of one field present with different values (`cost_sats` 650 and
#    `settlement.total_cost_sats` 975) flag the record `aliases_disagree`, with a detail entry
#    per pair; the value used is still the first alias's.
# 5: each other version of a settled result counts once in its conflicts, however often seen;
#    other counts, confidence (beyond 1e-9) or settled_at (by 1 s or more) make one too; a
#    result's missing fields are filled only from records agreeing with it (results_sql;
#    tester T4 and the reviews).
RULES_VERSION: Final = 5
# A record larger than this is quarantined without being parsed (a hostile or broken body).
DEFAULT_MAX_RECORD_BYTES: Final = 1_000_000

# The input of `normalise_batch`: one row per raw record.
RAW_SCHEMA: Final[dict[str, pl.DataType]] = {
    "raw": pl.String(),  # the record as text; null when it is not valid UTF-8
    "raw_bytes": pl.Binary(),  # the original bytes, only where `raw` is null
    "source": pl.String(),
    "observed_at": OBSERVATION_META_SCHEMA["observed_at"],
    "origin": pl.String(),
    "origin_line": pl.Int64(),
    "origin_hash": pl.String(),
    "task_id_hint": pl.String(),  # the id the request was about (polls), else null
    "http_status": pl.Int16(),
}


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One raw record and where it came from, for small batches (polls, deliveries)."""

    body: bytes | str
    source: Source
    origin: str
    observed_at: datetime
    origin_line: int | None = None
    task_id_hint: str | None = None
    http_status: int | None = None


@dataclass(frozen=True, slots=True)
class NormalisedBatch:
    """The two outputs of the normaliser; every input row is in exactly one of them."""

    accepted: pl.DataFrame  # NORMALISED_SCHEMA + OBSERVATION_META_SCHEMA
    rejects: pl.DataFrame  # REJECTS_SCHEMA minus run_id (the store adds it)


def raw_frame(records: Iterable[RawRecord]) -> pl.DataFrame:
    """Return the RAW_SCHEMA frame for a handful of records (decoding bytes as UTF-8)."""
    rows: dict[str, list[object]] = {name: [] for name in RAW_SCHEMA}
    for rec in records:
        text: str | None
        raw_bytes: bytes | None = None
        if isinstance(rec.body, bytes):
            try:
                text = rec.body.decode("utf-8")
            except UnicodeDecodeError:
                text, raw_bytes = None, rec.body
        else:
            text = rec.body
        rows["raw"].append(text)
        rows["raw_bytes"].append(raw_bytes)
        rows["source"].append(str(rec.source))
        rows["observed_at"].append(rec.observed_at.astimezone(UTC))
        rows["origin"].append(rec.origin)
        rows["origin_line"].append(rec.origin_line)
        rows["origin_hash"].append(None)
        rows["task_id_hint"].append(rec.task_id_hint)
        rows["http_status"].append(rec.http_status)
    return pl.DataFrame(rows, schema=RAW_SCHEMA)


# JSON paths extracted in one parse per record, by position.
_PATHS: Final = (
    "$.task_id",  # 1
    "$.status",  # 2
    "$.consensus_label",  # 3
    "$.confidence",  # 4
    "$.worker_count",  # 5
    "$.agreement_count",  # 6
    "$.bsv_txid",  # 7
    "$.settlement",  # 8
    "$.settlement.bsv_txid",  # 9
    "$.settlement.total_cost_sats",  # 10
    "$.settlement.settled_at",  # 11
    "$.total_cost_sats",  # 12
    "$.cost_sats",  # 13
    "$.type",  # 14
    "$.task_type",  # 15
    "$.created_at",  # 16
    "$.settled_at",  # 17
    "$.timestamp",  # 18
    "$.event",  # 19
    "$.error",  # 20
    "$.error.message",  # 21
)
_P = {path: i + 1 for i, path in enumerate(_PATHS)}
# The aliases of a field, by the name it is stored under, in the order they are taken: the
# first present one gives the value. Another present one stating something else flags the
# record `aliases_disagree` (compared as the field is stored: sats as integers, a txid
# lower-cased and trimmed, a timestamp as its instant, a type exactly).
_ALIASES: Final = {
    "cost_sats": ("$.settlement.total_cost_sats", "$.total_cost_sats", "$.cost_sats"),
    "bsv_txid": ("$.settlement.bsv_txid", "$.bsv_txid"),
    "settled_at": ("$.settlement.settled_at", "$.settled_at"),
    "task_type": ("$.task_type", "$.type"),
}
# An alias's value is shown in an `aliases_disagree` detail cut at this many characters (a txid
# whole).
_SHOWN_CHARS: Final = 80
# The objects whose fields are read: a key they repeat is read as its first value by DuckDB
# (the paths above), its last by Python's json and jq, so such a record is ambiguous: an
# `invalid_json` reject, as the webhook receiver answers it. Inner objects first: the receiver's
# parser finishes them first, so it names their repeated key before one of the top level.
_KEYED: Final = ("$.settlement", "$.error", "$")
_NUM_TYPES = "('UBIGINT', 'BIGINT', 'DOUBLE')"


def _sql_list(values: Iterable[str]) -> str:
    return "(" + ", ".join("'" + v.replace("'", "''") + "'" for v in sorted(values)) + ")"


def normalise_sql(source: str, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES) -> str:
    """Return the normalising query over `source`, a relation with the RAW_SCHEMA columns.

    Its output is NORMALISED_COLUMNS: the normalised fields and observation metadata of every
    record, with `reject_reason`, `reject_field`, `reject_detail` and `reject_raw` set on the
    records that are rejects. `normalise_batch` runs it on a frame in an in-memory engine; bulk
    file ingest runs the same query inside the store (`Store.stage_raw`).

    Each record is parsed three times by DuckDB's JSON reader, whatever the number of fields:
    once for the types of all paths (which also tells valid from invalid JSON), once for their
    text values, once for the keys of the objects read (a key repeated is ambiguous). Only a
    valid non-object document is parsed again, to name its type, and only a record holding
    keys never read or an array or object where a field is read, for the keys of every object
    it nests. Every rule below is then plain column arithmetic on those lists.
    """
    paths = "[" + ", ".join(f"'{p}'" for p in _PATHS) + "]"
    key_paths = "[" + ", ".join(f"'{p}'" for p in _KEYED) + "]"

    # Each path's type, value and presence are unpacked into columns once (`unpacked` below):
    # the rules then refer to columns, which keeps the expression trees small (a query this
    # size has a fixed cost per run that grows with its expressions: it matters for the few
    # records of a poll or a delivery).
    def ty(path: str) -> str:  # the JSON type at a path ('NULL' for null, NULL when absent)
        return f"t{_P[path]}"

    def sv(path: str) -> str:  # the text value at a path (unquoted strings, JSON for objects)
        return f"v{_P[path]}"

    def has(path: str) -> str:
        return f"h{_P[path]}"

    unpack = ",\n    ".join(
        f"ty[{k}] AS t{k}, sv[{k}] AS v{k}, coalesce(ty[{k}], 'NULL') <> 'NULL' AS h{k}"
        for k in range(1, len(_PATHS) + 1)
    )

    def first(*ps: str) -> tuple[str, str, str]:
        """(type, value, field name) of the first present path of several aliases."""
        t = "CASE " + " ".join(f"WHEN {has(p)} THEN {ty(p)}" for p in ps) + " END"
        v = "CASE " + " ".join(f"WHEN {has(p)} THEN {sv(p)}" for p in ps) + " END"
        f = "CASE " + " ".join(f"WHEN {has(p)} THEN '{p[2:]}'" for p in ps) + " END"
        return t, v, f

    # The first present of several aliases of a field, as columns (`aliases` below).
    alias_exprs = dict(
        zip(
            ("cost_t", "cost_v", "cost_f"),
            first(*_ALIASES["cost_sats"]),
            strict=True,
        )
    )
    alias_exprs["txid_v"] = first(*_ALIASES["bsv_txid"])[1]
    alias_exprs.update(
        zip(
            ("settled_t", "settled_v", "settled_f"),
            first(*_ALIASES["settled_at"]),
            strict=True,
        )
    )
    alias_exprs["type_v"] = first(*_ALIASES["task_type"])[1]
    aliases = ",\n    ".join(f"{expr} AS {name}" for name, expr in alias_exprs.items())
    cost_t, cost_v, cost_f = "cost_t", "cost_v", "cost_f"
    txid_v, type_v = "txid_v", "type_v"
    settled_t, settled_v, settled_f = "settled_t", "settled_v", "settled_f"
    ints = JSON_INT_TYPES

    # Boolean columns, each computed once; the reject reason is the first that is true.
    checks: list[tuple[str, str, str, str]] = [
        ("raw IS NULL", RejectReason.INVALID_UTF8, "NULL", "'the record is not valid UTF-8'"),
        (
            f"strlen(raw) > {max_record_bytes}",
            RejectReason.TOO_LARGE,
            "NULL",
            f"'record of ' || strlen(raw) || ' bytes is over the limit of {max_record_bytes}'",
        ),
        ("doc_type IS NULL", RejectReason.INVALID_JSON, "NULL", "'not valid JSON'"),
        (
            "doc_type <> 'OBJECT'",
            RejectReason.NOT_OBJECT,
            "NULL",
            "'expected a JSON object, got ' || lower(doc_type)",
        ),
        (
            "dup_key IS NOT NULL",
            RejectReason.INVALID_JSON,
            "dup_field",
            "'duplicate key ' || to_json(dup_key) || ': the object can be read two ways"
            " (first or last value), so it is not used'",
        ),
        (
            f"{has('$.task_id')} AND {ty('$.task_id')} <> 'VARCHAR'",
            RejectReason.BAD_TYPE,
            "'task_id'",
            f"'expected a string, got ' || lower({ty('$.task_id')})",
        ),
        (
            f"coalesce({sv('$.task_id')}, task_id_hint, '') = ''",
            RejectReason.MISSING_TASK_ID,
            "'task_id'",
            "'no task id in the record or its origin'",
        ),
        (
            f"NOT regexp_full_match(coalesce({sv('$.task_id')}, task_id_hint),"
            f" '{TASK_ID_PATTERN}')",
            RejectReason.UNSAFE_TASK_ID,
            "'task_id'",
            f"'task id must match {TASK_ID_PATTERN} (at most {MAX_TASK_ID_LENGTH} characters)'",
        ),
        (
            f"task_id_hint IS NOT NULL AND {sv('$.task_id')} <> task_id_hint",
            RejectReason.TASK_ID_MISMATCH,
            "'task_id'",
            "'the body names another task than the request'",
        ),
        (
            f"{has('$.settlement')} AND {ty('$.settlement')} <> 'OBJECT'",
            RejectReason.BAD_SETTLEMENT,
            "'settlement'",
            f"'expected an object, got ' || lower({ty('$.settlement')})",
        ),
    ]
    for path in (
        "$.status", "$.consensus_label", "$.bsv_txid", "$.settlement.bsv_txid", "$.type",
        "$.task_type", "$.event",
    ):  # fmt: skip
        checks.append(
            (
                f"{has(path)} AND {ty(path)} <> 'VARCHAR'",
                RejectReason.BAD_TYPE,
                f"'{path[2:]}'",
                f"'expected a string, got ' || lower({ty(path)})",
            )
        )
    for path in ("$.worker_count", "$.agreement_count"):
        checks.append(
            (
                f"{has(path)} AND NOT ({ty(path)} IN {ints}"
                f" AND TRY_CAST({sv(path)} AS HUGEINT) BETWEEN 0 AND 2147483647)",
                RejectReason.BAD_TYPE,
                f"'{path[2:]}'",
                f"'expected a non-negative integer, got ' || lower({ty(path)})"
                f" || ' ' || left({sv(path)}, 40)",
            )
        )
    checks.append(
        (
            f"{has('$.confidence')} AND NOT ({ty('$.confidence')} IN {_NUM_TYPES}"
            f" AND isfinite(TRY_CAST({sv('$.confidence')} AS DOUBLE)))",
            RejectReason.BAD_TYPE,
            "'confidence'",
            f"'expected a finite number, got ' || lower({ty('$.confidence')})"
            f" || ' ' || left({sv('$.confidence')}, 40)",
        )
    )
    checks.append(
        (
            f"({cost_t}) IS NOT NULL AND NOT (({cost_t}) IN {ints}"
            f" AND TRY_CAST({cost_v} AS HUGEINT) BETWEEN 0 AND {MAX_SATS})",
            RejectReason.BAD_SATS,
            cost_f,
            "'sats must be a non-negative integer of at most 21 million BSV"
            f" ({MAX_SATS:,} sats), got ' || lower({cost_t})"
            f" || ' ' || left({cost_v}, 40)",
        )
    )
    for t, v, f, parsed in (
        (ty("$.created_at"), sv("$.created_at"), "'created_at'", "created_at"),
        (settled_t, settled_v, settled_f, "settled_at"),
        (ty("$.timestamp"), sv("$.timestamp"), "'timestamp'", "delivered_at"),
    ):
        checks.append(
            (
                f"({t}) IS NOT NULL AND ({t}) <> 'NULL' AND {parsed} IS NULL",
                RejectReason.BAD_TIMESTAMP,
                f,
                timestamp_problem_sql(t, v),
            )
        )

    # A repeated key. Every path read is a key of one of the objects whose keys are listed,
    # and each present one is in its list: lists no longer, all together, than the number of
    # paths present hold those keys once each and nothing else, so no key repeats. Such a
    # record, with no array or object where a field is read (but the settlement and error
    # objects), nests no other object either: the documented records, searched no further.
    # Any other record is parsed again for the keys of every object it nests (a repeat in an
    # object never read is refused too, as the receiver refuses it at any depth), and its
    # objects are searched one by one only when some key is twice in the list of all of them
    # (objects may share a key: `task_id` at the top and in `settlement` is no repeat).
    assert all(p.rpartition(".")[0] in _KEYED for p in _PATHS)
    listed = " + ".join(f"coalesce(len(keys[{k}]), 0)" for k in range(1, len(_KEYED) + 1))
    present = " + ".join(f"({ty(p)} IS NOT NULL)::INTEGER" for p in _PATHS)
    unusual = " OR ".join(
        [f"{listed} > {present}"]
        + [f"{ty(p)} IN ('OBJECT', 'ARRAY')" for p in _PATHS if p not in _KEYED]
        + [f"{ty(p)} = 'ARRAY'" for p in _KEYED if p != "$"]
    )
    root = _KEYED.index("$") + 1
    # The first object read (in `_KEYED` order) repeating a key, else 0 (a nested one).
    dup_obj = (
        "CASE "
        + " ".join(
            f"WHEN list_unique(keys[{k}]) < len(keys[{k}]) THEN {k}"
            for k in range(1, len(_KEYED) + 1)
        )
        + " ELSE 0 END"
    )
    dup_prefix = (
        "CASE dup_obj "
        + " ".join(f"WHEN {k} THEN '{p[2:]}.'" for k, p in enumerate(_KEYED, 1) if p != "$")
        + " ELSE '' END"
    )

    flag_cols = ",\n    ".join(
        f"coalesce({c}, false) AS c{i}" for i, (c, _, _, _) in enumerate(checks)
    )
    reason = (
        "CASE "
        + " ".join(f"WHEN c{i} THEN '{r}'" for i, (_, r, _, _) in enumerate(checks))
        + " END"
    )
    field = (
        "CASE " + " ".join(f"WHEN c{i} THEN {f}" for i, (_, _, f, _) in enumerate(checks)) + " END"
    )
    detail = (
        "CASE " + " ".join(f"WHEN c{i} THEN {d}" for i, (_, _, _, d) in enumerate(checks)) + " END"
    )

    shape = (
        f"CASE WHEN {has('$.error')} THEN '{Shape.ERROR}'"
        f" WHEN {has('$.event')} THEN '{Shape.WEBHOOK}'"
        f" WHEN {has('$.settlement')} THEN '{Shape.NESTED}'"
        f" WHEN {has('$.bsv_txid')} OR {has('$.settled_at')} OR {has('$.total_cost_sats')}"
        f" OR {has('$.cost_sats')} THEN '{Shape.FLAT}'"
        f" ELSE '{Shape.PARTIAL}' END"
    )

    # Two aliases of a field that disagree: the one used (the first present) against each
    # later one present. The same value written two ways agrees: 975 and 975, a txid in upper
    # and lower case, one instant as `Z`, `+00:00` or epoch seconds. A later alias of a type or
    # value the field refuses (a string cost, a timestamp that does not parse) disagrees.
    def same(column: str, a: str, b: str) -> str:
        if column == "cost_sats":
            return (
                f"({ty(a)} IN {ints} AND {ty(b)} IN {ints}"
                f" AND TRY_CAST({sv(a)} AS HUGEINT) = TRY_CAST({sv(b)} AS HUGEINT))"
            )
        if column == "bsv_txid":  # both strings, else a bad_type reject
            return (
                f"nullif(lower(trim({sv(a)})), '')"
                f" IS NOT DISTINCT FROM nullif(lower(trim({sv(b)})), '')"
            )
        if column == "settled_at":  # `a` is the one parsed into settled_at (the first)
            assert a == _ALIASES[column][0] and len(_ALIASES[column]) == 2
            return f"settled_at = ({timestamp_sql(ty(b), sv(b))})"
        return f"{sv(a)} = {sv(b)}"  # task_type: both strings, else a bad_type reject

    def shown(path: str) -> str:  # a value as written (a string JSON-quoted), cut
        n = _SHOWN_CHARS
        return (
            f"CASE WHEN {ty(path)} = 'VARCHAR' THEN to_json(left({sv(path)}, {n}))::VARCHAR"
            f" ELSE left({sv(path)}, {n}) END"
            f" || CASE WHEN length({sv(path)}) > {n} THEN '...' ELSE '' END"
        )

    pairs: list[str] = []  # the condition of any two aliases of a field being present
    details: list[str] = []
    for column, ps in _ALIASES.items():
        for i, a in enumerate(ps):
            used = " AND ".join([has(a), *(f"NOT {has(p)}" for p in ps[:i])])
            for b in ps[i + 1 :]:
                pairs.append(f"({has(a)} AND {has(b)})")
                details.append(
                    f"CASE WHEN {used} AND {has(b)} AND NOT coalesce({same(column, a, b)}, false)"
                    f" THEN '{Flag.ALIASES_DISAGREE} {column}: {a[2:]} = ' || {shown(a)}"
                    f" || ' (used), {b[2:]} = ' || {shown(b)} END"
                )
    alias_notes = (
        f"CASE WHEN {' OR '.join(pairs)}"
        f" THEN list_filter([{', '.join(details)}], lambda x: x IS NOT NULL) END"
    )

    documented = _sql_list(DOCUMENTED_STATUSES)
    flags = (
        "list_concat(list_filter(["
        f"CASE WHEN cost_sats_raw = 0 THEN '{Flag.COST_UNKNOWN}' END,"
        f"CASE WHEN status NOT IN {documented} THEN '{Flag.STATUS_UNDOCUMENTED}' END,"
        f"CASE WHEN bsv_txid IS NOT NULL AND (NOT regexp_full_match(bsv_txid, '{TXID_PATTERN}')"
        f" OR ltrim(bsv_txid, '0') = '') THEN '{Flag.TXID_MALFORMED}' END,"
        f"CASE WHEN status = 'settled' AND bsv_txid IS NULL AND shape <> '{Shape.ERROR}'"
        f" THEN '{Flag.TXID_MISSING}' END,"
        f"CASE WHEN settled_at < created_at THEN '{Flag.SETTLED_BEFORE_CREATED}' END,"
        f"CASE WHEN agreement_count > worker_count THEN '{Flag.AGREEMENT_ABOVE_WORKERS}' END,"
        f"CASE WHEN confidence <= 0.5 OR confidence > 1 THEN '{Flag.CONFIDENCE_OUT_OF_RANGE}' END,"
        f"CASE WHEN type_alias THEN '{Flag.TYPE_ALIAS}' END,"
        f"CASE WHEN epoch_ts THEN '{Flag.EPOCH_TIMESTAMP}' END"
        "], lambda x: x IS NOT NULL),"
        # the flag and its details, for the few records stating a field twice differently
        f" CASE WHEN len(alias_notes) > 0"
        f" THEN list_prepend('{Flag.ALIASES_DISAGREE}', alias_notes) END)"
    )

    return f"""
WITH src AS (
  -- One parse gives validity and every field's type; an object is the only valid JSON whose
  -- first character is an opening brace.
  SELECT *,
    -- json_valid first: TRY() would re-run every vector holding one bad record row by row.
    CASE WHEN raw IS NOT NULL AND strlen(raw) <= {max_record_bytes} AND json_valid(raw)
         THEN json_type(raw, {paths}) END AS ty
  FROM {source}
), typed_src AS (
  SELECT *,
    CASE WHEN ty IS NULL THEN NULL
         WHEN starts_with(raw, '{{') THEN 'OBJECT'  -- most records: no copy made by ltrim
         WHEN starts_with(ltrim(raw, ' ' || chr(9) || chr(10) || chr(13)), '{{') THEN 'OBJECT'
         ELSE json_type(raw) END AS doc_type
  FROM src
), parsed AS (
  SELECT * REPLACE (CASE WHEN doc_type = 'OBJECT' THEN ty END AS ty),
    CASE WHEN doc_type = 'OBJECT' THEN json_extract_string(raw, {paths}) END AS sv,
    -- The keys of each object read, as written: a repeated key stays in the list.
    CASE WHEN doc_type = 'OBJECT' THEN json_keys(raw, {key_paths}) END AS keys
  FROM typed_src
), unpacked AS (
  SELECT *,
    {unpack}
  FROM parsed
), nesting AS (
  SELECT *,
    CASE WHEN {unusual} THEN json_keys(raw, '$..*') END AS nested_keys
  FROM unpacked
), gathered AS (
  SELECT *,
    -- Every key of every object of the record (NULL for the documented records).
    CASE WHEN nested_keys IS NOT NULL
         THEN list_concat(keys[{root}], flatten(nested_keys)) END AS all_keys
  FROM nesting
), located AS (
  SELECT *, CASE WHEN list_unique(all_keys) < len(all_keys) THEN {dup_obj} END AS dup_obj
  FROM gathered
), repeated AS (
  SELECT *,
    -- The keys of the first object that repeats one: the objects read first, then those
    -- nested anywhere.
    CASE WHEN dup_obj > 0 THEN keys[dup_obj]
         WHEN dup_obj = 0 THEN list_filter(nested_keys, lambda k: list_unique(k) < len(k))[1]
         END AS dup_keys
  FROM located
), keyed AS (
  SELECT * EXCLUDE (keys, nested_keys, all_keys, dup_keys),
    CASE WHEN dup_keys IS NOT NULL
         THEN list_filter(dup_keys, lambda k, i: list_position(dup_keys, k) < i)[1]
         END AS dup_key,
    -- A repeat deeper than the objects read is named by its key alone (as the receiver does).
    {dup_prefix} || dup_key AS dup_field
  FROM repeated
), aliased AS (
  SELECT *,
    {aliases}
  FROM keyed
), times AS (
  -- Each timestamp is parsed once: the checks and the fields below share it.
  SELECT *,
    {timestamp_sql(ty("$.created_at"), sv("$.created_at"))} AS created_at,
    {timestamp_sql(settled_t, settled_v)} AS settled_at,
    {timestamp_sql(ty("$.timestamp"), sv("$.timestamp"))} AS delivered_at
  FROM aliased
), checked AS (
  SELECT *,
    {flag_cols}
  FROM times
), judged AS (
  SELECT *, {reason} AS reject_reason, {field} AS reject_field, {detail} AS reject_detail
  FROM checked
), fields AS (
  SELECT *,
    coalesce({sv("$.task_id")}, task_id_hint) AS task_id,
    CASE WHEN {sv("$.event")} = 'task.settled' AND NOT {has("$.status")} THEN 'settled'
         ELSE {sv("$.status")} END AS status,
    {sv("$.consensus_label")} AS consensus_label,
    TRY_CAST({sv("$.confidence")} AS DOUBLE) AS confidence,
    TRY_CAST({sv("$.worker_count")} AS INTEGER) AS worker_count,
    TRY_CAST({sv("$.agreement_count")} AS INTEGER) AS agreement_count,
    nullif(lower(trim({txid_v})), '') AS bsv_txid,
    TRY_CAST({cost_v} AS BIGINT) AS cost_sats_raw,
    {type_v} AS task_type,
    NOT {has("$.task_type")} AND {has("$.type")} AS type_alias,
    coalesce({ty("$.created_at")} IN {ints}, false) OR coalesce(({settled_t}) IN {ints}, false)
      OR coalesce({ty("$.timestamp")} IN {ints}, false) AS epoch_ts,
    CASE WHEN {ty("$.error")} = 'OBJECT' THEN coalesce({sv("$.error.message")}, {sv("$.error")})
         ELSE {sv("$.error")} END AS error_message,
    {shape} AS shape,
    {alias_notes} AS alias_notes,
    md5(raw) AS payload_hash
  FROM judged
)
SELECT task_id, status, http_status, consensus_label, confidence, worker_count, agreement_count,
  bsv_txid, CASE WHEN cost_sats_raw > 0 THEN cost_sats_raw END AS cost_sats,
  coalesce(cost_sats_raw = 0, false) AS cost_unknown, task_type, created_at, settled_at,
  delivered_at, error_message, shape, {flags} AS flags, payload_hash,
  source, observed_at, origin, origin_line, origin_hash,
  -- Accepted file records keep no raw text: the file and line are the evidence.
  CASE WHEN reject_reason IS NULL AND source <> '{Source.FILE}' THEN raw END AS raw,
  reject_reason, reject_field, reject_detail,
  CASE WHEN reject_reason IS NOT NULL THEN coalesce(raw_bytes, encode(raw)) END AS reject_raw
FROM fields
"""


# The output of `normalise_sql`, in order.
NORMALISED_COLUMNS: Final[dict[str, pl.DataType]] = {
    **NORMALISED_SCHEMA,
    **{name: dtype for name, dtype in OBSERVATION_META_SCHEMA.items() if name != "run_id"},
    "reject_reason": pl.String(),
    "reject_field": pl.String(),
    "reject_detail": pl.String(),
    "reject_raw": pl.Binary(),
}
_local = threading.local()


def _engine(max_record_bytes: int) -> duckdb.DuckDBPyConnection:
    """Return this thread's in-memory DuckDB engine, with the normalising query prepared.

    The query is planned once (as the prepared statement `normalise`) and re-bound to each
    batch registered as `raw_batch`: planning it costs more than running it on a few records.
    """
    cache: dict[int, duckdb.DuckDBPyConnection] | None = getattr(_local, "cache", None)
    if cache is None:
        cache = _local.cache = {}
    if max_record_bytes not in cache:
        con = engine.connect()
        con.execute("SET TimeZone = 'UTC'")
        # A batch is a chunk of a file or a handful of answers: keep the engine small.
        con.execute("SET memory_limit = '256MB'")
        con.register("raw_batch", pl.DataFrame(schema=RAW_SCHEMA))
        con.execute(f"PREPARE normalise AS {normalise_sql('raw_batch', max_record_bytes)}")
        con.unregister("raw_batch")
        cache[max_record_bytes] = con
    return cache[max_record_bytes]


_CHUNK_ROWS: Final = 8192


def split_chunks(frame: pl.DataFrame, rows: int = _CHUNK_ROWS) -> pl.DataFrame:
    """Return the frame in chunks of `rows`: DuckDB scans Arrow chunks in parallel, one a thread.

    A one-chunk frame is read by a single thread (2.4x slower for 200k records on two cores).
    """
    if frame.height <= rows:
        return frame
    return pl.concat([frame.slice(i, rows) for i in range(0, frame.height, rows)], rechunk=False)


def normalise_batch(
    raw: pl.DataFrame, *, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
) -> NormalisedBatch:
    """Return the normalised records and the rejects of a RAW_SCHEMA frame.

    Every input row ends in exactly one of the two frames. Accepted file records keep no raw
    text (the file and line are the evidence); other accepted records keep theirs.
    """
    raw_batch = raw.select(
        [
            pl.col(name).cast(dtype) if name in raw.columns else pl.lit(None, dtype).alias(name)
            for name, dtype in RAW_SCHEMA.items()
        ]
    )
    con = _engine(max_record_bytes)  # this thread's own connection
    con.register("raw_batch", split_chunks(raw_batch))
    try:
        out = con.sql("EXECUTE normalise").pl()
    finally:
        con.unregister("raw_batch")
    if out.height == 0:
        out = pl.DataFrame(schema=NORMALISED_COLUMNS)
    is_reject = pl.col("reject_reason").is_not_null()
    accepted = out.filter(~is_reject).select(
        [pl.col(n).cast(d) for n, d in NORMALISED_SCHEMA.items()]
        + [pl.col(n).cast(d) for n, d in OBSERVATION_META_SCHEMA.items() if n != "run_id"]
    )
    rejects = (
        out.filter(is_reject)
        .with_columns(
            raw=pl.col("reject_raw"),
            reason=pl.col("reject_reason"),
            field=pl.col("reject_field"),
            detail=pl.col("reject_detail"),
        )
        .select([pl.col(n).cast(d) for n, d in REJECTS_SCHEMA.items() if n != "run_id"])
    )
    return NormalisedBatch(accepted=accepted, rejects=rejects)


def normalise_records(
    records: Sequence[RawRecord], *, max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
) -> NormalisedBatch:
    """Return `normalise_batch` of a few RawRecords (convenience for polls and deliveries).

    A body nesting arrays/objects deeper than `MAX_JSON_DEPTH` is an `invalid_json` reject, as
    the webhook receiver and `track` refuse it: the collector cannot read it (Python's JSON
    parser gives up), so it must not become a result the run never saw.
    """
    deep = [(r, depth) for r in records if (depth := _too_deep(r.body)) is not None]
    if not deep:
        return normalise_batch(raw_frame(records), max_record_bytes=max_record_bytes)
    refused = {id(r) for r, _ in deep}
    batch = normalise_batch(
        raw_frame([r for r in records if id(r) not in refused]), max_record_bytes=max_record_bytes
    )
    rows = [
        {
            "source": str(r.source),
            "observed_at": r.observed_at.astimezone(UTC),
            "origin": r.origin,
            "origin_line": r.origin_line,
            "reason": RejectReason.INVALID_JSON.value,
            "field": None,
            "detail": str(TooDeepError(depth)),
            "raw": r.body.encode() if isinstance(r.body, str) else r.body,
        }
        for r, depth in deep
    ]
    schema = batch.rejects.schema
    return NormalisedBatch(
        accepted=batch.accepted,
        rejects=pl.concat([batch.rejects, pl.DataFrame(rows, schema=schema)]),
    )


def _too_deep(body: bytes | str) -> int | None:
    return nesting_depth_over(body.encode() if isinstance(body, str) else body)
