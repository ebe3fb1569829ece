"""Which principals may call each route at all — the first gate of the one policy (docs/design.md §6). Finer rules (care
context, ownership, consent, break-glass) are decided per target by :mod:`.reading`, :mod:`.writing`, :mod:`.care`
and :mod:`.surfaces`.

Every route the app serves has an entry here: ``create_app`` refuses to start with a route that has none, and the
access-matrix test enumerates the app's own route table against it. A bearer-token route refuses (403, audited) a
principal whose kind is not listed; a page route is reached only through a session of its area.

CORS preflights (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) reach no route: with
``REGISTRY_CORS_ORIGINS`` set, ``registry.middleware.CORSPolicyMiddleware`` answers them before routing, without a
token (a browser sends none with a preflight); the request that follows passes this gate like any other. Without
CORS, an ``OPTIONS`` request is a 405 like any method a path does not serve.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from registry.auth import PrincipalKind

ADMIN, HOSPITAL, CLINICIAN, PATIENT = (PrincipalKind.ADMIN, PrincipalKind.HOSPITAL, PrincipalKind.CLINICIAN,
                                       PrincipalKind.PATIENT)  # fmt: skip
EVERYONE = frozenset(PrincipalKind)
CARE = frozenset({ADMIN, HOSPITAL, CLINICIAN})
WRITERS = frozenset({ADMIN, HOSPITAL})
MANAGERS = frozenset({ADMIN, HOSPITAL})


class Gate(StrEnum):
    OPEN = "open"  # no credentials (discovery, sign-in forms, static assets)
    TOKEN = "token"  # noqa: S105 - a bearer token (the API)
    SESSION = "session"  # a signed-in page session of the route's area


@dataclass(frozen=True, slots=True)
class Route:
    gate: Gate
    kinds: frozenset[PrincipalKind] = frozenset()
    area: str | None = None
    what: str = ""
    interaction: str = "operation"  # the FHIR RESTful interaction, for the audit row of a refusal


def _open(what: str) -> Route:
    return Route(Gate.OPEN, EVERYONE, what=what)


def _token(kinds: frozenset[PrincipalKind], what: str, interaction: str = "operation") -> Route:
    return Route(Gate.TOKEN, kinds, what=what, interaction=interaction)


def _page(area: str, kinds: frozenset[PrincipalKind], what: str) -> Route:
    return Route(Gate.SESSION, kinds, area, what)


AREAS: dict[str, frozenset[PrincipalKind]] = {
    "portal": frozenset({PATIENT}),
    "clinician": frozenset({CLINICIAN}),
    "stats": MANAGERS,
}
"""Which kinds of principal may sign in to each area of the pages."""

ROUTES: dict[tuple[str, str], Route] = {
    # open: discovery, documentation, health, sign-in
    ("GET", "/healthz"): _open("liveness"),
    ("GET", "/livez"): _open("liveness (no database)"),
    ("GET", "/readyz"): _open("readiness (the database answers)"),
    ("GET", "/openapi.json"): _open("OpenAPI document"),
    ("GET", "/docs"): _open("API documentation"),
    ("GET", "/docs/oauth2-redirect"): _open("API documentation"),
    ("MOUNT", "/docs/assets"): _open("Swagger UI's files, from the installed package"),
    ("GET", "/fhir/metadata"): _open("CapabilityStatement"),
    ("GET", "/fhir"): _open("the FHIR base: the CapabilityStatement, or a short page for a browser"),
    ("POST", "/fhir/metadata"): _open("refused: 405"),
    ("PUT", "/fhir/metadata"): _open("refused: 405"),
    ("PATCH", "/fhir/metadata"): _open("refused: 405"),
    ("DELETE", "/fhir/metadata"): _open("refused: 405"),
    ("GET", "/fhir/CodeSystem/{resource_id}"): _open("the public catalog CodeSystems"),
    ("GET", "/fhir/OperationDefinition/{resource_id}"): _open("the operations' definitions"),
    ("GET", "/fhir/SearchParameter/{resource_id}"): _open("the registry's own search parameters"),
    ("POST", "/auth/token"): _open("client credentials → token"),
    ("GET", "/.well-known/smart-configuration"): _open("SMART discovery"),
    ("GET", "/fhir/.well-known/smart-configuration"): _open("SMART discovery at the FHIR base"),
    ("GET", "/.well-known/jwks.json"): _open("signing keys"),
    ("GET", "/cds-services"): _open("CDS Hooks discovery"),
    ("MOUNT", "/assets"): _open("static assets"),
    ("GET", "/"): _open("home page"),
    ("GET", "/{area}/login"): _open("sign-in form"),
    ("POST", "/{area}/login"): _open("sign-in"),
    ("POST", "/{area}/logout"): _open("sign-out (needs the session's CSRF token)"),
    # FHIR REST
    # every reader may send a Bundle: its GET entries are decided like the reads they are, its writes per entry
    ("POST", "/fhir"): _token(EVERYONE, "transaction / batch", "transaction"),
    ("GET", "/fhir/{rtype}"): _token(EVERYONE, "search", "search-type"),
    ("POST", "/fhir/{rtype}/_search"): _token(EVERYONE, "search", "search-type"),
    ("POST", "/fhir/{rtype}"): _token(WRITERS, "create", "create"),
    ("PUT", "/fhir/{rtype}"): _token(WRITERS, "conditional update", "update"),
    ("GET", "/fhir/{rtype}/{rid}"): _token(EVERYONE, "read", "read"),
    ("PUT", "/fhir/{rtype}/{rid}"): _token(WRITERS, "update", "update"),
    ("PATCH", "/fhir/{rtype}/{rid}"): _token(WRITERS, "patch", "patch"),
    ("DELETE", "/fhir/{rtype}/{rid}"): _token(WRITERS, "delete", "delete"),
    ("GET", "/fhir/{rtype}/{rid}/_history"): _token(EVERYONE, "history", "history-instance"),
    ("GET", "/fhir/{rtype}/{rid}/_history/{vid}"): _token(EVERYONE, "vread", "vread"),
    ("GET", "/fhir/Patient/$ihe-pix"): _token(CARE, "IHE PIXm"),
    ("GET", "/fhir/AuditEvent"): _token(frozenset({ADMIN, PATIENT}), "audit trail", "search-type"),
    ("GET", "/fhir/AuditEvent/{event_id}"): _token(frozenset({ADMIN, PATIENT}), "audit trail", "read"),
    # recognition
    ("POST", "/fhir/ServiceRequest/$recognition-check"): _token(CARE, "order check"),
    ("POST", "/fhir/ServiceRequest/$recognition-decision"): _token(CARE, "decision"),
    ("POST", "/cds-services/{service_id}"): _token(CARE, "CDS Hooks call"),
    ("POST", "/cds-services/{service_id}/feedback"): _token(CARE, "CDS Hooks feedback"),
    ("GET", "/stats/api/summary"): _token(MANAGERS, "statistics"),
    ("GET", "/stats/api/export.csv"): _token(MANAGERS, "statistics"),
    ("GET", "/admin/qualifications"): _token(MANAGERS, "qualifications"),
    ("POST", "/admin/qualifications"): _token(frozenset({ADMIN}), "add a qualification"),
    ("DELETE", "/admin/qualifications/{qual_id}"): _token(frozenset({ADMIN}), "revoke a qualification"),
    ("GET", "/admin/unmapped-codes"): _token(MANAGERS, "unmapped codes"),
    # operations: counts by route template and status, no patient data; Prometheus scrapes with an admin's token
    ("GET", "/metrics"): _token(frozenset({ADMIN}), "metrics"),
    # pages
    ("GET", "/portal"): _page("portal", AREAS["portal"], "the patient's reports"),
    ("GET", "/portal/reports/{rid}"): _page("portal", AREAS["portal"], "one report"),
    ("GET", "/portal/reports/{rid}/images"): _page("portal", AREAS["portal"], "a report's image viewer"),
    ("GET", "/portal/trends/{item_id}"): _page("portal", AREAS["portal"], "a trend"),
    ("GET", "/portal/access"): _page("portal", AREAS["portal"], "who viewed my records"),
    ("GET", "/portal/notifications"): _page("portal", AREAS["portal"], "my notification settings and messages"),
    ("POST", "/portal/notifications"): _page("portal", AREAS["portal"], "change my notification settings"),
    ("GET", "/portal/consent"): _page("portal", AREAS["portal"], "my sharing consent"),
    ("POST", "/portal/consent"): _page("portal", AREAS["portal"], "pause or resume sharing, sensitive items"),
    ("GET", "/clinician"): _page("clinician", AREAS["clinician"], "order screen"),
    ("POST", "/clinician/token"): _page("clinician", AREAS["clinician"], "the order screen's token"),
    ("GET", "/clinician/reports/{rtype}/{rid}"): _page("clinician", AREAS["clinician"], "a card's report"),
    ("POST", "/clinician/reports/{rtype}/{rid}"): _page("clinician", AREAS["clinician"], "break-glass for a report"),
    ("GET", "/clinician/reports/{rtype}/{rid}/images"): _page(
        "clinician", AREAS["clinician"], "a card's report: its image viewer"
    ),
    ("POST", "/clinician/reports/{rtype}/{rid}/images"): _page(
        "clinician", AREAS["clinician"], "break-glass for a report's images"
    ),
    ("GET", "/stats"): _page("stats", AREAS["stats"], "statistics page"),
    ("GET", "/stats/export.csv"): _page("stats", AREAS["stats"], "statistics CSV"),
}


DICOMWEB_PATHS = (
    "/studies",
    "/studies/{study}",
    "/studies/{study}/metadata",
    "/studies/{study}/series",
    "/studies/{study}/thumbnail",
    "/studies/{study}/series/{series}",
    "/studies/{study}/series/{series}/metadata",
    "/studies/{study}/series/{series}/instances",
    "/studies/{study}/series/{series}/thumbnail",
    "/studies/{study}/series/{series}/instances/{instance}",
    "/studies/{study}/series/{series}/instances/{instance}/metadata",
    "/studies/{study}/series/{series}/instances/{instance}/rendered",
    "/studies/{study}/series/{series}/instances/{instance}/thumbnail",
    "/studies/{study}/series/{series}/instances/{instance}/frames/{frames}/rendered",
    "/studies/{study}/series/{series}/instances/{instance}/frames/{frames}/thumbnail",
)
"""The DICOMweb gateway's sub-paths (PS3.18), served under ``/dicomweb`` (token), ``/portal/dicomweb`` and
``/clinician/dicomweb`` (the pages' viewer). Every principal may call them: whether a study may be opened is the
read policy's, per study (``policy.imaging``)."""

for _path in DICOMWEB_PATHS:
    _search = _path == "/studies"
    ROUTES[("GET", f"/dicomweb{_path}")] = _token(
        EVERYONE, "DICOMweb (QIDO-RS, WADO-RS, rendered)", "search-type" if _search else "read"
    )
    ROUTES[("GET", f"/portal/dicomweb{_path}")] = _page("portal", AREAS["portal"], "the viewer's images (patient)")
    ROUTES[("GET", f"/clinician/dicomweb{_path}")] = _page(
        "clinician", AREAS["clinician"], "the viewer's images (clinician)"
    )


def route_for(method: str, path: str) -> Route | None:
    """The rule of a route template (``HEAD`` is ``GET``'s)."""
    return ROUTES.get(("GET" if method == "HEAD" else method, path))
