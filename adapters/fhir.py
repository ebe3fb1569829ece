"""Small helpers shared by the HL7 and DICOM mappings: FHIR date/time forms, deterministic fullUrls, Bundle entries.

Bundles are plain dicts serialized with orjson; numbers are ``Decimal`` so ``5.20`` stays ``5.20`` on the wire (FHIR
decimals carry their precision in their representation).
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import orjson

from catalog.codes import HR_MARK

V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
DATA_ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
UCUM = "http://unitsofmeasure.org"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
SNOMED = "http://snomed.info/sct"
DICOM_UID = "urn:dicom:uid"


def full_url(system: str, value: str) -> str:
    """A fullUrl derived from a business identifier: the same report always gets the same one (golden-testable)."""
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{system}|{value}')}"


def put_entry(resource: dict[str, Any], system: str, value: str) -> dict[str, Any]:
    """A transaction entry that creates or updates the resource found by its business identifier (a repeat is
    harmless: unchanged content makes no new version in the registry)."""
    rtype = resource["resourceType"]
    return {
        "fullUrl": full_url(system, value),
        "resource": resource,
        "request": {"method": "PUT", "url": f"{rtype}?identifier={query_escape(system)}|{query_escape(value)}"},
    }


def query_escape(text: str) -> str:
    """A search value escaped (FHIR R4 search.html#escaping: \\ | $ ,) and URL-encoded where it would break the query
    string (&, #, space…)."""
    for ch in ("\\", "|", "$", ","):
        text = text.replace(ch, "\\" + ch)
    from urllib.parse import quote

    return quote(text, safe=":/\\$,-._~")


def merge_codings(first: list[dict[str, str]], more: list[dict[str, str]]) -> list[dict[str, str]]:
    """``first`` then the codings of ``more`` whose (system, code) is not already there."""
    seen = {(c.get("system"), c.get("code")) for c in first}
    out = list(first)
    for c in more:
        if (c.get("system"), c.get("code")) not in seen:
            seen.add((c.get("system"), c.get("code")))
            out.append(c)
    return out


def transaction(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def hr_tag(code: str) -> dict[str, Any]:
    display = "互认" if code.upper().endswith("HR") else None
    tag: dict[str, Any] = {"system": HR_MARK, "code": code}
    if display:
        tag["display"] = display
    return {"tag": [tag]}


_HL7_DTM = re.compile(r"^\d{4}(\d{2}(\d{2}(\d{2}(\d{2}(\d{2}(\.\d{1,4})?)?)?)?)?)?([+-]\d{4})?$")


def hl7_datetime(value: str, tz: timezone) -> str | None:
    """An HL7 DTM (``YYYY[MM[DD[HH[MM[SS[.S…]]]]]][+ZZZZ]``) as a FHIR dateTime, keeping its precision; a time
    without an offset is taken in the hospital's ``tz``. None for an empty value."""
    value = value.strip()
    if not value:
        return None
    if not _HL7_DTM.match(value):
        raise ValueError(f"{value!r} is not an HL7 date/time")
    offset = ""
    if len(value) > 5 and value[-5] in "+-":
        value, offset = value[:-5], value[-5:]
    date_part, time_part = value[:8], value[8:]
    if len(date_part) < 8 or not time_part:
        out = {4: f"{date_part[:4]}", 6: f"{date_part[:4]}-{date_part[4:6]}"}.get(
            len(date_part), f"{date_part[:4]}-{date_part[4:6]}-{date_part[6:8]}"
        )
        _check_date(out)
        return out
    hh, mm, ss = time_part[:2], time_part[2:4] or "00", time_part[4:6] or "00"
    fraction = time_part[6:] if len(time_part) > 6 else ""
    tz_text = f"{offset[:3]}:{offset[3:]}" if offset else _tz_text(tz)
    out = f"{date_part[:4]}-{date_part[4:6]}-{date_part[6:8]}T{hh}:{mm}:{ss}{fraction}{tz_text}"
    datetime.fromisoformat(out.replace("Z", "+00:00"))  # raises ValueError for 2025-02-30 and the like
    return out


def _check_date(text: str) -> None:
    parts = text.split("-")
    if len(parts) == 3:
        datetime.strptime(text, "%Y-%m-%d")  # noqa: DTZ007 - a calendar check, no time involved
    elif len(parts) == 2:
        datetime.strptime(text, "%Y-%m")  # noqa: DTZ007


def _tz_text(tz: timezone) -> str:
    off = tz.utcoffset(None)
    minutes = int(off.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    minutes = abs(minutes)
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def as_instant(date_time: str | None) -> str | None:
    """A dateTime usable as a FHIR ``instant`` (seconds and an offset required), else None."""
    if date_time and "T" in date_time and len(date_time) >= 25:
        return date_time
    return None


def dumps(document: Any, *, indent: bool = False) -> bytes:
    return orjson.dumps(document, default=_default, option=orjson.OPT_INDENT_2 if indent else 0)


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(str(value))
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
