"""What may be shown of secrets and URLs: `Secret`, `redact`, `display_url`, `check_http_url`.

`clean_secret` strips a secret's surrounding white space and refuses one that an HTTP header
cannot carry (control or non-ASCII characters), naming the setting and never the value.

Secrets (API keys, webhook secrets) are held in `Secret`, whose `repr` and `str` never show the
value. Every message that names a URL shows it through `display_url` (no user, password or
query), and every URL the tool will send requests to (the Gateway's `base_url`, the chain
index's `chain_url`, a webhook callback) is checked by the one `check_http_url`, at once, so
that `ftp://...` or a bare host is exit 2 with its reason instead of minutes of retries. The
two base URLs request paths are appended to (`base_url`, `chain_url`) may hold no user,
password, query or fragment either.
"""

from __future__ import annotations

import functools
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
    "error_text",
    "mask_secrets",
    "mask_secrets_bytes",
    "redact",
    "secret_problem",
    "shown_setting",
]

# `(?i)bearer` written so that the search skips ahead to each `b` or `B`
_BEARER_RE: Final = re.compile(r"([bB](?i:earer)\s+)[^\s'\",;]+")
# `\bsk_...` written so that the search skips ahead to each "sk" (the lookbehind is the `\b`).
# The key token is its ASCII letters, digits and `_ - . ~ + %`, so that a key holding a dash
# or a dot (`sk_live_4f9a-7bc2-...`) is masked whole, never as `***-7bc2-...`; anything else
# ends it (white space, quotes, URL delimiters, `!`, `@`, non-ASCII: the words after a key
# are kept), and so does a final dot (a sentence's, not the key's: review R2).
_KEY_RE: Final = re.compile(r"sk(?<!\wsk)_(?:sandbox|live|test)_[A-Za-z0-9_.~+%-]*[A-Za-z0-9_~+%-]")


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


# -- the forms in which a secret may be shown ---------------------------------------------------
#
# An answer may quote a secret as it is, or encoded the way the server's JSON encoder, URL
# builder or HTML template wrote it, and several of those at once (a URL-encoded key inside a
# JSON string; Go's encoding/json turning the `&` of `&amp;` into `\u0026`). Each character of
# the secret may appear as:
#   itself;
#   a backslash escape (JSON, Python, JavaScript), with the backslash itself escaped up to three
#     times (JSON in JSON): `\u0026`, `\u002B`/`\u002b`, `\x26`, the UTF-8 bytes `\xc3\xa9`,
#     `\"`, `\/`, `\n`, `\\u0026`;
#   percent-encoded, upper or lower hex, once or twice (`%2B`, `%2b`, `%252B`), its UTF-8 bytes
#     for a non-ASCII character; a space also as `+` (`quote_plus`, form encoding);
#   an HTML character reference: named for `& < > " '` (`&amp;`, `&lt;`, `&gt;`, `&quot;`,
#     `&apos;`, any case) and decimal or hex for any character (`&#43;`, `&#x2B;`, `&#X2b;`,
#     leading zeros allowed), its `&` also as `\u0026` (Go) and its `&`, `#` and `;` also
#     percent-encoded (`%26amp%3B`: an HTML-escaped value put in a URL).
# One regular expression per set of secrets matches every mix of these, character by character;
# it is compiled once per set (cached, 10-50 ms) and applied in one pass: 3-15 ms for a 1 MB
# body and two secrets, where the replacements of each form it replaces took 20-50 ms.

_NAMED_ENTITIES: Final = {"&": "amp", "<": "lt", ">": "gt", '"': "quot", "'": "apos"}
_SHORT_ESCAPES: Final = {"\n": "n", "\r": "r", "\t": "t", "\b": "b", "\f": "f"}
# after a first backslash: the rest of one escaped up to three times (1, 2, 4 or 8 in all)
_MORE_BACKSLASHES: Final = r"\\{0,7}"


def _hex(value: int, digits: int) -> str:
    return f"(?i:{value:0{digits}x})"


_AGAIN: Final = r"\\" + _MORE_BACKSLASHES  # one backslash, escaped up to three times
# an HTML character reference's `&`, `#` and `;`: as is, `&` as a JSON escape (Go), or
# percent-encoded (an HTML-escaped value put in a URL)
_REF_START: Final = r"(?:&|" + _AGAIN + r"u0026|%(?:25)?26)"
_REF_HASH: Final = "(?:#|%(?:25)?23)"
_REF_END: Final = "(?:;|%(?:25)?3[bB])"


def _forms(char: str, binary: bool) -> tuple[list[str], list[str], list[str], str]:
    """Return the forms of `char`: (after a backslash, after `%`, after the `&` of an HTML
    character reference, itself); `binary` for a bytes pattern, where `char` is its UTF-8."""
    code = ord(char)
    utf8 = _utf8(char)
    # backslash codes: \u0026 (JSON), a surrogate pair beyond the BMP or \U0001f600, \x26,
    # the UTF-8 bytes \xc3\xa9, and the short escapes (\" \/ \n)
    if code < 0x10000:
        codes = ["u" + _hex(code, 4)]
    else:
        high, low = divmod(code - 0x10000, 0x400)
        codes = [
            "u" + _hex(0xD800 + high, 4) + _AGAIN + "u" + _hex(0xDC00 + low, 4),
            "U" + _hex(code, 8),
        ]
    if code < 0x100:
        codes.append("x" + _hex(code, 2))
    if code >= 0x80:
        codes.append("x" + (_AGAIN + "x").join(_hex(b, 2) for b in utf8))
    if char in "\"'/":
        codes.append(re.escape(char))
    if char in _SHORT_ESCAPES:
        codes.append(_SHORT_ESCAPES[char])
    # percent-encoded, once or twice (%2B, %252B), each UTF-8 byte
    percent = ["%".join("(?:25)?" + _hex(b, 2) for b in utf8)]
    # HTML character references: named, decimal, hex
    refs = [f"{_REF_HASH}(?:0*{code}|[xX]0*(?i:{code:x}))"]
    if char in _NAMED_ENTITIES:
        refs.insert(0, f"(?i:{_NAMED_ENTITIES[char]})")
    if char == "'":
        refs.append(f"{_REF_HASH}0*39")
    itself = re.escape(utf8.decode("latin-1") if binary else char)
    return codes, percent, refs, itself


def _either(patterns: list[str]) -> str:
    return "(?:" + "|".join(patterns) + ")"


def _char_pattern(char: str, binary: bool) -> str:
    """Return a pattern matching `char` in any of its forms (itself tried last when it starts
    other forms: `&amp;` is matched whole, not as `&`)."""
    codes, percent, refs, itself = _forms(char, binary)
    forms = [
        _AGAIN + _either(codes),
        "%" + _either(percent),
        _REF_START + _either(refs) + _REF_END,
    ]
    if char == " ":
        forms.append(r"\+")  # quote_plus, form encoding
    if char == "\\":
        itself = _AGAIN  # itself, escaped up to three times
    return _either([*forms, itself] if char in "\\%&+" else [itself, *forms])


def _first_char_pattern(char: str, binary: bool) -> tuple[set[str], str]:
    """Return the characters the forms of `char` start with, and a pattern matching the rest
    of a form once its first character has been consumed (told by a lookbehind)."""
    codes, percent, refs, itself = _forms(char, binary)
    ref = _either(refs) + _REF_END
    rests: dict[str, list[str]] = {
        r"\\": [_MORE_BACKSLASHES + _either([*codes, "u0026" + ref])],
        "%": [_either(percent), "(?:25)?26" + ref],
        "&": [ref],
    }
    if char == " ":
        rests[r"\+"] = [""]
    if char == "\\":
        rests[r"\\"].append(_MORE_BACKSLASHES)
    elif binary and len(_utf8(char)) > 1:  # its first byte, then the others
        utf8 = _utf8(char).decode("latin-1")
        rests.setdefault(re.escape(utf8[0]), []).append(re.escape(utf8[1:]))
    else:
        rests.setdefault(itself, []).append("")
    head = "|".join(f"(?<={first}){_either(rest)}" for first, rest in rests.items())
    return set(rests), head


def _pattern(values: list[str], binary: bool) -> str:
    """Return a pattern matching any of `values` (stripped) in any form.

    Each character may come in any of its forms. The first one's form is told by a lookbehind
    at the character consumed, so that the whole pattern starts with one character class: what
    lets the regex engine skip ahead (a pattern starting with a group of alternatives is tried
    at every position, several times slower).
    """
    firsts: set[str] = set()
    tails = []
    for value in values:
        value = value.strip() or value
        starts, head = _first_char_pattern(value[0], binary)
        firsts |= starts
        tails.append(f"(?:{head})" + "".join(_char_pattern(c, binary) for c in value[1:]))
    return "[" + "".join(sorted(firsts)) + "]" + _either(tails)


@functools.lru_cache(maxsize=64)
def _compiled(values: tuple[str, ...]) -> tuple[re.Pattern[str], re.Pattern[bytes]]:
    """Return a text and a bytes pattern matching any of `values` in any form, longest first
    (a secret inside another is not left half shown)."""
    ordered = sorted(set(values), key=len, reverse=True)
    return (
        re.compile(_pattern(ordered, binary=False)),
        re.compile(_pattern(ordered, binary=True).encode("latin-1")),
    )


def _values(secrets: Iterable[str | Secret | None]) -> tuple[str, ...]:
    out = []
    for secret in secrets:
        value = secret.reveal() if isinstance(secret, Secret) else secret
        if value:
            out.append(value)
    return tuple(out)


def _utf8(text: str) -> bytes:
    try:  # an environment value that was not UTF-8 holds its bytes as surrogate escapes
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


# A secret shorter than this is not masked inside an answer's body (a poll answer, a webhook
# delivery, a bill, a chain index answer: data that is parsed and stored). Each character of
# a secret is matched in every encoded form, so a short one is found in ordinary data (a
# secret `2026` in every date, `settled` in every status and key) and masking it would
# corrupt what is stored: deliveries stored as stale, answers as invalid JSON (review R2).
# Messages and notes still mask it. The Gateway's keys and `whsec_` secrets are far longer.
MIN_DATA_SECRET_CHARS: Final = 8


def data_secrets(secrets: Iterable[str | Secret | None]) -> tuple[str, ...]:
    """Return those of `secrets` masked inside answer bodies (`MIN_DATA_SECRET_CHARS`)."""
    return tuple(v for v in _values(secrets) if len(v) >= MIN_DATA_SECRET_CHARS)


def mask_secrets(text: str, secrets: Iterable[str | Secret | None]) -> str:
    """Return `text` with every shown form of the given secrets replaced by `***`."""
    values = _values(secrets)
    if not values:
        return text
    return _compiled(values)[0].sub("***", text)


def mask_secrets_bytes(data: bytes, secrets: Iterable[str | Secret | None]) -> bytes:
    """Return `data` with every shown form of the given secrets replaced by `***`.

    The same object when it holds none (the usual case): one search, no copy. For an answer
    body, whose bytes need not be UTF-8.
    """
    values = _values(secrets)
    if not values:
        return data
    pattern = _compiled(values)[1]
    if pattern.search(data) is None:
        return data
    return pattern.sub(b"***", data)


def redact(text: str, secrets: Iterable[str | Secret | None] = ()) -> str:
    """Return `text` with the given secrets (in any shown form), bearer tokens and ASG keys
    masked: the exact secrets first (a generic pattern run first could mask part of a secret
    and leave the rest unmatched), then the generic patterns. Mask before cutting a text
    short, never after: a secret cut in two is no longer found."""
    text = mask_secrets(text, secrets)
    text = _BEARER_RE.sub(r"\1***", text)
    return _KEY_RE.sub("***", text)


def error_text(exc: BaseException, secrets: Iterable[str | Secret | None] = ()) -> str:
    """Return the one line a run records (`runs.stats.error`) of the error that ended it.

    An AuditError's message is written not to hold secrets; any other error (a bug's, a
    library's) may quote anything, so it is named by its type and its text has the given
    secrets, bearer tokens and ASG keys masked, as every message is.
    """
    from asg_audit.errors import AuditError

    text = str(exc).strip()
    if not isinstance(exc, AuditError):
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return " ".join(redact(text, secrets).split())


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


def display_url(url: str, secrets: Iterable[str | Secret | None] = ()) -> str:
    """Return `url` fit for a message: scheme, host, port and path; no user, password or query.

    The given `secrets` (in any shown form) are masked first, then bearer tokens and ASG keys
    (`redact`): a configured key is masked whole even when the generic key pattern would take
    only part of it. Give every secret the process holds when `url` is an outside answer's (a
    redirect's `Location`).
    """
    secrets = _values(secrets)
    url = mask_secrets(url, secrets)
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<unparsable URL>"
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    shown = f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme else netloc + parts.path
    return redact(shown, secrets)


def display_origin(url: str) -> str:
    """Return only the scheme, host and port of `url`, and `/…` for a path: for a URL whose
    path is itself the secret (an alert webhook: Slack's `/services/T…/B…/<token>`)."""
    shown = display_url(url)
    scheme, sep, rest = shown.partition("://")
    if not sep:
        return "<URL>" if shown else shown
    host, slash, path = rest.partition("/")
    return f"{scheme}://{host}" + ("/…" if slash and path else "")


def shown_setting(name: str, text: str, secrets: Iterable[str | Secret | None]) -> str:
    """Return a setting's text as a config's repr or a report shows it: the configured
    `secrets` masked (a key pasted into another setting is `***`), an `alert_url` by its origin
    (`display_origin`: a Slack or Teams webhook carries its secret in its path), any other URL
    (text holding `://`) by `display_url` (no user, password or query), bearer tokens and ASG
    keys `redact`ed."""
    text = mask_secrets(text, secrets)
    if name.endswith("alert_url"):
        text = display_origin(text)
    elif "://" in text:
        text = display_url(text, secrets)
    return redact(text, secrets)


def check_http_url(url: object, what: str, hint: str, *, base: bool = False) -> str:
    """Return `url` if requests can be sent there: an absolute http(s) URL with a host.

    Otherwise raise ConfigError naming `what` (the setting), the reason and `hint` (where it is
    set, or an example). The value is never shown, nor any part of it: a value that is not a
    usable URL may be a misplaced secret (the WoC key pasted as `chain_url`), whatever its shape.

    With `base`, `url` is the base that request paths are appended to (`base_url`,
    `chain_url`), and must also hold no user or password (`user:pass@`: httpx would send them as
    Basic auth in place of the `Authorization` header the key goes in, and the server would
    blame the key), no query and no fragment (the paths would be appended inside them).
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
    if problem is None and base:
        problem = _base_problem(url)
        if problem is not None:
            raise ConfigError(
                f"{what} cannot be the base URL of requests: {problem} (the value is not shown;"
                f" {hint})"
            )
    if problem is None:
        return url
    raise ConfigError(
        f"{what} is not an absolute http:// or https:// URL with a host: {problem}"
        f" (the value is not shown; {hint})"
    )


def _base_problem(url: str) -> str | None:
    """Return why an http(s) URL cannot be a base that request paths are appended to, in words
    holding no part of it (None when it can)."""
    if "@" in urlsplit(url).netloc:
        return (
            "it holds a user name or password before the host (user:pass@), which would be"
            " sent as Basic auth in place of the Authorization header the key goes in; give"
            " the URL without them"
        )
    if "?" in url:
        return (
            "it holds a query (?...), inside which every request's path would be appended;"
            " give the URL without it"
        )
    if "#" in url:
        return "it holds a fragment (#...), which no request can carry; give the URL without it"
    return None


def _parse_problem(exc: ValueError) -> str:
    """Return why `urlsplit` refused a URL, in words holding no part of it (Python's own
    messages quote the port or the host)."""
    message = str(exc)
    if "Port" in message:
        return "its port is not a number from 1 to 65535"
    if "IPv6" in message:
        return "its [IPv6] host is malformed"
    return "it cannot be read as a URL"
