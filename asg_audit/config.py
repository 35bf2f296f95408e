"""AuditConfig: settings from a TOML file, the environment and command-line flags.

Precedence, lowest first: built-in defaults, the config file (`--config FILE`, default
`./asg_audit.toml` when present), the environment, explicit flags. Only this module and `cli.py`
read the environment; library functions take explicit arguments. A relative path written in the
file (`db`, `[audit] drop_folders` and `report_dir`, `[webhooks] secret_file`) is taken from the
file's folder and held resolved; paths from flags and the environment follow the current folder.

Secrets (API keys, webhook secrets) are held in `Secret` (`asg_audit.redaction`), whose `repr`
and `str` never show the value, so that a config printed in a log or a report cannot leak them.
Surrounding white space is removed from every secret (a CRLF env file ends each value in `\r`),
and one that still holds a character an HTTP header cannot carry is a ConfigError (exit 2)
naming the variable or field, before any request: never a traceback, never an error echoing it.
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import datetime
import difflib
import math
import os
import re
import tomllib
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from asg_audit.errors import AuditError, ConfigError
from asg_audit.redaction import (
    Secret,
    check_http_url,
    clean_secret,
    redact,
    shown_setting,
)

__all__ = [
    "CONFIG_FILE_MAX_BYTES",
    "DEFAULT_BASE_URL",
    "DEFAULT_CHAIN_URL",
    "DEFAULT_CONFIG_FILE",
    "DEFAULT_DB_PATH",
    "SECRET_FILE_MAX_BYTES",
    "AuditConfig",
    "CheckLevels",
    "CostModel",
    "Secret",
    "chain_network_problem",
    "load_config",
    "read_limited",
    "read_secret_file",
]

DEFAULT_DB_PATH = "asg_audit.duckdb"
DEFAULT_CONFIG_FILE = "asg_audit.toml"
DEFAULT_BASE_URL = "https://api.asgrefinery.io"
DEFAULT_CHAIN_URL = "https://api.whatsonchain.com/v1/bsv/main"
# The most a file given by name is read of: a config file, a secret file. Far beyond any real
# one; `/dev/zero` or a log file given by mistake is one error line, not gigabytes of memory.
CONFIG_FILE_MAX_BYTES: Final = 1 << 20
SECRET_FILE_MAX_BYTES: Final = 64 << 10


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
        for name in ("payout_per_worker_sats", "reward_sats"):
            problem = setting_problem("costs", name, getattr(self, name))
            if problem is not None:
                raise ConfigError(f"[costs] {name}: {problem}")
        object.__setattr__(self, "fee_percent", _fee_percent(self.fee_percent))


# decimal places a fee percentage may have (0.000001%): the expected cost is exact integer
# arithmetic on the fee's fraction, which must stay small
FEE_PERCENT_PLACES: Final = 6


def _fee_percent(value: object) -> Decimal:
    """Return a fee percentage as the exact Decimal it was written as, or raise ConfigError.

    A float is taken as written (`0.15` is 0.15, not the binary fraction nearest to it, which
    has 55 binary digits and made the integer fee arithmetic overflow: 999 sats expected of
    1000 + 0.15%), as the file loader takes it.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ConfigError("[costs] fee_percent: expected a number from 0 to 100")
    fee = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    if not fee.is_finite() or not (Decimal(0) <= fee <= Decimal(100)):
        raise ConfigError("[costs] fee_percent: expected a number from 0 to 100")
    exponent = fee.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -FEE_PERCENT_PLACES:
        raise ConfigError(
            f"[costs] fee_percent: at most {FEE_PERCENT_PLACES} decimal places (a fee is a"
            " whole number of sats, rounded half up)"
        )
    return fee


@dataclass(frozen=True, slots=True)
class CheckLevels:
    """Thresholds of one check: at or above `warn` a warning, at or above `fail` a failure.

    Given to `AuditConfig(checks=...)`, a field left None (or `enabled` true) is "not given":
    the config holds each check's levels merged with its registered default.
    """

    warn: float | None = None
    fail: float | None = None
    enabled: bool = True
    severity: str | None = None  # a fixed severity for checks without a measured level


@dataclass(frozen=True, slots=True, repr=False)
class AuditConfig:
    """Every setting of an audit. Build it with `load_config`; it is immutable.

    Its `repr` (and `str`, a notebook's display) shows no secret: the secrets as `Secret('***')`,
    every URL without user, password or query, `[audit] alert_url` by its scheme and host alone,
    and any configured secret found in another setting as `***`. The fields themselves hold
    the real values (requests are sent to them), and so does `dataclasses.asdict`.
    """

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

    def __post_init__(self) -> None:
        # Library callers and `replace` are checked too (a file was checked when read, with
        # its name): every numeric setting of every table within its range, so that a bad
        # value is one ConfigError here, not a crash deep inside a step.
        # Secrets: a plain string is wrapped, never kept in the clear; surrounding white space
        # (a CRLF env file) is removed, and a secret an HTTP header cannot carry is refused
        # here, before any request, naming the field and never the value.
        for name in ("api_key", "woc_api_key"):
            value = getattr(self, name)
            if isinstance(value, str | Secret):
                object.__setattr__(self, name, _clean(value, f"AuditConfig {name}"))
            elif value is not None:
                raise TypeError(f"AuditConfig {name}: expected a str or Secret or None")
        secrets = self.webhook_secrets
        if isinstance(secrets, str | Secret):
            secrets = (secrets,)
        if not isinstance(secrets, tuple | list) or not all(
            isinstance(s, str | Secret) for s in secrets
        ):
            raise TypeError("AuditConfig webhook_secrets: expected a tuple of str or Secret")
        cleaned = (_clean(s, "AuditConfig webhook_secrets") for s in secrets)
        object.__setattr__(self, "webhook_secrets", tuple(s for s in cleaned if s is not None))
        if not isinstance(self.costs, CostModel):
            raise TypeError("AuditConfig costs: expected a CostModel")
        # The URLs requests are sent to, refused here (as the loader refuses them) rather than
        # by a failed request deep inside `collect` or `verify_chain`.
        for name in ("base_url", "chain_url"):
            check_http_url(getattr(self, name), name, "given to AuditConfig", base=True)
        # `checks` as the TOML file has it (`{"task.stuck": {"warn": 1800}}`) becomes
        # CheckLevels by the loader's own code; an unknown check id is refused, as in a file.
        if not isinstance(self.checks, Mapping):
            raise TypeError(
                "AuditConfig checks: expected a mapping of check id to CheckLevels or to a"
                " table of warn, fail, enabled, severity (the [checks.*] tables)"
            )
        if not all(isinstance(check_id, str) for check_id in self.checks):
            raise TypeError("AuditConfig checks: expected check ids as str keys")
        held = [s for s in (self.api_key, self.woc_api_key, *self.webhook_secrets) if s]
        if self.checks:
            object.__setattr__(self, "checks", _check_levels(self.checks, "settings", held))
        if not isinstance(self.db_path, str | os.PathLike):
            given = type(self.db_path).__name__
            raise TypeError(f"AuditConfig db_path: expected a path (str or Path), got {given}")
        _check_db_path(self.db_path, "AuditConfig db_path")
        object.__setattr__(self, "db_path", Path(self.db_path))
        for name in ("collector", "webhooks", "chain", "billing", "report", "audit"):
            if not isinstance(getattr(self, name), Mapping):
                raise TypeError(f"AuditConfig {name}: expected a mapping (the [{name}] table)")
            # the file's rule: a key the table does not take is refused, not ignored
            _check_section_keys(getattr(self, name), name, "settings", held)
        _check_alert_url(self.audit, "given to AuditConfig")
        _check_choices(
            {
                "chain_network": self.chain_network,
                "fail_on": self.fail_on,
                "collector": self.collector,
                "webhooks": self.webhooks,
                "chain": self.chain,
                "audit": self.audit,
            },
            "settings",
        )
        _check_ranges(
            {
                "slo_seconds": self.slo_seconds,
                "collector": self.collector,
                "webhooks": self.webhooks,
                "chain": self.chain,
                "billing": self.billing,
                "audit": self.audit,
            },
            "settings",
        )
        _check_chain_network(self.chain_url, self.chain_network, "given to AuditConfig")
        # and, as the file's, a value of the wrong type (`drop_folders = 5`) is refused here,
        # not a crash inside a step (a path may be a Path, an array a tuple); after the ranges,
        # whose messages say more of a number
        for name in ("collector", "webhooks", "chain", "billing", "report", "audit"):
            table = _in_file_shape(getattr(self, name))
            _check_table(table, _SECTION_TYPES[name], "settings", f"[{name}]", held)

    def __repr__(self) -> str:
        held = (self.api_key, self.woc_api_key, *self.webhook_secrets)
        parts = [
            f"{f.name}={_shown_setting(f.name, getattr(self, f.name), held)!r}"
            for f in dataclasses.fields(self)
        ]
        return f"{type(self).__name__}({', '.join(parts)})"

    def all_secrets(self) -> tuple[Secret, ...]:
        """Return every secret this config holds (the API key, the WoC key, each webhook
        secret of a rotation list), set ones only: what every client storing or printing an
        outside answer masks in it, whichever of them it sends. The secrets of a `[webhooks]
        secret_file` are among them when it can be read (the webhooks commands say why not)."""
        held = (self.api_key, self.woc_api_key, *self.webhook_secrets)
        secret_file = self.webhooks.get("secret_file")
        if isinstance(secret_file, str | os.PathLike) and secret_file:
            with contextlib.suppress(ConfigError):
                held += read_secret_file(Path(secret_file))
        return tuple(s for s in held if s)

    def levels(self, check_id: str, default: CheckLevels) -> CheckLevels:
        """Return the configured levels of a check (merged with its default), or the default."""
        return self.checks.get(check_id, default)

    def replace(self, **changes: Any) -> AuditConfig:
        """Return a copy with some settings changed."""
        return dataclasses.replace(self, **changes)


def _in_file_shape(table: Mapping[str, Any]) -> dict[str, Any]:
    """Return a table given to AuditConfig as a file would hold it (for its type checks): a
    path as text, an array (a tuple too) as a list, a None left out (not given: the defaults
    of `WebhookSettings` hold None, and a file cannot)."""

    def shaped(value: Any) -> Any:
        if isinstance(value, os.PathLike):
            return os.fspath(value)
        if isinstance(value, list | tuple):
            return [shaped(v) for v in value]
        return value

    return {key: shaped(value) for key, value in table.items() if value is not None}


def _shown_setting(name: str, value: Any, held: Sequence[Secret | None]) -> Any:
    """Return a setting as a config's repr may show it: the same shape, without any secret.

    Text is masked of the configured secrets (a key pasted into another setting is `***`),
    bearer tokens and ASG keys (`redaction.redact`); a URL (text holding `://`) is shown by
    `display_url` (no user, password or query) and an `alert_url` by `display_origin` (a Slack
    or Teams webhook carries its secret in its path), as the report shows them. Keys of tables
    are masked too; `Secret`s show themselves as `Secret('***')`.
    """
    if isinstance(value, str):
        return shown_setting(name, value, held)
    if isinstance(value, Path):
        return Path(_shown_setting(name, str(value), held))
    if isinstance(value, Mapping):
        return {
            _shown_setting("", str(key), held): _shown_setting(str(key), item, held)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return type(value)(_shown_setting(name, item, held) for item in value)
    return value  # Secret, numbers, flags, CostModel and CheckLevels (no text of the user's)


def chain_network_problem(chain_url: str, chain_network: str) -> str | None:
    """Return why `chain_url` does not serve `chain_network` (None when it may).

    A WhatsOnChain-style URL names its network as the last part of its path (`.../main`,
    `.../test`, `.../stn`); a txid of one network is never found on another, so a mismatch
    would make every verification fail. A URL that names no network is not judged.
    """
    tail = urlsplit(chain_url).path.rstrip("/").rsplit("/", 1)[-1]
    if tail in ("main", "test", "stn") and tail != chain_network:
        return (
            f"chain_url ends in /{tail} but chain_network is {chain_network!r}: a txid of one"
            " network is not found on the other"
        )
    return None


def _check_chain_network(chain_url: str, chain_network: str, source: str) -> None:
    """Raise ConfigError when the chain URL and network disagree, saying where they were set."""
    problem = chain_network_problem(chain_url, chain_network)
    if problem is not None:
        raise ConfigError(f"{problem} ({source})")


def _clean(value: str | Secret, what: str) -> Secret | None:
    """Return the secret without surrounding white space (None when nothing is left).

    Raises ConfigError naming `what` when the rest holds a character an HTTP header cannot
    carry (`redaction.clean_secret`); the value is never shown.
    """
    text = clean_secret(value.reveal() if isinstance(value, Secret) else value, what)
    return Secret(text) if text else None


def _env_secrets(env: Mapping[str, str]) -> dict[str, Any]:
    """Return api_key, woc_api_key and webhook_secrets from the environment, cleaned.

    `ASG_API_KEY` wins over `API_KEY`; one of white space only counts as unset. Errors name
    the variable (and which of the comma-separated webhook secrets), never the value.
    """
    api_key = _clean(env.get("ASG_API_KEY", ""), "ASG_API_KEY")
    if api_key is None:
        api_key = _clean(env.get("API_KEY", ""), "API_KEY")
    parts = env.get("ASG_WEBHOOK_SECRET", "").split(",")
    hooks = (
        _clean(part, "ASG_WEBHOOK_SECRET" + (f" (secret {i} of {len(parts)})" if i > 1 else ""))
        for i, part in enumerate(parts, 1)
    )
    return {
        "api_key": api_key,
        "woc_api_key": _clean(env.get("WOC_API_KEY", ""), "WOC_API_KEY"),
        "webhook_secrets": tuple(s for s in hooks if s is not None),
    }


def read_limited(
    path: str | Path, *, limit: int, what: str, error: type[AuditError] = ConfigError
) -> bytes:
    """Return the bytes of the file at `path`, reading no more than `limit` of them.

    A file (or a device, a pipe) holding more than `limit` bytes, or one that cannot be read,
    raises `error` naming the file and `what` it is ("config file"), never its content.
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except OSError as exc:
        raise error(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
    if len(data) > limit:
        size = next(
            (
                f"{limit // n:,} {unit}"
                for n, unit in ((1 << 20, "MiB"), (1 << 10, "KiB"))
                if limit % n == 0
            ),
            f"{limit:,} bytes",
        )
        raise error(f"{path}: {what} is larger than {size} (is it the right file?): not read")
    return data


def read_secret_file(path: str | Path) -> tuple[Secret, ...]:
    """Return the secrets in a file: one per line or comma-separated; `#` starts a comment.

    A file that cannot be read, holds more than 64 KiB, is not UTF-8 text or holds no secret
    raises ConfigError naming the file and never any of its content.
    """
    data = read_limited(path, limit=SECRET_FILE_MAX_BYTES, what="the webhook secret file")
    try:
        # utf-8-sig: a byte-order mark (Notepad) is an encoding marker, not part of the secret.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        # Neither the bytes nor the text around them: they may be part of the secret.
        raise ConfigError(
            f"{path}: the webhook secret file is not UTF-8 text (undecodable byte at offset"
            f" {exc.start}); save it as UTF-8"
        ) from None
    values: list[Secret] = []
    for line in text.splitlines():
        for part in line.split("#", 1)[0].split(","):
            if part.strip():  # the same rule as ASG_WEBHOOK_SECRET's parts
                values.append(Secret(clean_secret(part, f"{path}: secret {len(values) + 1}")))
    if not values:
        raise ConfigError(f"{path}: the webhook secret file holds no secret")
    return tuple(values)


def _env_secret_values(env: Mapping[str, str]) -> tuple[str, ...]:
    """Return the secrets of the environment as given (to keep them out of error messages)."""
    values = [env.get(name, "") for name in ("ASG_API_KEY", "API_KEY", "WOC_API_KEY")]
    values += env.get("ASG_WEBHOOK_SECRET", "").split(",")
    return tuple(v.strip() for v in values if v.strip())


def _db_path_problem(value: str | os.PathLike[str]) -> str | None:
    """Return why a database path from the environment, a flag or a file cannot be the store's
    name, in words holding no part of it; None when it can.

    A name holding control characters is refused rather than cleaned: the `\\r` a CRLF env
    file leaves (`set -a; . ./env`) would otherwise make a new, empty store of another name
    (`store.duckdb\\r`) and audit that; stripping it could as well open a file the operator did
    not name. So is a name of white space only (a store named by spaces). An empty value is
    not a problem here: the environment's falls back to the default, a flag's is `.`.
    """
    text = os.fspath(value)
    if text and not text.strip():
        return "the database path is only white space"
    controls = [c for c in dict.fromkeys(text) if unicodedata.category(c) == "Cc"]
    if not controls:
        return None
    named = ", ".join(_CONTROL_NAMES.get(c, f"\\x{ord(c):02x}") for c in controls)
    hint = (
        " (a CRLF env file leaves \\r at the end of each value: save it with LF line ends)"
        if "\r" in controls
        else ""
    )
    return (
        f"the database path holds control characters ({named}){hint}; nothing was opened"
        " (the value is not shown)"
    )


_CONTROL_NAMES: Final = {
    "\r": "\\r, a carriage return",
    "\n": "\\n, a line break",
    "\t": "\\t, a tab",
    "\x00": "\\x00, a NUL byte",
}


def _check_db_path(value: object, source: str) -> None:
    """Raise ConfigError naming `source` for a database path `_db_path_problem` refuses."""
    if (
        isinstance(value, str | os.PathLike)
        and isinstance(os.fspath(value), str)
        and (problem := _db_path_problem(value)) is not None
    ):
        raise ConfigError(f"{source}: {problem}")


def _read_toml(path: Path) -> dict[str, Any]:
    data = read_limited(path, limit=CONFIG_FILE_MAX_BYTES, what="config file")
    # A UTF-8 byte-order mark (Notepad writes one) is an encoding marker, not TOML: skipped,
    # as for secret files. Byte offsets in errors still count from the start of the file.
    bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return tomllib.loads(data[bom:].decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {exc.start + bom}): save it as UTF-8"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


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
        "request_timeout_seconds": _NUMBER,
        "max_connections": _INT,
    },
    # read with `.get` by chain.py, chain_verify.py and billing.py
    "chain": {
        "rps": _NUMBER,
        "concurrency": _INT,
        "confirmations": _INT,
        "unknown_after_seconds": _NUMBER,
        "unknown_recheck_seconds": _NUMBER,
        "unknown_recheck_max_seconds": _NUMBER,
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


@dataclass(frozen=True, slots=True)
class _Range:
    """The values a numeric setting accepts: from `low` (excluded when `above`) to `high`."""

    low: float
    high: float
    integer: bool = False
    above: bool = False

    def holds(self, value: float) -> bool:
        low_ok = value > self.low if self.above else value >= self.low
        return low_ok and value <= self.high

    def text(self) -> str:
        """Return the range in words, e.g. 'an integer from 0 to 100'."""
        if self.integer:
            return f"an integer from {_num(self.low)} to {_num(self.high)}"
        if self.above and self.low == 0:
            return f"a positive number, at most {_num(self.high)}"
        if self.above:
            return f"a number above {_num(self.low)}, at most {_num(self.high)}"
        return f"a number from {_num(self.low)} to {_num(self.high)}"


def _num(value: float) -> str:
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:g}"


# The range of every numeric setting. The upper ends are far beyond any sensible value; they
# keep a typo (1e308 requests per second, a timeout of ages) from reaching code that cannot
# take it (a thread pool, a socket timeout, an int64 column).
_INT64_MAX: Final = 2**63 - 1
_LONG_S: Final = 1_000_000_000  # seconds, about 31 years: deadlines, ages, windows
_DAY_S: Final = 86_400  # waits and intervals
_REQUEST_S: Final = 3_600  # one HTTP request
_MAX_RPS: Final = 10_000
_MAX_RETRIES: Final = 100
_POSITIVE_S: Final = _Range(0, _LONG_S, above=True)
_SECONDS: Final = _Range(0, _LONG_S)
_TIMEOUT_S: Final = _Range(0, _REQUEST_S, above=True)
_RETRIES: Final = _Range(0, _MAX_RETRIES, integer=True)
_RANGES: Final[dict[str, dict[str, _Range]]] = {
    "": {"slo_seconds": _POSITIVE_S},
    "costs": {
        "payout_per_worker_sats": _Range(0, _INT64_MAX, integer=True),
        "reward_sats": _Range(0, _INT64_MAX, integer=True),
        "fee_percent": _Range(0, 100),
    },
    "collector": {
        "max_rps": _Range(0, _MAX_RPS, above=True),
        "concurrency": _Range(1, 1_024, integer=True),
        "deadline_s": _POSITIVE_S,
        "not_found_grace_s": _SECONDS,
        "timeout_s": _TIMEOUT_S,
        "retry_floor_s": _Range(0, _DAY_S, above=True),
        "retry_base_s": _Range(0, _DAY_S, above=True),
        "retry_cap_s": _Range(0, _DAY_S, above=True),
        "batch_size": _Range(1, 1_000_000, integer=True),
        "flush_interval_s": _Range(0, _DAY_S, above=True),
        "flush_max_interval_s": _Range(0, _DAY_S, above=True),
        "progress_interval_s": _Range(0, _DAY_S),
        "lock_wait_s": _Range(0, _DAY_S),
    },
    "webhooks": {
        "max_body_bytes": _Range(64, 2**30, integer=True),
        "freshness_seconds": _SECONDS,
        "commit_max_batch": _Range(1, 1_000_000, integer=True),
        "commit_max_wait_ms": _Range(0, _DAY_S * 1000),
        "normalise_interval_ms": _Range(0, _DAY_S * 1000),
        "graceful_shutdown_seconds": _Range(0, _DAY_S),
        "dedupe_window_seconds": _POSITIVE_S,
        "dedupe_max_events": _Range(1, 100_000_000, integer=True),
        "request_timeout_seconds": _TIMEOUT_S,
        "max_connections": _Range(1, 1_000_000, integer=True),
    },
    "chain": {
        "rps": _Range(0, _MAX_RPS, above=True),
        "concurrency": _Range(1, 256, integer=True),
        "confirmations": _Range(0, 10_000_000, integer=True),
        "unknown_after_seconds": _SECONDS,
        "unknown_recheck_seconds": _SECONDS,
        "unknown_recheck_max_seconds": _SECONDS,
        "unconfirmed_after_seconds": _SECONDS,
        "block_time_tolerance_seconds": _SECONDS,
        "fee_rate_min_sat_per_kb": _Range(0, _LONG_S),
        "fee_rate_max_sat_per_kb": _Range(0, _LONG_S),
        "timeout_seconds": _TIMEOUT_S,
        "max_retries": _RETRIES,
    },
    "billing": {"timeout_seconds": _TIMEOUT_S, "max_retries": _RETRIES},
    "audit": {"collect_seconds": _SECONDS, "demo_collect_seconds": _SECONDS},
}


def check_wait_seconds(value: object, name: str) -> None:
    """Raise ConfigError naming `name` unless `value` is a finite number of seconds, 0 or more
    (how long a library call waits for a store another process writes)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ConfigError(f"{name}: expected a finite number of seconds, 0 or more")


def setting_problem(section: str, key: str, value: Any) -> str | None:
    """Return what is wrong with a value of a numeric setting (None when it is fine).

    `section` is a config table ("chain", "collector", ...; "" for a top-level key). The text
    says the type or range expected and, for a number, the value given (a number is never a
    secret; any other value is not quoted).
    """
    where = _RANGES.get(section, {})
    if key not in where:
        return None
    allowed = where[key]
    kind = _INT if allowed.integer else _NUMBER
    if not _has_type(value, kind):
        given = str(value) if isinstance(value, float) else _toml_type(value)  # nan, inf
        return f"expected {allowed.text()}, got {given}"
    if not allowed.holds(value):
        return f"expected {allowed.text()}, got {_num_given(value)}"
    return None


def _num_given(value: float) -> str:
    return str(value) if isinstance(value, int) else f"{value:g}"


def _check_ranges(raw: Mapping[str, Any], where: str) -> None:
    """Raise ConfigError naming the first numeric setting out of its range.

    `raw` holds the top-level keys and the tables; keys without a range (and unknown keys,
    refused elsewhere for files) are left alone.
    """
    for section, ranges in _RANGES.items():
        table = raw if section == "" else raw.get(section, {})
        if not isinstance(table, Mapping):
            continue
        for key in ranges:
            if key not in table:
                continue
            problem = setting_problem(section, key, table[key])
            if problem is not None:
                name = f"[{section}] {key}" if section else key
                raise ConfigError(f"{where}: {name}: {problem}")
    chain = raw.get("chain", {})
    if isinstance(chain, Mapping):
        _check_fee_rates(chain, where)
        _check_unknown_recheck(chain, where)


def _check_fee_rates(chain: Mapping[str, Any], where: str) -> None:
    """Refuse a `[chain]` fee rate range whose minimum is above its maximum."""
    if "fee_rate_min_sat_per_kb" not in chain and "fee_rate_max_sat_per_kb" not in chain:
        return  # (no import: an AuditConfig() does not load the chain modules)
    # Imported here: reconcile (which reads these settings) imports this module.
    from asg_audit.reconcile import DEFAULT_FEE_RATE_MAX, DEFAULT_FEE_RATE_MIN

    _check_not_above(
        chain,
        where,
        ("fee_rate_min_sat_per_kb", DEFAULT_FEE_RATE_MIN),
        ("fee_rate_max_sat_per_kb", DEFAULT_FEE_RATE_MAX),
    )


def _check_unknown_recheck(chain: Mapping[str, Any], where: str) -> None:
    """Refuse a `[chain]` back-off of unknown txids whose first interval is above its cap."""
    if "unknown_recheck_seconds" not in chain and "unknown_recheck_max_seconds" not in chain:
        return  # (no import: an AuditConfig() does not load the chain modules)
    # Imported here: chain_verify (which reads these settings) imports this module.
    from asg_audit.chain_verify import DEFAULT_UNKNOWN_RECHECK_MAX_S, DEFAULT_UNKNOWN_RECHECK_S

    _check_not_above(
        chain,
        where,
        ("unknown_recheck_seconds", DEFAULT_UNKNOWN_RECHECK_S),
        ("unknown_recheck_max_seconds", DEFAULT_UNKNOWN_RECHECK_MAX_S),
    )


def _check_not_above(
    chain: Mapping[str, Any], where: str, low: tuple[str, Any], high: tuple[str, Any]
) -> None:
    """Refuse a `[chain]` setting `low` (name, default) above the setting `high`, comparing
    the values in effect: one key given alone is compared with the other's default."""
    names = (low[0], high[0])
    low_value, high_value = chain.get(low[0], low[1]), chain.get(high[0], high[1])
    if low_value > high_value:
        low_name, high_name = (name if name in chain else f"the default {name}" for name in names)
        raise ConfigError(
            f"{where}: [chain] {low_name} ({_num_given(low_value)}) is above {high_name}"
            f" ({_num_given(high_value)})"
        )


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
    if isinstance(value, datetime.date | datetime.time):
        return "a date or time"
    return f"a value of type {type(value).__name__}"  # given by a library caller


def _shown_name(name: str, secrets: Sequence[str | Secret]) -> str:
    """Return a key name (or check id) fit for an error, unless it holds a configured secret or
    has the shape of an API key: a secret pasted in the wrong place is never echoed."""
    if redact(name, secrets) != name:
        return "<a name holding a secret, not shown>"
    return name


def _check_table(
    raw: Mapping[str, Any],
    types: Mapping[str, str],
    where: str,
    table: str,
    secrets: Sequence[str | Secret] = (),
) -> None:
    """Raise ConfigError for an unknown key or a value of the wrong type in one table."""
    _check_known_keys(raw, types, where, table, secrets)
    for key, value in raw.items():
        if not _has_type(value, types[key]):
            name = f"{table} {key}" if table else key
            raise ConfigError(f"{where}: {name}: expected {types[key]}, got {_toml_type(value)}")


def _check_known_keys(
    raw: Mapping[str, Any],
    types: Mapping[str, str],
    where: str,
    table: str,
    secrets: Sequence[str | Secret] = (),
) -> None:
    """Raise ConfigError naming the keys of one table that are not among `types`."""
    unknown = sorted(_shown_name(str(name), secrets) for name in set(raw) - set(types))
    if unknown:
        known = f" (known: {', '.join(sorted(types))})" if types else " (it takes no keys)"
        inside = f" in {table}" if table else ""
        raise ConfigError(f"{where}: unknown key(s){inside}: {', '.join(unknown)}{known}")


def _check_section_keys(
    raw: Mapping[str, Any], section: str, where: str, secrets: Sequence[str | Secret] = ()
) -> None:
    """Raise ConfigError for a key `[section]` does not take (a file's or AuditConfig's)."""
    if section == "webhooks" and ("secret" in raw or "secrets" in raw):
        raise ConfigError(
            f"{where}: [webhooks]: secrets belong in ASG_WEBHOOK_SECRET or a secret_file"
        )
    _check_known_keys(raw, _SECTION_TYPES[section], where, f"[{section}]", secrets)


def _one_of(value: str, allowed: tuple[str, ...], where: str, name: str) -> None:
    if value not in allowed:
        raise ConfigError(f"{where}: {name}: expected one of {', '.join(allowed)}")


# The settings that take one of a fixed set of words. Checked when the file is read (and for
# library callers by AuditConfig), so that a bad word is exit 2 before anything runs; the error
# names the allowed words, never the value given (it may be a misplaced secret). `[costs] kind`
# is checked by CostModel, also when the file is read.
_CHOICES: Final[dict[str, dict[str, tuple[str, ...]]]] = {
    "": {"chain_network": ("main", "test"), "fail_on": _SEVERITIES},
    "collector": {"schedule": ("fixed", "documented", "adaptive")},
    "webhooks": {"http": ("auto", "h11", "httptools")},
    "audit": {"fail_on": _SEVERITIES, "alert_on": _SEVERITIES},
}


# A locking script in hex: whole bytes, no `0x`, no blanks (either case: compared lowercased).
_HEX_SCRIPT: Final = re.compile(r"(?:[0-9a-fA-F]{2})+")


def _check_change_scripts(value: object, where: str) -> None:
    """Refuse `[chain] change_scripts` unless it is a list of hex locking scripts.

    A script that can never equal an output's (`0x76a9...`, odd length, a blank) would make the
    single-task cost check an equality against payouts that include the change: a false fail
    for every transaction with change.
    """
    name = f"{where}: [chain] change_scripts"
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ConfigError(f"{name}: expected {_STRINGS}")
    for i, script in enumerate(value):
        if not isinstance(script, str) or not _HEX_SCRIPT.fullmatch(script):
            raise ConfigError(
                f"{name}[{i}]: expected a locking script in hex (pairs of 0-9/a-f digits,"
                " without 0x or blanks)"
            )


def _check_choices(raw: Mapping[str, Any], where: str) -> None:
    """Raise ConfigError naming the first setting whose value is not one of its words.

    `raw` holds the top-level keys and the tables (tables that are not mappings, such as a
    built CostModel, are left alone: they checked themselves).
    """
    for section, choices in _CHOICES.items():
        table = raw if section == "" else raw.get(section, {})
        if not isinstance(table, Mapping):
            continue
        for key, allowed in choices.items():
            if key in table:
                _one_of(table[key], allowed, where, f"[{section}] {key}" if section else key)
    chain = raw.get("chain", {})
    if isinstance(chain, Mapping) and "change_scripts" in chain:
        _check_change_scripts(chain["change_scripts"], where)
    webhooks = raw.get("webhooks", {})
    if isinstance(webhooks, Mapping) and "path" in webhooks:
        path = webhooks["path"]
        if not isinstance(path, str) or not path.startswith("/"):
            raise ConfigError(f"{where}: [webhooks] path: expected a path starting with /")


def _check_file(raw: Mapping[str, Any], where: str, secrets: Sequence[str] = ()) -> None:
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
    top = {k: v for k, v in raw.items() if k not in _SECTION_TYPES}
    _check_table(top, _TOP_TYPES, where, "", secrets)
    for section, types in _SECTION_TYPES.items():
        table = raw.get(section, {})
        if not isinstance(table, Mapping):
            raise ConfigError(f"{where}: [{section}] must be a table")
        if section != "checks":
            _check_section_keys(table, section, where, secrets)
            _check_table(table, types, where, f"[{section}]", secrets)
    _check_choices(raw, where)
    _check_ranges(raw, where)


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


def _registered_defaults() -> dict[str, CheckLevels]:
    """Return the registered default levels of every check (chain and billing ones included),
    by id, sorted."""
    # Imported here: the checks import this module.
    from asg_audit.checks import load_check_plugins, registered_checks

    load_check_plugins()
    return {check_id: check.default for check_id, check in registered_checks().items()}


def _given_levels(levels: Mapping[str, Any] | CheckLevels) -> Mapping[str, Any]:
    """Return the keys a `[checks.*]` table sets; of a CheckLevels, the fields not left unset
    (None, or `enabled` true), so that both are merged with the defaults by the same rules."""
    if not isinstance(levels, CheckLevels):
        return levels
    given: dict[str, Any] = {
        name: getattr(levels, name)
        for name in ("warn", "fail", "severity")
        if getattr(levels, name) is not None
    }
    if levels.enabled is not True:
        given["enabled"] = levels.enabled
    return given


def _merged_levels(
    given: Mapping[str, Any], default: CheckLevels, where: str, table: str
) -> CheckLevels:
    """Return a check's levels: each key of the table given, the registered default otherwise.

    A check has either a fixed severity or warn/fail levels (every measured check warns at
    `value >= warn` and fails at `value >= fail`); the other kind of setting is refused rather
    than ignored, and so is a warn level above the fail level once merged.
    """
    if default.severity is not None:
        levels = [name for name in ("warn", "fail") if name in given]
        if levels:
            raise ConfigError(
                f"{where}: {table} {', '.join(levels)}: this check has a fixed severity"
                f" ({default.severity}) and no warn/fail levels; set severity or enabled instead"
            )
    elif "severity" in given:
        raise ConfigError(
            f"{where}: {table} severity: this check is measured against warn/fail levels"
            f" ({_default_levels_text(default)}); set warn or fail instead of a fixed severity"
        )
    merged = CheckLevels(
        warn=given.get("warn", default.warn),
        fail=given.get("fail", default.fail),
        enabled=given.get("enabled", default.enabled),
        severity=given.get("severity", default.severity),
    )
    if merged.warn is not None and merged.fail is not None and merged.warn > merged.fail:
        warn = "warn" if "warn" in given else "the default warn"
        fail = "fail" if "fail" in given else "the default fail"
        raise ConfigError(
            f"{where}: {table}: {warn} ({_num_given(merged.warn)}) is above {fail}"
            f" ({_num_given(merged.fail)}): the check warns at values >= warn and fails at values"
            " >= fail, so warn must not be above fail"
        )
    return merged


def _default_levels_text(default: CheckLevels) -> str:
    """Return a measured check's default levels in words, e.g. 'default: fail at >= 3600'."""
    parts = [
        f"{name} at >= {_num_given(value)}"
        for name, value in (("warn", default.warn), ("fail", default.fail))
        if value is not None
    ]
    return "default: " + ", ".join(parts)


def _check_levels(
    raw: Mapping[str, Any], where: str, secrets: Sequence[str | Secret] = ()
) -> dict[str, CheckLevels]:
    """Return the levels of the checks `raw` configures, each merged with its default.

    `raw` maps a check id to a `[checks.*]` table or to a CheckLevels (a library caller's, or
    one merged before: merging again gives it back); a key not given keeps the default.
    """
    out: dict[str, CheckLevels] = {}
    defaults = _registered_defaults() if raw else {}
    known = list(defaults)
    for check_id, levels in raw.items():
        table = f'[checks."{_shown_name(check_id, secrets)}"]'
        if not isinstance(levels, Mapping | CheckLevels):
            raise ConfigError(
                f"{where}: {table} must be a table (of warn, fail, enabled, severity)"
            )
        if check_id not in known:
            close = difflib.get_close_matches(str(check_id), known, n=3, cutoff=0.6)
            hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(known)}"
            raise ConfigError(f"{where}: {table}: unknown check id; {hint}")
        given = _given_levels(levels)
        _check_table(given, _CHECK_TYPES, where, table, secrets)
        if "severity" in given:
            _one_of(given["severity"], _SEVERITIES, where, f"{table} severity")
        out[check_id] = _merged_levels(given, defaults[check_id], where, table)
    return out


def _check_alert_url(audit: Mapping[str, Any], hint: str) -> None:
    """Refuse an `[audit] alert_url` no alert could be POSTed to, when the config is read.

    Found only when an alert is due, a typo would page nobody on the very run that needed it.
    Leave the key out to send no alert; an empty value is refused (an unset variable in a
    templated config would otherwise silence every alert).
    """
    if "alert_url" in audit:
        check_http_url(audit["alert_url"], "[audit] alert_url", hint)


def load_config(
    config_file: str | Path | None = None,
    *,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> AuditConfig:
    """Return the AuditConfig built from defaults, a TOML file, the environment and overrides.

    `config_file=None` reads `./asg_audit.toml` when it exists; `""` is a ConfigError (it names
    no file). Relative paths in the file are taken from its folder (`_paths_in_folder`); those
    of `env` and `overrides` are left as given. `env` defaults to `os.environ`.
    `overrides` are flag values by AuditConfig field name (None means "not given"), checked as
    the file's values are (`_overrides`): an unknown key or a value of the wrong type or shape
    is a ConfigError naming it. An argument of the wrong type is a TypeError naming it.
    """
    if config_file is not None and not isinstance(config_file, str | os.PathLike):
        raise TypeError(
            "load_config config_file: expected a path (str or Path) or None,"
            f" got {type(config_file).__name__}"
        )
    for name, given in (("env", env), ("overrides", overrides)):
        if given is not None and not isinstance(given, Mapping):
            raise TypeError(
                f"load_config {name}: expected a mapping or None, got {type(given).__name__}"
            )
    if isinstance(config_file, str) and not config_file:
        # Path("") is ".", the current folder: "cannot read config file: Is a directory"
        raise ConfigError(
            "--config: the config file path is empty; name a file, or leave --config out to"
            f" read ./{DEFAULT_CONFIG_FILE} when present"
        )
    env = os.environ if env is None else env
    # a value that is no str (`os.environ.get("KEY")` of an unset variable: None) is named,
    # never shown (it may be a secret); tester T10 met an AttributeError from deep inside
    for key, value in env.items():
        if not isinstance(key, str) or not isinstance(value, str):
            what = "key" if not isinstance(key, str) else f"value of {key}"
            got = type(key if not isinstance(key, str) else value).__name__
            raise TypeError(f"load_config env: expected str keys and values, the {what} is {got}")
    secrets = _env_secret_values(env)
    raw: dict[str, Any] = {}
    where = "defaults"
    file: Path | None = None
    if config_file is not None:
        file = Path(config_file)
        where = str(config_file)
    elif Path(DEFAULT_CONFIG_FILE).is_file():
        file = Path(DEFAULT_CONFIG_FILE)
        where = DEFAULT_CONFIG_FILE
    if file is not None:
        raw = _read_toml(file)
    _check_file(raw, where, secrets)
    _check_db_path(raw.get("db"), f"{where}: db")
    if file is not None:
        raw = _paths_in_folder(raw, Path(os.path.realpath(file.parent)), where)

    if env.get("ASG_AUDIT_DB") and (overrides or {}).get("db_path") is None:
        _check_db_path(env["ASG_AUDIT_DB"], "ASG_AUDIT_DB in the environment")
    settings: dict[str, Any] = {
        "db_path": Path(env.get("ASG_AUDIT_DB") or raw.get("db") or DEFAULT_DB_PATH),
        "base_url": env.get("ASG_BASE_URL") or raw.get("base_url") or DEFAULT_BASE_URL,
        **_env_secrets(env),
        "chain_url": env.get("ASG_CHAIN_URL") or raw.get("chain_url") or DEFAULT_CHAIN_URL,
        "chain_network": raw.get("chain_network", "main"),
        "costs": _cost_model(raw.get("costs", {}), where),
        "slo_seconds": float(raw.get("slo_seconds", 60.0)),
        "fail_on": raw.get("fail_on", "fail"),
        "checks": _check_levels(raw.get("checks", {}), where, secrets),
    }
    for section in ("collector", "webhooks", "chain", "billing", "report", "audit"):
        settings[section] = dict(raw.get(section, {}))
    settings.update(_overrides(overrides or {}, secrets))
    # flags and library callers are checked too (the file's values were, above)
    _one_of(settings["fail_on"], _SEVERITIES, "settings", "fail_on")
    for key, env_name in (("base_url", "ASG_BASE_URL"), ("chain_url", "ASG_CHAIN_URL")):
        if (overrides or {}).get(key) is not None:
            source = "given to load_config"
        elif env.get(env_name):
            source = f"set by {env_name} in the environment"
        else:
            source = f"set by {key} in {where}"
        check_http_url(settings[key], key, source, base=True)
    _check_alert_url(settings["audit"], f"set by alert_url in {where}")
    if settings["chain_network"] in _CHOICES[""]["chain_network"]:  # else AuditConfig says
        _check_chain_network(
            settings["chain_url"],
            settings["chain_network"],
            f"chain_url {_chain_source('chain_url', env, overrides, raw, where)}, chain_network"
            f" {_chain_source('chain_network', env, overrides, raw, where)}",
        )
    slo = settings["slo_seconds"]
    if not _has_type(slo, _NUMBER) or slo <= 0:
        raise ConfigError("slo_seconds: expected a positive number")
    return AuditConfig(**settings)


# `load_config(overrides=...)`: keys are AuditConfig's fields; errors name them after this.
_OVERRIDES: Final = "load_config overrides"
_OVERRIDE_TYPES: Final[dict[str, str]] = {
    **{k: v for k, v in _TOP_TYPES.items() if k != "db"},
    "db_path": "a path (str or Path)",
    "api_key": "a string or Secret",
    "woc_api_key": "a string or Secret",
    "webhook_secrets": "a string or Secret, or a list of them",
    "costs": "a table (mapping) of the [costs] keys, or a CostModel",
    "checks": 'a table (mapping) of check id to a [checks."<id>"] table or CheckLevels',
    **{
        section: f"a table (mapping) of the [{section}] keys"
        for section in ("collector", "webhooks", "chain", "billing", "report", "audit")
    },
}


def _overrides(overrides: Mapping[Any, Any], secrets: Sequence[str]) -> dict[str, Any]:
    """Return the settings `load_config(overrides=...)` gives, checked as a file's are.

    A key that is not a field of AuditConfig is refused with the known ones; a value of the
    wrong type or shape is refused naming its key (never showing the value). Tables (`costs`,
    `checks`, `collector`, ...) are given as mappings in the file's shape, or `costs` as a
    CostModel and a check as CheckLevels; a path may be a str or a Path. None means "not
    given" (a flag left out).
    """
    _check_known_keys(overrides, _OVERRIDE_TYPES, _OVERRIDES, "", secrets)
    given = {str(k): v for k, v in overrides.items() if v is not None}
    held = list(secrets)
    out: dict[str, Any] = {}
    for key in ("api_key", "woc_api_key"):
        if key in given:
            out[key] = _override_secret(given[key], key)
            held += [out[key]] if out[key] is not None else []
    if "webhook_secrets" in given:
        value = given["webhook_secrets"]
        parts = value if isinstance(value, list | tuple) else [value]
        cleaned = (_override_secret(part, "webhook_secrets") for part in parts)
        out["webhook_secrets"] = tuple(s for s in cleaned if s is not None)
        held += list(out["webhook_secrets"])
    for key, value in given.items():
        if key in out:
            continue
        if key == "db_path":
            if not isinstance(value, str | os.PathLike):
                raise _override_type(key, value)
            _check_db_path(value, f"--db ({_OVERRIDES}: db_path)")
            out[key] = Path(value)
        elif key == "costs":
            out[key] = _override_costs(value, held)
        elif key == "checks":
            if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
                raise _override_type(key, value)
            out[key] = _check_levels(value, _OVERRIDES, held)
        elif key in _SECTION_TYPES:
            out[key] = _override_section(key, value, held)
        else:
            _check_table({key: value}, _TOP_TYPES, _OVERRIDES, "", held)
            out[key] = float(value) if key == "slo_seconds" else value
    _check_choices(out, _OVERRIDES)
    _check_ranges(out, _OVERRIDES)
    return out


def _override_type(key: str, value: Any) -> ConfigError:
    return ConfigError(
        f"{_OVERRIDES}: {key}: expected {_OVERRIDE_TYPES[key]}, got {_toml_type(value)}"
    )


def _override_secret(value: Any, key: str) -> Secret | None:
    if not isinstance(value, str | Secret):
        raise _override_type(key, value)
    return _clean(value, f"{_OVERRIDES}: {key}")


def _override_costs(value: Any, secrets: Sequence[str | Secret]) -> CostModel:
    """Return the cost model of a `costs` override: a CostModel, or a table read as
    `[costs]` is."""
    if isinstance(value, CostModel):
        return value
    if not isinstance(value, Mapping):
        raise _override_type("costs", value)
    _check_table(value, _SECTION_TYPES["costs"], _OVERRIDES, "[costs]", secrets)
    return _cost_model(value, _OVERRIDES)


def _override_section(section: str, value: Any, secrets: Sequence[str | Secret]) -> dict[str, Any]:
    """Return a table override (`collector`, `chain`, ...) checked as the file's table is; its
    paths may be given as Path (held as str, as the file's), its arrays as tuples."""
    if not isinstance(value, Mapping):
        raise _override_type(section, value)
    table = dict(value)
    for key in (k for s, k in _PATH_KEYS if s == section):
        if isinstance(table.get(key), os.PathLike):
            table[key] = os.fspath(table[key])
    for key in (k for s, k in _PATH_LIST_KEYS if s == section):
        if isinstance(table.get(key), list | tuple):
            table[key] = [os.fspath(v) if isinstance(v, os.PathLike) else v for v in table[key]]
    if isinstance(table.get("change_scripts"), tuple):
        table["change_scripts"] = list(table["change_scripts"])
    _check_section_keys(table, section, _OVERRIDES, secrets)
    _check_table(table, _SECTION_TYPES[section], _OVERRIDES, f"[{section}]", secrets)
    for key in (k for s, k in _PATH_KEYS if s == section):
        if table.get(key) == "":
            raise ConfigError(
                f"{_OVERRIDES}: [{section}] {key}: expected a path, got an empty string (leave"
                " the key out for its default)"
            )
    for key in (k for s, k in _PATH_LIST_KEYS if s == section):
        if "" in table.get(key, []):
            raise ConfigError(
                f"{_OVERRIDES}: [{section}] {key}[{table[key].index('')}]: expected a path, got"
                " an empty string"
            )
    return table


# The settings of a file that name files or folders: (table, key); "" is the top level.
_PATH_KEYS: Final = (("", "db"), ("webhooks", "secret_file"), ("audit", "report_dir"))
_PATH_LIST_KEYS: Final = (("audit", "drop_folders"),)


def _paths_in_folder(raw: Mapping[str, Any], folder: Path, where: str) -> dict[str, Any]:
    """Return the file's settings with every relative path in it made relative to `folder`.

    `folder` is the config file's folder, absolute, its symbolic links resolved (`..` in the
    name of the file is then taken as the system takes it; a link to the file itself is not
    followed: its folder is the link's), so that a scheduled job (cron, systemd) finds the same
    store, drop folders, reports and secret file from whatever folder it runs in. An absolute
    path is kept as written. Paths from flags, the environment and the built-in defaults are
    not touched: they follow the current folder. An empty path (a templated value left unset)
    is refused, naming the key: it would otherwise mean the default store, or the current
    folder.
    """
    out: dict[str, Any] = {
        key: dict(value) if isinstance(value, Mapping) else value for key, value in raw.items()
    }

    def place(value: str, name: str) -> str:
        if not value:
            raise ConfigError(
                f"{where}: {name}: expected a path, got an empty string (leave the key out for"
                " its default)"
            )
        return str(folder / value)  # an absolute `value` replaces `folder`

    for section, key in _PATH_KEYS:
        table: dict[str, Any] = out if section == "" else out.get(section, {})
        if key in table:
            table[key] = place(table[key], f"[{section}] {key}" if section else key)
    for section, key in _PATH_LIST_KEYS:
        table = out.get(section, {})
        if key in table:
            table[key] = [
                place(item, f"[{section}] {key}[{i}]") for i, item in enumerate(table[key])
            ]
    return out


def _chain_source(
    key: str,
    env: Mapping[str, str],
    overrides: Mapping[str, Any] | None,
    raw: Mapping[str, Any],
    where: str,
) -> str:
    """Return where load_config took `chain_url` or `chain_network` from, in words."""
    if (overrides or {}).get(key) is not None:
        return "given to load_config"
    if key == "chain_url" and env.get("ASG_CHAIN_URL"):
        return "set by ASG_CHAIN_URL in the environment"
    if raw.get(key):
        return f"set by {key} in {where}"
    return "is the default"
