"""The chain index client (WhatsOnChain-compatible) and `verify_chain`, which fills `chain_txs`.

The client sends bulk calls of at most 20 txids, paces itself to its own request rate
(default 3 requests/s, WoC's free tier) shared by its worker threads, and waits out a 429
(`Retry-After` as a floor) before asking again. The key goes under both documented headers,
`Authorization` and `woc-api-key`, and is never logged or put in an error message.

One `POST /txs` per 20 txids gives the block fields and the decoded transaction. The decoded
JSON carries every serialised field, so the raw bytes are rebuilt and hashed: an answer whose
bytes do not hash to the txid that was asked for is refused (`IndexIntegrityError`, the txid
is stored as `refused` and asked again next run). When a decoded answer cannot be rebuilt
(a truncated script), its raw hex is fetched with `POST /txs/hex` and checked the same way.

`chain_txs` is a cache: confirmed transactions are never fetched again; unconfirmed, unknown
and refused ones are checked again on the next run. A changed block hash (a reorg) is kept in
`prev_block_hash`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import httpx
import polars as pl

from asg_audit.config import AuditConfig, Secret
from asg_audit.errors import ApiStatusError, ApiTransientError, AuthError, ConfigError
from asg_audit.model import is_well_formed_txid
from asg_audit.rawtx import (
    OutputKind,
    ParsedTx,
    RawTxError,
    parse_raw_tx,
    serialise_decoded_tx,
)

__all__ = [
    "DEFAULT_CHAIN_RPS",
    "MAX_BULK_TXIDS",
    "ChainClient",
    "ChainTx",
    "IndexIntegrityError",
    "VerifySummary",
    "chain_client_from_config",
    "check_index_answer",
    "print_findings",
    "reconciliation_findings",
    "report_exit_code",
    "verify_chain",
]

MAX_BULK_TXIDS: Final = 20
DEFAULT_CHAIN_RPS: Final = 3.0
DEFAULT_CONCURRENCY: Final = 4
DEFAULT_CONFIRMATIONS: Final = 1
DEFAULT_MAX_RETRIES: Final = 8
DEFAULT_TIMEOUT_S: Final = 30.0
# Pace a hair under the limit: arrival jitter must not put one request too many in a window.
_RATE_MARGIN: Final = 0.99
_WRITE_EVERY: Final = 1000  # txids per store transaction


class IndexIntegrityError(ApiStatusError):
    """The chain index answered bytes that do not hash to the txid that was asked for."""


@dataclass(frozen=True, slots=True)
class ChainTx:
    """What the index told us about one txid: status, block fields and the parsed transaction."""

    txid: str
    status: str  # confirmed | unconfirmed | unknown | refused
    block_hash: str | None = None
    block_height: int | None = None
    block_time: datetime | None = None
    confirmations: int | None = None
    parsed: ParsedTx | None = None
    raw_hex: str | None = None
    note: str | None = None


@dataclass
class VerifySummary:
    """The outcome of one `verify_chain` run."""

    run_id: str = ""
    txids_total: int = 0  # well-formed txids of settled tasks
    cached_confirmed: int = 0  # confirmed earlier: not fetched again
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

    def lines(self) -> list[str]:
        """Return the human summary, one fact per line."""
        return [
            f"txids of settled tasks: {self.txids_total}"
            f" ({self.cached_confirmed} confirmed earlier, not fetched again)",
            f"checked now: {self.checked}: confirmed {self.confirmed}, unconfirmed"
            f" {self.unconfirmed}, unknown {self.unknown}, refused {self.refused}",
            f"reorgs seen: {self.reorged}",
            f"requests: {self.requests} ({self.throttled} answered 429) in {self.elapsed_s:.1f} s",
            *(f"refused: {r}" for r in self.refusals[:10]),
        ]


class _Pacer:
    """Spaces request starts at least `1 / rps` apart across threads; a 429 pauses everyone."""

    def __init__(self, rps: float, *, clock: Callable[[], float], sleep: Callable[[float], None]):
        if rps <= 0:
            raise ConfigError("chain.rps must be positive")
        self.interval = 1.0 / (rps * _RATE_MARGIN)
        self._clock, self._sleep = clock, sleep
        self._next = clock()
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            self._sleep(start - now)

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._next = max(self._next, self._clock() + seconds)


class ChainClient:
    """A WhatsOnChain-compatible index client: bulk, paced, 429-aware. Safe across threads."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: Secret | None = None,
        rps: float = DEFAULT_CHAIN_RPS,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Accept": "application/json", "User-Agent": "asg-audit"}
        if api_key:
            # WoC documents both header names (newer and older); send both.
            headers["Authorization"] = api_key.reveal()
            headers["woc-api-key"] = api_key.reveal()
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout_s, transport=transport
        )
        self._pacer = _Pacer(rps, clock=clock, sleep=sleep)
        self._sleep = sleep
        self.max_retries = max_retries
        self._count_lock = threading.Lock()
        self.requests = 0
        self.throttled = 0

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> ChainClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ---------------------------------------------------------------------------

    def _request(self, method: str, path: str, *, json: Any = None) -> httpx.Response:
        for attempt in range(self.max_retries + 1):
            self._pacer.wait()
            with self._count_lock:
                self.requests += 1
            try:
                resp = self._http.request(method, path, json=json)
            except httpx.TransportError as exc:
                # The message names the URL only; headers (the key) never reach it.
                if attempt == self.max_retries:
                    raise ApiTransientError(f"chain index {method} {path}: {exc!r}") from exc
                self._pacer.pause(min(30.0, 0.5 * 2**attempt))
                continue
            if resp.status_code == 429:
                with self._count_lock:
                    self.throttled += 1
                self._pacer.pause(_retry_after(resp) + self._pacer.interval)
                if attempt == self.max_retries:
                    raise ApiTransientError(f"chain index {method} {path}: 429 after retries")
                continue
            if resp.status_code >= 500:
                if attempt == self.max_retries:
                    raise ApiTransientError(f"chain index {method} {path}: {resp.status_code}")
                self._pacer.pause(min(30.0, 0.5 * 2**attempt))
                continue
            if resp.status_code in (401, 403):
                raise AuthError(
                    f"chain index refused the key ({resp.status_code})",
                    status_code=resp.status_code,
                )
            return resp
        raise AssertionError("unreachable")  # pragma: no cover

    def _bulk(self, path: str, txids: Sequence[str]) -> list[dict[str, Any]]:
        if len(txids) > MAX_BULK_TXIDS:
            raise ValueError(f"at most {MAX_BULK_TXIDS} txids per bulk call")
        resp = self._request("POST", path, json={"txids": list(txids)})
        if resp.status_code != 200:
            raise ApiStatusError(
                f"chain index POST {path}: {resp.status_code}", status_code=resp.status_code
            )
        try:
            body = resp.json()
        except ValueError:
            raise ApiTransientError(f"chain index POST {path}: body is not JSON") from None
        if not isinstance(body, list):
            raise ApiStatusError(f"chain index POST {path}: expected a JSON list")
        return [item for item in body if isinstance(item, dict)]

    # -- calls -------------------------------------------------------------------------------

    def decoded_txs(self, txids: Sequence[str]) -> list[dict[str, Any]]:
        """Return `POST /txs` answers (decoded transactions or `{txid, error}`), <= 20 txids."""
        return self._bulk("/txs", txids)

    def raw_txs(self, txids: Sequence[str]) -> list[dict[str, Any]]:
        """Return `POST /txs/hex` answers (`{txid, hex}` or `{txid, error}`), <= 20 txids."""
        return self._bulk("/txs/hex", txids)

    def tx_statuses(self, txids: Sequence[str]) -> list[dict[str, Any]]:
        """Return `POST /txs/status` answers (block fields, mempool or unknown), <= 20 txids."""
        return self._bulk("/txs/status", txids)

    def chain_info(self) -> dict[str, Any]:
        """Return `GET /chain/info` (tip height in `blocks`)."""
        resp = self._request("GET", "/chain/info")
        if resp.status_code != 200:
            raise ApiStatusError(f"chain index /chain/info: {resp.status_code}")
        body = resp.json()
        return body if isinstance(body, dict) else {}

    def fetch(self, txids: Sequence[str], *, confirmations: int = 1) -> list[ChainTx]:
        """Return one ChainTx per txid (<= 20): one bulk call, plus raw hex when needed."""
        answers = _pair_answers(txids, self.decoded_txs(txids))
        out: dict[str, ChainTx] = {}
        need_hex: list[str] = []
        for txid in txids:
            answer = answers.get(txid)
            if answer is None or "error" in answer:
                note = None if answer is None else str(answer.get("error"))
                out[txid] = ChainTx(txid, "unknown", note=note or "no answer for this txid")
                continue
            claimed = str(answer.get("txid", "")).lower()
            if claimed != txid:
                out[txid] = ChainTx(txid, "refused", note=f"{txid}: index answered for {claimed}")
                continue
            raw = serialise_decoded_tx(answer)
            if raw is None:
                need_hex.append(txid)
                continue
            out[txid] = _checked(txid, answer, raw, confirmations)
        if need_hex:
            hexes = _pair_answers(need_hex, self.raw_txs(need_hex))
            for txid in need_hex:
                h = hexes.get(txid, {}).get("hex")
                try:
                    raw = bytes.fromhex(h) if isinstance(h, str) else None
                except ValueError:
                    raw = None
                if raw is None:
                    out[txid] = ChainTx(txid, "refused", note="no raw hex in the index answer")
                else:
                    out[txid] = _checked(txid, answers[txid], raw, confirmations)
        return [out[t] for t in txids]


def _pair_answers(txids: Sequence[str], answers: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Return each asked txid's answer: by position when the index answered one per txid
    (WoC keeps the request order), else by the txid each answer names."""
    if len(answers) == len(txids):
        return dict(zip(txids, answers, strict=True))
    return {str(a.get("txid", "")).lower(): a for a in answers}


def _retry_after(resp: httpx.Response) -> float:
    try:
        return max(0.0, float(resp.headers.get("Retry-After", "1")))
    except ValueError:
        return 1.0


def check_index_answer(txid: str, raw: bytes) -> ParsedTx:
    """Return the parsed transaction if `raw` hashes to `txid`; raise IndexIntegrityError if not."""
    try:
        parsed = parse_raw_tx(raw)
    except RawTxError as exc:
        raise IndexIntegrityError(f"{txid}: index bytes are not a transaction ({exc})") from None
    if parsed.txid != txid:
        raise IndexIntegrityError(f"{txid}: index bytes hash to {parsed.txid}")
    return parsed


def _checked(txid: str, answer: Mapping[str, Any], raw: bytes, depth: int) -> ChainTx:
    try:
        parsed = check_index_answer(txid, raw)
    except IndexIntegrityError as exc:
        return ChainTx(txid, "refused", note=str(exc))
    block_hash = answer.get("blockhash") or None
    confs = _int(answer.get("confirmations"))
    block_time = (_int(answer.get("blocktime")) or _int(answer.get("time"))) if block_hash else None
    mined = block_hash is not None and (confs or 0) >= max(1, depth)
    return ChainTx(
        txid,
        "confirmed" if mined else "unconfirmed",
        block_hash=block_hash,
        block_height=_int(answer.get("blockheight")) if block_hash else None,
        block_time=datetime.fromtimestamp(block_time, UTC) if block_time else None,
        confirmations=confs if block_hash else 0,
        parsed=parsed,
        raw_hex=raw.hex(),
    )


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def chain_client_from_config(config: AuditConfig, **kwargs: Any) -> ChainClient:
    """Return a ChainClient for the configured index, network, key and `[chain]` settings."""
    url = config.chain_url.rstrip("/")
    network = config.chain_network
    tail = url.rsplit("/", 1)[-1]
    if tail in ("main", "test", "stn") and tail != network:
        raise ConfigError(
            f"chain_url ends in /{tail} but chain_network is {network!r}: a txid of one network"
            " is not found on the other"
        )
    chain = config.chain
    return ChainClient(
        url,
        api_key=config.woc_api_key,
        rps=float(chain.get("rps", DEFAULT_CHAIN_RPS)),
        timeout_s=float(chain.get("timeout_seconds", DEFAULT_TIMEOUT_S)),
        max_retries=int(chain.get("max_retries", DEFAULT_MAX_RETRIES)),
        **kwargs,
    )


# -- verify_chain: settled txids -> chain_txs ----------------------------------------------------

_PENDING_SQL = """
SELECT DISTINCT lower(r.bsv_txid) AS txid FROM results r
WHERE r.status = 'settled' AND r.bsv_txid IS NOT NULL
ORDER BY 1
"""


def _pending_txids(con: Any) -> tuple[list[str], int, int]:
    """Return (txids to fetch, all well-formed settled txids, those confirmed earlier)."""
    every = [t for (t,) in con.execute(_PENDING_SQL).fetchall() if is_well_formed_txid(t)]
    done = {
        t
        for (t,) in con.execute("SELECT txid FROM chain_txs WHERE status = 'confirmed'").fetchall()
    }
    todo = [t for t in every if t not in done]
    return todo, len(every), len(every) - len(todo)


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
                    n.run_id
                FROM _chain_new n LEFT JOIN chain_txs o USING (txid)"""
            )
            con.execute("DELETE FROM chain_txs WHERE txid IN (SELECT txid FROM _chain_new)")
            con.execute("INSERT INTO chain_txs SELECT * FROM _chain_merged")
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
) -> VerifySummary:
    """Return the summary of verifying every settled task's txid not yet confirmed in the store.

    Fetches in bulk (20 txids per call) with `[chain] concurrency` threads sharing the
    client's pace, writes `chain_txs` every 1,000 txids (an interrupted run keeps its work),
    and records the run in `runs`.
    """
    from asg_audit.store import open_store

    chain = config.chain
    depth = int(chain.get("confirmations", DEFAULT_CONFIRMATIONS))
    concurrency = max(1, int(chain.get("concurrency", DEFAULT_CONCURRENCY)))
    change_scripts = frozenset(str(s).lower() for s in chain.get("change_scripts", ()))
    own_client = client is None
    client = client or chain_client_from_config(config)
    summary = VerifySummary()
    started = time.monotonic()
    requests0, throttled0 = client.requests, client.throttled
    try:
        with open_store(db) as store:
            run_id = store.start_run("verify-chain")
            summary.run_id = run_id
            todo, summary.txids_total, summary.cached_confirmed = _pending_txids(store.con)
            bar = _progress_bar(len(todo)) if progress else None
            status = "failed"
            try:
                with ThreadPoolExecutor(max_workers=concurrency) as pool:
                    for start in range(0, len(todo), _WRITE_EVERY):
                        chunk = todo[start : start + _WRITE_EVERY]
                        batches = [
                            chunk[i : i + MAX_BULK_TXIDS]
                            for i in range(0, len(chunk), MAX_BULK_TXIDS)
                        ]
                        got: list[ChainTx] = []
                        for txs in pool.map(
                            lambda b: client.fetch(b, confirmations=depth), batches
                        ):
                            got.extend(txs)
                            if bar is not None:
                                bar[0].advance(bar[1], len(txs))
                            if on_progress is not None:
                                on_progress(start + len(got), len(todo))
                        frame = _rows(
                            got,
                            fetched_at=datetime.now(UTC),
                            run_id=run_id,
                            change_scripts=change_scripts,
                        )
                        summary.reorged += _store_rows(store, frame)
                        _count(summary, got)
                if chain.get("fetch_parents", False):
                    fetch_parent_fees(store, client, pool_size=concurrency)
                status = "ok"
            finally:
                if bar is not None:
                    bar[0].stop()
                summary.requests = client.requests - requests0
                summary.throttled = client.throttled - throttled0
                summary.elapsed_s = time.monotonic() - started
                store.finish_run(
                    run_id,
                    status=status,
                    stats={k: v for k, v in summary.__dict__.items() if k != "refusals"},
                )
    finally:
        if own_client:
            client.close()
    return summary


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


def _progress_bar(total: int) -> tuple[Any, Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    bar = Progress(
        "verifying txids", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True
    )
    task = bar.add_task("verify", total=total)
    bar.start()
    return bar, task


def fetch_parent_fees(store: Any, client: ChainClient, *, pool_size: int = 4) -> int:
    """Fetch the parents of stored transactions and fill `chain_txs.fee_sats`; return how many.

    Optional (`[chain] fetch_parents = true`): one more bulk call per 20 parents. A fee can be
    computed only when every parent is known to the index; otherwise it stays null.
    """
    con = store.con
    rows = con.execute(
        "SELECT txid, raw_hex FROM chain_txs WHERE raw_hex IS NOT NULL AND fee_sats IS NULL"
    ).fetchall()
    spends: dict[str, list[tuple[str, int]]] = {}
    totals: dict[str, int] = {}
    for txid, raw_hex in rows:
        p = parse_raw_tx(raw_hex)
        if p.is_coinbase:
            continue
        spends[txid] = [(i.prev_txid, i.prev_vout) for i in p.inputs]
        totals[txid] = p.total_out_sats
    known = {
        t: list(o) for t, o in con.execute("SELECT txid, output_sats FROM chain_parents").fetchall()
    }
    wanted = sorted({prev for ins in spends.values() for prev, _ in ins} - set(known))
    batches = [wanted[i : i + MAX_BULK_TXIDS] for i in range(0, len(wanted), MAX_BULK_TXIDS)]
    fetched: list[tuple[str, list[int], str]] = []
    with ThreadPoolExecutor(max_workers=pool_size) as pool:
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
    for txid, outs, _ in fetched:
        known[txid] = outs
    for txid, ins in spends.items():
        try:
            fee = sum(known[prev][vout] for prev, vout in ins) - totals[txid]
        except (KeyError, IndexError):
            continue
        fees.append((fee, txid))
    with store.transaction():
        for txid, outs, h in fetched:
            con.execute(
                "INSERT OR REPLACE INTO chain_parents VALUES (?, ?, ?, ?)", [txid, outs, h, now]
            )
        if fees:
            con.executemany("UPDATE chain_txs SET fee_sats = ? WHERE txid = ?", fees)
    return len(fees)


_SEVERITY_RANK: Final = {"info": 0, "warn": 1, "fail": 2}


def reconciliation_findings(
    db: str | Path, config: AuditConfig, *, prefixes: tuple[str, ...] = ("chain.",)
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Return (findings of the checks whose id starts with `prefixes`, chain coverage)."""
    from asg_audit.checks import CheckContext, registered_checks, run_checks
    from asg_audit.reconcile import chain_coverage
    from asg_audit.store import open_store

    with open_store(db, read_only=True) as store:
        present = set(store.tables())
        tables: dict[str, pl.LazyFrame | pl.DataFrame] = {
            name: store.frame(name)
            for name in ("results", "submissions", "chain_txs", "billing_usage")
            if name in present
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
    """Print findings counted by check and severity, the first few of each, and coverage."""
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
        print(f"  {check_id} [{severity}]: {group.height}")
        for row in group.head(5).iter_rows(named=True):
            print(
                f"    {row['entity_type']} {row['entity_id']}: {row['message']} ({row['proves']})"
            )


# Register the chain checks with the check registry (the registry imports this module).
from asg_audit import reconcile as _reconcile  # noqa: E402,F401
