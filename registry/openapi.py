"""``/openapi.json`` that tells the truth (OpenAPI 3.1) and ``/docs`` that works offline.

FastAPI describes what it can see in the handlers' signatures; most handlers here read the raw request (FHIR JSON
kept byte for byte, forms, CDS Hooks bodies) and answer errors as OperationOutcomes through one handler, so the
generated document lacked request bodies, security and most statuses. ``openapi_document`` completes it from the
tables the server runs on:

- **security**: ``bearer`` (the registry's JWT, RFC 6750) and ``oauth2`` (client credentials at ``/auth/token``) on
  every route the access policy (``registry.services.policy.routes``) gates by token; none on the open ones;
- **request bodies**: FHIR resources and Bundles (``application/fhir+json``), Parameters for the operations, the CDS
  Hooks request and feedback, the token request's form, the qualification JSON;
- **responses**: the success statuses each interaction has (201 create, 204 delete, 304 conditional read, …) and the
  errors the server answers, each an OperationOutcome (``application/fhir+json``) — by gate (401/403/429 only where
  a token is checked), by surface (406 for FHIR content negotiation, 409/410/412/415/422 where something is
  written or decided), and everywhere 400 (malformed request), 413 (body limit, before any handler) and 503 (the
  database unreachable); the token endpoint's errors in the OAuth format (RFC 6749 §5.2); CSV as ``text/csv``.

``/docs`` is Swagger UI served from the installed package ``swagger-ui-bundle-v2`` (Swagger UI 5.31.0, Apache-2.0)
under ``/docs/assets``: no CDN, so it works on a hospital's closed network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.openapi.utils import get_openapi
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.staticfiles import StaticFiles

from registry.services import policy

FHIR_JSON = "application/fhir+json"
ERRORS = {
    400: "Bad request: malformed syntax, an invalid resource or parameter (OperationOutcome)",
    401: "No valid bearer token (OperationOutcome; WWW-Authenticate: Bearer)",
    403: "The access policy refuses this principal or target (OperationOutcome)",
    404: "No such resource, type, card or service (OperationOutcome)",
    406: "The media type asked for is not served (FHIR: application/fhir+json; DICOMweb: see the operation)",
    409: "Conflict: a version, an identifier held elsewhere, a decision already on file",
    410: "The resource was deleted",
    412: "A precondition failed (If-Match, a conditional reference, the patient not registered here)",
    413: "The body or the Bundle is over the limit",
    415: "The body is not application/fhir+json",
    422: "Valid but against the registry's rules (unknown patient, unresolvable reference, a required reason)",
    429: "Rate limited (Retry-After)",
    502: "DICOMweb: the hospital's PACS is unreachable, failed, or not configured for the registry (OperationOutcome)",
    503: "The database is unreachable; retry later (Retry-After)",
    504: "DICOMweb: the hospital's PACS did not answer within the configured time (OperationOutcome)",
}
_EVERYWHERE = (400, 413, 503)
_TOKEN = (401, 403, 404, 429)
_WRITES = (409, 410, 412, 415, 422)

_RESOURCE = {"$ref": "#/components/schemas/FhirResource"}
_OUTCOME = {"$ref": "#/components/schemas/OperationOutcome"}
_JSON_OBJECT = {"type": "object"}


def _fhir_body(description: str) -> dict[str, Any]:
    return {"required": True, "description": description,
            "content": {FHIR_JSON: {"schema": _RESOURCE}, "application/json": {"schema": _RESOURCE}}}  # fmt: skip


def _json_body(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "description": description, "content": {"application/json": {"schema": schema}}}


_TOKEN_FORM = {
    "type": "object",
    "required": ["grant_type"],
    "properties": {
        "grant_type": {"type": "string", "enum": ["client_credentials"]},
        "scope": {"type": "string"},
        "client_id": {"type": "string"},
        "client_secret": {"type": "string"},
        "client_assertion_type": {"type": "string", "enum": ["urn:ietf:params:oauth:client-assertion-type:jwt-bearer"]},
        "client_assertion": {"type": "string", "description": "private_key_jwt: a JWT signed RS384 or ES384"},
    },
}
REQUEST_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/fhir"): _fhir_body("a transaction or batch Bundle"),
    ("POST", "/fhir/{rtype}"): _fhir_body("the resource to create"),
    ("PUT", "/fhir/{rtype}"): _fhir_body("the resource (conditional update: the query names it)"),
    ("PUT", "/fhir/{rtype}/{rid}"): _fhir_body("the resource, with its id"),
    ("PATCH", "/fhir/{rtype}/{rid}"): {
        "required": True, "description": "a JSON Patch (RFC 6902) or a FHIRPath Patch (Parameters)",
        "content": {"application/json-patch+json": {"schema": {"type": "array", "items": {"type": "object"}}},
                    FHIR_JSON: {"schema": _RESOURCE}},
    },
    ("POST", "/fhir/ServiceRequest/$recognition-check"): _fhir_body("Parameters: patientIdentifier | patient, order*"),
    ("POST", "/fhir/ServiceRequest/$recognition-decision"): _fhir_body("Parameters: card, outcome, reason, comment"),
    ("POST", "/fhir/{rtype}/_search"): {
        "required": True, "description": "search parameters as a form",
        "content": {"application/x-www-form-urlencoded": {"schema": {"type": "object",
                                                                     "additionalProperties": {"type": "string"}}}},
    },
    ("POST", "/auth/token"): {"required": True,
                              "content": {"application/x-www-form-urlencoded": {"schema": _TOKEN_FORM}}},
    ("POST", "/cds-services/{service_id}"): _json_body("a CDS Hooks 2.0 request", {
        "type": "object", "required": ["hook", "hookInstance", "context"],
        "properties": {"hook": {"type": "string"}, "hookInstance": {"type": "string"}, "fhirServer": {"type": "string"},
                       "context": _JSON_OBJECT, "prefetch": _JSON_OBJECT}}),
    ("POST", "/cds-services/{service_id}/feedback"): _json_body("CDS Hooks 2.0 feedback", {
        "type": "object", "required": ["feedback"],
        "properties": {"feedback": {"type": "array", "items": {
            "type": "object", "required": ["card", "outcome"],
            "properties": {"card": {"type": "string"},
                           "outcome": {"type": "string", "enum": ["accepted", "overridden"]},
                           "overrideReason": _JSON_OBJECT, "acceptedSuggestions": {"type": "array"},
                           "outcomeTimestamp": {"type": "string"}}}}}}),
    ("POST", "/admin/qualifications"): _json_body("a qualification", {
        "type": "object", "required": ["org", "scope", "valid_from"],
        "properties": {"org": {"type": "string"}, "item": {"type": "string"}, "group": {"type": "string"},
                       "scope": {"type": "string"}, "valid_from": {"type": "string", "format": "date"},
                       "valid_to": {"type": "string", "format": "date"}, "note": {"type": "string"}}}),
}  # fmt: skip

SUCCESS: dict[tuple[str, str], dict[int, str]] = {
    ("POST", "/fhir/{rtype}"): {201: "created", 200: "the existing match of If-None-Exist"},
    ("PUT", "/fhir/{rtype}"): {200: "updated (or unchanged)", 201: "created"},
    ("PUT", "/fhir/{rtype}/{rid}"): {200: "updated (or unchanged)", 201: "created with the client's id"},
    ("DELETE", "/fhir/{rtype}/{rid}"): {204: "deleted"},
    ("GET", "/fhir/{rtype}/{rid}"): {200: "the resource", 304: "not modified (If-None-Match)"},
    ("GET", "/fhir/metadata"): {200: "the CapabilityStatement", 304: "not modified (If-None-Match)"},
    ("GET", "/fhir/CodeSystem/{resource_id}"): {200: "the CodeSystem", 304: "not modified (If-None-Match)"},
    ("POST", "/admin/qualifications"): {201: "added"},
}
CSV = {("GET", "/stats/api/export.csv")}


def _schemas() -> dict[str, Any]:
    issue = {"type": "object", "required": ["severity", "code"],
             "properties": {"severity": {"type": "string"}, "code": {"type": "string"},
                            "diagnostics": {"type": "string"}, "expression": {"type": "array"}}}  # fmt: skip
    return {
        "FhirResource": {"type": "object", "required": ["resourceType"], "description": "a FHIR R4 resource",
                         "properties": {"resourceType": {"type": "string"}}},
        "OperationOutcome": {"type": "object", "required": ["resourceType", "issue"],
                             "properties": {"resourceType": {"const": "OperationOutcome"},
                                            "issue": {"type": "array", "minItems": 1, "items": issue}}},
        "OAuthError": {"type": "object", "required": ["error"],
                       "properties": {"error": {"type": "string"}, "error_description": {"type": "string"}}},
    }  # fmt: skip


def _errors(method: str, path: str, rule: policy.Route | None) -> list[int]:
    codes = set(_EVERYWHERE)
    token = rule is not None and rule.gate is policy.Gate.TOKEN
    if token:
        codes |= set(_TOKEN)
    if path.startswith("/fhir"):
        codes |= {404, 406}
    if token and (
        method in ("POST", "PUT", "PATCH", "DELETE") or path.startswith(("/fhir/{rtype}/{rid}", "/fhir/AuditEvent"))
    ):
        codes |= set(_WRITES)
    if path.startswith(("/cds-services/", "/fhir/CodeSystem")):
        codes.add(404)
    if path.startswith("/dicomweb"):
        codes |= {404, 406, 502, 504}
    return sorted(codes)


def _dicomweb_success(path: str) -> dict[str, Any]:
    """The DICOMweb answers by resource (PS3.18): rendered images, DICOM JSON, multipart DICOM."""
    if path.endswith(("/rendered", "/thumbnail")):
        content: dict[str, Any] = {"image/jpeg": {}, "image/png": {}}
    elif path.endswith(("/metadata", "/series", "/instances")) or path == "/dicomweb/studies":
        content = {"application/dicom+json": {"schema": {"type": "array", "items": {"type": "object"}}}}
    else:
        content = {'multipart/related; type="application/dicom"': {}}
    return {"description": "OK", "content": content}


def _complete(method: str, path: str, op: dict[str, Any]) -> None:
    rule = policy.route_for(method.upper(), path)
    key = (method.upper(), path)
    if rule is not None and rule.gate is policy.Gate.TOKEN:
        op["security"] = [{"bearer": []}, {"oauth2": []}]
    else:
        op["security"] = []
    if key in REQUEST_BODIES:
        op["requestBody"] = REQUEST_BODIES[key]
    responses: dict[str, Any] = {}
    for code, what in SUCCESS.get(key, {200: "OK"}).items():
        if key in CSV:
            responses[str(code)] = {"description": what, "content": {"text/csv": {"schema": {"type": "string"}}}}
        elif code in (204, 304):
            responses[str(code)] = {"description": what}
        elif path.startswith("/fhir"):
            responses[str(code)] = {"description": what, "content": {FHIR_JSON: {"schema": _RESOURCE}}}
        elif path.startswith("/dicomweb"):
            responses[str(code)] = _dicomweb_success(path)
        else:
            responses[str(code)] = op.get("responses", {}).get(str(code)) or {"description": what}
    for code in _errors(method.upper(), path, rule):
        if path == "/auth/token" and code in (400, 401, 429):
            content = {"application/json": {"schema": {"$ref": "#/components/schemas/OAuthError"}}}
        else:
            content = {FHIR_JSON: {"schema": _OUTCOME}}
        responses[str(code)] = {"description": ERRORS[code], "content": content}
    if path == "/auth/token":
        responses["401"] = {"description": "invalid_client (OAuth 2.0)", "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/OAuthError"}}}}  # fmt: skip
    op["responses"] = responses


def openapi_document(app: FastAPI) -> dict[str, Any]:
    schema = get_openapi(title=app.title, version=app.version, summary=app.summary, description=app.description,
                         routes=app.routes)  # fmt: skip
    for path, ops in schema.get("paths", {}).items():
        for method, op in ops.items():
            _complete(method, path, op)
    components = schema.setdefault("components", {})
    components["schemas"] = {**_schemas()}
    components["securitySchemes"] = {
        "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                   "description": "an access token from /auth/token"},
        "oauth2": {"type": "oauth2", "flows": {"clientCredentials": {"tokenUrl": "/auth/token", "scopes": {}}}},
    }  # fmt: skip
    return schema


def install(app: FastAPI) -> None:
    """The completed document at ``/openapi.json`` and Swagger UI from the package at ``/docs``."""
    from swagger_ui_bundle import swagger_ui_path

    def document() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = openapi_document(app)
        return app.openapi_schema

    app.openapi = document  # type: ignore[method-assign]
    app.mount("/docs/assets", StaticFiles(directory=Path(swagger_ui_path)), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    def docs(_request: Request) -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json", title=f"{app.title} — API", swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css", swagger_favicon_url="/docs/assets/favicon-32x32.png",
            oauth2_redirect_url="/docs/oauth2-redirect",
        )  # fmt: skip

    @app.get("/docs/oauth2-redirect", include_in_schema=False)
    def oauth2_redirect(_request: Request) -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()
