"""`verify_chain`: settled tasks' txids -> the chain index -> `chain_txs`, and its report.

Fetches in bulk with `ChainClient` (see `asg_audit.chain`), writes the cache (rows confirmed
to the configured `[chain] confirmations` are final; the others, and rows confirmed below a
depth raised since, are asked again next run, except a txid the index said it does not know,
asked again once its back-off has run out (`unknown_recheck_delay`); a changed block hash is
kept as `prev_block_hash`), optionally fetches parents for fees (a transaction spending more
than its inputs hold is refused; `fee_coverage` says which fees could not be checked, and
why), and prints the reconciliation findings for the command line.

A stop (SIGTERM, Ctrl-C) stops the client, so the worker threads give up at their next pause
instead of finishing their retries; what was fetched is written and the run is `interrupted`.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, NamedTuple

import polars as pl

from asg_audit.chain import (
    DEFAULT_CONCURRENCY,
    DEFAULT_CONFIRMATIONS,
    MAX_BULK_TXIDS,
    ChainClient,
    ChainRateLimitedError,
    ChainStoppedError,
    ChainTx,
    IndexIntegrityError,
    chain_client_from_config,
    check_index_answer,
)
from asg_audit.config import AuditConfig
from asg_audit.errors import StoreFileError
from asg_audit.interrupts import is_interrupt
from asg_audit.model import is_well_formed_txid, new_run_id, path_text, printable
from asg_audit.rawtx import OutputKind, RawTxError, parse_raw_tx
from asg_audit.redaction import redact
from asg_audit.stopsignals import sigterm_interrupts

__all__ = [
    "DEFAULT_UNKNOWN_RECHECK_MAX_S",
    "DEFAULT_UNKNOWN_RECHECK_S",
    "VerifySummary",
    "configured_depth",
    "fee_coverage",
    "fetch_parent_fees",
    "pending_txid_count",
    "print_findings",
    "reconciliation_findings",
    "report_exit_code",
    "unknown_recheck",
    "unknown_recheck_delay",
    "verify_chain",
]

_WRITE_EVERY: Final = 1000  # txids per store transaction
# The back-off of a txid the index does not know (`[chain] unknown_recheck_seconds` and
# `unknown_recheck_max_seconds`): asked again a minute after the first such answer (a
# transaction that had not reached the index yet is seen within minutes), then after twice as
# long each time, at most every 6 hours: 40,000 txids an index never heard of cost an hourly
# audit about 10 minutes of requests at 3 requests/s, every hour, without it.
DEFAULT_UNKNOWN_RECHECK_S: Final = 60.0
DEFAULT_UNKNOWN_RECHECK_MAX_S: Final = 21_600.0
_MAX_DOUBLINGS: Final = 62  # 2^62 x any positive first interval is past every cap


@dataclass
class VerifySummary:
    """The outcome of one `verify_chain` run."""

    run_id: str = ""
    txids_total: int = 0  # well-formed txids of settled tasks
    cached_confirmed: int = 0  # confirmed earlier to `depth`: not fetched again
    rechecked_depth: int = 0  # confirmed earlier below `depth` (it was raised): fetched again
    depth: int = DEFAULT_CONFIRMATIONS  # `[chain] confirmations` of this run
    checked: int = 0
    confirmed: int = 0
    unconfirmed: int = 0
    unknown: int = 0
    refused: int = 0
    reorged: int = 0
    requests: int = 0
    throttled: int = 0
    elapsed_s: float = 0.0
    refusals: list[str] = field(default_factory=list)
    # stored transactions no settled task names now (a result's txid corrected since it was
    # verified) whose answer `fetch_parent_fees` refused: not among the txids counted above
    refused_unasked: int = 0
    # fee coverage of the stored transactions (`fee_coverage`): `proves` -> txids
    fees: dict[str, int] = field(default_factory=dict)
    # settled txids stored `unknown` whose back-off had not run out: not asked this run (their
    # stored status, and the `chain.txid_unknown` findings read from it, stay as they were)
    unknown_backed_off: int = 0
    # when the first of them is due (UTC, `2026-01-02T03:04:05Z`); None when there are none
    unknown_next_due: str | None = None
    # `recheck_unknown=True` (`verify-chain --recheck-unknown`): every unknown txid was asked
    unknown_rechecked: bool = False

    def lines(self) -> list[str]:
        """Return the human summary, one fact per line."""
        again = (
            f"; {self.rechecked_depth} confirmed earlier below {self.depth} confirmations,"
            " checked again"
            if self.rechecked_depth
            else ""
        )
        return [
            f"txids of settled tasks: {self.txids_total}"
            f" ({self.cached_confirmed} confirmed earlier, not fetched again{again})",
            f"checked now: {self.checked}: confirmed {self.confirmed}, unconfirmed"
            f" {self.unconfirmed}, unknown {self.unknown}, refused {self.refused}",
            f"reorgs seen: {self.reorged}",
            *self._backed_off_lines(),
            *self._unasked_lines(),
            *self._fee_lines(),
            f"requests: {self.requests} ({self.throttled} answered 429) in {self.elapsed_s:.1f} s",
            *(f"refused: {printable(r, one_line=True)}" for r in self.refusals[:10]),
        ]

    def _backed_off_lines(self) -> list[str]:
        if not self.unknown_backed_off:
            return []
        due = f"; the next is due at {self.unknown_next_due}" if self.unknown_next_due else ""
        return [
            f"unknown txids not asked this run (back-off): {self.unknown_backed_off:,}{due}"
            " (--recheck-unknown asks them all now)"
        ]

    def _unasked_lines(self) -> list[str]:
        if not self.refused_unasked:
            return []
        return [
            f"refused {self.refused_unasked} stored transaction(s) that no settled task names"
            " now (a txid corrected since it was verified): not counted above"
        ]

    def _fee_lines(self) -> list[str]:
        if not self.fees:
            return []
        exact = self.fees.get(FEE_EXACT, 0)
        others = [(k, n) for k, n in self.fees.items() if k != FEE_EXACT]
        parts = [f"{n} {k}" for k, n in others]
        total = sum(self.fees.values())
        return [
            f"fees checked (chain.fee_rate): {exact} of {total} txid{'' if total == 1 else 's'}"
            + (f"; {'; '.join(parts)}" if parts else "")
        ]


_PENDING_SQL = """
SELECT DISTINCT lower(r.bsv_txid) AS txid FROM results r
WHERE r.status = 'settled' AND r.bsv_txid IS NOT NULL
ORDER BY 1
"""


class _Pending(NamedTuple):
    todo: list[str]  # txids to fetch
    total: int  # well-formed settled txids
    cached: frozenset[str]  # settled txids confirmed earlier to the depth: not fetched again
    shallow: int  # settled txids confirmed earlier below the depth: fetched again
    backed_off: int = 0  # settled txids stored unknown, their back-off not run out: not fetched
    next_due: float | None = None  # epoch seconds the first of those is due


def unknown_recheck_delay(streak: int, first_s: float, max_s: float) -> float:
    """Return how long after its latest answer a txid the index said it does not know is asked
    again: `first_s` after the first such answer, twice as long after each further one in a
    row (`streak` answers), at most `max_s`. `first_s` 0 asks it on every run."""
    doublings = min(max(streak, 1) - 1, _MAX_DOUBLINGS)
    return float(min(max_s, first_s * 2.0**doublings))


def unknown_recheck(config: AuditConfig) -> tuple[float, float]:
    """Return the back-off of unknown txids the config sets: `[chain] unknown_recheck_seconds`
    and `unknown_recheck_max_seconds` (the defaults when unset), as `verify_chain` reads them
    (give them to `pending_txid_count`)."""
    chain = config.chain
    return (
        float(chain.get("unknown_recheck_seconds", DEFAULT_UNKNOWN_RECHECK_S)),
        float(chain.get("unknown_recheck_max_seconds", DEFAULT_UNKNOWN_RECHECK_MAX_S)),
    )


# The txids stored `unknown` whose back-off has not run out at `now` (epoch seconds), and when
# it does: `unknown_recheck_delay` after `fetched_at`. A row answered "later" than now (written
# under a clock that was ahead, or copied from such a host) is due now: its answer is asked
# again and stored with this clock's time (held back from a time to come, it would wait for the
# clock to catch up, its due time moving with every run).
_BACKED_OFF_SQL: Final = """
SELECT txid, due FROM (
    SELECT txid,
        CASE WHEN epoch(fetched_at) > $now THEN $now
        ELSE epoch(fetched_at) + least(
            $max_s,
            $first_s * pow(2, least(greatest(coalesce(unknown_streak, 1), 1) - 1, $doublings))
        ) END AS due
    FROM chain_txs WHERE status = 'unknown'
) WHERE due > $now
"""


def _backed_off(con: Any, recheck: tuple[float, float] | None, now: float) -> dict[str, float]:
    """Return the txids stored `unknown` not to ask at `now`, each with when it is due
    (`recheck` None: none, every unknown txid is asked)."""
    if recheck is None or recheck[0] <= 0:
        return {}
    first_s, max_s = recheck
    params = {"first_s": first_s, "max_s": max_s, "doublings": _MAX_DOUBLINGS, "now": now}
    return dict(con.execute(_BACKED_OFF_SQL, params).fetchall())


def _pending_txids(
    con: Any, depth: int, recheck: tuple[float, float] | None = None, now: float = 0.0
) -> _Pending:
    """Return the txids to fetch, how many well-formed settled txids, those confirmed earlier
    to `depth`, how many confirmed earlier below it, and how many stored unknown are left for
    later by their back-off (`recheck`: first interval and cap, None: none is) at `now`.

    A stored `confirmed` is final only at the depth now configured (`[chain] confirmations`):
    one stored with fewer confirmations (the depth was lower then) is fetched again, and the
    index's answer judges it against the current depth. Its stored count cannot: a
    confirmation count only grows, so the stored one says nothing about the depth now.
    """
    every = [t for (t,) in con.execute(_PENDING_SQL).fetchall() if is_well_formed_txid(t)]
    confirmed = dict(
        con.execute(
            "SELECT txid, confirmations FROM chain_txs WHERE status = 'confirmed'"
        ).fetchall()
    )
    need = max(1, depth)
    done = {t for t, n in confirmed.items() if n is not None and n >= need}
    later = _backed_off(con, recheck, now)
    todo = [t for t in every if t not in done and t not in later]
    shallow = sum(1 for t in todo if t in confirmed)
    cached = frozenset(t for t in every if t in done)
    dues = [later[t] for t in every if t in later]
    return _Pending(todo, len(every), cached, shallow, len(dues), min(dues, default=None))


def configured_depth(config: AuditConfig) -> int:
    """Return the depth a transaction must reach to be final: the config's
    `[chain] confirmations` (`DEFAULT_CONFIRMATIONS` when unset), as `verify_chain` reads it
    (give it to `pending_txid_count`)."""
    return int(config.chain.get("confirmations", DEFAULT_CONFIRMATIONS))


def pending_txid_count(
    db: str | Path,
    *,
    confirmations: int = DEFAULT_CONFIRMATIONS,
    unknown_recheck: tuple[float, float] = (
        DEFAULT_UNKNOWN_RECHECK_S,
        DEFAULT_UNKNOWN_RECHECK_MAX_S,
    ),
    recheck_unknown: bool = False,
) -> int:
    """Return how many settled txids of the store `verify_chain` would fetch now (read-only)
    at the depth `confirmations` (the config's `[chain] confirmations`), leaving out the
    unknown txids whose back-off `unknown_recheck` (first interval and cap in seconds: the
    config's, `unknown_recheck(config)`) has not run out, unless `recheck_unknown`."""
    from asg_audit.store import open_store

    if not isinstance(recheck_unknown, bool):
        raise TypeError(
            "pending_txid_count recheck_unknown: expected True or False, got"
            f" {type(recheck_unknown).__name__}"
        )
    if not (
        isinstance(unknown_recheck, tuple)
        and len(unknown_recheck) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in unknown_recheck)
    ):
        raise TypeError(
            "pending_txid_count unknown_recheck: expected (first interval, cap) in seconds,"
            f" two numbers, got {unknown_recheck!r} (unknown_recheck(config) gives the config's)"
        )
    if not (
        all(math.isfinite(v) and v >= 0 for v in unknown_recheck)
        and unknown_recheck[0] <= unknown_recheck[1]
    ):
        raise ValueError(
            "pending_txid_count unknown_recheck: expected (first interval, cap) in seconds,"
            f" finite, not negative, the first not above the cap, got {unknown_recheck!r}"
            " (unknown_recheck(config) gives the config's)"
        )
    recheck = None if recheck_unknown else unknown_recheck
    with open_store(db, read_only=True) as store:
        return len(_pending_txids(store.con, confirmations, recheck, time.time()).todo)


def _rows(
    txs: Iterable[ChainTx], *, fetched_at: datetime, run_id: str, change_scripts: frozenset[str]
) -> pl.DataFrame:
    rows = []
    for t in txs:
        p = t.parsed
        kinds = None
        if p is not None:
            kinds = [
                "change" if o.script.hex() in change_scripts else o.kind.value for o in p.outputs
            ]
        rows.append(
            {
                "txid": t.txid,
                "status": t.status,
                "block_hash": t.block_hash,
                "block_height": t.block_height,
                "block_time": t.block_time,
                "confirmations": t.confirmations,
                "size_bytes": p.size if p else None,
                "input_count": len(p.inputs) if p else None,
                "output_sats": [o.value_sats for o in p.outputs] if p else None,
                "output_kinds": kinds,
                "non_data_sats": p.non_data_sats if p else None,
                "data_sats": sum(o.value_sats for o in p.outputs if o.kind is OutputKind.DATA)
                if p
                else None,
                "zero_payouts": sum(
                    1 for o in p.outputs if o.kind is OutputKind.PAYOUT and o.value_sats == 0
                )
                if p
                else None,
                "raw_hex": t.raw_hex,
                "note": t.note,
                "fetched_at": fetched_at,
                "run_id": run_id,
            }
        )
    return pl.DataFrame(
        rows,
        schema={
            "txid": pl.String,
            "status": pl.String,
            "block_hash": pl.String,
            "block_height": pl.Int64,
            "block_time": pl.Datetime("us", "UTC"),
            "confirmations": pl.Int64,
            "size_bytes": pl.Int64,
            "input_count": pl.Int32,
            "output_sats": pl.List(pl.Int64),
            "output_kinds": pl.List(pl.String),
            "non_data_sats": pl.Int64,
            "data_sats": pl.Int64,
            "zero_payouts": pl.Int32,
            "raw_hex": pl.String,
            "note": pl.String,
            "fetched_at": pl.Datetime("us", "UTC"),
            "run_id": pl.String,
        },
    )


def _store_rows(store: Any, frame: pl.DataFrame) -> int:
    """Upsert fetched rows into chain_txs; return how many changed block hash (reorgs)."""
    con = store.con
    with store.transaction():
        con.register("_chain_new", frame)
        try:
            reorgs = con.execute(
                "SELECT count(*) FROM _chain_new n JOIN chain_txs o USING (txid) "
                "WHERE o.block_hash IS NOT NULL AND n.block_hash IS DISTINCT FROM o.block_hash"
            ).fetchall()[0][0]
            con.execute(
                """CREATE OR REPLACE TEMP TABLE _chain_merged AS
                SELECT n.txid, n.status, n.block_hash, n.block_height, n.block_time,
                    n.confirmations,
                    CASE WHEN o.block_hash IS NOT NULL
                          AND n.block_hash IS DISTINCT FROM o.block_hash
                         THEN o.block_hash ELSE o.prev_block_hash END AS prev_block_hash,
                    coalesce(n.size_bytes, o.size_bytes) AS size_bytes,
                    coalesce(n.input_count, o.input_count) AS input_count,
                    coalesce(n.output_sats, o.output_sats) AS output_sats,
                    coalesce(n.output_kinds, o.output_kinds) AS output_kinds,
                    coalesce(n.non_data_sats, o.non_data_sats) AS non_data_sats,
                    coalesce(n.data_sats, o.data_sats) AS data_sats,
                    coalesce(n.zero_payouts, o.zero_payouts) AS zero_payouts,
                    o.fee_sats,
                    coalesce(n.raw_hex, o.raw_hex) AS raw_hex,
                    n.note,
                    coalesce(o.first_checked_at, n.fetched_at) AS first_checked_at,
                    n.fetched_at,
                    coalesce(o.checks, 0) + 1 AS checks,
                    n.run_id,
                    -- unknown answers in a row (the back-off of `_backed_off`); any other
                    -- status leaves the back-off
                    CASE WHEN n.status <> 'unknown' THEN NULL
                         WHEN o.status = 'unknown' THEN coalesce(o.unknown_streak, 1) + 1
                         ELSE 1 END AS unknown_streak
                FROM _chain_new n LEFT JOIN chain_txs o USING (txid)"""
            )
            con.execute("DELETE FROM chain_txs WHERE txid IN (SELECT txid FROM _chain_new)")
            con.execute("INSERT INTO chain_txs BY NAME SELECT * FROM _chain_merged")
            con.execute("DROP TABLE _chain_merged")
        finally:
            con.unregister("_chain_new")
    return int(reorgs)


def verify_chain(
    db: str | Path,
    config: AuditConfig,
    *,
    client: ChainClient | None = None,
    progress: bool = False,
    on_progress: Callable[[int, int], None] | None = None,
    recheck_unknown: bool = False,
) -> VerifySummary:
    """Return the summary of verifying every settled task's txid not yet confirmed in the store.

    Fetches in bulk (20 txids per call) with `[chain] concurrency` threads sharing the
    client's pace, writes `chain_txs` every 1,000 txids (an interrupted run keeps its work),
    and records the run in `runs`.

    A txid stored `unknown` (the index said it does not know it) is asked again only once its
    back-off has run out (`unknown_recheck_delay`: `[chain] unknown_recheck_seconds` after the
    first such answer, doubling with each one in a row, at most `unknown_recheck_max_seconds`);
    the summary counts the others (`unknown_backed_off`) and says when the first is due
    (`unknown_next_due`). `recheck_unknown=True` asks every one of them now.
    """
    from asg_audit.store import open_store

    _check_arguments(db, config, client)
    if not isinstance(recheck_unknown, bool):
        raise TypeError(
            f"verify_chain recheck_unknown: expected True or False, got"
            f" {type(recheck_unknown).__name__}"
        )
    _require_store(db)
    chain = config.chain
    depth = configured_depth(config)
    concurrency = max(1, int(chain.get("concurrency", DEFAULT_CONCURRENCY)))
    change_scripts = frozenset(str(s).lower() for s in chain.get("change_scripts", ()))
    own_client = client is None
    client = client or chain_client_from_config(config)
    summary = VerifySummary()
    started = time.monotonic()
    requests0, throttled0 = client.requests, client.throttled
    try:
        with sigterm_interrupts(), open_store(db) as store:
            # The run's id is known before it is recorded, and everything from its start on
            # is inside the `try`: a stop as it starts, or while the txids to ask are chosen,
            # still ends it (a run never recorded is ended as a no-op), never leaving it
            # `running` (tester A4: a Ctrl-C just after `audit`'s collect step did).
            run_id = new_run_id()
            summary.run_id = run_id
            status = "failed"
            error: str | None = None
            bar: tuple[Any, Any] | None = None
            got: list[ChainTx] = []
            checked_now: dict[str, str] = {}  # txid -> status, of the answers this run

            def write(txs: list[ChainTx]) -> None:
                frame = _rows(
                    txs, fetched_at=datetime.now(UTC), run_id=run_id, change_scripts=change_scripts
                )
                summary.reorged += _store_rows(store, frame)
                _count(summary, txs)
                checked_now.update((t.txid, t.status) for t in txs)

            try:
                store.start_run("verify-chain", run_id=run_id)
                recheck = None if recheck_unknown else unknown_recheck(config)
                pending = _pending_txids(store.con, depth, recheck, time.time())
                todo, cached = pending.todo, pending.cached
                summary.txids_total, summary.rechecked_depth = pending.total, pending.shallow
                summary.cached_confirmed = len(cached)
                summary.unknown_backed_off = pending.backed_off
                summary.unknown_next_due = _utc_text(pending.next_due)
                summary.unknown_rechecked = recheck_unknown
                if recheck_unknown:
                    # a forced recheck (e.g. after changing chain_url) starts every back-off
                    # over: an answer `unknown` now is the first in a row (streak 0 + 1), not
                    # the next of the index asked before
                    store.con.execute(
                        "UPDATE chain_txs SET unknown_streak = 0 WHERE status = 'unknown'"
                    )
                summary.depth = max(1, depth)
                bar = _progress_bar(len(todo)) if progress else None
                with _cancelling_pool(concurrency, client) as pool:
                    for start in range(0, len(todo), _WRITE_EVERY):
                        chunk = todo[start : start + _WRITE_EVERY]
                        batches = [
                            chunk[i : i + MAX_BULK_TXIDS]
                            for i in range(0, len(chunk), MAX_BULK_TXIDS)
                        ]
                        got = []
                        for txs in pool.map(
                            lambda b: client.fetch(b, confirmations=depth), batches
                        ):
                            got.extend(txs)
                            if bar is not None:
                                bar[0].advance(bar[1], len(txs))
                            if on_progress is not None:
                                on_progress(start + len(got), len(todo))
                        write(got)
                        got = []
                fetch_parents = bool(chain.get("fetch_parents", False))
                if fetch_parents:
                    refused: dict[str, str] = {}
                    fetch_parent_fees(store, client, pool_size=concurrency, refused=refused)
                    _count_refused_later(summary, refused, checked_now, cached)
                cover = fee_coverage(store.con, fetch_parents=fetch_parents)
                summary.fees = dict(cover.iter_rows())
                # An index answer that failed its checks is no evidence either way: the run did
                # not finish its work (the command exits 3), so `runs` reads `incomplete`, as
                # an `audit` whose verify-chain step refused answers.
                status = "incomplete" if summary.refused else "ok"
                if summary.refused:
                    first = summary.refusals[0] if summary.refusals else ""
                    error = printable(
                        f"refused {summary.refused:,} chain index answer(s) that failed their"
                        " checks (asked again next run)" + (f"; first: {first}" if first else ""),
                        one_line=True,
                    )
            except BaseException as exc:
                # Ctrl-C or SIGTERM (stopsignals): the chunks written so far are kept, and so
                # are the answers of this chunk that had come in.
                if is_interrupt(exc) or isinstance(exc, ChainStoppedError):
                    # a Retry-After too long to wait is a failed run, as in `collect`
                    limited = isinstance(exc, ChainRateLimitedError)
                    status = "failed" if limited else "interrupted"
                    if got:
                        write(got)
                if not is_interrupt(exc):  # shown by `asg-audit runs`
                    # an error may quote an answer: every configured secret masked
                    error = printable(
                        redact(str(exc) or type(exc).__name__, config.all_secrets()),
                        one_line=True,
                    )
                raise
            finally:
                if bar is not None:
                    bar[0].stop()
                summary.requests = client.requests - requests0
                summary.throttled = client.throttled - throttled0
                summary.elapsed_s = time.monotonic() - started
                stats = {k: v for k, v in summary.__dict__.items() if k != "refusals"}
                if error is not None:
                    stats["error"] = error
                store.finish_run(run_id, status=status, stats=stats)
    finally:
        if own_client:
            client.close()
    return summary


def _utc_text(at: float | None) -> str | None:
    """Return epoch seconds as `2026-01-02T03:04:05Z` (rounded up: not before it is due)."""
    if at is None:
        return None
    return datetime.fromtimestamp(math.ceil(at), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_arguments(db: object, config: object, client: object) -> None:
    """Raise TypeError naming a bad argument of `verify_chain` (a library caller's slip)."""
    if not isinstance(db, str | Path):
        raise TypeError(f"verify_chain db: expected a path (str or Path), got {type(db).__name__}")
    if not isinstance(config, AuditConfig):
        raise TypeError(
            f"verify_chain config: expected an AuditConfig (asg_audit.load_config()), got"
            f" {type(config).__name__}"
        )
    if client is not None and not isinstance(client, ChainClient):
        raise TypeError(
            f"verify_chain client: expected a ChainClient or None, got {type(client).__name__}"
        )


def _require_store(db: str | Path) -> None:
    """Raise StoreFileError for a store that does not exist: a typo must not create one."""
    path = Path(db)
    if not path.exists():
        raise StoreFileError(
            f"{path_text(path)}: no database here yet"
            " (run `asg-audit ingest`, `track` or `collect`)"
        )


@contextlib.contextmanager
def _cancelling_pool(workers: int, client: ChainClient) -> Iterator[ThreadPoolExecutor]:
    """A thread pool whose lookups stop when the block is interrupted or fails.

    Queued lookups are dropped and `client` is stopped, so the running ones give up at their
    next pause or attempt (not after up to `max_retries` pauses of up to 30 s each). Once they
    have, the client is resumed: a stop ends this block only, a caller's client stays usable.
    """
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        yield pool
    except BaseException:
        client.stop()
        pool.shutdown(wait=True, cancel_futures=True)
        client.resume()
        raise
    pool.shutdown(wait=True)


def _count(summary: VerifySummary, txs: Iterable[ChainTx]) -> None:
    for t in txs:
        summary.checked += 1
        if t.status == "confirmed":
            summary.confirmed += 1
        elif t.status == "unconfirmed":
            summary.unconfirmed += 1
        elif t.status == "unknown":
            summary.unknown += 1
        else:
            summary.refused += 1
            summary.refusals.append(t.note or t.txid)


def _count_refused_later(
    summary: VerifySummary,
    refused: dict[str, str],
    checked_now: dict[str, str],
    cached: frozenset[str],
) -> None:
    """Count answers refused after they were stored (`fetch_parent_fees`): one checked this
    run moves from its status to refused; one of a settled task confirmed earlier (`cached`)
    is refused now. `fetch_parent_fees` covers every stored transaction: one no settled task
    names (a result's txid corrected since it was verified) is counted apart
    (`refused_unasked`), as none of the settled txids counted."""
    for txid, note in refused.items():
        was = checked_now.get(txid)
        if was == "refused":
            continue  # counted when its answer came in
        if was in ("confirmed", "unconfirmed", "unknown"):
            setattr(summary, was, getattr(summary, was) - 1)
        elif txid in cached:  # confirmed earlier, not fetched this run
            summary.cached_confirmed -= 1
            summary.checked += 1
        else:  # no settled task names it: not one of the txids counted
            summary.refused_unasked += 1
            continue
        summary.refused += 1
        summary.refusals.append(note)


def _progress_bar(total: int) -> tuple[Any, Any] | None:
    """A started bar and its task, drawn on standard error when it is a terminal; else None:
    standard output holds only the summary."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from asg_audit.progress import progress_console

    if (console := progress_console()) is None:
        return None
    bar = Progress(
        "verifying txids",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    task = bar.add_task("verify", total=total)
    bar.start()
    return bar, task


# Why a transaction's fee (`chain.fee_rate`) could not be checked, as coverage states it.
FEE_EXACT: Final = "exact"
FEE_PARENTS_OFF: Final = "not checkable (fetch_parents is off)"
FEE_PARENT_UNKNOWN: Final = "not checkable (a parent transaction unknown to the index)"
FEE_NO_BYTES: Final = "not checkable (no transaction bytes: {})"
FEE_COINBASE: Final = "not checkable (coinbase: no fee)"
FEE_BAD_BYTES: Final = "not checkable (stored bytes are not a transaction)"
FEE_NOT_YET: Final = "not checkable (fee not computed yet: run verify-chain)"


@dataclass
class _Spend:
    inputs: list[tuple[str, int]]
    total_out: int


def _stored_spends(rows: Iterable[tuple[str, str]]) -> tuple[dict[str, _Spend], dict[str, str]]:
    """Return (the inputs and output total of each parsable non-coinbase transaction, the
    fee coverage reason of the others)."""
    spends: dict[str, _Spend] = {}
    other: dict[str, str] = {}
    for txid, raw_hex in rows:
        try:
            p = parse_raw_tx(raw_hex)
        except RawTxError:  # stored before a parser rule refused such bytes: no fee known
            other[txid] = FEE_BAD_BYTES
            continue
        if p.is_coinbase:
            other[txid] = FEE_COINBASE
            continue
        spends[txid] = _Spend([(i.prev_txid, i.prev_vout) for i in p.inputs], p.total_out_sats)
    return spends, other


def fetch_parent_fees(
    store: Any,
    client: ChainClient,
    *,
    pool_size: int = 4,
    refused: dict[str, str] | None = None,
) -> int:
    """Fetch the parents of stored transactions and fill `chain_txs.fee_sats`; return how many.

    Optional (`[chain] fetch_parents = true`): one more bulk call per 20 parents. A fee can be
    computed only when every parent is known to the index; otherwise it stays null (and
    `fee_coverage` says why). A transaction whose outputs exceed its inputs (a negative fee:
    value from nothing), or that spends an output its parent does not have, is one no node
    accepts: the index's answer for it is refused, as bytes that do not hash to the txid are
    (status `refused` with a note, its answer's figures cleared, asked again next run). The
    parents' bytes hash to the txids the transaction commits to, so the impossibility is the
    index's claim, not a figure to report about the payment. Each refusal's note is put in
    `refused` under its txid.
    """
    con = store.con
    spends: dict[str, _Spend] = {}
    for rows in _unpriced_batches(con):  # parsed a batch at a time: their inputs are kept
        spends.update(_stored_spends(rows)[0])
    known = {
        t: list(o) for t, o in con.execute("SELECT txid, output_sats FROM chain_parents").fetchall()
    }
    wanted = sorted({prev for sp in spends.values() for prev, _ in sp.inputs} - set(known))
    batches = [wanted[i : i + MAX_BULK_TXIDS] for i in range(0, len(wanted), MAX_BULK_TXIDS)]
    fetched: list[tuple[str, list[int], str]] = []
    with _cancelling_pool(pool_size, client) as pool:
        for answers in pool.map(client.raw_txs, batches):
            for a in answers:
                txid, h = str(a.get("txid", "")).lower(), a.get("hex")
                if not isinstance(h, str):
                    continue
                try:
                    parent = check_index_answer(txid, bytes.fromhex(h))
                except (IndexIntegrityError, ValueError):
                    continue
                fetched.append((txid, [o.value_sats for o in parent.outputs], h))
    now = datetime.now(UTC)
    fees = []
    impossible: list[tuple[str, str]] = []
    for txid, outs, _ in fetched:
        known[txid] = outs
    for txid, sp in spends.items():
        if any(prev not in known for prev, _ in sp.inputs):
            continue  # a parent unknown to the index: no fee (fee_coverage says so)
        missing = [(prev, vout) for prev, vout in sp.inputs if vout >= len(known[prev])]
        if missing:
            prev, vout = missing[0]
            impossible.append(
                (
                    txid,
                    f"{txid}: the index's transaction spends output {vout} of {prev}, which has"
                    f" {len(known[prev])} output(s): no node accepts it",
                )
            )
            continue
        fee = sum(known[prev][vout] for prev, vout in sp.inputs) - sp.total_out
        if fee < 0:
            impossible.append(
                (
                    txid,
                    f"{txid}: the index's transaction pays out {sp.total_out} sats from inputs"
                    f" worth {sp.total_out + fee} sats (a fee of {fee}): no node accepts it",
                )
            )
            continue
        fees.append((fee, txid))
    with store.transaction():
        for txid, outs, h in fetched:
            con.execute(
                "INSERT OR REPLACE INTO chain_parents VALUES (?, ?, ?, ?)", [txid, outs, h, now]
            )
        if fees:
            con.executemany("UPDATE chain_txs SET fee_sats = ? WHERE txid = ?", fees)
        if impossible:
            con.executemany(_REFUSE_SQL, [(note, txid) for txid, note in impossible])
    if refused is not None:
        refused.update(impossible)
    return len(fees)


# An answer refused after it was stored: what it claimed is cleared, as for an answer refused
# when fetched (the block hash stays, to tell a reorg on the next answer).
_REFUSE_SQL: Final = """UPDATE chain_txs SET status = 'refused', note = ?, confirmations = NULL,
    block_height = NULL, block_time = NULL, size_bytes = NULL, input_count = NULL,
    output_sats = NULL, output_kinds = NULL, non_data_sats = NULL, data_sats = NULL,
    zero_payouts = NULL, fee_sats = NULL, raw_hex = NULL
    WHERE txid = ?"""


def fee_coverage(con: Any, *, fetch_parents: bool) -> pl.DataFrame:
    """Return how many stored transactions' fees `chain.fee_rate` could check, and why the
    others could not: columns `proves` (`exact` or `not checkable (reason)`) and `txids`.

    Read from `chain_txs` and `chain_parents` (a DuckDB connection to the store): a fee is
    null when `fetch_parents` is off, when the transaction has no stored bytes (unknown,
    refused), or when a parent is unknown to the index.

    Counted in SQL: a fee present, no bytes (by status), `fetch_parents` off. Only the
    transactions with bytes and no fee, when `fetch_parents` is on, are parsed (to find their
    parents), read in batches of `_FEE_BATCH` rows: the store's transactions are never all in
    memory at once (a 10M-task store holds about 5 GB of hex).
    """
    reasons: dict[str, int] = {}

    def add(reason: str, n: int = 1) -> None:
        reasons[reason] = reasons.get(reason, 0) + n

    unpriced = 0  # bytes stored, no fee
    for kind, status, n in con.execute(_FEE_KINDS_SQL).fetchall():
        if kind == "exact":
            add(FEE_EXACT, n)
        elif kind == "no_bytes":
            add(FEE_NO_BYTES.format(f"transaction {status}"), n)
        else:
            unpriced += n
    if unpriced and not fetch_parents:
        add(FEE_PARENTS_OFF, unpriced)
    elif unpriced:
        for rows in _unpriced_batches(con):
            spends, other = _stored_spends(rows)
            for reason in other.values():
                add(reason)
            prevs = sorted({prev for sp in spends.values() for prev, _ in sp.inputs})
            parents = _known_parents(con, prevs)
            for sp in spends.values():
                # all parents known but no fee: not computed yet (fetch_parents turned on since)
                known = all(prev in parents for prev, _ in sp.inputs)
                add(FEE_NOT_YET if known else FEE_PARENT_UNKNOWN)
    return pl.DataFrame(
        {"proves": list(reasons), "txids": list(reasons.values())},
        schema={"proves": pl.String, "txids": pl.Int64},
    ).sort("proves")


# The stored transactions by what their fee coverage needs: a fee (`exact`), no bytes (by
# status: the reason names it), or bytes and no fee (`unpriced`: parsed when fetch_parents).
_FEE_KINDS_SQL: Final = """
SELECT CASE WHEN fee_sats IS NOT NULL THEN 'exact'
            WHEN raw_hex IS NULL THEN 'no_bytes'
            ELSE 'unpriced' END AS kind,
       CASE WHEN fee_sats IS NULL AND raw_hex IS NULL THEN status END AS status,
       count(*) AS n
FROM chain_txs GROUP BY ALL
"""
_UNPRICED_SQL: Final = (
    "SELECT txid, raw_hex FROM chain_txs WHERE raw_hex IS NOT NULL AND fee_sats IS NULL"
)
_FEE_BATCH: Final = 10_000  # rows of (txid, raw_hex) read at once: about 5 MB of hex


def _unpriced_batches(con: Any) -> Iterator[list[tuple[str, str]]]:
    """Yield the stored transactions with bytes and no fee, `_FEE_BATCH` (txid, raw_hex) at a
    time.

    Streamed (an Arrow record batch reader) on a cursor of its own, so that `con` can answer
    other queries between two batches; the rows are those committed when the read began.
    """
    cur = con.cursor()
    try:
        reader = cur.sql(_UNPRICED_SQL).to_arrow_reader(_FEE_BATCH)
        try:
            for batch in reader:
                txids = batch.column(0).to_pylist()
                hexes = batch.column(1).to_pylist()
                yield list(zip(txids, hexes, strict=True))
        finally:
            # an open reader keeps the database (and its file lock) alive: close it now
            reader.close()
    finally:
        cur.close()


def _known_parents(con: Any, txids: list[str]) -> set[str]:
    """Return those of `txids` stored in `chain_parents`."""
    if not txids:
        return set()
    rows = con.execute(
        "SELECT txid FROM chain_parents WHERE txid IN (SELECT unnest(?::VARCHAR[]))", [txids]
    ).fetchall()
    return {t for (t,) in rows}


_SEVERITY_RANK: Final = {"info": 0, "warn": 1, "fail": 2}
# Tables of `audit.TABLES` that only the collection analyses read.
_COLLECTION_TABLES: Final = frozenset({"observations", "runs", "poll_state"})


def reconciliation_findings(
    db: str | Path, config: AuditConfig, *, prefixes: tuple[str, ...] = ("chain.",)
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Return (findings of the checks whose id starts with `prefixes`, chain coverage)."""
    from asg_audit.audit import TABLES
    from asg_audit.checks import CheckContext, registered_checks, run_checks
    from asg_audit.reconcile import chain_coverage
    from asg_audit.store import open_store

    with open_store(db, read_only=True) as store:
        present = set(store.tables())
        # The tables `audit` gives the checks, under the same names (the store's), so that
        # `verify-chain` and `billing` report what `audit` reports on the same store. The
        # collection tables feed no chain or billing check.
        tables: dict[str, pl.LazyFrame | pl.DataFrame] = {
            name: store.frame(name)
            for name in TABLES
            if name in present and name not in _COLLECTION_TABLES
        }
    chain = tables.get("chain_txs")
    as_of = datetime.now(UTC)
    ctx = CheckContext(tables, config=config, as_of=as_of)
    wanted = [c for c in registered_checks() if c.startswith(prefixes)]
    findings = run_checks(ctx, only=wanted)
    coverage = (
        chain_coverage(ctx.tasks, chain.lazy())
        if chain is not None and "chain." in prefixes
        else pl.DataFrame()
    )
    return findings, coverage


def report_exit_code(findings: pl.DataFrame, fail_on: str) -> int:
    """Return 1 when a finding is at or above `fail_on`, else 0."""
    floor = _SEVERITY_RANK[fail_on]
    worst = max((_SEVERITY_RANK.get(s, 0) for s in findings["severity"].to_list()), default=-1)
    return 1 if worst >= floor else 0


def print_findings(findings: pl.DataFrame, coverage: pl.DataFrame | None = None) -> None:
    """Print findings counted by check and severity, the first few of each, and coverage.

    Entity ids and messages come from the data (an invoice id from the provider): their
    control characters are escaped.
    """
    if coverage is not None and coverage.height:
        print("cost checks coverage (settled tasks):")
        for proves, n in coverage.iter_rows():
            print(f"  {proves}: {n}")
    if not findings.height:
        print("findings: none")
        return
    print(f"findings: {findings.height}")
    for (check_id, severity), group in findings.group_by(
        ["check_id", "severity"], maintain_order=True
    ):
        print(f"  {printable(check_id, one_line=True)} [{severity}]: {group.height}")
        for row in group.head(5).iter_rows(named=True):
            line = f"{row['entity_type']} {row['entity_id']}: {row['message']} ({row['proves']})"
            print(f"    {printable(line, one_line=True)}")
