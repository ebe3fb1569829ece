"""Validating incoming resources: structure with the fhir.resources R4B models (``registry.fhir.models``), then what
they do not check — codes bound *required* in FHIR R4 (status, gender, intent…), the id form, and the shape of
references.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from registry.fhir.extract import values_at
from registry.fhir.models import (
    ConceptMap,
    Consent,
    DiagnosticReport,
    Endpoint,
    ImagingStudy,
    Observation,
    Organization,
    Patient,
    Practitioner,
    ServiceRequest,
    Subscription,
)

RESOURCE_MODELS: dict[str, Any] = {
    "Patient": Patient,
    "Organization": Organization,
    "Practitioner": Practitioner,
    "Endpoint": Endpoint,
    "DiagnosticReport": DiagnosticReport,
    "Observation": Observation,
    "ImagingStudy": ImagingStudy,
    "ServiceRequest": ServiceRequest,
    "ConceptMap": ConceptMap,
    "Subscription": Subscription,
    "Consent": Consent,
}

ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
"""FHIR R4 ``id``: 1–64 of A–Z, a–z, 0–9, '-', '.'."""

_IDENTIFIER_USE = frozenset({"usual", "official", "temp", "secondary", "old"})
_NAME_USE = frozenset({"usual", "official", "temp", "nickname", "anonymous", "old", "maiden"})
_GENDER = frozenset({"male", "female", "other", "unknown"})

REQUIRED_BINDINGS: dict[str, tuple[tuple[str, frozenset[str]], ...]] = {
    "DiagnosticReport": (
        (
            "status",
            frozenset(
                {
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
                }
            ),
        ),
    ),
    "Observation": (
        (
            "status",
            frozenset(
                {
                    "registered",
                    "preliminary",
                    "final",
                    "amended",
                    "corrected",
                    "cancelled",
                    "entered-in-error",
                    "unknown",
                }
            ),
        ),
    ),
    "ImagingStudy": (("status", frozenset({"registered", "available", "cancelled", "entered-in-error", "unknown"})),),
    "ServiceRequest": (
        ("status", frozenset({"draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"})),
        (
            "intent",
            frozenset(
                {
                    "proposal",
                    "plan",
                    "directive",
                    "order",
                    "original-order",
                    "reflex-order",
                    "filler-order",
                    "instance-order",
                    "option",
                }
            ),
        ),
        ("priority", frozenset({"routine", "urgent", "asap", "stat"})),
    ),
    "Patient": (
        ("gender", _GENDER),
        ("link.type", frozenset({"replaced-by", "replaces", "refer", "seealso"})),
        ("name.use", _NAME_USE),
    ),
    "Practitioner": (("gender", _GENDER), ("name.use", _NAME_USE)),
    "Consent": (
        ("status", frozenset({"draft", "proposed", "active", "rejected", "inactive", "entered-in-error"})),
        ("provision.type", frozenset({"deny", "permit"})),
        ("provision.provision.type", frozenset({"deny", "permit"})),
    ),
    "Endpoint": (("status", frozenset({"active", "suspended", "error", "off", "entered-in-error", "test"})),),
    "Subscription": (
        ("status", frozenset({"requested", "active", "error", "off"})),
        ("channel.type", frozenset({"rest-hook", "websocket", "email", "sms", "message"})),
    ),
    "ConceptMap": (
        ("status", frozenset({"draft", "active", "retired", "unknown"})),
        (
            "group.element.target.equivalence",
            frozenset(
                {
                    "relatedto",
                    "equivalent",
                    "equal",
                    "wider",
                    "subsumes",
                    "narrower",
                    "specializes",
                    "inexact",
                    "unmatched",
                    "disjoint",
                }
            ),
        ),
    ),
}


@dataclass(frozen=True, slots=True)
class Issue:
    expression: str
    message: str

    def __str__(self) -> str:
        return f"{self.expression}: {self.message}" if self.expression else self.message


class ResourceInvalidError(ValueError):
    def __init__(self, resource_type: str, issues: list[Issue]) -> None:
        self.resource_type = resource_type
        self.issues = issues
        super().__init__("; ".join(str(i) for i in issues[:10]))


def _loc(resource_type: str, loc: tuple[Any, ...]) -> str:
    out = resource_type
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def validate(resource: Mapping[str, Any]) -> str:
    """Check ``resource``; return its type or raise :class:`ResourceInvalidError` listing every issue found."""
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str) or rtype not in RESOURCE_MODELS:
        supported = ", ".join(sorted(RESOURCE_MODELS))
        raise ResourceInvalidError(str(rtype), [Issue("resourceType", f"must be one of {supported}, got {rtype!r}")])
    issues: list[Issue] = []
    rid = resource.get("id")
    if rid is not None and (not isinstance(rid, str) or not ID_RE.match(rid)):
        issues.append(Issue(f"{rtype}.id", "must be 1–64 characters of A–Z, a–z, 0–9, '-' and '.'"))
    try:
        RESOURCE_MODELS[rtype].model_validate(resource)
    except ValidationError as exc:
        for err in exc.errors()[:50]:
            issues.append(Issue(_loc(rtype, tuple(err["loc"])), str(err["msg"])))
    for path, allowed in REQUIRED_BINDINGS.get(rtype, ()):
        for value in values_at(resource, path):
            if isinstance(value, str) and value not in allowed:
                issues.append(Issue(f"{rtype}.{path}", f"{value!r} is not in the required value set {sorted(allowed)}"))
    for value in values_at(resource, "identifier.use"):
        if isinstance(value, str) and value not in _IDENTIFIER_USE:
            issues.append(Issue(f"{rtype}.identifier.use", f"{value!r} is not an IdentifierUse"))
    if issues:
        raise ResourceInvalidError(rtype, issues)
    return rtype
