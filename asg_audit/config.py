"""AuditConfig: settings from a TOML file, the environment and command-line flags.

Precedence, lowest first: built-in defaults, the config file (`--config FILE`, default
`./asg_audit.toml` when present), the environment, explicit flags. Only this module and `cli.py`
read the environment; library functions take explicit arguments.

Secrets (API keys, webhook secrets) are held in `Secret`, whose `repr` and `str` never show the
value, so that a config printed in a log or a report cannot leak them.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

from asg_audit.errors import ConfigError

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_CHAIN_URL",
    "DEFAULT_CONFIG_FILE",
    "DEFAULT_DB_PATH",
    "AuditConfig",
    "CheckLevels",
    "CostModel",
    "Secret",
    "load_config",
]

DEFAULT_DB_PATH = "asg_audit.duckdb"
DEFAULT_CONFIG_FILE = "asg_audit.toml"
DEFAULT_BASE_URL = "https://api.asgrefinery.io"
DEFAULT_CHAIN_URL = "https://api.whatsonchain.com/v1/bsv/main"


class Secret:
    """A secret string that never shows itself in repr, str or f-strings."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """Return the secret value; call only where it is sent, never where it is printed."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


@dataclass(frozen=True, slots=True)
class CostModel:
    """How much a settled task should cost.

    `kind` is `per_worker` (payout x agreeing workers, the docs' default of 325 sats) or `fixed`
    (one configured reward per task). A platform fee in percent is added on top when
    `fee_included` is true (the reported cost then contains the fee).
    """

    kind: str = "per_worker"
    payout_per_worker_sats: int = 325
    reward_sats: int = 1000
    fee_percent: Decimal = Decimal(0)
    fee_included: bool = False

    def __post_init__(self) -> None:
        if self.kind not in ("per_worker", "fixed"):
            raise ConfigError("[costs] kind: expected 'per_worker' or 'fixed'")
        if self.payout_per_worker_sats < 0 or self.reward_sats < 0:
            raise ConfigError("[costs]: sats amounts must not be negative")
        if not (Decimal(0) <= self.fee_percent <= Decimal(100)):
            raise ConfigError("[costs] fee_percent: expected a number from 0 to 100")


@dataclass(frozen=True, slots=True)
class CheckLevels:
    """Thresholds of one check: at or above `warn` a warning, at or above `fail` a failure."""

    warn: float | None = None
    fail: float | None = None
    enabled: bool = True
    severity: str | None = None  # a fixed severity for checks without a measured level


@dataclass(frozen=True, slots=True)
class AuditConfig:
    """Every setting of an audit. Build it with `load_config`; it is immutable."""

    db_path: Path = Path(DEFAULT_DB_PATH)
    base_url: str = DEFAULT_BASE_URL
    api_key: Secret | None = None
    chain_url: str = DEFAULT_CHAIN_URL
    chain_network: str = "main"
    woc_api_key: Secret | None = None
    webhook_secrets: tuple[Secret, ...] = ()
    costs: CostModel = field(default_factory=CostModel)
    slo_seconds: float = 60.0
    fail_on: str = "fail"
    checks: Mapping[str, CheckLevels] = field(default_factory=dict)
    # Section settings owned by the modules that use them (collector, webhooks, chain, billing,
    # report, audit): plain mappings, validated by their owners.
    collector: Mapping[str, Any] = field(default_factory=dict)
    webhooks: Mapping[str, Any] = field(default_factory=dict)
    chain: Mapping[str, Any] = field(default_factory=dict)
    billing: Mapping[str, Any] = field(default_factory=dict)
    report: Mapping[str, Any] = field(default_factory=dict)
    audit: Mapping[str, Any] = field(default_factory=dict)

    def levels(self, check_id: str, default: CheckLevels) -> CheckLevels:
        """Return the configured levels of a check, or its documented default."""
        return self.checks.get(check_id, default)

    def replace(self, **changes: Any) -> AuditConfig:
        """Return a copy with some settings changed."""
        return dataclasses.replace(self, **changes)


def _secret(value: str | None) -> Secret | None:
    return Secret(value) if value else None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from None


# The TOML type of every key. A value of another type is an error naming the file, the key and
# the type expected, never the value: a misplaced secret must not reach a terminal or a log.
_BOOL: Final = "a boolean (true or false)"
_INT: Final = "an integer"
_NUMBER: Final = "a number"
_STRING: Final = "a string"
_STRINGS: Final = "an array of strings"
_TOP_TYPES: Final[dict[str, str]] = {
    "db": _STRING,
    "base_url": _STRING,
    "chain_url": _STRING,
    "chain_network": _STRING,
    "slo_seconds": _NUMBER,
    "fail_on": _STRING,
}
_SECTION_TYPES: Final[dict[str, dict[str, str]]] = {
    "costs": {
        "kind": _STRING,
        "payout_per_worker_sats": _INT,
        "reward_sats": _INT,
        "fee_percent": _NUMBER,
        "fee_included": _BOOL,
    },
    "checks": {},  # one table per check id, each of _CHECK_TYPES
    # the fields of pollwriter.CollectorSettings and webhooks.WebhookSettings (a test keeps
    # them equal), whose `from_mapping` also checks the ranges of the values
    "collector": {
        "schedule": _STRING,
        "max_rps": _NUMBER,
        "concurrency": _INT,
        "deadline_s": _NUMBER,
        "not_found_grace_s": _NUMBER,
        "timeout_s": _NUMBER,
        "retry_floor_s": _NUMBER,
        "retry_base_s": _NUMBER,
        "retry_cap_s": _NUMBER,
        "batch_size": _INT,
        "flush_interval_s": _NUMBER,
        "flush_max_interval_s": _NUMBER,
        "progress_interval_s": _NUMBER,
        "lock_wait_s": _NUMBER,
    },
    "webhooks": {
        "max_body_bytes": _INT,
        "freshness_seconds": _NUMBER,
        "commit_max_batch": _INT,
        "commit_max_wait_ms": _NUMBER,
        "normalise_interval_ms": _NUMBER,
        "path": _STRING,
        "secret_file": _STRING,
        "graceful_shutdown_seconds": _NUMBER,
        "forwarded_allow_ips": _STRING,
        "http": _STRING,
        "dedupe_window_seconds": _NUMBER,
        "dedupe_max_events": _INT,
    },
    # read with `.get` by chain.py, chain_verify.py and billing.py
    "chain": {
        "rps": _NUMBER,
        "concurrency": _INT,
        "confirmations": _INT,
        "unknown_after_seconds": _NUMBER,
        "unconfirmed_after_seconds": _NUMBER,
        "block_time_tolerance_seconds": _NUMBER,
        "change_scripts": _STRINGS,
        "fetch_parents": _BOOL,
        "fee_rate_min_sat_per_kb": _NUMBER,
        "fee_rate_max_sat_per_kb": _NUMBER,
        "timeout_seconds": _NUMBER,
        "max_retries": _INT,
    },
    "billing": {"timeout_seconds": _NUMBER, "max_retries": _INT},
    "report": {},  # nothing is configured here yet
    # read by jobs.py (and demo.py: demo_collect_seconds)
    "audit": {
        "drop_folders": _STRINGS,
        "report_dir": _STRING,
        "collect_seconds": _NUMBER,
        "verify_chain": _BOOL,
        "billing": _BOOL,
        "alert_url": _STRING,
        "alert_on": _STRING,
        "fail_on": _STRING,
        "require_api": _BOOL,
        "demo_collect_seconds": _NUMBER,
    },
}
_CHECK_TYPES: Final[dict[str, str]] = {
    "warn": _NUMBER,
    "fail": _NUMBER,
    "enabled": _BOOL,
    "severity": _STRING,
}
_SEVERITIES: Final = ("info", "warn", "fail")
_SECRET_KEYS: Final = ("api_key", "webhook_secret", "woc_api_key")


def _has_type(value: Any, expected: str) -> bool:
    if expected == _BOOL:
        return isinstance(value, bool)
    if expected == _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    if expected == _NUMBER:
        number = isinstance(value, int | float) and not isinstance(value, bool)
        return number and math.isfinite(value)
    if expected == _STRINGS:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    return isinstance(value, str)


def _toml_type(value: Any) -> str:
    """Return what a TOML value is, in words (never the value itself)."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float" if math.isfinite(value) else "nan or inf"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array with other values" if value else "an empty array"
    if isinstance(value, Mapping):
        return "a table"
    return "a date or time"


def _check_table(raw: Mapping[str, Any], types: Mapping[str, str], where: str, table: str) -> None:
    """Raise ConfigError for an unknown key or a value of the wrong type in one table."""
    unknown = set(raw) - set(types)
    if unknown:
        known = f" (known: {', '.join(sorted(types))})" if types else " (it takes no keys)"
        inside = f" in {table}" if table else ""
        raise ConfigError(f"{where}: unknown key(s){inside}: {', '.join(sorted(unknown))}{known}")
    for key, value in raw.items():
        if not _has_type(value, types[key]):
            name = f"{table} {key}" if table else key
            raise ConfigError(f"{where}: {name}: expected {types[key]}, got {_toml_type(value)}")


def _one_of(value: str, allowed: tuple[str, ...], where: str, name: str) -> None:
    if value not in allowed:
        raise ConfigError(f"{where}: {name}: expected one of {', '.join(allowed)}")


def _check_file(raw: Mapping[str, Any], where: str) -> None:
    """Raise ConfigError unless every key of the file is known and of its type.

    The whole file is checked whichever command reads it: a mistake in `[audit]` is reported
    by `report` too, not first by the scheduled job.
    """
    secret_keys = sorted(k for k in raw if k in _SECRET_KEYS)
    if secret_keys:
        raise ConfigError(
            f"{where}: secrets belong in the environment, not the config file "
            f"({', '.join(secret_keys)}: use ASG_API_KEY, ASG_WEBHOOK_SECRET, WOC_API_KEY)"
        )
    _check_table({k: v for k, v in raw.items() if k not in _SECTION_TYPES}, _TOP_TYPES, where, "")
    for section, types in _SECTION_TYPES.items():
        table = raw.get(section, {})
        if not isinstance(table, Mapping):
            raise ConfigError(f"{where}: [{section}] must be a table")
        if section == "webhooks" and ("secret" in table or "secrets" in table):
            raise ConfigError(
                f"{where}: [webhooks]: secrets belong in ASG_WEBHOOK_SECRET or a secret_file"
            )
        if section != "checks":
            _check_table(table, types, where, f"[{section}]")
    if "fail_on" in raw:
        _one_of(raw["fail_on"], _SEVERITIES, where, "fail_on")
    if "slo_seconds" in raw and raw["slo_seconds"] <= 0:
        raise ConfigError(f"{where}: slo_seconds: expected a positive number")
    audit = raw.get("audit", {})
    for key in ("fail_on", "alert_on"):
        if key in audit:
            _one_of(audit[key], _SEVERITIES, where, f"[audit] {key}")
    for key in ("collect_seconds", "demo_collect_seconds"):
        if key in audit and audit[key] < 0:
            raise ConfigError(f"{where}: [audit] {key}: expected a number of seconds, 0 or more")


def _cost_model(raw: Mapping[str, Any], where: str) -> CostModel:
    try:
        return CostModel(
            kind=raw.get("kind", "per_worker"),
            payout_per_worker_sats=raw.get("payout_per_worker_sats", 325),
            reward_sats=raw.get("reward_sats", 1000),
            fee_percent=Decimal(str(raw.get("fee_percent", 0))),
            fee_included=raw.get("fee_included", False),
        )
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _known_check_ids() -> list[str]:
    """Return the ids of every check, the chain and billing ones included, sorted."""
    # Imported here: the checks import this module.
    from asg_audit.checks import load_check_plugins, registered_checks

    load_check_plugins()
    return list(registered_checks())


def _check_levels(raw: Mapping[str, Any], where: str) -> dict[str, CheckLevels]:
    out: dict[str, CheckLevels] = {}
    known = _known_check_ids() if raw else []
    for check_id, levels in raw.items():
        table = f'[checks."{check_id}"]'
        if not isinstance(levels, Mapping):
            raise ConfigError(
                f"{where}: {table} must be a table (of warn, fail, enabled, severity)"
            )
        if check_id not in known:
            close = difflib.get_close_matches(check_id, known, n=3, cutoff=0.6)
            hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(known)}"
            raise ConfigError(f"{where}: {table}: unknown check id; {hint}")
        _check_table(levels, _CHECK_TYPES, where, table)
        if "severity" in levels:
            _one_of(levels["severity"], _SEVERITIES, where, f"{table} severity")
        out[check_id] = CheckLevels(
            warn=levels.get("warn"),
            fail=levels.get("fail"),
            enabled=levels.get("enabled", True),
            severity=levels.get("severity"),
        )
    return out


def load_config(
    config_file: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> AuditConfig:
    """Return the AuditConfig built from defaults, a TOML file, the environment and overrides.

    `config_file=None` reads `./asg_audit.toml` when it exists. `env` defaults to `os.environ`.
    `overrides` are flag values (None means "not given").
    """
    env = os.environ if env is None else env
    raw: dict[str, Any] = {}
    where = "defaults"
    if config_file is not None:
        raw = _read_toml(Path(config_file))
        where = str(config_file)
    elif Path(DEFAULT_CONFIG_FILE).is_file():
        raw = _read_toml(Path(DEFAULT_CONFIG_FILE))
        where = DEFAULT_CONFIG_FILE
    _check_file(raw, where)

    settings: dict[str, Any] = {
        "db_path": Path(env.get("ASG_AUDIT_DB") or raw.get("db") or DEFAULT_DB_PATH),
        "base_url": env.get("ASG_BASE_URL") or raw.get("base_url") or DEFAULT_BASE_URL,
        "api_key": _secret(env.get("ASG_API_KEY") or env.get("API_KEY")),
        "chain_url": env.get("ASG_CHAIN_URL") or raw.get("chain_url") or DEFAULT_CHAIN_URL,
        "chain_network": raw.get("chain_network", "main"),
        "woc_api_key": _secret(env.get("WOC_API_KEY")),
        "webhook_secrets": tuple(
            Secret(s.strip()) for s in env.get("ASG_WEBHOOK_SECRET", "").split(",") if s.strip()
        ),
        "costs": _cost_model(raw.get("costs", {}), where),
        "slo_seconds": float(raw.get("slo_seconds", 60.0)),
        "fail_on": raw.get("fail_on", "fail"),
        "checks": _check_levels(raw.get("checks", {}), where),
    }
    for section in ("collector", "webhooks", "chain", "billing", "report", "audit"):
        settings[section] = dict(raw.get(section, {}))
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key == "db_path":
            value = Path(value)
        settings[key] = value
    # flags and library callers are checked too (the file's values were, above)
    _one_of(settings["fail_on"], _SEVERITIES, "settings", "fail_on")
    slo = settings["slo_seconds"]
    if not _has_type(slo, _NUMBER) or slo <= 0:
        raise ConfigError("slo_seconds: expected a positive number")
    return AuditConfig(**settings)
