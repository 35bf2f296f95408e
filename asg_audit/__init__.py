"""asg_audit: audit the settlements of the ASG labeling service.

The public API is what `__all__` lists; everything else is internal.
"""

from __future__ import annotations

from asg_audit.audit import Audit, analyze
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
    "CollectSummary",
    "ConfigError",
    "InputError",
    "SchemaVersionError",
    "StoreBusyError",
    "StoreError",
    "WebhookSettings",
    "__version__",
    "analyze",
    "collect",
    "collect_sync",
    "create_webhook_app",
    "load_config",
    "register_webhook",
    "serve_webhooks",
    "sign_body",
    "verify_signature",
]
