"""asg_audit: audit the settlements of the ASG labeling service.

The public API is what `__all__` lists; everything else is internal.
"""

from __future__ import annotations

from asg_audit.audit import Audit, analyze
from asg_audit.billing import BillingSummary, fetch_billing
from asg_audit.chain import ChainClient, ChainTx, IndexIntegrityError, VerifySummary, verify_chain
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
from asg_audit.rawtx import ParsedTx, compute_txid, parse_raw_tx
from asg_audit.report import RenderedReport, render
from asg_audit.webhooks import (
    WebhookSettings,
    create_webhook_app,
    register_webhook,
    serve_webhooks,
    sign_body,
    verify_signature,
)

__version__ = "0.1.0"

__all__ = [
    "ApiError",
    "Audit",
    "AuditConfig",
    "AuditError",
    "BillingSummary",
    "ChainClient",
    "ChainTx",
    "CollectSummary",
    "ConfigError",
    "IndexIntegrityError",
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
    "load_config",
    "parse_raw_tx",
    "register_webhook",
    "render",
    "serve_webhooks",
    "sign_body",
    "verify_chain",
    "verify_signature",
]
