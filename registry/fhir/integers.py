"""Whole numbers from request text (search ``_count``, paging positions, version ids) — bounded before conversion.

FHIR R4 datatypes §2.24.0.1 ``integer`` is a signed 32-bit value and ``positiveInt`` its positive part; the registry
also takes its own 64-bit keys (AuditEvent ids, paging positions) from text. Python's ``int()`` would accept Unicode
digits (``²`` passes ``str.isdigit`` and then fails) and thousands of digits (slow, then refused past 4300), and a
database refuses a number past 64 bits: so only ASCII digits, and at most 18 of them (below 2⁶³), are a number here.
"""

from __future__ import annotations

import re

_WHOLE = re.compile(r"[0-9]{1,18}")


def whole_number(text: str) -> int | None:
    """The value of ``text`` when it is a whole number the store can hold (ASCII digits, at most 18); else None."""
    return int(text) if _WHOLE.fullmatch(text) else None


MAX_INTEGER = 2**31 - 1
"""FHIR R4 ``integer``'s largest value; resource versions are numbered in it."""
