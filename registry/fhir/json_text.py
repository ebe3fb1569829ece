"""Working on JSON text without re-serializing it: the registry keeps the bytes a hospital sent.

A round trip through a parser loses what FHIR says matters (``1.50`` is not ``1.5``), so resources are stored as the
accepted text, with only the server-owned members (``id``, ``meta``) replaced. The member spans come from the
standard library's C-accelerated JSON scanner.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import orjson

_DECODER = json.JSONDecoder()
_WS = " \t\n\r"
_STRING_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')


class JsonShapeError(ValueError):
    """The text is not a JSON object of the expected shape."""


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WS:
        i += 1
    return i


def decoded_end(text: str, start: int) -> int:
    """Where the JSON value starting at ``start`` ends (the C scanner decodes it)."""
    try:
        return int(_DECODER.raw_decode(text, start)[1])
    except json.JSONDecodeError as exc:
        raise JsonShapeError(str(exc)) from None


def object_members(
    text: str, start: int = 0, value_end: Callable[[str, str, int], int] | None = None
) -> tuple[list[tuple[str, int, int, int]], int]:
    """The members of the JSON object starting at ``start`` — (key, member start, value start, value end) — and where
    the object ends (just past its ``}``). ``value_end(key, text, value start)``, when given, finds where each value
    ends (a caller that walks into a value itself) instead of the C scanner decoding it."""
    i = _skip_ws(text, start)
    if i >= len(text) or text[i] != "{":
        raise JsonShapeError("expected a JSON object")
    i = _skip_ws(text, i + 1)
    out: list[tuple[str, int, int, int]] = []
    if i < len(text) and text[i] == "}":
        return out, i + 1
    while True:
        if i >= len(text) or text[i] != '"':
            raise JsonShapeError("expected a member name")
        member_start = i
        key, i = json.decoder.scanstring(text, i + 1)  # type: ignore[attr-defined]
        i = _skip_ws(text, i)
        if i >= len(text) or text[i] != ":":
            raise JsonShapeError("expected ':'")
        value_start = _skip_ws(text, i + 1)
        if value_start >= len(text):
            raise JsonShapeError("expected a value")
        end = value_end(key, text, value_start) if value_end is not None else decoded_end(text, value_start)
        out.append((key, member_start, value_start, end))
        i = _skip_ws(text, end)
        if i < len(text) and text[i] == ",":
            i = _skip_ws(text, i + 1)
            continue
        if i < len(text) and text[i] == "}":
            return out, i + 1
        raise JsonShapeError("expected ',' or '}'")


def members(text: str, start: int = 0) -> list[tuple[str, int, int, int]]:
    """The members of the JSON object starting at ``start``: (key, member start, value start, value end)."""
    return object_members(text, start)[0]


def array_elements(
    text: str, start: int, element_end: Callable[[str, int], int] | None = None
) -> tuple[list[tuple[int, int]], int]:
    """The (start, end) spans of the elements of the JSON array starting at ``start`` and where the array ends (just
    past its ``]``); ``element_end(text, start)``, when given, finds where each element ends instead of the C
    scanner decoding it."""
    i = _skip_ws(text, start)
    if i >= len(text) or text[i] != "[":
        raise JsonShapeError("expected a JSON array")
    i = _skip_ws(text, i + 1)
    out: list[tuple[int, int]] = []
    if i < len(text) and text[i] == "]":
        return out, i + 1
    while True:
        if i >= len(text):
            raise JsonShapeError("expected a value")
        end = element_end(text, i) if element_end is not None else decoded_end(text, i)
        out.append((i, end))
        i = _skip_ws(text, end)
        if i < len(text) and text[i] == ",":
            i = _skip_ws(text, i + 1)
            continue
        if i < len(text) and text[i] == "]":
            return out, i + 1
        raise JsonShapeError("expected ',' or ']'")


def elements(text: str, start: int) -> list[tuple[int, int]]:
    """The (start, end) spans of the elements of the JSON array starting at ``start``."""
    return array_elements(text, start)[0]


def with_server_members(text: str, resource_type: str, resource_id: str, meta: dict[str, object]) -> str:
    """The resource text with ``resourceType``, ``id`` and ``meta`` first, set by the server, and every other member
    exactly as received (whitespace between members is dropped)."""
    kept = [
        text[m_start:v_end] for key, m_start, _v, v_end in members(text) if key not in ("resourceType", "id", "meta")
    ]
    head = (
        f'"resourceType":{orjson.dumps(resource_type).decode()},'
        f'"id":{orjson.dumps(resource_id).decode()},'
        f'"meta":{orjson.dumps(meta).decode()}'
    )
    return "{" + ",".join([head, *kept]) + "}"


def with_changed_members(text: str, before: dict[str, object], after: dict[str, object]) -> str:
    """The JSON text of ``after`` (a patched copy of the document ``text`` holds, parsed as ``before``): every member
    it left unchanged keeps its bytes from ``text`` (``135.50`` stays ``135.50``); changed and new members are
    written anew."""
    spans = {key: text[m_start:v_end] for key, m_start, _v, v_end in members(text)}
    parts = [
        spans[key] if key in spans and key in before and before[key] == value else
        f"{orjson.dumps(key).decode()}:{orjson.dumps(value).decode()}"
        for key, value in after.items()
    ]  # fmt: skip
    return "{" + ",".join(parts) + "}"


def rewrite_strings(text: str, change: Callable[[str], str]) -> str:
    """The JSON text with each string token (member names included) whose decoded value ``change`` alters
    re-encoded with the new value; every other byte — numbers as written (``135.50``), whitespace, member order,
    the escapes of untouched strings — stays as it was (RFC 8259 §7: a string token cannot hold a raw quote, so a
    token pattern over the text finds exactly the strings)."""

    def one(match: re.Match[str]) -> str:
        token = match.group(0)
        value: str = json.loads(token) if "\\" in token else token[1:-1]
        new = change(value)
        return token if new == value else orjson.dumps(new).decode()

    return _STRING_TOKEN.sub(one, text)


class DuplicateKeyError(ValueError):
    """An object names the same member twice: readers would disagree on which one counts."""


def _unique_members(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        for key, _value in pairs:
            if key in seen:
                raise DuplicateKeyError(f"the member {key!r} appears twice in one object")
            seen.add(key)
    return out


_STRING_OR_NAME = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"(\s*:)?')
"""Every string token of a JSON text, in order (a token cannot hold a raw quote, so the matches stay aligned with the
tokens); the group is ``:`` for a member name."""


_SPACED_NAME = re.compile(r'"[ \t\n\r]+:')


def _names_spelled(text: str) -> int:
    """How many member names a JSON text spells (the C regex engine counts them; nothing is decoded)."""
    groups = _STRING_OR_NAME.findall(text)
    return len(groups) - groups.count("")


def _quote_colons(text: str) -> int:
    return text.count('":')


def loads_document(text: str | bytes) -> object:
    """Parse a request body (RFC 8259) refusing duplicate member names (RFC 8259 §4 leaves their meaning to the reader:
    the access check, the store and every client must read the same document). ``orjson`` decides validity; a
    duplicate shows as orjson's re-serialization (each object's members once) spelling fewer member names than the
    text, whatever the spelling (``"id"`` and ``"\\u0069d"`` are one name); then the standard library's scanner, with a
    hook on every object, names it.

    Counting: in a text without a backslash every ``"`` is a real quote and orjson's output has the same strings byte
    for byte, so the C ``str.count`` of ``":`` (names, plus the strings that begin with ``:``, the same on both sides
    but in what a duplicate drops) compares exactly; with escapes, or a name spaced from its colon, the names are
    counted one by one by a regex."""
    document = orjson.loads(text)
    if isinstance(document, dict | list):
        source = text if isinstance(text, str) else text.decode("utf-8")
        count = _quote_colons if "\\" not in source and not _SPACED_NAME.search(source) else _names_spelled
        if count(source) != count(orjson.dumps(document).decode()):
            json.loads(source, object_pairs_hook=_unique_members)  # raises DuplicateKeyError naming the member
    return document
