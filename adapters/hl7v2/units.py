"""OBX-6 units → UCUM codes (HL7 v2.5.1 §7.4.2.6; The Unified Code for Units of Measure, c/s forms, §1–§4).

Any valid UCUM expression is taken as it is written (``mg/g``, ``{INR}``, ``g/(24.h)``, ``mg/L{FEU}``, ``[pH]``,
``mmol/mol``, ``mU/L``…): the grammar is ucumvert's, generated from the official ``ucum-essence.xml``. Before
that, the spellings LIS write that are not UCUM are normalized — ``μ``/``µ`` → ``u``, ``×10^9`` → ``10*9``, white
space removed — and :data:`SYNONYMS` maps the rest (``个/uL``, ``秒``, ``IU/L``, ``mEq/L``, ``S/CO``…).

A unit written in capitals only (``MG/DL``, ``U/L``, ``FL``) is looked up in :data:`SYNONYMS` first: UCUM is case
sensitive, and such a spelling is often valid UCUM that means something else (``MG/L`` is megagauss per litre, ``FL``
farad-litre). Without a synonym it is taken as UCUM when valid (``[IU]/L``, ``{INR}``).
"""

from __future__ import annotations

import re
import threading
from functools import lru_cache
from typing import Any

from adapters.hl7v2.message import CE

SYNONYMS = {
    # not UCUM at all
    "个/ul": "/uL",
    "cells/ul": "/uL",
    "秒": "s",
    "sec": "s",
    "hr": "h",
    "iu/l": "[IU]/L",
    "iu/ml": "[IU]/mL",
    "iu": "[IU]",
    "miu/l": "m[IU]/L",
    "miu/ml": "m[IU]/mL",
    "uiu/ml": "u[IU]/mL",
    "meq/l": "meq/L",
    "mm/hr": "mm/h",
    "/hp": "/[HPF]",
    "/hpf": "/[HPF]",
    "/lp": "/[LPF]",
    "/lpf": "/[LPF]",
    "mmhg": "mm[Hg]",
    "ml/min/1.73m2": "mL/min/{1.73_m2}",
    "ml/min/1.73m^2": "mL/min/{1.73_m2}",
    "ratio": "{ratio}",
    "coi": "{COI}",
    "s/co": "{s_co_ratio}",
    "au/ml": "[arb'U]/mL",
    "mosm/kgh2o": "mosm/kg",
    # capitals of common units (valid UCUM in lower case, another unit or nothing in capitals)
    "g/l": "g/L",
    "g/dl": "g/dL",
    "mg/l": "mg/L",
    "mg/dl": "mg/dL",
    "ug/l": "ug/L",
    "ug/dl": "ug/dL",
    "ug/ml": "ug/mL",
    "ng/ml": "ng/mL",
    "ng/l": "ng/L",
    "pg/ml": "pg/mL",
    "mol/l": "mol/L",
    "mmol/l": "mmol/L",
    "umol/l": "umol/L",
    "nmol/l": "nmol/L",
    "pmol/l": "pmol/L",
    "u/l": "U/L",
    "u/ml": "U/mL",
    "ku/l": "kU/L",
    "fl": "fL",
    "pg": "pg",
    "mm/h": "mm/h",
    "min": "min",
    "ml": "mL",
    "ml/min": "mL/min",
    "mg": "mg",
    "kg": "kg",
    "g": "g",
    "l": "L",
    "mosm/kg": "mosm/kg",
    "10*9/l": "10*9/L",
    "10*12/l": "10*12/L",
    "10*6/l": "10*6/L",
    "10*3/ul": "10*3/uL",
    "10*6/ul": "10*6/uL",
}
"""LIS spellings that are not UCUM (or not the UCUM they seem, in capitals) → UCUM; keys in lower case, after
:func:`normalized`."""

_lock = threading.Lock()


@lru_cache(maxsize=1)
def _parser() -> Any:
    from ucumvert import get_ucum_parser  # pint comes along: ~1 s, so only once and only when needed

    return get_ucum_parser()


def warm() -> None:
    """Load the UCUM grammar now (a listener does it at start, so the first message is not kept waiting)."""
    _parser()


@lru_cache(maxsize=4096)
def is_ucum(code: str) -> bool:
    """Whether ``code`` is a valid UCUM expression (case sensitive, c/s)."""
    from lark.exceptions import LarkError

    if not code or code != code.strip() or not code.isprintable():
        return False
    with _lock:
        try:
            _parser().parse(code)
        except LarkError:
            return False
    return True


def normalized(unit: str) -> str:
    """A LIS spelling with the usual non-UCUM characters replaced (case kept): ``×10^9/L`` → ``10*9/L``."""
    text = unit.strip().replace("μ", "u").replace("µ", "u").replace("×", "").replace("x10", "10")
    text = text.replace("X10", "10")
    return re.sub(r"10\s*(\^|E|e|\*\*)\s*", "10*", text).replace(" ", "")


def unescaped_power(code: str, text: str, system: str) -> str | None:
    """``×10^9/L`` as an LIS writes it with the ``^`` unescaped reads as OBX-6 code ``×10``, text ``9/L``: the unit
    it was, or None for any other OBX-6."""
    if system or not re.fullmatch(r"[×xX*]?10", code.strip()) or not re.match(r"^\d+\s*/", text.strip()):
        return None
    return f"{code.strip()}^{text.strip()}"


def _capitals(text: str) -> bool:
    letters = [c for c in text if c.isascii() and c.isalpha()]
    return len(letters) >= 2 and not any(c.islower() for c in letters)


def ucum(unit: str) -> str | None:
    """The UCUM code of a unit as an LIS writes it, or None when it is neither UCUM nor a known spelling."""
    text = unit.strip()
    if not text:
        return None
    norm = normalized(text)
    if not _capitals(text):
        for candidate in (norm, text):
            if is_ucum(candidate):
                return candidate
    synonym = SYNONYMS.get(norm.lower())
    if synonym is not None:
        return synonym
    for candidate in (norm, text):
        if is_ucum(candidate):
            return candidate
    return None


def of_obx(units: CE, *, numeric: bool) -> tuple[str, str | None, str | None]:
    """OBX-6 as (unit text, UCUM code or None, the problem to report or None); ``numeric`` for NM and SN values,
    whose unit must be known."""
    text = units.code or units.text
    if not text:
        return "", None, None
    spelled = unescaped_power(units.code, units.text, units.system)
    if spelled is not None:  # ×10^9/L sent with its ^ unescaped: one unit, not code ×10 and text 9/L
        return spelled, ucum(spelled), None
    if units.system.upper() == "UCUM" and units.code:
        if not is_ucum(units.code):
            return units.text or units.code, None, f"unit {units.code!r} is marked UCUM but is not a UCUM expression"
        return units.text or units.code, units.code, None
    code = ucum(units.code) or ucum(units.text)
    if code is None and numeric:
        return text, None, f"unit {text!r} is not a UCUM expression nor a known LIS spelling"
    return text, code, None
