"""asg_audit: audit the settlements of the ASG labeling service.

The public API is what `__all__` lists; everything else is internal. Names are imported on
first use, so `import asg_audit` (and the command line's `--help`) stays fast: the analyses,
the report's matplotlib and the servers load only when asked for.
"""

# No imports at run time: `asg-audit` imports this package first, and a Ctrl-C while it does
# would be a traceback (asg_audit.entry turns one after it into "interrupted", exit 3).
TYPE_CHECKING = False

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "ApiError": "asg_audit.errors",
    "Audit": "asg_audit.audit",
    "AuditConfig": "asg_audit.config",
    "AuditError": "asg_audit.errors",
    "AuditOutcome": "asg_audit.jobs",
    "BillingSummary": "asg_audit.billing",
    "ChainClient": "asg_audit.chain",
    "ChainTx": "asg_audit.chain",
    "CollectSummary": "asg_audit.collector",
    "ConfigError": "asg_audit.errors",
    "IndexIntegrityError": "asg_audit.chain",
    "IngestSummary": "asg_audit.ingest_files",
    "InputError": "asg_audit.errors",
    "ParsedTx": "asg_audit.rawtx",
    "RenderedReport": "asg_audit.report",
    "SchemaVersionError": "asg_audit.errors",
    "StoreBusyError": "asg_audit.errors",
    "StoreError": "asg_audit.errors",
    "VerifySummary": "asg_audit.chain",
    "WebhookSettings": "asg_audit.webhooks",
    "analyze": "asg_audit.audit",
    "collect": "asg_audit.collector",
    "collect_sync": "asg_audit.collector",
    "compute_txid": "asg_audit.rawtx",
    "create_webhook_app": "asg_audit.webhooks",
    "fetch_billing": "asg_audit.billing",
    "ingest": "asg_audit.ingest_files",
    "ingest_paths": "asg_audit.ingest_files",
    "load_config": "asg_audit.config",
    "open_store": "asg_audit.store",
    "parse_raw_tx": "asg_audit.rawtx",
    "register_webhook": "asg_audit.webhooks",
    "render": "asg_audit.report",
    "run_audit": "asg_audit.jobs",
    "serve_webhooks": "asg_audit.webhooks",
    "sign_body": "asg_audit.webhooks",
    "track_file": "asg_audit.track",
    "verify_chain": "asg_audit.chain",
    "verify_signature": "asg_audit.webhooks",
}

__all__ = [
    "ApiError",
    "Audit",
    "AuditConfig",
    "AuditError",
    "AuditOutcome",
    "BillingSummary",
    "ChainClient",
    "ChainTx",
    "CollectSummary",
    "ConfigError",
    "IndexIntegrityError",
    "IngestSummary",
    "InputError",
    "ParsedTx",
    "RenderedReport",
    "SchemaVersionError",
    "StoreBusyError",
    "StoreError",
    "VerifySummary",
    "WebhookSettings",
    "__version__",
    "analyze",
    "collect",
    "collect_sync",
    "compute_txid",
    "create_webhook_app",
    "fetch_billing",
    "ingest",
    "ingest_paths",
    "load_config",
    "open_store",
    "parse_raw_tx",
    "register_webhook",
    "render",
    "run_audit",
    "serve_webhooks",
    "sign_body",
    "track_file",
    "verify_chain",
    "verify_signature",
]


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'asg_audit' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:
    from asg_audit.audit import Audit, analyze
    from asg_audit.billing import BillingSummary, fetch_billing
    from asg_audit.chain import (
        ChainClient,
        ChainTx,
        IndexIntegrityError,
        VerifySummary,
        verify_chain,
    )
    from asg_audit.collector import CollectSummary, collect, collect_sync
    from asg_audit.config import AuditConfig, load_config
    from asg_audit.errors import (
        ApiError,
        AuditError,
        ConfigError,
        InputError,
        SchemaVersionError,
        StoreBusyError,
        StoreError,
    )
    from asg_audit.ingest_files import IngestSummary, ingest, ingest_paths
    from asg_audit.jobs import AuditOutcome, run_audit
    from asg_audit.rawtx import ParsedTx, compute_txid, parse_raw_tx
    from asg_audit.report import RenderedReport, render  # type: ignore[no-redef]
    from asg_audit.store import open_store
    from asg_audit.track import track_file
    from asg_audit.webhooks import (
        WebhookSettings,
        create_webhook_app,
        register_webhook,
        serve_webhooks,
        sign_body,
        verify_signature,
    )
