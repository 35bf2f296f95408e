"""AuditConfig: settings from a TOML file, the environment and command-line flags.

Precedence, lowest first: built-in defaults, the config file (`--config FILE`, default
`./asg_audit.toml` when present), the environment, explicit flags. Only this module and `cli.py`
read the environment; library functions take explicit arguments.

Secrets (API keys, webhook secrets) are held in `Secret`, whose `repr` and `str` never show the
value, so that a config printed in a log or a report cannot leak them.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

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
            raise ConfigError(f"costs.kind: expected 'per_worker' or 'fixed', got {self.kind!r}")
        if self.payout_per_worker_sats < 0 or self.reward_sats < 0:
            raise ConfigError("costs: sats amounts must not be negative")
        if not (Decimal(0) <= self.fee_percent <= Decimal(100)):
            raise ConfigError(f"costs.fee_percent: expected 0..100, got {self.fee_percent}")


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


def _cost_model(raw: Mapping[str, Any], where: str) -> CostModel:
    known = {"kind", "payout_per_worker_sats", "reward_sats", "fee_percent", "fee_included"}
    unknown = set(raw) - known
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) in [costs]: {', '.join(sorted(unknown))}")
    try:
        fee = Decimal(str(raw.get("fee_percent", 0)))
    except InvalidOperation:
        raise ConfigError(f"{where}: costs.fee_percent is not a number") from None
    for key in ("payout_per_worker_sats", "reward_sats"):
        if key in raw and (not isinstance(raw[key], int) or isinstance(raw[key], bool)):
            raise ConfigError(f"{where}: costs.{key} must be an integer number of sats")
    return CostModel(
        kind=str(raw.get("kind", "per_worker")),
        payout_per_worker_sats=int(raw.get("payout_per_worker_sats", 325)),
        reward_sats=int(raw.get("reward_sats", 1000)),
        fee_percent=fee,
        fee_included=bool(raw.get("fee_included", False)),
    )


def _check_levels(raw: Mapping[str, Any], where: str) -> dict[str, CheckLevels]:
    out: dict[str, CheckLevels] = {}
    for check_id, levels in raw.items():
        if not isinstance(levels, Mapping):
            raise ConfigError(f"{where}: [checks.{check_id}] must be a table")
        unknown = set(levels) - {"warn", "fail", "enabled", "severity"}
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) in [checks.{check_id}]: {sorted(unknown)}")
        severity = levels.get("severity")
        if severity is not None and severity not in ("info", "warn", "fail"):
            raise ConfigError(f"{where}: checks.{check_id}.severity must be info, warn or fail")
        out[check_id] = CheckLevels(
            warn=levels.get("warn"),
            fail=levels.get("fail"),
            enabled=bool(levels.get("enabled", True)),
            severity=severity,
        )
    return out


_TOP_KEYS = {"db", "base_url", "chain_url", "chain_network", "slo_seconds", "fail_on"}
# Keys of the sections read with `.get` by the modules that use them (the others validate
# their own section in `from_mapping`): a misspelt key is an error, not a silent default.
_SECTION_KEYS: dict[str, frozenset[str]] = {
    "chain": frozenset(
        {
            "rps",
            "concurrency",
            "confirmations",
            "unknown_after_seconds",
            "unconfirmed_after_seconds",
            "block_time_tolerance_seconds",
            "change_scripts",
            "fetch_parents",
            "fee_rate_min_sat_per_kb",
            "fee_rate_max_sat_per_kb",
            "timeout_seconds",
            "max_retries",
        }
    ),
    "billing": frozenset({"timeout_seconds", "max_retries"}),
}
_SECTIONS = {"costs", "checks", "collector", "webhooks", "chain", "billing", "report", "audit"}


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
    secret_keys = {k for k in raw if k in ("api_key", "webhook_secret", "woc_api_key")}
    if secret_keys:
        raise ConfigError(
            f"{where}: secrets belong in the environment, not the config file "
            f"({', '.join(sorted(secret_keys))}: use ASG_API_KEY, ASG_WEBHOOK_SECRET, WOC_API_KEY)"
        )
    unknown = set(raw) - _TOP_KEYS - _SECTIONS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s): {', '.join(sorted(unknown))}")
    for section in _SECTIONS:
        if section in raw and not isinstance(raw[section], Mapping):
            raise ConfigError(f"{where}: [{section}] must be a table")

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
        "fail_on": str(raw.get("fail_on", "fail")),
        "checks": _check_levels(raw.get("checks", {}), where),
    }
    for section in ("collector", "webhooks", "chain", "billing", "report", "audit"):
        settings[section] = dict(raw.get(section, {}))
    for section, known in _SECTION_KEYS.items():
        unknown = set(settings[section]) - known
        if unknown:
            raise ConfigError(
                f"{where}: unknown key(s) in [{section}]: {', '.join(sorted(unknown))}"
                f" (known: {', '.join(sorted(known))})"
            )
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key == "db_path":
            value = Path(value)
        settings[key] = value
    if settings["fail_on"] not in ("info", "warn", "fail"):
        raise ConfigError(f"fail_on: expected info, warn or fail, got {settings['fail_on']!r}")
    if settings["slo_seconds"] <= 0:
        raise ConfigError("slo_seconds must be positive")
    return AuditConfig(**settings)
