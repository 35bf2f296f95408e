"""`model.printable` shows every character a reader cannot see as a visible escape.

Tester D: a `consensus.label_outside_options` finding about the labels `cat\\u200b`, `cat\\u00a0`,
`\\ufeffcat`, `cat\\u2060` (zero-width space, no-break space, BOM, word joiner) read
"Actual: cat" in the report, the same as the option `cat`: `printable` escaped only C0/C1
controls, U+200E/U+200F and the bidi overrides and isolates. Now it escapes every character of
the categories Cc, Cf, Zl, Zp, Cs and Zs (but the ASCII space), and with `quote_edges` quotes a
value that starts or ends with whitespace (`'cat '`).
"""

from __future__ import annotations

import sys
import unicodedata

import pytest

from asg_audit.model import printable

INVISIBLE_CATEGORIES = {"Cc", "Cf", "Zl", "Zp", "Zs", "Cs"}


def test_printable_escapes_every_invisible_category_of_this_python() -> None:
    kept = {"\t", "\n", " "}  # shown as themselves in a text of several lines
    missed = [
        f"U+{cp:04X} {unicodedata.category(chr(cp))}"
        for cp in range(sys.maxunicode + 1)
        if unicodedata.category(chr(cp)) in INVISIBLE_CATEGORIES
        and chr(cp) not in kept
        and printable(chr(cp)) == chr(cp)
    ]
    assert missed == []


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("cat\u200b", "cat\\u200b"),
        ("cat\u00a0", "cat\\xa0"),
        ("\ufeffcat", "\\ufeffcat"),
        ("cat\u2060", "cat\\u2060"),
        ("a\u00adb", "a\\xadb"),
        ("a\u061cb", "a\\u061cb"),
        ("a\u2028b\u2029c", "a\\u2028b\\u2029c"),
        ("cat\u200c", "cat\\u200c"),  # a joiner or no-break space at an end,
        ("\u200dcat", "\\u200dcat"),
        ("a\u202f b\u3000", "a\\u202f b\\u3000"),  # beside whitespace,
        ("a\xa0\u200bb", "a\\xa0\\u200bb"),  # beside another invisible one,
        ("\xa0", "\\xa0"),  # or on its own
        ("a\U000e0041b", "a\\U000e0041b"),  # a tag character: astral, written \U
        ("a\ud800b", "a\\ud800b"),  # a lone surrogate, which UTF-8 cannot even write
        ("a\u3164b", "a\\u3164b"),  # Hangul filler: a letter that draws as nothing
    ],
)
def test_printable_shows_invisible_characters_as_escapes(text: str, shown: str) -> None:
    assert printable(text) == shown
    assert printable(text, one_line=True) == shown
    printable(text).encode("utf-8")  # always writable


def test_printable_keeps_visible_text_and_what_it_kept_before() -> None:
    for text in ("café", "ca\u0074\u0301", "日本語", "cat dog", "\U0001f600", "a\\u200bb"):
        assert printable(text) == text
    assert printable("a\nb\tc") == "a\nb\tc"  # messages of several lines keep them
    assert printable("a\nb\tc", one_line=True) == "a\\x0ab\\x09c"
    assert printable("\x1b[31m\u202e") == "\\x1b[31m\\u202e"


def test_printable_quote_edges_shows_leading_and_trailing_whitespace() -> None:
    assert printable("cat ", quote_edges=True) == "'cat '"
    assert printable(" cat", quote_edges=True) == "' cat'"
    assert printable("cat\n", quote_edges=True) == "'cat\\x0a'"  # quoted means one line
    assert printable("cat\u00a0", quote_edges=True) == "'cat\\xa0'"
    assert printable("cat", quote_edges=True) == "cat"
    assert printable("a b", quote_edges=True) == "a b"
    assert printable("", quote_edges=True) == ""
    # off by default: a fragment of a sentence is not quoted
    assert printable(" · tasks created x to y") == " · tasks created x to y"


@pytest.mark.parametrize(
    "text",
    [
        "\U0001f468\u200d\U0001f469\u200d\U0001f467",  # a family: emoji joined by ZWJ
        "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",  # Persian, with a ZWNJ
        "\u0915\u094d\u200d\u0937",  # Devanagari, with a ZWJ
        "prix\u202f: 10\xa0\u20ac",  # French spacing
        "\u6771\u4eac\u3000\u5927\u962a",  # an ideographic space between words
        "\U0001f3f4\U000e0067\U000e0062\U000e0065\U000e006e\U000e0067\U000e007f",  # England
    ],
)
def test_printable_keeps_joiners_and_spaces_real_text_uses(text: str) -> None:
    """Between two visible characters these are part of the text, not a hidden difference."""
    assert printable(text) == text
    assert printable(text, one_line=True, quote_edges=True) == text
