"""The definitions behind the CapabilityStatement's search parameters (FHIR R4 searchparameter.html;
capabilitystatement.html ``rest.resource.searchParam.definition``).

A parameter that means what R4's parameter of that code means, with R4's type, is declared with R4's canonical
(``http://hl7.org/fhir/SearchParameter/<id>``; R4 defines some once for several types: ``clinical-patient``,
``clinical-code``, ``individual-family``…). The others are the registry's own, published at
``/fhir/SearchParameter/{id}`` with the canonical ``https://hr-registry.org.cn/fhir/SearchParameter/{id}``:

- ``DiagnosticReport-imaging-study``: R4 has no parameter on ``DiagnosticReport.imagingStudy``;
- ``ImagingStudy-based-on``: R4 spells the code ``basedon`` (derived from it, same meaning);
- ``ConceptMap-url`` and ``ConceptMap-source-system``: R4's (``conformance-url``, ``ConceptMap-source-system``) are
  of type ``uri``; the registry matches these as tokens.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from catalog.codes import HR_CANONICAL_BASE
from registry.fhir.search_params import SEARCH_PARAMS, SearchParam

R4 = "http://hl7.org/fhir/SearchParameter"
CANONICAL = f"{HR_CANONICAL_BASE}/SearchParameter"

_CLINICAL = ("DiagnosticReport", "Observation", "ImagingStudy", "ServiceRequest", "Consent")
_R4_IDS: dict[tuple[str, str], str] = {
    **{(t, "patient"): "clinical-patient" for t in _CLINICAL},
    **{(t, "identifier"): "clinical-identifier" for t in _CLINICAL},
    **{(t, "code"): "clinical-code" for t in ("DiagnosticReport", "Observation", "ServiceRequest")},
    **{(t, "date"): "clinical-date" for t in ("DiagnosticReport", "Observation", "Consent")},
    ("Patient", "family"): "individual-family",
    ("Patient", "given"): "individual-given",
    ("Patient", "birthdate"): "individual-birthdate",
    ("Patient", "gender"): "individual-gender",
    ("Practitioner", "family"): "individual-family",
    ("ConceptMap", "identifier"): "conformance-identifier",
    ("ConceptMap", "status"): "conformance-status",
}
"""R4 ids that are not ``<Type>-<code>``."""

LOCAL: dict[tuple[str, str], tuple[str, str | None]] = {
    ("DiagnosticReport", "imaging-study"): ("The ImagingStudy the report is about (DiagnosticReport.imagingStudy)",
                                            None),
    ("ImagingStudy", "based-on"): ("The order the study was made for (R4's basedon, spelled like the other types' "
                                   "based-on)", f"{R4}/ImagingStudy-basedon"),
    ("ConceptMap", "url"): ("The canonical URL of the map, matched as a token (R4's conformance-url is a uri)", None),
    ("ConceptMap", "source-system"): ("A local code system the map translates (ConceptMap.group.source), matched as "
                                      "a token (R4's ConceptMap-source-system is a uri)", None),
}  # fmt: skip
"""The registry's own parameters: (description, the R4 parameter it is derived from)."""


def definition(rtype: str, param: SearchParam) -> str:
    """The canonical of the SearchParameter that defines ``param`` of ``rtype``."""
    if (rtype, param.name) in LOCAL:
        return f"{CANONICAL}/{rtype}-{param.name}"
    if param.name.startswith("_"):
        return f"{R4}/Resource-{param.name[1:]}"
    return f"{R4}/{_R4_IDS.get((rtype, param.name), f'{rtype}-{param.name}')}"


def _expression(rtype: str, param: SearchParam) -> str:
    return " | ".join(f"{rtype}.{path.replace('[x]', '')}" for path in param.paths)


def _pascal(text: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in text.split("-"))


def search_parameter(rtype: str, param: SearchParam, *, published: date) -> dict[str, Any]:
    """One of the registry's own parameters as an R4 SearchParameter."""
    sp_id = f"{rtype}-{param.name}"
    description, derived_from = LOCAL[(rtype, param.name)]
    resource: dict[str, Any] = {
        "resourceType": "SearchParameter",
        "id": sp_id,
        "url": f"{CANONICAL}/{sp_id}",
        "name": f"{rtype}{_pascal(param.name)}",
        "status": "active",
        "experimental": False,
        "date": published.isoformat(),
        "publisher": "HR Registry",
        "description": description,
        "code": param.name,
        "base": [rtype],
        "type": param.type.value,
        "expression": _expression(rtype, param),
        "xpathUsage": "normal",
    }
    if derived_from:
        resource["derivedFrom"] = derived_from
    if param.targets:
        resource["target"] = list(param.targets)
    return resource


def search_parameters(published: date) -> list[dict[str, Any]]:
    """Every parameter the registry defines itself (the ones named by its canonical in the statement)."""
    return [search_parameter(rtype, SEARCH_PARAMS[rtype][name], published=published) for rtype, name in LOCAL]
