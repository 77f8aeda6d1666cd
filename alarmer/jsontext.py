"""Strict, bounded JSON text: what the API reads and what it writes.

Python's :mod:`json` accepts more than JSON and more than the rest of
alarmer can hold.  :func:`loads` refuses, with the position of the
problem (``name``, ``quotas[0].limit``) and the reason:

* nesting deeper than a bound (checked on the text before parsing, so
  that a thousand ``[`` never reach the recursive parser);
* the ``NaN``, ``Infinity`` and ``-Infinity`` literals, and numbers
  beyond the range of a float (``1e999``, a 400-digit integer);
* lone UTF-16 surrogates (``"\\ud800"``), which no database can store;
* NUL characters (``"\\u0000"``), which PostgreSQL text refuses.

The common case costs a few scans of the text in C and one parse by
:mod:`orjson`: the decoded value is only walked when one of those scans
finds a suspicious escape or number.  A document :mod:`orjson` refuses,
or one holding an integer too long for it to keep exact, is decoded
again by :mod:`json`, whose answer (the value, or the refusal and its
position) is the one given: both paths accept and refuse the same
documents, with the same messages.

:func:`dumps` writes strict JSON: a non-finite float becomes ``null``
(strict parsers reject a bare ``NaN``).

Pure: no I/O.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable
from typing import Any

import orjson

__all__ = [
    "JSONTextError",
    "check_text",
    "depth_exceeds",
    "dumps",
    "loads",
    "shown",
]

#: Largest magnitude of a number read (the largest finite float).
MAX_NUMBER = sys.float_info.max

#: An escape (a backslash and the character after it).
_ESCAPE = re.compile(rb"\\.", re.DOTALL)
#: Every byte but brackets and quotes (deleted by ``bytes.translate``).
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"')
#: A string once escapes and every other character are gone.
_STRING = re.compile(rb'"[^"]*"')
#: An innermost pair of brackets (once everything else is removed).
_PAIR = re.compile(rb"\[\]|\{\}")


def _shape_table() -> bytes:
    """Digits to ``0``, exponent marks to ``e``, ``+`` and ``.`` kept,
    the bytes that end a number to ``,``, every other byte to ``x``."""
    table = bytearray(b"x" * 256)
    for byte in b"0123456789":
        table[byte] = ord("0")
    for byte in b"eE":
        table[byte] = ord("e")
    for byte in b"+.":
        table[byte] = byte
    for byte in b",]} \t\r\n":
        table[byte] = ord(",")
    return bytes(table)


_NUMBER_SHAPE = _shape_table()
#: A number with an exponent of three digits or more (after the shape
#: translation): maybe out of range.
_BIG_EXPONENT = re.compile(rb"0e\+?0{3,},")
#: A run of digits longer than the largest float has.
_LONG_DIGITS = b"0" * 309
#: A run of digits that may be an integer beyond 64 bits, which
#: :mod:`orjson` would turn into a float.
_WIDE_DIGITS = b"0" * 19
#: A lone surrogate in decoded text.
_SURROGATE = re.compile("[\ud800-\udfff]")
#: The escapes of NUL and of a UTF-16 surrogate.
_NUL_ESCAPE = b"\\u0000"
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class JSONTextError(ValueError):
    """The text is not a JSON document alarmer accepts.

    :param path: where the problem is (``""`` for the whole document,
        ``name``, ``rules[2].metric``).
    :param reason: what is wrong, in words.
    :param status: the HTTP status it deserves (413 for a size).
    :param value: the refused value, shortened, for messages.
    """

    def __init__(
        self, path: str, reason: str, status: int = 400, value: str = ""
    ) -> None:
        super().__init__(f"{path}: {reason}" if path else reason)
        self.path = path
        self.reason = reason
        self.status = status
        self.value = value


def shown(value: Any, size: int = 40) -> str:
    """*value* as a message shows it: printable ASCII, at most *size*."""
    text = value if isinstance(value, str) else repr(value)
    text = text[: size + 1].encode("ascii", "backslashreplace").decode("ascii")
    text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
    return text if len(text) <= size else text[: size - 3] + "..."


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def depth_exceeds(data: bytes, max_depth: int) -> bool:
    """True when brackets outside strings nest deeper than *max_depth*.

    *data* need not be valid JSON: unbalanced brackets are left to the
    parser.
    """
    if data.count(b"[") + data.count(b"{") <= max_depth:
        return False
    if b"\\" in data:
        data = _ESCAPE.sub(b"", data)
    structure = data.translate(None, _NOT_STRUCTURE).replace(b'""', b"")
    if b'"' in structure:
        structure = _STRING.sub(b"", structure)
    # Each pass removes the innermost pairs: a pair nested n deep goes
    # at pass n.
    for _ in range(max_depth):
        reduced = _PAIR.sub(b"", structure)
        if reduced == structure:
            return False
        structure = reduced
    return _PAIR.search(structure) is not None


def check_text(value: str, path: str) -> None:
    """Refuse NUL characters and lone surrogates in a decoded string.

    :raises JSONTextError: naming *path*.
    """
    if "\x00" in value:
        raise JSONTextError(
            path, "NUL characters are not allowed", value=shown(value)
        )
    if _SURROGATE.search(value):
        raise JSONTextError(
            path,
            "lone UTF-16 surrogates (\\ud800-\\udfff) are not allowed",
            value=shown(value),
        )


def _check_number(value: Any, path: str) -> None:
    if isinstance(value, bool):
        return
    if (isinstance(value, float) and not math.isfinite(value)) or (
        isinstance(value, int) and abs(value) > MAX_NUMBER
    ):
        raise JSONTextError(
            path,
            f"the number is out of range (|x| <= {MAX_NUMBER:g})",
            value=shown(value),
        )


class _NotANumber:
    """What ``NaN`` or ``Infinity`` decodes to until it is reported."""

    def __init__(self, literal: str) -> None:
        self.literal = literal


def _walk(value: Any, root: str) -> None:
    stack: list[tuple[Any, str]] = [(value, root)]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            check_text(item, path)
        elif isinstance(item, dict):
            for key, child in item.items():
                try:
                    check_text(key, path)
                except JSONTextError as exc:
                    raise JSONTextError(
                        path, f"key '{exc.value}': {exc.reason}"
                    ) from None
                stack.append((child, _join(path, key)))
        elif isinstance(item, list):
            stack.extend(
                (child, _join(path, index)) for index, child in enumerate(item)
            )
        elif isinstance(item, _NotANumber):
            raise JSONTextError(
                path,
                f"{item.literal} is not a JSON number (finite only)",
                value=item.literal,
            )
        else:
            _check_number(item, path)


def _suspicious(raw: bytes, shape: bytes | None = None) -> bool:
    """True when *raw* may hold an escape or a number to look at.

    :param shape: ``raw.translate(_NUMBER_SHAPE)`` if already computed.
    """
    if _NUL_ESCAPE in raw or _SURROGATE_ESCAPE.search(raw):
        return True
    if shape is None:
        shape = raw.translate(_NUMBER_SHAPE)
    return _LONG_DIGITS in shape or _BIG_EXPONENT.search(shape) is not None


def loads(
    data: str | bytes,
    *,
    max_depth: int,
    max_size: int | None = None,
    root: str = "",
) -> Any:
    """Decode a strict JSON document.

    :param data: the document; bytes must be UTF-8.
    :param max_depth: deepest nesting of arrays and objects accepted.
    :param max_size: largest length accepted (bytes, or characters of a
        string), None for no bound.
    :param root: the name of the whole document in error paths.
    :raises JSONTextError: naming the position of the problem.
    """
    if max_size is not None and len(data) > max_size:
        raise JSONTextError(root, f"longer than {max_size} bytes", status=413)
    if isinstance(data, bytes):
        raw = data
        check = False
    else:
        raw = data.encode("utf-8", "surrogatepass")
        # Text given as a string may hold the characters themselves.
        check = "\x00" in data or _SURROGATE.search(data) is not None
    if depth_exceeds(raw, max_depth):
        raise JSONTextError(root, f"nested deeper than {max_depth} levels")
    shape = raw.translate(_NUMBER_SHAPE)
    if not check and _WIDE_DIGITS not in shape:
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass  # the strict path below says why, and where
        else:
            if _suspicious(raw, shape):
                _walk(value, root)
            return value
    return _strict_loads(data, raw, check, max_depth, root)


def _strict_loads(
    data: str | bytes, raw: bytes, check: bool, max_depth: int, root: str
) -> Any:
    """:func:`loads` by :mod:`json`: exact integers, precise refusals."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JSONTextError(
                root, f"not valid UTF-8 at byte {exc.start}"
            ) from None
    else:
        text = data
    literals: list[str] = []

    def constant(literal: str) -> _NotANumber:
        literals.append(literal)
        return _NotANumber(literal)

    try:
        value = json.loads(text, parse_constant=constant)
    except RecursionError:
        raise JSONTextError(
            root, f"nested deeper than {max_depth} levels"
        ) from None
    except ValueError as exc:
        raise JSONTextError(root, f"not valid JSON ({exc})") from None
    if check or literals or _suspicious(raw):
        _walk(value, root)
    return value


def _finite(value: Any) -> Any:
    """*value* with every non-finite float replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def dumps(
    value: Any, *, default: Callable[[Any], Any] | None = None, **kwargs: Any
) -> str:
    """Encode *value* as strict JSON: a NaN or an infinity is ``null``.

    :param default: as :func:`json.dumps`'s, for other objects.
    :param kwargs: the other arguments of :func:`json.dumps`.
    """
    try:
        return json.dumps(value, default=default, allow_nan=False, **kwargs)
    except ValueError:
        # Rare: only documents holding a non-finite float pay the copy.
        return json.dumps(
            _finite(value), default=default, allow_nan=False, **kwargs
        )
