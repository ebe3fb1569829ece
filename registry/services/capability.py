"""The CapabilityStatement (FHIR R4 §CapabilityStatement): exactly what this server supports, built from the same
tables the server runs on (search parameters, includes, sort keys, operations), so it cannot drift from the code.

Every ``definition`` resolves: R4's own canonicals for R4's search parameters, and the registry's canonicals
(``https://hr-registry.org.cn/fhir/…``) for its own search parameters and operations, which every registry serves
at ``[base]/SearchParameter/{id}`` and ``[base]/OperationDefinition/{id}`` (:func:`conformance_resources`). The
operations are all invoked on a type, so they are declared at it (``rest.resource[].operation``); ``rest.operation``
holds system-level ones, of which there are none.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from registry.fhir.models import FHIR_VERSION
from registry.fhir.search_params import INCLUDES, REVINCLUDES, SEARCH_PARAMS, SORTABLE, ParamType
from registry.services.audit import CLIENT_ID_SYSTEM
from registry.services.audit import SEARCH_PARAMETERS as AUDIT_SEARCH_PARAMETERS
from registry.services.operation_definitions import operation_definitions
from registry.services.search_parameter_definitions import R4, definition, search_parameters

SOFTWARE_VERSION = "0.1.0"
HR = "https://hr-registry.org.cn/fhir"

_INTERACTIONS = ["read", "vread", "update", "patch", "delete", "history-instance", "create", "search-type"]
_AUDIT_TYPES = {"date": "date", "agent": "reference", "patient": "reference", "action": "token", "outcome": "token",
                "entity-type": "token"}  # fmt: skip


def _search_params(rtype: str) -> list[dict[str, Any]]:
    out = []
    for p in SEARCH_PARAMS[rtype].values():
        entry: dict[str, Any] = {"name": p.name, "definition": definition(rtype, p), "type": p.type.value}
        if p.documentation:
            entry["documentation"] = p.documentation
        out.append(entry)
    return out


def _operations(rtype: str, operations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"name": op["code"], "definition": op["url"], "documentation": op["description"]}
        for op in operations
        if (op["type"] or op["instance"]) and rtype in op["resource"]
    ]


_READ_ONLY = {"Consent": ["read", "vread", "history-instance", "search-type"]}
"""Types the REST API only reads: a patient's Consent is recorded by the patient through the portal (policy.consent)."""


def _resource(rtype: str, operations: list[dict[str, Any]]) -> dict[str, Any]:
    references = [p.name for p in SEARCH_PARAMS[rtype].values() if p.type is ParamType.REFERENCE]
    resource: dict[str, Any] = {
        "type": rtype,
        "interaction": [{"code": code} for code in _READ_ONLY.get(rtype, _INTERACTIONS)],
        "versioning": "versioned-update",
        "readHistory": True,
        "updateCreate": True,
        "conditionalCreate": True,
        "conditionalRead": "not-match",
        "conditionalUpdate": True,
        "conditionalDelete": "not-supported",
        "referencePolicy": ["literal", "logical", "resolves", "local"],
        "searchInclude": sorted(f"{rtype}:{p}" for p in INCLUDES.get(rtype, ())),
        "searchRevInclude": sorted(REVINCLUDES.get(rtype, ())),
        "searchParam": _search_params(rtype),
    }
    declared = _operations(rtype, operations)
    if declared:
        resource["operation"] = declared
    doc = f"Sort keys: {', '.join(sorted(SORTABLE[rtype]))}."
    if references:
        doc += f" One level of chaining on {', '.join(references)} (e.g. {references[0]}.identifier)."
    if rtype in _READ_ONLY:
        for key in ("updateCreate", "conditionalCreate", "conditionalUpdate"):
            resource[key] = False
        doc += (
            " The patient's sharing consent (scope patient-privacy): read by the patient and admins; recorded by "
            "the patient through the portal, never over this API."
        )
    resource["documentation"] = doc
    return resource


def conformance_resources(published: date) -> dict[tuple[str, str], dict[str, Any]]:
    """(type, id) → the OperationDefinitions and SearchParameters the statement names by the registry's canonical."""
    found = [*operation_definitions(published), *search_parameters(published)]
    return {(r["resourceType"], r["id"]): r for r in found}


OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
SECURITY_SERVICE = "http://terminology.hl7.org/CodeSystem/restful-security-service"


def security(fhir_base_url: str, token_url: str, *, cors: bool = False) -> dict[str, Any]:
    """``rest.security``: the ``SMART-on-FHIR`` service coding (R4 ``restful-security-service``) and the SMART
    ``oauth-uris`` extension with the token URL, which clients written for SMART 1 still read (fhir-kit-client's
    ``smartAuthMetadata``, fhirclient; SMART 2.x calls the mechanism deprecated in favour of
    ``[base]/.well-known/smart-configuration``). The extension's ``authorize`` is left out: the registry offers the
    client-credentials grant only and has no authorization endpoint to name. ``cors``: whether browser apps of some
    origins are let in (``REGISTRY_CORS_ORIGINS``)."""
    return {
        "cors": cors,
        "extension": [{"url": OAUTH_URIS, "extension": [{"url": "token", "valueUri": token_url}]}],
        "service": [
            {
                "coding": [{"system": SECURITY_SERVICE, "code": "SMART-on-FHIR"}],
                "text": "OAuth2 using SMART-on-FHIR profile (client credentials: client secret or private_key_jwt)",
            }
        ],
        "description": "SMART-style scopes (system/, user/, patient/); tokens from /auth/token (client secret, or a "
        f"private_key_jwt assertion signed RS384/ES384); see {fhir_base_url}/.well-known/smart-configuration. "
        "Hospitals and clinicians read patients of their care context (a local identity at their hospital); outside "
        "it only break-glass: the request label Category: http://terminology.hl7.org/CodeSystem/v3-ActReason#BTG "
        "with a reason in X-Break-Glass-Reason, audited. Hospitals write identifiers only in their own declared "
        "namespaces.",
    }


def capability_statement(fhir_base_url: str, *, published: date, token_url: str, cors: bool = False) -> dict[str, Any]:
    types = sorted(SEARCH_PARAMS)
    operations = operation_definitions(published)
    system_operations = [
        {"name": op["code"], "definition": op["url"], "documentation": op["description"]}
        for op in operations
        if op["system"]
    ]
    return {
        "resourceType": "CapabilityStatement",
        "id": "hr-registry",
        "url": f"{fhir_base_url}/metadata",
        "name": "HRRegistry",
        "title": "HR Registry — cross-hospital result mutual-recognition registry (检查检验结果互认)",
        "status": "active",
        "date": published.isoformat(),
        "publisher": "HR Registry",
        "kind": "instance",
        "software": {"name": "hr-registry", "version": SOFTWARE_VERSION},
        "implementation": {"description": "HR Registry FHIR R4 endpoint", "url": fhir_base_url},
        "fhirVersion": FHIR_VERSION,
        "format": ["json"],
        "patchFormat": ["application/json-patch+json", "application/fhir+json"],
        "rest": [
            {
                "mode": "server",
                "documentation": "Every interaction needs a bearer token (OAuth 2.0 client credentials at "
                "/auth/token) except this statement, the catalog CodeSystems, the OperationDefinitions and "
                "SearchParameters it names, and the SMART configuration. National identifiers are matched "
                "through a keyed hash and never stored; a Patient must carry one.",
                "security": security(fhir_base_url, token_url, cors=cors),
                "resource": [
                    *(_resource(t, operations) for t in types),
                    {
                        "type": "CodeSystem",
                        "interaction": [{"code": "read"}],
                        "documentation": "recognized-items and nonrecognition-reasons; public",
                    },
                    {
                        "type": "OperationDefinition",
                        "interaction": [{"code": "read"}],
                        "documentation": "the registry's operations; public",
                    },
                    {
                        "type": "SearchParameter",
                        "interaction": [{"code": "read"}],
                        "documentation": "the registry's own search parameters; public",
                    },
                    {
                        "type": "AuditEvent",
                        "interaction": [{"code": "read"}, {"code": "search-type"}],
                        "documentation": "admins (everything) and patients (who accessed their records); agent: "
                        "Organization/<id>, agent:identifier=" + CLIENT_ID_SYSTEM + "|<client id>, or a bare "
                        "client id",
                        "searchParam": [
                            {"name": n, "definition": f"{R4}/AuditEvent-{n}", "type": _AUDIT_TYPES[n]}
                            for n in AUDIT_SEARCH_PARAMETERS
                        ],
                    },
                ],
                "interaction": [{"code": "transaction"}, {"code": "batch"}],
                **({"operation": system_operations} if system_operations else {}),
            }
        ],
    }
