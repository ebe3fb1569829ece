"""OBX-5 values and OBX-7 reference ranges as FHIR R4 Observation elements (HL7 v2.5.1 §7.4.2.2, §7.4.2.5, §7.4.2.7;
data types §2.A: NM, SN, ST/TX/FT, CE/CWE/CNE, DT/DTM/TS, TM).

Numbers are ``Decimal`` so ``4.60`` stays ``4.60`` on the wire; a number the registry would refuse or misread (more
digits than a FHIR decimal is meant to carry, an exponent) is a value problem, as is any text with control
characters (HL7 v2.5.1 §2.A.74: ST holds printable characters).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from adapters.fhir import INTERPRETATION, UCUM, hl7_datetime
from adapters.hl7v2 import tables
from adapters.hl7v2.message import CE, ObxData

_NUMBER = re.compile(r"^\s*[+-]?(\d+\.?\d*|\.\d+)\s*$")
_NUM = r"[+-]?(?:\d+\.?\d*|\.\d+)"
_RANGE = re.compile(rf"^\s*({_NUM})\s*(?:-|–|～|~|—)\s*({_NUM})\s*$")
_BOUND = re.compile(rf"^\s*(<=|>=|<|>|≤|≥)\s*({_NUM})\s*$")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
MAX_DIGITS = 18
"""Significant digits a FHIR decimal is meant to carry (FHIR R4 datatypes.html#decimal: at least 18 digits)."""

VALUE_TYPES = ("NM", "SN", "ST", "TX", "FT", "CE", "CWE", "CNE", "DT", "DTM", "TS", "TM")


class ValueProblemError(Exception):
    """OBX-5 does not fit its OBX-2 value type (the caller knows the segment)."""


def check_text(text: str) -> str:
    """``text`` if it holds no control character (which HL7 ST/TX/FT exclude and the registry's database refuses)."""
    if _CONTROL.search(text):
        raise ValueProblemError("the value holds a control character (HL7 text types are printable characters)")
    return text


def decimal(text: str) -> Decimal:
    if not _NUMBER.match(text):
        raise ValueProblemError(f"{text!r} is not a number")
    try:
        value = Decimal(text.strip())
    except InvalidOperation:
        raise ValueProblemError(f"{text!r} is not a number") from None
    if not value.is_finite():
        raise ValueProblemError(f"{text!r} is not a finite number")
    if len(value.as_tuple().digits) > MAX_DIGITS:
        raise ValueProblemError(f"{text!r} has more than {MAX_DIGITS} digits")
    # Decimal('0.0000001') would print as 1E-7: keep the plain positional form the sender wrote
    return value if "E" not in str(value) else Decimal(format(value, "f"))


def quantity(value: Decimal, unit_text: str, unit_code: str | None) -> dict[str, Any]:
    q: dict[str, Any] = {"value": value}
    if unit_text:
        q["unit"] = unit_text
    if unit_code:
        q |= {"system": UCUM, "code": unit_code}
    return q


def value_of(
    obx: ObxData, unit_text: str, unit_code: str | None, tz: timezone, system_uri: Callable[[str], str]
) -> dict[str, Any]:
    """The ``value[x]`` of an OBX with a value; ``ValueProblemError`` when OBX-5 does not fit OBX-2."""
    vt = obx.value_type.upper()
    first = obx.values[0]
    for rep in obx.values:
        for part in rep:
            check_text(part)
    if vt == "NM":
        if len(obx.values) > 1 or len(first) > 1:
            raise ValueProblemError("an NM value has a single number")
        return {"valueQuantity": quantity(decimal(first[0]), unit_text, unit_code)}
    if vt == "SN":
        return _structured_numeric(first, unit_text, unit_code)
    if vt in ("ST", "TX", "FT"):
        return {"valueString": "\n".join("^".join(v) for v in obx.values)}
    if vt in ("CE", "CWE", "CNE"):
        parts = [*first, "", "", ""]
        ce = CE(parts[0].strip(), parts[1].strip(), parts[2].strip())
        concept: dict[str, Any] = {}
        if ce.code:
            if any(c.isspace() for c in ce.code):
                raise ValueProblemError(f"code {ce.code!r} holds white space (a FHIR code has none inside)")
            coding = {"system": system_uri(ce.system), "code": ce.code}
            if ce.text:
                coding["display"] = ce.text
            concept["coding"] = [coding]
        if ce.text:
            concept["text"] = ce.text
        if not concept:
            raise ValueProblemError("a coded value has neither code nor text")
        return {"valueCodeableConcept": concept}
    if vt in ("DT", "DTM", "TS"):
        try:
            when = hl7_datetime(first[0], tz)
        except ValueError:
            when = None
        if when is None:
            raise ValueProblemError(f"{first[0]!r} is not a date/time")
        return {"valueDateTime": when}
    if vt == "TM":
        m = re.match(r"^(\d{2})(\d{2})?(\d{2})?$", first[0])
        if not m or int(m.group(1)) > 23 or int(m.group(2) or 0) > 59 or int(m.group(3) or 0) > 59:
            raise ValueProblemError(f"{first[0]!r} is not a time (HHMM[SS])")
        return {"valueTime": f"{m.group(1)}:{m.group(2) or '00'}:{m.group(3) or '00'}"}
    raise ValueProblemError(f"value type {obx.value_type!r} is not supported ({', '.join(VALUE_TYPES)})")


def _structured_numeric(parts: list[str], unit_text: str, unit_code: str | None) -> dict[str, Any]:
    comparator, num1, sep, num2 = ([*parts, "", "", "", ""])[:4]
    comparator, sep = comparator.strip(), sep.strip()
    if comparator in ("<", "<=", ">", ">=") and num1 and not sep and not num2:
        q = quantity(decimal(num1), unit_text, unit_code)
        return {"valueQuantity": {"value": q.pop("value"), "comparator": comparator, **q}}
    if comparator in ("", "=") and num1 and not sep and not num2:
        return {"valueQuantity": quantity(decimal(num1), unit_text, unit_code)}
    if comparator in ("", "=") and sep in (":", "/") and num1 and num2:
        return {"valueRatio": {"numerator": {"value": decimal(num1)}, "denominator": {"value": decimal(num2)}}}
    if comparator in ("", "=") and sep == "-" and num1 and num2:
        return {
            "valueRange": {
                "low": quantity(decimal(num1), unit_text, unit_code),
                "high": quantity(decimal(num2), unit_text, unit_code),
            }
        }
    if comparator == "" and sep == "+" and num1 and not num2:
        decimal(num1)
        return {"valueString": f"{num1.strip()}+"}
    raise ValueProblemError(f"{'^'.join(parts)!r} is not a structured numeric (comparator^num^separator^num)")


def reference_range(text: str, unit_text: str, unit_code: str | None) -> dict[str, Any]:
    """OBX-7 as an Observation.referenceRange: low and high from ``a-b``, one side from ``<b`` / ``>a``, and always the
    text as sent. A range whose low is above its high is a value problem (the registry would show it as a band)."""
    check_text(text)
    out: dict[str, Any] = {}
    m = _RANGE.match(text)
    if m:
        low, high = decimal(m.group(1)), decimal(m.group(2))
        if low > high:
            raise ValueProblemError(f"reference range {text!r} has its low above its high")
        out["low"] = quantity(low, unit_text, unit_code)
        out["high"] = quantity(high, unit_text, unit_code)
    elif b := _BOUND.match(text):
        side = "high" if b.group(1) in ("<", "<=", "≤") else "low"
        out[side] = quantity(decimal(b.group(2)), unit_text, unit_code)
    out["text"] = text
    return out


def interpretations(flags: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    """OBX-8 abnormal flags (HL7 0078) as v3 ObservationInterpretation concepts, and the flags that are no code."""
    found: list[dict[str, Any]] = []
    unknown: list[str] = []
    for flag in flags:
        if flag.lower() == "null":
            continue
        code = tables.INTERPRETATIONS.get(flag.upper())
        if code is None:
            unknown.append(flag)
        else:
            found.append({"coding": [{"system": INTERPRETATION, "code": code}]})
    return found, unknown
