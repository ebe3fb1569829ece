"""The patient identifiers and names a message carries, read straight from its bytes (HL7 v2.5 §3.4.2: PID-2,
-3, -4, -19 and -20 identifiers; PID-5, -6, -9 and NK1-2 names, their family, given and further given names), so
that even a message that cannot be parsed has them masked in every text written about it (adapters/masking.py,
docs/design.md §6)."""

from __future__ import annotations

import re

from adapters.hl7v2.header import Header
from adapters.masking import Secrets

_SEGMENTS = re.compile(r"\r\n|\r|\n")
_IDENTIFIER_FIELDS = (2, 3, 4, 19, 20)
_NAME_FIELDS = {"PID": (5, 6, 9), "NK1": (2,)}


def message_secrets(raw: bytes, header: Header | None, default_encoding: str) -> Secrets:
    codec = header.encoding if header is not None else default_encoding
    try:
        text = raw.decode(codec, "replace")
    except LookupError:
        text = raw.decode("latin-1")
    sep = header.field_sep if header is not None else "|"
    chars = header.encoding_chars if header is not None and len(header.encoding_chars) >= 4 else "^~\\&"
    component, repetition, subcomponent = chars[0], chars[1], chars[3]
    identifiers: list[str] = []
    names: list[str] = []
    for segment in _SEGMENTS.split(text):
        kind = segment[:3]
        if kind not in _NAME_FIELDS:
            continue
        fields = segment.split(sep)

        def field(n: int, fields: list[str] = fields) -> list[str]:
            return fields[n].split(repetition) if n < len(fields) else []

        if kind == "PID":
            identifiers += [r.split(component)[0].strip() for n in _IDENTIFIER_FIELDS for r in field(n)]
        for n in _NAME_FIELDS[kind]:
            for r in field(n):
                names += [p.strip() for c in r.split(component)[:3] for p in c.split(subcomponent)]
    return Secrets(identifiers, names)
