"""What may be shown of secrets and URLs: `Secret`, `redact`, `display_url`, `check_http_url`.

`clean_secret` strips a secret's surrounding white space and refuses one that an HTTP header
cannot carry (control or non-ASCII characters), naming the setting and never the value.

Secrets (API keys, webhook secrets) are held in `Secret`, whose `repr` and `str` never show the
value. Every message that names a URL shows it through `display_url` (no user, password or
query), and every URL the tool will send requests to (the Gateway's `base_url`, the chain
index's `chain_url`, a webhook callback) is checked by the one `check_http_url`, at once, so
that `ftp://...` or a bare host is exit 2 with its reason instead of minutes of retries.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Final
from urllib.parse import urlsplit

from asg_audit.errors import ConfigError

__all__ = [
    "Secret",
    "check_http_url",
    "clean_secret",
    "display_origin",
    "display_url",
    "redact",
    "secret_problem",
]

_BEARER_RE: Final = re.compile(r"(?i)(bearer\s+)[^\s'\",;]+")
_KEY_RE: Final = re.compile(r"\bsk_(?:sandbox|live|test)_[A-Za-z0-9_]+")


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


def _shown_forms(value: str) -> list[str]:
    """Return the ways `value` may appear in a message, longest first.

    As is (and without surrounding white space), and escaped once or twice as `repr` shows a
    str (`\\r`, `\\xe9`) or the bytes of a header (`\\xc3\\xa9`) or as JSON shows it (`\\u00e9`,
    `\\/`): an error's repr of an illegal header holds the escaped key, not the key.
    """
    forms = {value, value.strip()}
    for _ in range(2):
        for form in list(forms):
            forms.add(repr(form)[1:-1])
            forms.add(ascii(form)[1:-1])
            forms.add(repr(_utf8(form))[2:-1])
            forms.add(json.dumps(form)[1:-1])
            forms.add(form.replace("/", "\\/"))  # JSON's optional escape of a slash
    return sorted((f for f in forms if f), key=len, reverse=True)


def _utf8(text: str) -> bytes:
    try:  # an environment value that was not UTF-8 holds its bytes as surrogate escapes
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def redact(text: str, secrets: Iterable[str | Secret | None] = ()) -> str:
    """Return `text` with the given secrets (also escaped), bearer tokens and ASG keys masked."""
    for secret in secrets:
        value = secret.reveal() if isinstance(secret, Secret) else secret
        if value:
            for form in _shown_forms(value):
                text = text.replace(form, "***")
    text = _BEARER_RE.sub(r"\1***", text)
    return _KEY_RE.sub("***", text)


def secret_problem(value: str) -> str | None:
    """Return why an HTTP header cannot carry `value` (None when it can).

    A header value is printable ASCII (spaces allowed): a control character (a carriage return
    or line feed from a CRLF env file, a tab, NUL) or a non-ASCII character is refused. The
    text names the kind of character, never the value or where in it.
    """
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return "a control character (such as a carriage return, line feed or tab)"
    if not value.isascii():
        return "a non-ASCII character"
    return None


def clean_secret(value: str, what: str) -> str:
    """Return `value` without surrounding white space; raise ConfigError if still unusable.

    `what` names the setting (an environment variable, an AuditConfig field); the message says
    what is wrong with the secret and never shows it. An empty result means "not set".
    """
    value = value.strip()
    problem = secret_problem(value)
    if problem is not None:
        raise ConfigError(
            f"{what}: the secret holds {problem} inside it, which an HTTP header cannot carry"
            " (surrounding white space is removed; the value is not shown)"
        )
    return value


def display_url(url: str) -> str:
    """Return `url` fit for a message: scheme, host, port and path; no user, password or query."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparsable URL>"
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    return redact(f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme else netloc + parts.path)


def display_origin(url: str) -> str:
    """Return only the scheme, host and port of `url`, and `/…` for a path: for a URL whose
    path is itself the secret (an alert webhook: Slack's `/services/T…/B…/<token>`)."""
    shown = display_url(url)
    scheme, sep, rest = shown.partition("://")
    if not sep:
        return "<URL>" if shown else shown
    host, slash, path = rest.partition("/")
    return f"{scheme}://{host}" + ("/…" if slash and path else "")


def check_http_url(url: object, what: str, hint: str) -> str:
    """Return `url` if requests can be sent there: an absolute http(s) URL with a host.

    Otherwise raise ConfigError naming `what` (the setting), the reason and `hint` (where it is
    set, or an example). The value is never shown, nor any part of it: a value that is not a
    usable URL may be a misplaced secret (the WoC key pasted as `chain_url`), whatever its shape.
    """
    if not isinstance(url, str):
        raise ConfigError(f"{what}: expected a URL (text), got {type(url).__name__}")
    problem = None
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError as exc:
        problem = _parse_problem(exc)
    else:
        if parts.scheme.lower() not in ("http", "https"):
            problem = "it does not start with http:// or https://"
        elif not parts.hostname:
            problem = "it names no host"
        elif port == 0:
            problem = "port 0 cannot be connected to"
        elif not url.isprintable() or any(c.isspace() for c in url):
            problem = "it contains white space or control characters"
    if problem is None:
        return url
    raise ConfigError(
        f"{what} is not an absolute http:// or https:// URL with a host: {problem}"
        f" (the value is not shown; {hint})"
    )


def _parse_problem(exc: ValueError) -> str:
    """Return why `urlsplit` refused a URL, in words holding no part of it (Python's own
    messages quote the port or the host)."""
    message = str(exc)
    if "Port" in message:
        return "its port is not a number from 1 to 65535"
    if "IPv6" in message:
        return "its [IPv6] host is malformed"
    return "it cannot be read as a URL"
