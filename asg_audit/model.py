"""Column names, enums and schema constants shared by every part of asg_audit.

This module is the contract between the sources (collector, webhook receiver, file ingest,
simulator), the store and the analyses. It imports nothing from the package and does no I/O.
"""

from __future__ import annotations

import os
import re
import secrets
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final

import polars as pl

__all__ = [
    "ALIAS_DETAIL_PATTERN",
    "DOCUMENTED_STATUSES",
    "EXACT_DIFFERENCE",
    "FINDINGS_SCHEMA",
    "MAX_SATS",
    "MAX_TASK_ID_LENGTH",
    "NORMALISED_SCHEMA",
    "OBSERVATION_META_SCHEMA",
    "REJECTS_SCHEMA",
    "RESULTS_SCHEMA",
    "SATS_PER_BSV",
    "SUBMISSIONS_SCHEMA",
    "TASK_ID_PATTERN",
    "TXID_PATTERN",
    "UTC_DATETIME",
    "Flag",
    "RejectReason",
    "Severity",
    "Shape",
    "Source",
    "TaskStatus",
    "is_safe_task_id",
    "is_well_formed_txid",
    "new_run_id",
    "path_text",
    "printable",
]

SATS_PER_BSV: Final = 100_000_000
# The most sats any amount can be: every coin that can ever exist (21 million BSV). A larger
# per-task cost (normalize), month's total, payouts, fee, day's cost or invoice figure (billing)
# or transaction output (rawtx) is no payment at all (and three costs of 2**62 made sums of costs
# wrap around int64: a negative spend).
MAX_SATS: Final = 21_000_000 * SATS_PER_BSV
MAX_TASK_ID_LENGTH: Final = 128
# Letters, digits and `_ . : -`, starting with a letter or digit: no `/`, `?`, `#`, `%`,
# whitespace or control characters, so an id can never change the path of a request.
TASK_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}$"
# A txid is 64 lowercase hex characters (normalised to lowercase before this check).
TXID_PATTERN: Final = r"^[0-9a-f]{64}$"
_TASK_ID_RE = re.compile(TASK_ID_PATTERN)
_TXID_RE = re.compile(TXID_PATTERN)

UTC_DATETIME: Final = pl.Datetime("us", "UTC")


class TaskStatus(StrEnum):
    """The four documented lifecycle states; anything else is kept and flagged."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    VERIFIED = "verified"
    SETTLED = "settled"


DOCUMENTED_STATUSES: Final = frozenset(s.value for s in TaskStatus)


class Source(StrEnum):
    """Where an observation came from."""

    POLL = "poll"  # GET /v1/tasks/{id}/result by the collector
    STATUS = "status"  # GET /v1/tasks/{id}
    WEBHOOK = "webhook"  # a task.settled delivery to our receiver
    FILE = "file"  # an exported file or webhook log ingested from disk


class Shape(StrEnum):
    """The form a record arrived in."""

    FLAT = "flat"  # settlement fields at the top level (the docs' example)
    NESTED = "nested"  # settlement fields inside `settlement` (field table, SDK)
    WEBHOOK = "webhook"  # a task.settled payload: no counts, no cost
    PARTIAL = "partial"  # a 202 body, a status summary, or a 200 without settlement
    ERROR = "error"  # an error body (`{"error": ...}` string or object form)


class Severity(StrEnum):
    """How bad a finding is; `fail` makes the audit exit 1 by default."""

    INFO = "info"
    WARN = "warn"
    FAIL = "fail"


class RejectReason(StrEnum):
    """Why a raw record could not be used. Every reject keeps its raw bytes and origin."""

    INVALID_UTF8 = "invalid_utf8"
    INVALID_JSON = "invalid_json"
    NOT_OBJECT = "not_object"
    MISSING_TASK_ID = "missing_task_id"
    UNSAFE_TASK_ID = "unsafe_task_id"
    BAD_TYPE = "bad_type"
    BAD_SATS = "bad_sats"
    BAD_TIMESTAMP = "bad_timestamp"
    BAD_SETTLEMENT = "bad_settlement"
    TOO_LARGE = "too_large"
    TASK_ID_MISMATCH = "task_id_mismatch"
    # `track` only (submission exports)
    BAD_SUBMISSION = "bad_submission"
    DUPLICATE_TASK_ID = "duplicate_task_id"


class Flag(StrEnum):
    """Per-record facts the normaliser notices; they are audit evidence, not rejects."""

    COST_UNKNOWN = "cost_unknown"  # cost reported as 0: unknown, not free
    STATUS_UNDOCUMENTED = "status_undocumented"
    TXID_MALFORMED = "txid_malformed"
    TXID_MISSING = "txid_missing"  # settled without a txid
    SETTLED_BEFORE_CREATED = "settled_before_created"
    AGREEMENT_ABOVE_WORKERS = "agreement_above_workers"
    CONFIDENCE_OUT_OF_RANGE = "confidence_out_of_range"
    TYPE_ALIAS = "type_alias"  # `type` used instead of `task_type`
    EPOCH_TIMESTAMP = "epoch_timestamp"
    # two aliases of one field (`cost_sats` and `settlement.total_cost_sats`, ...) both present
    # with different values: the first alias is used, and `flags` also holds one detail entry
    # per disagreeing pair (`ALIAS_DETAIL_PATTERN`)
    ALIASES_DISAGREE = "aliases_disagree"


# The detail entry an `aliases_disagree` flag comes with in `flags`, one per pair of aliases of
# a field that disagree: the field as stored, then each alias's key path and value as written
# (strings JSON-quoted, each value cut at 80 characters), the one used first:
# `aliases_disagree cost_sats: settlement.total_cost_sats = 975 (used), cost_sats = 650`.
ALIAS_DETAIL_PATTERN: Final = r"(?s)^aliases_disagree ([a-z_]+): (.+)$"


# Fields the normaliser extracts from one record, in this order.
NORMALISED_SCHEMA: Final[dict[str, pl.DataType]] = {
    "task_id": pl.String(),
    "status": pl.String(),
    "http_status": pl.Int16(),
    "consensus_label": pl.String(),
    "confidence": pl.Float64(),
    "worker_count": pl.Int32(),
    "agreement_count": pl.Int32(),
    "bsv_txid": pl.String(),
    "cost_sats": pl.Int64(),  # null when absent or reported as 0 (see cost_unknown)
    "cost_unknown": pl.Boolean(),
    "task_type": pl.String(),
    "created_at": UTC_DATETIME,
    "settled_at": UTC_DATETIME,
    "delivered_at": UTC_DATETIME,  # the webhook payload's `timestamp`
    "error_message": pl.String(),
    "shape": pl.String(),
    "flags": pl.List(pl.String()),
    "payload_hash": pl.String(),
}

# Where an observation came from; added around the normalised fields.
OBSERVATION_META_SCHEMA: Final[dict[str, pl.DataType]] = {
    "run_id": pl.String(),
    "source": pl.String(),
    "observed_at": UTC_DATETIME,
    "origin": pl.String(),  # file path, request URL or delivery id
    "origin_line": pl.Int64(),  # line number in a file (1-based), else null
    "origin_hash": pl.String(),  # content hash of the ingested file, else null
    "raw": pl.String(),  # raw text; null for file records, which point at the file instead
}

REJECTS_SCHEMA: Final[dict[str, pl.DataType]] = {
    "run_id": pl.String(),
    "source": pl.String(),
    "observed_at": UTC_DATETIME,
    "origin": pl.String(),
    "origin_line": pl.Int64(),
    "reason": pl.String(),
    "field": pl.String(),
    "detail": pl.String(),
    "raw": pl.Binary(),
}

# One row per task: the current best knowledge, derived from observations.
RESULTS_SCHEMA: Final[dict[str, pl.DataType]] = {
    "task_id": pl.String(),
    "status": pl.String(),
    "consensus_label": pl.String(),
    "confidence": pl.Float64(),
    "worker_count": pl.Int32(),
    "agreement_count": pl.Int32(),
    "bsv_txid": pl.String(),
    "cost_sats": pl.Int64(),
    "cost_unknown": pl.Boolean(),
    "task_type": pl.String(),
    "created_at": UTC_DATETIME,
    "settled_at": UTC_DATETIME,
    "delivered_at": UTC_DATETIME,
    "shape": pl.String(),
    "flags": pl.List(pl.String()),
    "first_seen_at": UTC_DATETIME,
    "settled_seen_at": UTC_DATETIME,  # first observation that showed it settled
    "last_seen_at": UTC_DATETIME,
    "sources": pl.List(pl.String()),
    "observation_count": pl.Int64(),
    "conflict_count": pl.Int64(),
}

# What the customer submitted (from `track`).
SUBMISSIONS_SCHEMA: Final[dict[str, pl.DataType]] = {
    "task_id": pl.String(),
    "task_type": pl.String(),
    "consensus_threshold": pl.Int32(),
    "options": pl.List(pl.String()),
    "created_at": UTC_DATETIME,
    "data_url": pl.String(),
}


# The findings column holding the difference as an exact integer when the check computed a
# whole number (sats, counts), every digit kept (`difference` is a float: past 2^53 it is
# rounded, 2^63 - 1 sats read 9,223,372,036,854,775,808); null when the difference is
# fractional or absent. `run_checks` fills it, the store keeps it, the report shows it.
EXACT_DIFFERENCE: Final = "difference_exact"

# One audit finding (DESIGN.md "Analyses and checks"); stored per run in `findings`.
FINDINGS_SCHEMA: Final[dict[str, pl.DataType]] = {
    "check_id": pl.String(),
    "severity": pl.String(),  # Severity value
    "entity_type": pl.String(),  # task, txid, month, run, label, ...
    "entity_id": pl.String(),
    "expected": pl.String(),
    "actual": pl.String(),
    "difference": pl.Float64(),
    "proves": pl.String(),  # exact | aggregate only | not checkable (reason); null elsewhere
    "message": pl.String(),
    # the difference as an exact integer when it is whole (sats beyond 2**53 keep every digit);
    # null for a fractional one. DECIMAL(38, 0), not Int128: every whole difference of int64
    # figures fits, and unlike Int128 it converts to Arrow (DuckDB, pandas, `to_arrow`).
    EXACT_DIFFERENCE: pl.Decimal(38, 0),
}


def is_safe_task_id(task_id: str) -> bool:
    """Return whether a task id is safe to put in a URL path and a report."""
    return bool(_TASK_ID_RE.fullmatch(task_id))


# Characters a reader cannot see or that act on a terminal or a bidi renderer, written as
# ranges so that importing this module computes nothing: every character of the Unicode
# categories Cc (C0/C1 controls, DEL), Cf (format: zero-width space/joiners U+200B-U+200D, word
# joiner U+2060, BOM U+FEFF, soft hyphen U+00AD, Arabic letter mark U+061C, bidi marks, overrides
# and isolates, tag characters), Zl and Zp (U+2028, U+2029), Zs but the ASCII space (no-break
# space U+00A0, U+2000-U+200A, U+202F, U+205F, U+3000, U+1680), Cs (a lone surrogate, which
# cannot even be written out as UTF-8), the rest of the default-ignorable U+2060-U+206F and
# U+E0000-U+E0FFF blocks, and the letters that draw as nothing (combining grapheme joiner
# U+034F, Khmer U+17B4/U+17B5, Hangul fillers U+115F, U+1160, U+3164, U+FFA0).
# tests/test_model_printable.py checks this against `unicodedata` of the running Python.
_INVISIBLE: Final = (
    "\x7f-\xa0\xad\u034f\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2"
    "\u115f\u1160\u1680\u17b4\u17b5\u180e\u2000-\u200f\u2028-\u202f\u205f-\u206f"
    "\u3000\u3164\ud800-\udfff\ufeff\uffa0\ufff9-\ufffb\U000110bd\U000110cd"
    "\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0000-\U000e0fff"
)
# Of those, the ones that real text uses between two visible characters: the zero-width
# non-joiner and joiner (Persian and Indic words, emoji sequences such as a family), the
# no-break spaces (French `prix\u202f: 10\xa0€`) and the ideographic space (`東京\u3000大阪`).
# They are kept there, and escaped anywhere else (at an end, beside whitespace or another
# invisible character, on their own), where they only hide a difference (`cat\xa0`).
_KEPT_BETWEEN: Final = "\u200c\u200d\xa0\u202f\u3000"
# A subdivision flag (England's) is the black flag followed by tag characters: kept whole.
_FLAG_TAGS: Final = "\U0001f3f4[\U000e0020-\U000e007e]+\U000e007f"


def _unprintable_re(controls: str) -> re.Pattern[str]:
    visible = f"[^\\s{controls}{_INVISIBLE}]"
    return re.compile(
        f"(?P<kept>{_FLAG_TAGS}|(?<={visible})[{_KEPT_BETWEEN}](?={visible}))"
        f"|[{controls}{_INVISIBLE}]"
    )


# Escaped in every text: C0 controls but tab and newline, and the characters above.
_UNPRINTABLE_RE: Final = _unprintable_re("\x00-\x08\x0b-\x1f")
# ... and on one line, newlines and tabs too.
_UNPRINTABLE_LINE_RE: Final = _unprintable_re("\x00-\x1f")


def _escape(match: re.Match[str]) -> str:
    if match["kept"] is not None:
        return match["kept"]
    code = ord(match[0])
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(text: object, *, one_line: bool = False, quote_edges: bool = False) -> str:
    """Return `text` with every character a reader cannot see or a terminal acts on shown as a
    `\\xNN` / `\\uNNNN` / `\\UNNNNNNNN` escape (controls, format characters such as U+200B and
    U+FEFF, line and paragraph separators, spaces other than the ASCII space; the set above);
    `one_line` escapes newlines and tabs too (a file name printed on a line of its own).

    `quote_edges` is for a data value shown on its own (a label, a table cell): when it starts
    or ends with whitespace it is shown between single quotes, on one line (`'cat '`,
    `'cat\\x0a'`), so that `cat ` and `cat` do not read the same. Leave it off for fragments of
    a sentence (`" · tasks created ..."`), which would be quoted."""
    value = str(text)
    if quote_edges and value and (value[0].isspace() or value[-1].isspace()):
        return "'" + _UNPRINTABLE_LINE_RE.sub(_escape, value) + "'"
    return (_UNPRINTABLE_LINE_RE if one_line else _UNPRINTABLE_RE).sub(_escape, value)


def path_text(path: str | os.PathLike[str]) -> str:
    """Return a file name as text to store and print: each byte of it that is not UTF-8 (a
    Latin-1 name unpacked from a Windows zip) written as `\\xNN`. The file is still opened by
    its real path; this is only what observations, rejects and runs record and what is shown."""
    try:
        raw = os.fsencode(path)
    except UnicodeEncodeError:  # a lone surrogate that no file name byte gives
        return os.fspath(path).encode("utf-8", "backslashreplace").decode("utf-8")
    return raw.decode("utf-8", "backslashreplace")


def is_well_formed_txid(txid: str) -> bool:
    """Return whether a (lowercased) txid is 64 hex characters and not all zeros."""
    return bool(_TXID_RE.fullmatch(txid)) and txid.strip("0") != ""


def new_run_id(now: datetime | None = None) -> str:
    """Return a sortable, unique run id such as `20261128T200102Z-3f9a1c`."""
    now = now or datetime.now(UTC)
    return now.strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)
