"""The CapabilityStatement (FHIR R4 §CapabilityStatement): exactly what this server supports, built from the same
tables the server runs on (search parameters, includes, sort keys), so it cannot drift from the code."""

from __future__ import annotations

from datetime import date
from typing import Any

from registry.fhir.models import FHIR_VERSION
from registry.fhir.search_params import INCLUDES, REVINCLUDES, SEARCH_PARAMS, SORTABLE, ParamType

SOFTWARE_VERSION = "0.1.0"
HR = "https://hr-registry.org.cn/fhir"

_STANDARD_SP = "http://hl7.org/fhir/SearchParameter"
_CUSTOM = {("DiagnosticReport", "imaging-study")}
_INTERACTIONS = ["read", "vread", "update", "patch", "delete", "history-instance", "create", "search-type"]


def _search_params(rtype: str) -> list[dict[str, Any]]:
    out = []
    for p in SEARCH_PARAMS[rtype].values():
        definition = (
            f"{HR}/SearchParameter/{rtype}-{p.name}"
            if (rtype, p.name) in _CUSTOM
            else f"{_STANDARD_SP}/{'Resource' if p.name.startswith('_') else rtype}-{p.name.lstrip('_')}"
        )
        entry: dict[str, Any] = {"name": p.name, "definition": definition, "type": p.type.value}
        if p.documentation:
            entry["documentation"] = p.documentation
        out.append(entry)
    return out


def _resource(rtype: str) -> dict[str, Any]:
    references = [p.name for p in SEARCH_PARAMS[rtype].values() if p.type is ParamType.REFERENCE]
    resource: dict[str, Any] = {
        "type": rtype,
        "interaction": [{"code": code} for code in _INTERACTIONS],
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
    doc = f"Sort keys: {', '.join(sorted(SORTABLE[rtype]))}."
    if references:
        doc += f" One level of chaining on {', '.join(references)} (e.g. {references[0]}.identifier)."
    resource["documentation"] = doc
    return resource


OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
SECURITY_SERVICE = "http://terminology.hl7.org/CodeSystem/restful-security-service"


def security(fhir_base_url: str, token_url: str) -> dict[str, Any]:
    """``rest.security``: the ``SMART-on-FHIR`` service coding (R4 ``restful-security-service``) and the SMART
    ``oauth-uris`` extension with the token URL, which clients written for SMART 1 still read (fhir-kit-client's
    ``smartAuthMetadata``, fhirclient; SMART 2.x calls the mechanism deprecated in favour of
    ``[base]/.well-known/smart-configuration``). The extension's ``authorize`` is left out: the registry offers the
    client-credentials grant only and has no authorization endpoint to name."""
    return {
        "cors": False,
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


def capability_statement(fhir_base_url: str, *, published: date, token_url: str) -> dict[str, Any]:
    types = sorted(SEARCH_PARAMS)
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
                "/auth/token) except this statement and the catalog CodeSystems. National identifiers are matched "
                "through a keyed hash and never stored; a Patient must carry one.",
                "security": security(fhir_base_url, token_url),
                "resource": [
                    *(_resource(t) for t in types),
                    {
                        "type": "CodeSystem",
                        "interaction": [{"code": "read"}],
                        "documentation": "recognized-items and nonrecognition-reasons; public",
                    },
                    {
                        "type": "AuditEvent",
                        "interaction": [{"code": "read"}, {"code": "search-type"}],
                        "documentation": "admins only; search by date, agent, patient, action, outcome, entity-type",
                        "searchParam": [
                            {"name": n, "type": t}
                            for n, t in (
                                ("date", "date"),
                                ("agent", "token"),
                                ("patient", "reference"),
                                ("action", "token"),
                                ("outcome", "token"),
                                ("entity-type", "token"),
                            )
                        ],
                    },
                ],
                "interaction": [{"code": "transaction"}, {"code": "batch"}],
                "operation": [
                    {
                        "name": "recognition-check",
                        "definition": f"{HR}/OperationDefinition/ServiceRequest-recognition-check",
                        "documentation": "POST /fhir/ServiceRequest/$recognition-check: Parameters patientIdentifier"
                        " | patient, order (ServiceRequest)* → per order: item, status, candidates, card",
                    },
                    {
                        "name": "recognition-decision",
                        "definition": f"{HR}/OperationDefinition/ServiceRequest-recognition-decision",
                        "documentation": "POST /fhir/ServiceRequest/$recognition-decision: card, outcome "
                        "(recognized | declined), reason (Coding), comment",
                    },
                    {
                        "name": "ihe-pix",
                        "definition": "https://profiles.ihe.net/ITI/PIXm/OperationDefinition/IHE.PIXm.pix",
                        "documentation": "GET /fhir/Patient/$ihe-pix?sourceIdentifier=system|value{&targetSystem=…}",
                    },
                ],
            }
        ],
    }
