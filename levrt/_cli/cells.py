"""Stored values as table cells: nested fields flattened to dotted columns, lists joined, and every
character that could break a table or drive the terminal written as an escape.

Why apart from ``base.print_table``: records are written by tasks, so their text is anyone's — a
tab or newline in a banner shifts the columns, an ESC sequence from a scanned host recolours or
rewrites the user's terminal. Every cell and column name of ``levrt get -o table`` and ``levrt
schemas`` passes through ``escape_controls``; these are pure functions, tested on their own.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping
from typing import Any

__all__ = ["CELL_WIDTH", "MISSING", "cell_text", "escape_controls", "flatten"]

CELL_WIDTH = 40
"""Characters of a value a table shows; the rest is cut and marked with ``...``."""
MISSING = "-"
"""The cell of a field a record does not have (``null`` is a field set to None)."""
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
"""Control and format characters (ESC, tab, bidi overrides, zero-width), lone surrogates (which a
UTF-8 terminal cannot even be sent) and the Unicode line and paragraph separators."""
_SHORT_ESCAPES = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def escape_controls(text: str) -> str:
    """``text`` with each unsafe character written as Python writes it in a literal (``\\t``,
    ``\\x1b``, ``\\u202e``), so it shows as one line and never acts on the terminal."""
    if text.isascii() and text.isprintable():
        return text
    return "".join(_escaped(char) if unicodedata.category(char) in _UNSAFE_CATEGORIES else char for char in text)


def _escaped(char: str) -> str:
    if char in _SHORT_ESCAPES:
        return _SHORT_ESCAPES[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def flatten(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys (``{"a": {"b": 1}}`` → ``{"a.b": 1}``); an empty mapping and
    every other value (lists too) kept whole under its key."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, prefix=f"{name}."))
        else:
            flat[name] = value
    return flat


def cell_text(value: Any, *, width: int = CELL_WIDTH) -> str:
    """A value as one bounded, escaped line: text as it is, a list's items joined with ``, ``,
    None as ``null``, a mapping inside a list as compact JSON."""
    text = escape_controls(_plain(value, top=True))
    return text if len(text) <= width else text[: max(width - 3, 0)] + "..."


def _plain(value: Any, *, top: bool = False) -> str:
    if isinstance(value, str):
        return value
    if value is None or isinstance(value, bool | int | float):
        return json.dumps(value)
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    if isinstance(value, list | tuple):
        if top:
            return ", ".join(_plain(item) for item in value) if value else "[]"
        return json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":"))
    if isinstance(value, Mapping):
        return json.dumps(value, default=str, ensure_ascii=False, separators=(",", ":"))
    return str(value)  # a datetime, an ObjectId: their own text
