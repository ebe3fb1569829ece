"""What the registry checks on a pushed transaction Bundle, checked on the mapped message before the ACK, so that
``AA`` is answered only for a message the registry will take and the LIS hears ``AE`` while it can still act
(HL7 v2.5.1 §2.9.2). The registry's checks (docs/design.md §4; ``registry/fhir/validation.py`` and the ingest
service) and where each is made here:

- structure and value types of every resource: the fhir.resources R4B models the registry validates with (the
  same pinned version), then the required bindings it adds (status, gender) — here, on every entry (a resource
  of the shapes the mapping writes is proven valid element by element with the models' own primitive types,
  shapes.py; any other is validated with the models);
- one business identifier per resource in one Bundle (two entries of a type carrying the same identifier are a
  400): the same OBR-3 twice in a message (mapping.py, 205), the same MRN with two patients' data (205), and here
  as the last guard over every entry;
- at most ``REGISTRY_MAX_BUNDLE_ENTRIES`` (1,000 by default) entries, else 413 — here;
- no control characters in any string (the registry's PostgreSQL store refuses a NUL) — here and in values.py;
- dates and times (calendar, offsets, an ``instant`` with seconds and a zone): ``adapters.fhir.hl7_datetime`` and
  ``as_instant`` in the mapping;
- a Patient's national identifier (form, GB 11643 check digit, one person per Patient, never inside the MRN) and a
  Patient without one: patient.py;
- reference ranges (low not above high) and units: values.py, units.py.

What only the registry can know — whether it holds the patient an MRN-only message names, or the study an imaging
report names — is left to delivery, which waits for it (``outbox.wait_for_references_hours``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import orjson
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from adapters.errors import Hl7Error
from adapters.fhir import dumps
from adapters.hl7v2.shapes import proven

MAX_BUNDLE_ENTRIES = 1000
"""The registry's default ``REGISTRY_MAX_BUNDLE_ENTRIES``: a larger transaction is refused with 413."""

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_STATUS = {
    "DiagnosticReport": frozenset(
        [
            "registered",
            "partial",
            "preliminary",
            "final",
            "amended",
            "corrected",
            "appended",
            "cancelled",
            "entered-in-error",
            "unknown",
        ]
    ),
    "Observation": frozenset(
        ["registered", "preliminary", "final", "amended", "corrected", "cancelled", "entered-in-error", "unknown"]
    ),
}
_GENDER = frozenset({"male", "female", "other", "unknown"})

FIELDS: dict[str, dict[str, int]] = {
    "Patient": {"identifier": 3, "name": 5, "birthDate": 7, "gender": 8},
    "DiagnosticReport": {"basedOn": 2, "identifier": 3, "code": 4, "effectiveDateTime": 7, "issued": 22,
                         "category": 24, "status": 25},
    "Observation": {"code": 3, "identifier": 3, "valueQuantity": 5, "valueString": 5, "valueCodeableConcept": 5,
                    "valueRatio": 5, "valueRange": 5, "valueDateTime": 5, "valueTime": 5, "referenceRange": 7,
                    "interpretation": 8, "status": 11, "effectiveDateTime": 14},
}  # fmt: skip
"""The HL7 field a FHIR element comes from, to name it in the ERR (segment from the entry's origin)."""


def _strings(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, f"{path}.{key}" if path else key)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _strings(value, f"{path}[{i}]")


def _location(resource_type: str, path: str, origin: tuple[str, int]) -> tuple[str, int, int, int]:
    first = re.split(r"[.\[]", path, maxsplit=1)[0]
    return (origin[0], origin[1], FIELDS.get(resource_type, {}).get(first, 0), 0)


def _plain(resource: dict[str, Any]) -> Any:
    """The resource as the registry will read it (Decimals as JSON numbers)."""
    return orjson.loads(dumps(resource))


def check_bundle(bundle: dict[str, Any], origins: list[tuple[str, int]]) -> None:
    """Raise the ``Hl7Error`` the registry's refusal of this Bundle would come to; ``origins[i]`` is the segment
    (name, sequence) entry ``i`` was mapped from."""
    entries = bundle["entry"]
    if len(entries) > MAX_BUNDLE_ENTRIES:
        origin = origins[MAX_BUNDLE_ENTRIES]
        raise Hl7Error(
            f"the message becomes {len(entries)} FHIR resources; the registry takes at most {MAX_BUNDLE_ENTRIES} "
            "per transaction",
            error_code=207,
            location=(origin[0], origin[1], 0, 0),
            fix="send the results in smaller messages (one report each)",
        )
    claimed: dict[tuple[str, str, str], tuple[str, int]] = {}
    for entry, origin in zip(entries, origins, strict=True):
        resource = entry["resource"]
        rtype = resource["resourceType"]
        # proven: no control character and valid with the fhir.resources model (shapes.py), checked value by value;
        # anything else takes the full checks below, which name the problem
        valid = proven(resource)
        for path, text in () if valid else _strings(resource):
            if _CONTROL.search(text):
                raise Hl7Error(
                    f"{rtype}.{path} would hold a control character",
                    error_code=102,
                    location=_location(rtype, path, origin),
                    fix="send printable text only (HL7 escapes such as \\X0D\\ for line breaks)",
                )
        for ident in resource.get("identifier") or []:
            key = (rtype, str(ident.get("system")), str(ident.get("value")))
            other = claimed.setdefault(key, origin)
            if other != origin:
                raise Hl7Error(
                    f"{rtype} identifier {key[2]!r} comes from {other[0]} {other[1]} too: the registry takes one "
                    "resource per identifier in a message",
                    error_code=205,
                    location=(origin[0], origin[1], FIELDS.get(rtype, {}).get("identifier", 0), 0),
                    fix="give each result its own code or sub-id (OBX-4), each report its own number",
                )
        status = resource.get("status")
        if rtype in _STATUS and status not in _STATUS[rtype]:
            raise Hl7Error(f"status {status!r} is not a FHIR {rtype} status", error_code=103,
                           location=_location(rtype, "status", origin))  # fmt: skip
        if rtype == "Patient" and resource.get("gender", "unknown") not in _GENDER:
            raise Hl7Error("gender is not a FHIR AdministrativeGender", error_code=103,
                           location=_location(rtype, "gender", origin))  # fmt: skip
        if valid:
            continue
        try:
            get_fhir_model_class(rtype).model_validate(_plain(resource))
        except ValidationError as exc:
            err = exc.errors()[0]
            path = ".".join(str(p) for p in err["loc"])
            raise Hl7Error(
                f"{rtype}.{path}: {err['msg']} (the registry validates every resource as FHIR R4)",
                error_code=102,
                location=_location(rtype, path, origin),
            ) from None
