"""National identifiers and names kept out of the adapter's log lines and operator output (docs/design.md §6).

What the adapter writes for people — log lines, file-drop quarantine reasons, ``hr-adapter hl7 import`` results,
``hr-adapter outbox status`` and ``show`` — carries no national identifier in clear and no patient name: a
message's own identifiers and names (read from its PID segments by :mod:`adapters.hl7v2.pid`) are masked wherever
they appear, and so is anything shaped like a resident ID number. The masked form is the registry's
(``110***********1234``; a shorter number keeps only its last 2 characters).
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Iterable
from typing import Any

from adapters.config import NATIONAL_ID_SYSTEMS

MASK = "*"
HIDDEN = "***"
_ID_SHAPED = re.compile(r"(?<!\d)(\d{17}[\dXx]|\d{15})(?![\dXx])")


def masked(value: str) -> str:
    """The display form of a national identifier: 3 + 4 characters of a resident ID number, else the last 2."""
    v = re.sub(r"\s+", "", value).upper()
    if len(v) >= 15:
        return v[:3] + MASK * (len(v) - 7) + v[-4:]
    return MASK * max(len(v) - 2, 1) + v[-2:]


def mask_id_shaped(text: str) -> str:
    return _ID_SHAPED.sub(lambda m: masked(m.group(1)), text)


def _word(value: str) -> str:
    """``value`` as a pattern; Latin letters and digits only where they stand as a word of their own ("Li" is
    masked, not the "li" of "limit")."""
    pattern = re.escape(value)
    if value[:1].isascii() and value[:1].isalnum():
        pattern = "(?<![0-9A-Za-z])" + pattern
    if value[-1:].isascii() and value[-1:].isalnum():
        pattern += "(?![0-9A-Za-z])"
    return pattern


class Secrets:
    """The identifiers and names of one message, masked in any text about it."""

    def __init__(self, identifiers: Iterable[str] = (), names: Iterable[str] = ()) -> None:
        pairs = {v: masked(v) for v in identifiers if len(v.strip()) >= 4}
        pairs |= {n: HIDDEN for n in names if n.strip() and (len(n.strip()) >= 2 or not n.isascii())}
        ordered = sorted(pairs, key=len, reverse=True)
        self._stand_in = {k.strip().upper(): pairs[k] for k in ordered}
        self._pattern = re.compile("|".join(_word(k.strip()) for k in ordered), re.IGNORECASE) if ordered else None

    def text(self, text: str) -> str:
        if self._pattern is not None:
            text = self._pattern.sub(lambda m: self._stand_in.get(m.group(0).upper(), HIDDEN), text)
        return mask_id_shaped(text)


def mask_document(node: Any) -> Any:
    """A copy of a FHIR document (a queued Bundle) with national identifiers masked and anything ID-shaped masked."""
    if isinstance(node, dict):
        out = {k: mask_document(v) for k, v in node.items()}
        if out.get("system") in NATIONAL_ID_SYSTEMS and isinstance(out.get("value"), str):
            out["value"] = masked(out["value"])
        return out
    if isinstance(node, list):
        return [mask_document(x) for x in node]
    if isinstance(node, str):
        return mask_id_shaped(node)
    return node


def safe_traceback(exc: BaseException) -> str:
    """The traceback of ``exc`` and its causes without their messages, which may quote a message's patient data."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    parts = []
    for e in reversed(chain):
        frames = "".join(traceback.format_tb(e.__traceback__))
        parts.append(f"Traceback (most recent call last):\n{frames}{type(e).__module__}.{type(e).__qualname__}")
    return "\n\nwhich led to:\n\n".join(parts)


class MaskingFilter(logging.Filter):
    """For the adapter's log handlers: anything ID-shaped masked in the message and its arguments, and tracebacks
    written without exception messages (a message's own names and identifiers are masked where its problems are put
    into words: adapters/hl7v2/processor.py)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        safe = mask_id_shaped(message)
        if safe != message:
            record.msg, record.args = safe, None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = safe_traceback(record.exc_info[1])
        return True
