"""Versioned, named migrations of the DuckDB store.

A migration's version is its position in `MIGRATIONS` (1-based). Append new migrations at the end;
never edit or reorder one that has landed: existing database files have already applied it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MIGRATIONS", "Migration"]


@dataclass(frozen=True, slots=True)
class Migration:
    """One named schema change: SQL statements applied in one transaction."""

    name: str
    statements: tuple[str, ...]


_NORMALISED_COLUMNS = """
    task_id VARCHAR NOT NULL,
    status VARCHAR,
    http_status SMALLINT,
    consensus_label VARCHAR,
    confidence DOUBLE,
    worker_count INTEGER,
    agreement_count INTEGER,
    bsv_txid VARCHAR,
    cost_sats BIGINT,
    cost_unknown BOOLEAN,
    task_type VARCHAR,
    created_at TIMESTAMPTZ,
    settled_at TIMESTAMPTZ,
    delivered_at TIMESTAMPTZ,
    error_message VARCHAR,
    shape VARCHAR,
    flags VARCHAR[],
    payload_hash VARCHAR
"""

MIGRATIONS: list[Migration] = [
    Migration(
        name="initial evidence store",
        statements=(
            """CREATE TABLE runs (
                run_id VARCHAR PRIMARY KEY,
                command VARCHAR NOT NULL,
                started_at TIMESTAMPTZ NOT NULL,
                finished_at TIMESTAMPTZ,
                status VARCHAR NOT NULL,
                stats JSON
            )""",
            f"""CREATE TABLE observations (
                obs_id BIGINT NOT NULL,
                run_id VARCHAR NOT NULL,
                source VARCHAR NOT NULL,
                observed_at TIMESTAMPTZ NOT NULL,
                origin VARCHAR,
                origin_line BIGINT,
                origin_hash VARCHAR,
                raw VARCHAR,
                {_NORMALISED_COLUMNS}
            )""",
            """CREATE TABLE results (
                task_id VARCHAR NOT NULL,
                status VARCHAR,
                consensus_label VARCHAR,
                confidence DOUBLE,
                worker_count INTEGER,
                agreement_count INTEGER,
                bsv_txid VARCHAR,
                cost_sats BIGINT,
                cost_unknown BOOLEAN,
                task_type VARCHAR,
                created_at TIMESTAMPTZ,
                settled_at TIMESTAMPTZ,
                delivered_at TIMESTAMPTZ,
                shape VARCHAR,
                flags VARCHAR[],
                first_seen_at TIMESTAMPTZ,
                settled_seen_at TIMESTAMPTZ,
                last_seen_at TIMESTAMPTZ,
                sources VARCHAR[],
                observation_count BIGINT,
                conflict_count BIGINT
            )""",
            """CREATE TABLE submissions (
                task_id VARCHAR NOT NULL,
                task_type VARCHAR,
                consensus_threshold INTEGER,
                options VARCHAR[],
                created_at TIMESTAMPTZ,
                data_url VARCHAR,
                origin VARCHAR,
                origin_line BIGINT,
                tracked_at TIMESTAMPTZ NOT NULL
            )""",
            """CREATE TABLE rejects (
                run_id VARCHAR NOT NULL,
                source VARCHAR NOT NULL,
                observed_at TIMESTAMPTZ NOT NULL,
                origin VARCHAR,
                origin_line BIGINT,
                reason VARCHAR NOT NULL,
                field VARCHAR,
                detail VARCHAR,
                raw BLOB
            )""",
            """CREATE TABLE ingested_files (
                content_hash VARCHAR PRIMARY KEY,
                path VARCHAR NOT NULL,
                size_bytes BIGINT NOT NULL,
                records BIGINT NOT NULL,
                run_id VARCHAR NOT NULL,
                ingested_at TIMESTAMPTZ NOT NULL
            )""",
            """CREATE TABLE poll_state (
                task_id VARCHAR PRIMARY KEY,
                state VARCHAR NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_poll_at TIMESTAMPTZ,
                last_http_status SMALLINT,
                first_404_at TIMESTAMPTZ,
                updated_at TIMESTAMPTZ NOT NULL
            )""",
            """CREATE TABLE findings (
                run_id VARCHAR NOT NULL,
                check_id VARCHAR NOT NULL,
                severity VARCHAR NOT NULL,
                entity_type VARCHAR,
                entity_id VARCHAR,
                expected VARCHAR,
                actual VARCHAR,
                difference DOUBLE,
                proves VARCHAR,
                message VARCHAR
            )""",
        ),
    ),
    Migration(
        name="webhook deliveries",
        statements=(
            # One row per delivery the receiver answered. The payload itself lives in
            # observations/rejects (authenticated deliveries only); never any secret here.
            """CREATE TABLE webhook_deliveries (
                delivery_id VARCHAR NOT NULL,
                run_id VARCHAR,
                received_at TIMESTAMPTZ NOT NULL,
                outcome VARCHAR NOT NULL,
                http_status SMALLINT NOT NULL,
                body_sha256 VARCHAR,
                body_bytes BIGINT,
                event_key VARCHAR,
                task_id VARCHAR,
                delivered_at TIMESTAMPTZ,
                secret_index SMALLINT,
                remote_addr VARCHAR,
                detail VARCHAR
            )""",
        ),
    ),
    Migration(
        name="chain index cache and billing usage",
        statements=(
            # One row per txid we asked the chain index about. Confirmed rows are final (never
            # fetched again); unconfirmed, unknown and refused rows are asked again next run.
            """CREATE TABLE chain_txs (
                txid VARCHAR PRIMARY KEY,
                status VARCHAR NOT NULL,
                block_hash VARCHAR,
                block_height BIGINT,
                block_time TIMESTAMPTZ,
                confirmations BIGINT,
                prev_block_hash VARCHAR,
                size_bytes BIGINT,
                input_count INTEGER,
                output_sats BIGINT[],
                output_kinds VARCHAR[],
                non_data_sats BIGINT,
                data_sats BIGINT,
                zero_payouts INTEGER,
                fee_sats BIGINT,
                raw_hex VARCHAR,
                note VARCHAR,
                first_checked_at TIMESTAMPTZ NOT NULL,
                fetched_at TIMESTAMPTZ NOT NULL,
                checks INTEGER NOT NULL DEFAULT 1,
                run_id VARCHAR
            )""",
            # Parent transactions, fetched only to compute fees (optional).
            """CREATE TABLE chain_parents (
                txid VARCHAR PRIMARY KEY,
                output_sats BIGINT[],
                raw_hex VARCHAR,
                fetched_at TIMESTAMPTZ NOT NULL
            )""",
            """CREATE TABLE billing_usage (
                month VARCHAR PRIMARY KEY,
                customer_id VARCHAR,
                tier VARCHAR,
                tasks_settled BIGINT,
                total_cost_sats BIGINT,
                total_cost_usd_estimate DECIMAL(18, 2),
                worker_payouts_sats BIGINT,
                platform_fee_sats BIGINT,
                daily_breakdown STRUCT("date" DATE, tasks BIGINT, cost_sats BIGINT)[],
                raw VARCHAR NOT NULL,
                fetched_at TIMESTAMPTZ NOT NULL,
                run_id VARCHAR
            )""",
            """CREATE TABLE billing_invoices (
                invoice_id VARCHAR PRIMARY KEY,
                month VARCHAR,
                status VARCHAR,
                tasks_settled BIGINT,
                total_cost_sats BIGINT,
                issued_at TIMESTAMPTZ,
                raw VARCHAR NOT NULL,
                fetched_at TIMESTAMPTZ NOT NULL,
                run_id VARCHAR
            )""",
        ),
    ),
    Migration(
        name="webhook delivery inbox",
        statements=(
            # The raw body of an authenticated delivery is committed with its delivery row
            # before the 2xx; the normaliser turns it into an observation right after (and on
            # restart, for bodies a crash left un-normalised).
            "ALTER TABLE webhook_deliveries ADD COLUMN body BLOB",
        ),
    ),
    Migration(
        name="store settings: the normaliser rules version",
        statements=(
            # Small facts about the store as a whole, one row a key. `rules_version` is the
            # normaliser rules version (`asg_audit.normalize.RULES_VERSION`) its rows were
            # judged by: absent in a store from before this migration (older rules, 0).
            """CREATE TABLE store_settings (
                key VARCHAR PRIMARY KEY,
                value VARCHAR NOT NULL,
                updated_at TIMESTAMPTZ NOT NULL
            )""",
        ),
    ),
    Migration(
        name="findings: exact integer differences",
        statements=(
            # `difference` is a DOUBLE: a whole difference past 2^53 (2^63 - 1 sats) was rounded.
            # This column holds it with every digit; null for a fractional difference. Rows
            # stored before this migration keep null here: their double may already be rounded,
            # so no exact figure is made up from it.
            "ALTER TABLE findings ADD COLUMN difference_exact DECIMAL(38, 0)",
        ),
    ),
    Migration(
        name="chain index cache: back-off of unknown txids",
        statements=(
            # How many answers in a row said the index does not know the txid (status
            # `unknown`); null for any other status. `verify-chain` asks such a txid again only
            # once `[chain] unknown_recheck_seconds` x 2^(n-1) (at most
            # `unknown_recheck_max_seconds`) has passed since `fetched_at`. A row stored unknown
            # before this migration counts as one answer: it is asked again after the first
            # interval, as a txid found unknown for the first time.
            "ALTER TABLE chain_txs ADD COLUMN unknown_streak INTEGER",
            "UPDATE chain_txs SET unknown_streak = 1 WHERE status = 'unknown'",
        ),
    ),
    # Append new migrations here (version = position in this list).
]
