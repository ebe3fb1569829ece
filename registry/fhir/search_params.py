"""The search parameters the registry supports, per resource type (FHIR R4 search parameter registry names).

Each definition names its type and the element paths it indexes. Paths are dotted element names; ``x[x]`` is a
choice element (``effective[x]`` covers ``effectiveDateTime`` and ``effectivePeriod``). A ``targets`` restriction keeps
only references to those resource types (``patient`` is ``subject`` where the subject is a Patient).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType


class ParamType(StrEnum):
    TOKEN = "token"  # noqa: S105 - a FHIR search parameter type, not a secret
    STRING = "string"
    DATE = "date"
    REFERENCE = "reference"


@dataclass(frozen=True, slots=True)
class SearchParam:
    name: str
    type: ParamType
    paths: tuple[str, ...]
    targets: tuple[str, ...] = ()
    definition: str | None = None  # canonical URL of the SearchParameter, for the CapabilityStatement
    documentation: str | None = None


def _p(name: str, type_: ParamType, *paths: str, targets: tuple[str, ...] = (), doc: str | None = None) -> SearchParam:
    return SearchParam(name, type_, paths, targets, documentation=doc)


T, S, D, R = ParamType.TOKEN, ParamType.STRING, ParamType.DATE, ParamType.REFERENCE

# Parameters every type has; `_id` and `_lastUpdated` are answered from the resource table itself.
COMMON: tuple[SearchParam, ...] = (
    _p("_id", T, "id", doc="Logical id"),
    _p("_lastUpdated", D, "meta.lastUpdated", doc="When the registry last changed the resource"),
)

_BY_TYPE: dict[str, tuple[SearchParam, ...]] = {
    "Patient": (
        _p(
            "identifier",
            T,
            "identifier",
            doc="A patient identifier: a hospital MRN, or a national identifier "
            "(matched through its keyed hash; never stored in plaintext)",
        ),
        _p("name", S, "name", doc="Any part of a name (family, given, text)"),
        _p("family", S, "name.family"),
        _p("given", S, "name.given"),
        _p("birthdate", D, "birthDate"),
        _p("gender", T, "gender"),
        _p("organization", R, "managingOrganization", targets=("Organization",)),
    ),
    "Organization": (
        _p("identifier", T, "identifier"),
        _p("name", S, "name", "alias"),
        _p("type", T, "type"),
    ),
    "Practitioner": (
        _p("identifier", T, "identifier"),
        _p("name", S, "name"),
        _p("family", S, "name.family"),
    ),
    "Endpoint": (
        _p("identifier", T, "identifier"),
        _p("organization", R, "managingOrganization", targets=("Organization",)),
        _p("status", T, "status"),
        _p("connection-type", T, "connectionType"),
    ),
    "DiagnosticReport": (
        _p("patient", R, "subject", targets=("Patient",)),
        _p("subject", R, "subject"),
        _p("code", T, "code"),
        _p("category", T, "category"),
        _p("date", D, "effective[x]", doc="Clinically relevant time (effective[x])"),
        _p("issued", D, "issued"),
        _p("status", T, "status"),
        _p("identifier", T, "identifier"),
        _p("performer", R, "performer"),
        _p("based-on", R, "basedOn"),
        _p("result", R, "result", targets=("Observation",)),
        _p(
            "imaging-study",
            R,
            "imagingStudy",
            targets=("ImagingStudy",),
            doc="The ImagingStudy the report is about (DiagnosticReport.imagingStudy)",
        ),
    ),
    "Observation": (
        _p("patient", R, "subject", targets=("Patient",)),
        _p("subject", R, "subject"),
        _p("code", T, "code"),
        _p("date", D, "effective[x]"),
        _p("status", T, "status"),
        _p("category", T, "category"),
        _p("based-on", R, "basedOn"),
        _p("identifier", T, "identifier"),
        _p("performer", R, "performer"),
    ),
    "ImagingStudy": (
        _p("patient", R, "subject", targets=("Patient",)),
        _p("subject", R, "subject"),
        _p("identifier", T, "identifier", doc="StudyInstanceUID (urn:dicom:uid|urn:oid:…) or accession number"),
        _p("modality", T, "modality", "series.modality"),
        _p("started", D, "started"),
        _p("bodysite", T, "series.bodySite"),
        _p("status", T, "status"),
        _p("based-on", R, "basedOn"),
        _p("endpoint", R, "endpoint", "series.endpoint", targets=("Endpoint",)),
    ),
    "ConceptMap": (
        _p("url", T, "url"),
        _p("identifier", T, "identifier"),
        _p("status", T, "status"),
        _p("source-system", T, "group.source", doc="A local code system the map translates"),
    ),
    "Consent": (
        _p("patient", R, "patient", targets=("Patient",)),
        _p("status", T, "status"),
        _p("scope", T, "scope"),
        _p("category", T, "category"),
        _p("date", D, "dateTime"),
        _p("identifier", T, "identifier"),
    ),
    "ServiceRequest": (
        _p("patient", R, "subject", targets=("Patient",)),
        _p("subject", R, "subject"),
        _p("code", T, "code"),
        _p("status", T, "status"),
        _p("intent", T, "intent"),
        _p("identifier", T, "identifier"),
        _p("requester", R, "requester"),
        _p("authored", D, "authoredOn"),
    ),
    "Subscription": (
        _p("status", T, "status"),
        _p("type", T, "channel.type"),
        _p("payload", T, "channel.payload"),
        _p("criteria", S, "criteria"),
    ),
}

SEARCH_PARAMS: MappingProxyType[str, MappingProxyType[str, SearchParam]] = MappingProxyType(
    {rtype: MappingProxyType({p.name: p for p in (*COMMON, *params)}) for rtype, params in _BY_TYPE.items()}
)
"""Resource type → parameter name → definition."""

PATIENT_COMPARTMENT = frozenset({"DiagnosticReport", "Observation", "ImagingStudy", "ServiceRequest"})
"""Types whose rows carry the master patient key of their subject (docs/design.md §4, §7)."""

SORTABLE = MappingProxyType(
    {
        rtype: frozenset({"_id", "_lastUpdated", *(p.name for p in params.values() if p.type is ParamType.DATE)})
        for rtype, params in SEARCH_PARAMS.items()
    }
)

INCLUDES = MappingProxyType(
    {
        "DiagnosticReport": frozenset({"result", "performer", "imaging-study", "subject", "patient", "based-on"}),
        "Observation": frozenset({"patient", "subject", "performer"}),
        "ImagingStudy": frozenset({"patient", "subject", "endpoint"}),
        "ServiceRequest": frozenset({"patient", "subject"}),
        "Patient": frozenset({"organization"}),
        "Endpoint": frozenset({"organization"}),
    }
)
"""``_include`` supported, as ``<Type>:<reference parameter>``."""

_R4_TARGETS: dict[tuple[str, str], tuple[str, ...]] = {
    ("DiagnosticReport", "subject"): ("Patient",),
    ("DiagnosticReport", "performer"): ("Practitioner", "Organization"),
    ("DiagnosticReport", "based-on"): ("ServiceRequest",),
    ("Observation", "subject"): ("Patient",),
    ("Observation", "performer"): ("Practitioner", "Organization", "Patient"),
    ("Observation", "based-on"): ("ServiceRequest",),
    ("ImagingStudy", "subject"): ("Patient",),
    ("ImagingStudy", "based-on"): ("ServiceRequest",),
    ("ServiceRequest", "subject"): ("Patient",),
    ("ServiceRequest", "requester"): ("Practitioner", "Organization", "Patient"),
}
"""What the R4 definitions of the untyped reference parameters may point at, among the types this server holds."""


def _revincludes() -> dict[str, frozenset[str]]:
    out: dict[str, set[str]] = {}
    for source, params in SEARCH_PARAMS.items():
        for p in params.values():
            if p.type is ParamType.REFERENCE:
                for target in p.targets or _R4_TARGETS.get((source, p.name), ()):
                    out.setdefault(target, set()).add(f"{source}:{p.name}")
    return {t: frozenset(v) for t, v in out.items()}


REVINCLUDES = MappingProxyType(_revincludes())
"""``_revinclude`` supported, per target type, as ``<Source type>:<reference parameter>`` (FHIR R4 search.html
§3.1.1.5.4): every reference parameter of a held type that may point at the target."""
