"""The access matrix (docs/design.md §6): every route the app serves — read from the app's own route table, so a new
route without an entry here fails — × every kind of principal (admin, hospital system, clinician, patient, no
credentials, a disabled client) × the target (the caller's own record, one in its care context, one outside it, another
patient's), on SQLite and PostgreSQL.

For each request it asserts the outcome written below (not computed from the policy it checks), that a refusal carries
nothing of the target the caller did not send itself (ids, MRNs, other hospitals, names, national IDs), and that the
request left an audit row with the right outcome — refusals included.

The region: person P1 is registered at hospital A and at hospital B (the callers' hospital), P2 only at A, P3 only at
C. Targets: ``own`` B's report of P1, ``care`` A's report of P1, ``out`` A's report of P2, ``other`` C's report of P3.
The patient principal is P1. Each target's hospital also holds an imaging study of the target's patient (CT_small.dcm
with fresh UIDs, in a real Orthanc every hospital's Endpoint is configured to): the DICOMweb gateway's rows open it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from catalog import Coding
from catalog.codes import HR_MARK, NONRECOGNITION_REASONS
from registry.app import create_app
from registry.auth import PrincipalKind
from registry.context import AppContext
from registry.route_table import served_routes
from registry.services import policy
from registry.services.audit import AuditContext
from registry.services.demo import REGION_EXT
from registry.services.policy.routes import DICOMWEB_PATHS
from registry.services.recognition_orders import DraftOrder, PatientQuery
from tests.e2e.imaging_samples import Study, endpoint, imaging_study, make_study
from tests.e2e.orthanc import Orthanc, orthanc  # noqa: F401 - the fixture
from tests.integration.conftest import NATIONAL, Database, make_settings, namespaces_of, resident_id
from tests.integration.test_recognition import T0, Clock

TARGETS = ("own", "care", "out", "other")
PRINCIPALS = ("admin", "hospital", "clinician", "patient", "none", "disabled")
LOINC_CBC = {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]}
BTG = {
    "Category": 'http://terminology.hl7.org/CodeSystem/v3-ActReason#BTG; scheme="http://hl7.org/fhir/tag/security"',
    "X-Break-Glass-Reason": "emergency",
}
FULL_ID = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])")

# Expected outcomes, one character per target (own, care, out, other), or one for a route without a target:
#   2 success (2xx); for a search also: the target is in the result   e  200 without the target in it
#   1 401   3 403   4 404   0 400   5 405   9 409   r 303 to the sign-in page   j 401 JSON (the order screen's token)
# The principals are, in order: admin, hospital (B's system), clinician (at B), patient (P1), none, disabled client.
OPEN = dict.fromkeys(PRINCIPALS, "2")
READ = {"admin": "2222", "hospital": "2233", "clinician": "2233", "patient": "2233", "none": "1111", "disabled": "1111"}
SEARCH = {"admin": "2222", "hospital": "22ee", "clinician": "22ee", "patient": "22ee", "none": "1111",
          "disabled": "1111"}  # fmt: skip
WRITE = {"admin": "2222", "hospital": "2333", "clinician": "3333", "patient": "3333", "none": "1111",
         "disabled": "1111"}  # fmt: skip
CHECK = {"admin": "2222", "hospital": "2233", "clinician": "2233", "patient": "3333", "none": "1111",
         "disabled": "1111"}  # fmt: skip
MANAGERS = {"admin": "2", "hospital": "2", "clinician": "3", "patient": "3", "none": "1", "disabled": "1"}
ADMIN_ONLY = {"admin": "2", "hospital": "3", "clinician": "3", "patient": "3", "none": "1", "disabled": "1"}


def page(area: str, allowed: str) -> dict[str, str]:
    """A page: the kinds of its area see ``allowed``; everyone else is sent to sign in."""
    kinds = {"portal": ("patient",), "clinician": ("clinician",), "stats": ("admin", "hospital")}[area]
    return {p: (allowed if p in kinds else "r" * len(allowed)) for p in PRINCIPALS}


@dataclass
class Target:
    report: str
    patient: str  # the registry Patient the report is about
    national_id: str
    mrn: tuple[str, str]  # (system, value) of that Patient
    org: str
    report_body: dict[str, Any]
    report_number: tuple[str, str]
    card: str = ""  # a recognition card issued to the target's calling hospital (by $recognition-check)
    cds_card: str = ""  # one issued by the hr-order-sign service (feedback is accepted only there)
    event: str = ""  # an AuditEvent id about the target's patient
    secrets: set[str] = field(default_factory=set)  # what no refusal may disclose
    study: Study | None = None  # the target hospital's imaging study of the patient, in the PACS (None: no PACS)
    study_id: str = ""  # its ImagingStudy resource id
    imaging_report: str = ""  # the DiagnosticReport of that study (the image viewer's pages open it)


@dataclass
class Region:
    ctx: AppContext
    clients: dict[str, TestClient]
    tokens: dict[str, str]
    targets: dict[str, Target]
    csrf: dict[str, str]
    no_pacs: str = ""  # why the DICOMweb rows cannot run (no Orthanc here), else empty


def _rid() -> str:
    return uuid.uuid4().hex


@pytest.fixture(scope="module")
def region(
    database: Database, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Region]:
    pacs: Orthanc | None = None
    no_pacs = ""
    try:
        pacs = request.getfixturevalue("orthanc")  # a real PACS for the DICOMweb rows (CI: required)
    except pytest.skip.Exception as exc:
        no_pacs = str(exc)
    config = {f"{org}-wado": {"organization": org, "base": pacs.dicom_web} for org in ("hosp-a", "hosp-b", "hosp-c")}
    extra = {"dicomweb_endpoints": orjson.dumps(config).decode()} if pacs is not None else {}
    app = create_app(make_settings(tmp_path_factory.mktemp("var"), database.url, **extra), clock=Clock(T0))
    ctx: AppContext = app.state.ctx
    admin = ctx.principals.add(PrincipalKind.ADMIN, "admin", "Admin").principal
    audit = AuditContext("setup", admin, "update")
    secrets: dict[str, str] = {"admin": ctx.principals.rotate_secret("admin")}
    for org in ("hosp-a", "hosp-b", "hosp-c"):
        body = {"resourceType": "Organization", "id": org, "name": f"{org} 医院",
                "extension": [{"url": REGION_EXT, "valueCode": "beijing"}]}  # fmt: skip
        ctx.ingest.update(admin, audit, "Organization", org, orjson.dumps(body).decode(), None)
        ctx.namespaces.declare(admin, org, namespaces_of(org))
        ctx.administration.add(admin, {"org": org, "group": "hematology", "scope": "beijing",
                                       "valid_from": "2025-01-01"})  # fmt: skip
        secrets[f"{org}-system"] = ctx.principals.add(PrincipalKind.HOSPITAL, f"{org}-system", org, org_id=org).secret
    secrets["dr-b"] = ctx.principals.add(PrincipalKind.CLINICIAN, "dr-b", "医生乙", org_id="hosp-b").secret
    secrets["dr-c"] = ctx.principals.add(PrincipalKind.CLINICIAN, "dr-c", "医生丙", org_id="hosp-c").secret
    people = {n: resident_id(4000 + n) for n in (1, 2, 3)}
    secrets["patient"] = ctx.principals.add(
        PrincipalKind.PATIENT, "patient-p1", "患者一", patient_key=ctx.identity.master_key(NATIONAL, people[1])
    ).secret
    secrets["disabled"] = ctx.principals.add(PrincipalKind.HOSPITAL, "hosp-b-old", "B old", org_id="hosp-b").secret
    clients = {p: TestClient(app, follow_redirects=False) for p in PRINCIPALS}
    for c in clients.values():
        c.__enter__()
    ids = {"admin": "admin", "hospital": "hosp-b-system", "clinician": "dr-b", "patient": "patient-p1",
           "disabled": "hosp-b-old"}  # fmt: skip
    tokens = {}
    for who, cid in ids.items():
        principal = ctx.principals.get(cid)
        assert principal is not None
        tokens[who] = ctx.principals.token(principal, ttl_seconds=86_400).access_token

    def patient(org: str, n: int) -> tuple[str, tuple[str, str]]:
        mrn = (f"http://{org}.example/mrn", f"{org[-1].upper()}-{n}")
        body = {"resourceType": "Patient", "identifier": [{"system": mrn[0], "value": mrn[1]},
                {"system": NATIONAL, "value": people[n]}], "name": [{"text": f"病人{n}号"}],
                "managingOrganization": {"reference": f"Organization/{org}"}}  # fmt: skip
        hosp = ctx.principals.get(f"{org}-system")
        assert hosp is not None
        return ctx.ingest.create(hosp, audit, "Patient", orjson.dumps(body).decode(), None).stored.id, mrn

    def report(org: str, patient_id: str, n: int) -> tuple[str, dict[str, Any], tuple[str, str]]:
        number = (f"http://{org}.example/report", f"R-{org}-{n}")
        body = {"resourceType": "DiagnosticReport", "identifier": [{"system": number[0], "value": number[1]}],
                "meta": {"tag": [{"system": HR_MARK, "code": "HR"}]}, "status": "final", "code": LOINC_CBC,
                "subject": {"reference": f"Patient/{patient_id}"}, "effectiveDateTime": "2026-03-01T09:00:00+08:00",
                "performer": [{"reference": f"Organization/{org}"}], "conclusion": f"结论{n}"}  # fmt: skip
        hosp = ctx.principals.get(f"{org}-system")
        assert hosp is not None
        stored = ctx.ingest.create(hosp, audit, "DiagnosticReport", orjson.dumps(body).decode(), None).stored
        return stored.id, body, number

    pa1, mrn_a1 = patient("hosp-a", 1)
    pb1, mrn_b1 = patient("hosp-b", 1)
    pa2, mrn_a2 = patient("hosp-a", 2)
    pc3, mrn_c3 = patient("hosp-c", 3)
    targets: dict[str, Target] = {}
    for name, org, pid, mrn, n in (("own", "hosp-b", pb1, mrn_b1, 1), ("care", "hosp-a", pa1, mrn_a1, 1),
                                   ("out", "hosp-a", pa2, mrn_a2, 2), ("other", "hosp-c", pc3, mrn_c3, 3)):  # fmt: skip
        rid, body, number = report(org, pid, n)
        targets[name] = Target(rid, pid, people[n], mrn, org, body, number)
    # what would disclose a target: its ids, MRNs, its people's names and national IDs, the hospitals holding it
    for name, t in targets.items():
        t.secrets = {t.report, t.patient, t.mrn[1], t.national_id, f"病人{TARGETS.index(name) + 1}号"} | (
            {t.org} if t.org != "hosp-b" else set()
        )
    if pacs is not None:  # each hospital's PACS (one Orthanc), and a study of each target there
        for org in ("hosp-a", "hosp-b", "hosp-c"):
            hosp = ctx.principals.get(f"{org}-system")
            assert hosp is not None
            wado = orjson.dumps(endpoint(f"{org}-wado", org)).decode()
            ctx.ingest.update(hosp, audit, "Endpoint", f"{org}-wado", wado, None)
        for t in targets.values():
            hosp = ctx.principals.get(f"{t.org}-system")
            assert hosp is not None
            t.study = make_study(pacs, t.mrn[1])
            body = orjson.dumps(imaging_study(t.study, t.patient, f"{t.org}-wado")).decode()
            t.study_id = ctx.ingest.create(hosp, audit, "ImagingStudy", body, None).stored.id
            t.secrets.add(t.study_id)
            rad = {"resourceType": "DiagnosticReport", "status": "final", "code": {"text": "CT"},
                   "identifier": [{"system": f"http://{t.org}.example/report", "value": f"RAD-{t.study_id}"}],
                   "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074",
                                             "code": "RAD"}]}],
                   "subject": {"reference": f"Patient/{t.patient}"},
                   "performer": [{"reference": f"Organization/{t.org}"}],
                   "effectiveDateTime": "2026-03-01T09:00:00+08:00",
                   "imagingStudy": [{"reference": f"ImagingStudy/{t.study_id}"}]}  # fmt: skip
            rad_body = orjson.dumps(rad).decode()
            t.imaging_report = ctx.ingest.create(hosp, audit, "DiagnosticReport", rad_body, None).stored.id
            t.secrets.add(t.imaging_report)
    # cards: B's check on P1 (own), C's clinician's checks on its own P3 (for the other targets)
    for name, t in targets.items():
        who = "hosp-b-system" if name == "own" else "hosp-c-system"
        nid = people[1] if name == "own" else people[3]
        principal = ctx.principals.get(who)
        assert principal is not None
        checked = ctx.recognition.check(principal, AuditContext("setup", principal, "operation"),
                                        PatientQuery([(NATIONAL, nid)]),
                                        [DraftOrder("ServiceRequest/o", (Coding("http://loinc.org", "58410-2"),))],
                                        source="operation")  # fmt: skip
        assert checked[0].card_uuid, (name, checked[0].decision)
        t.card = checked[0].card_uuid
        signed = ctx.recognition.check(principal, AuditContext("setup", principal, "operation"),
                                       PatientQuery([(NATIONAL, nid)]),
                                       [DraftOrder("ServiceRequest/o", (Coding("http://loinc.org", "58410-2"),))],
                                       source="order-sign")  # fmt: skip
        assert signed[0].card_uuid
        t.cds_card = signed[0].card_uuid
    with ctx.engine.connect() as conn:
        for t in targets.values():
            key = ctx.identity.master_key(NATIONAL, t.national_id)
            t.event = str(conn.execute(text("SELECT max(pk) FROM audit_event WHERE patient_key = :k"),
                                       {"k": key}).scalar_one())  # fmt: skip
    ctx.principals.disable("hosp-b-old")
    # page sessions: each principal signs in to every area it may (and is refused elsewhere)
    accounts = {"admin": "admin", "hospital": "hosp-b-system", "clinician": "dr-b", "patient": "patient-p1",
                "disabled": "hosp-b-old"}  # fmt: skip
    csrf: dict[str, str] = {}
    for who, account in accounts.items():
        secret = secrets[{"hospital": "hosp-b-system", "clinician": "dr-b"}.get(who, who)]
        for area in ("portal", "clinician", "stats"):
            form = clients[who].get(f"/{area}/login")
            token = re.search(r'name="csrf" value="([^"]+)"', form.text)
            assert token
            clients[who].post(f"/{area}/login", data={"account": account, "secret": secret, "csrf": token.group(1)})
        landing = clients[who].get("/portal/login")
        found = re.search(r'name="csrf" value="([^"]+)"', landing.text)
        assert found
        csrf[who] = found.group(1)
    csrf["none"] = ""
    yield Region(ctx, clients, tokens, targets, csrf, no_pacs)
    for c in clients.values():
        c.__exit__(None, None, None)
    ctx.engine.dispose()


# ------------------------------------------------------------------------------------------------ the requests
@dataclass
class Call:
    method: str
    url: str
    json: Any = None
    form: dict[str, str] | None = None
    headers: dict[str, str] = field(default_factory=dict)


Build = Callable[[Region, Target, str], Call]


def _params(*parts: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": list(parts)}


def _order() -> dict[str, Any]:
    return {"name": "order", "resource": {"resourceType": "ServiceRequest", "id": "o1", "status": "draft",
            "intent": "order", "subject": {"reference": "Patient/x"}, "code": LOINC_CBC}}  # fmt: skip


def _observation(t: Target) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "code": {"text": "note"},
            "subject": {"reference": f"Patient/{t.patient}"}}  # fmt: skip


def _throwaway(r: Region, t: Target) -> str:
    """A fresh Observation of the target's hospital and patient, to be deleted."""
    hosp = r.ctx.principals.get(f"{t.org}-system")
    assert hosp is not None
    audit = AuditContext("setup", hosp, "create")
    return r.ctx.ingest.create(hosp, audit, "Observation", orjson.dumps(_observation(t)).decode(), None).stored.id


def _qualification(r: Region) -> str:
    admin = r.ctx.principals.get("admin")
    assert admin is not None
    added = r.ctx.administration.add(admin, {"org": "hosp-c", "group": "ct", "scope": "beijing",
                                             "valid_from": "2025-01-01"})  # fmt: skip
    return str(added["id"])


def _cds(t: Target, hook: str) -> dict[str, Any]:
    body: dict[str, Any] = {"hook": hook, "hookInstance": _rid(), "context": {"userId": "Practitioner/p",
                            "patientId": "ehr"}, "prefetch": {"patient": {"resourceType": "Patient",
                            "identifier": [{"system": NATIONAL, "value": t.national_id}]}}}  # fmt: skip
    if hook == "order-sign":
        body["context"]["draftOrders"] = {"resourceType": "Bundle", "type": "collection",
                                          "entry": [{"resource": _order()["resource"]}]}  # fmt: skip
    return body


CASES: dict[tuple[str, str], tuple[Build, dict[str, str]]] = {
    # open
    ("GET", "/healthz"): (lambda r, t, w: Call("GET", "/healthz"), OPEN),
    ("GET", "/livez"): (lambda r, t, w: Call("GET", "/livez"), OPEN),
    ("GET", "/readyz"): (lambda r, t, w: Call("GET", "/readyz"), OPEN),
    ("GET", "/openapi.json"): (lambda r, t, w: Call("GET", "/openapi.json"), OPEN),
    ("GET", "/docs"): (lambda r, t, w: Call("GET", "/docs"), OPEN),
    ("GET", "/docs/oauth2-redirect"): (lambda r, t, w: Call("GET", "/docs/oauth2-redirect"), OPEN),
    ("MOUNT", "/docs/assets"): (lambda r, t, w: Call("GET", "/docs/assets/swagger-ui.css"), OPEN),
    ("GET", "/fhir/metadata"): (lambda r, t, w: Call("GET", "/fhir/metadata"), OPEN),
    ("GET", "/fhir"): (lambda r, t, w: Call("GET", "/fhir"), OPEN),
    ("POST", "/fhir/metadata"): (lambda r, t, w: Call("POST", "/fhir/metadata"), dict.fromkeys(PRINCIPALS, "5")),
    ("PUT", "/fhir/metadata"): (lambda r, t, w: Call("PUT", "/fhir/metadata"), dict.fromkeys(PRINCIPALS, "5")),
    ("PATCH", "/fhir/metadata"): (lambda r, t, w: Call("PATCH", "/fhir/metadata"), dict.fromkeys(PRINCIPALS, "5")),
    ("DELETE", "/fhir/metadata"): (lambda r, t, w: Call("DELETE", "/fhir/metadata"), dict.fromkeys(PRINCIPALS, "5")),
    ("GET", "/fhir/CodeSystem/{resource_id}"): (
        lambda r, t, w: Call("GET", "/fhir/CodeSystem/nonrecognition-reasons"), OPEN),
    ("GET", "/fhir/OperationDefinition/{resource_id}"): (
        lambda r, t, w: Call("GET", "/fhir/OperationDefinition/ServiceRequest-recognition-check"), OPEN),
    ("GET", "/fhir/SearchParameter/{resource_id}"): (
        lambda r, t, w: Call("GET", "/fhir/SearchParameter/DiagnosticReport-imaging-study"), OPEN),
    ("POST", "/auth/token"): (lambda r, t, w: Call("POST", "/auth/token", form={"grant_type": "client_credentials",
                              "client_id": "nobody", "client_secret": "x"}), dict.fromkeys(PRINCIPALS, "1")),
    ("GET", "/.well-known/smart-configuration"): (lambda r, t, w: Call("GET", "/.well-known/smart-configuration"),
                                                  OPEN),
    ("GET", "/fhir/.well-known/smart-configuration"): (
        lambda r, t, w: Call("GET", "/fhir/.well-known/smart-configuration"), OPEN),
    ("GET", "/.well-known/jwks.json"): (lambda r, t, w: Call("GET", "/.well-known/jwks.json"), OPEN),
    ("GET", "/cds-services"): (lambda r, t, w: Call("GET", "/cds-services"), OPEN),
    ("MOUNT", "/assets"): (lambda r, t, w: Call("GET", "/assets/app.css"), OPEN),
    ("GET", "/"): (lambda r, t, w: Call("GET", "/"), OPEN),
    ("GET", "/{area}/login"): (lambda r, t, w: Call("GET", "/stats/login"), OPEN),
    ("POST", "/{area}/login"): (lambda r, t, w: Call("POST", "/stats/login", form={"account": "x", "secret": "y"}),
                                dict.fromkeys(PRINCIPALS, "0")),
    ("POST", "/{area}/logout"): (lambda r, t, w: Call("POST", "/nowhere/logout", form={}),
                                 dict.fromkeys(PRINCIPALS, "4")),
    # FHIR REST
    ("GET", "/fhir/{rtype}/{rid}"): (lambda r, t, w: Call("GET", f"/fhir/DiagnosticReport/{t.report}"), READ),
    ("GET", "/fhir/{rtype}/{rid}/_history"): (
        lambda r, t, w: Call("GET", f"/fhir/DiagnosticReport/{t.report}/_history"), READ),
    ("GET", "/fhir/{rtype}/{rid}/_history/{vid}"): (
        lambda r, t, w: Call("GET", f"/fhir/DiagnosticReport/{t.report}/_history/1"), READ),
    ("GET", "/fhir/{rtype}"): (lambda r, t, w: Call("GET", f"/fhir/DiagnosticReport?_id={t.report}"), SEARCH),
    ("POST", "/fhir/{rtype}/_search"): (
        lambda r, t, w: Call("POST", "/fhir/DiagnosticReport/_search", form={"_id": t.report}), SEARCH),
    ("POST", "/fhir/{rtype}"): (lambda r, t, w: Call("POST", "/fhir/Observation", json=_observation(t)), WRITE),
    ("PUT", "/fhir/{rtype}/{rid}"): (
        lambda r, t, w: Call("PUT", f"/fhir/DiagnosticReport/{t.report}", json={**t.report_body, "id": t.report}),
        WRITE),
    ("PUT", "/fhir/{rtype}"): (
        lambda r, t, w: Call("PUT", f"/fhir/DiagnosticReport?identifier={t.report_number[0]}|{t.report_number[1]}",
                             json=t.report_body), WRITE),
    ("PATCH", "/fhir/{rtype}/{rid}"): (
        lambda r, t, w: Call("PATCH", f"/fhir/DiagnosticReport/{t.report}", json=_params({"name": "operation", "part": [
            {"name": "type", "valueCode": "replace"}, {"name": "path", "valueString": "DiagnosticReport.conclusion"},
            {"name": "value", "valueString": t.report_body["conclusion"]}]})), WRITE),
    ("DELETE", "/fhir/{rtype}/{rid}"): (lambda r, t, w: Call("DELETE", f"/fhir/Observation/{_throwaway(r, t)}"),
                                        WRITE),
    ("POST", "/fhir"): (lambda r, t, w: Call("POST", "/fhir", json={"resourceType": "Bundle", "type": "transaction",
                        "entry": [{"resource": _observation(t), "request": {"method": "POST", "url": "Observation"}}]}),
                        WRITE),
    ("GET", "/fhir/Patient/$ihe-pix"): (
        lambda r, t, w: Call("GET", f"/fhir/Patient/$ihe-pix?sourceIdentifier={t.mrn[0]}|{t.mrn[1]}"),
        {**CHECK, "patient": "3333"}),
    ("GET", "/fhir/AuditEvent"): (lambda r, t, w: Call("GET", "/fhir/AuditEvent?_count=5"),
                                  {**MANAGERS, "hospital": "3", "patient": "2"}),
    ("GET", "/fhir/AuditEvent/{event_id}"): (lambda r, t, w: Call("GET", f"/fhir/AuditEvent/{t.event}"),
                                             {**READ, "hospital": "3333", "clinician": "3333", "patient": "2244"}),
    # recognition
    ("POST", "/fhir/ServiceRequest/$recognition-check"): (
        lambda r, t, w: Call("POST", "/fhir/ServiceRequest/$recognition-check", json=_params(
            {"name": "patientIdentifier", "valueIdentifier": {"system": NATIONAL, "value": t.national_id}},
            _order())), CHECK),
    ("POST", "/fhir/ServiceRequest/$recognition-decision"): (
        lambda r, t, w: Call("POST", "/fhir/ServiceRequest/$recognition-decision", json=_params(
            {"name": "card", "valueString": t.card}, {"name": "outcome", "valueCode": "declined"},
            {"name": "reason", "valueCoding": {"system": NONRECOGNITION_REASONS, "code": "98"}},
            {"name": "comment", "valueString": "matrix"})), {**CHECK, "hospital": "2333", "clinician": "2333"}),
    ("POST", "/cds-services/{service_id}"): (
        lambda r, t, w: Call("POST", "/cds-services/hr-order-sign", json=_cds(t, "order-sign")), CHECK),
    ("POST", "/cds-services/{service_id}/feedback"): (
        lambda r, t, w: Call("POST", "/cds-services/hr-order-sign/feedback", json={"feedback": [{"card": t.cds_card,
                             "outcome": "overridden", "overrideReason": {"reason": {"system": NONRECOGNITION_REASONS,
                             "code": "98"}, "userComment": "matrix"}}]}),
        {**CHECK, "hospital": "2333", "clinician": "2333"}),
    ("GET", "/stats/api/summary"): (lambda r, t, w: Call("GET", "/stats/api/summary"), MANAGERS),
    ("GET", "/stats/api/export.csv"): (lambda r, t, w: Call("GET", "/stats/api/export.csv"), MANAGERS),
    ("GET", "/admin/qualifications"): (lambda r, t, w: Call("GET", "/admin/qualifications"), MANAGERS),
    ("POST", "/admin/qualifications"): (lambda r, t, w: Call("POST", "/admin/qualifications", json={
        "org": "hosp-c", "group": "mr", "scope": "beijing", "valid_from": "2025-01-01"}), ADMIN_ONLY),
    ("DELETE", "/admin/qualifications/{qual_id}"): (
        lambda r, t, w: Call("DELETE", f"/admin/qualifications/{_qualification(r)}"), ADMIN_ONLY),
    ("GET", "/admin/unmapped-codes"): (lambda r, t, w: Call("GET", "/admin/unmapped-codes"), MANAGERS),
    ("GET", "/metrics"): (lambda r, t, w: Call("GET", "/metrics"), ADMIN_ONLY),
    # pages
    ("GET", "/portal"): (lambda r, t, w: Call("GET", "/portal"), page("portal", "2")),
    ("GET", "/portal/reports/{rid}"): (lambda r, t, w: Call("GET", f"/portal/reports/{t.report}"),
                                       page("portal", "2244")),
    ("GET", "/portal/trends/{item_id}"): (lambda r, t, w: Call("GET", "/portal/trends/L004"), page("portal", "2")),
    ("GET", "/portal/access"): (lambda r, t, w: Call("GET", "/portal/access"), page("portal", "2")),
    ("GET", "/portal/notifications"): (lambda r, t, w: Call("GET", "/portal/notifications"), page("portal", "2")),
    ("POST", "/portal/notifications"): (
        lambda r, t, w: Call("POST", "/portal/notifications", form={"sms": "on", "language": "zh",
                                                                     "csrf": r.csrf.get(w, "")}), page("portal", "2")),
    ("GET", "/portal/consent"): (lambda r, t, w: Call("GET", "/portal/consent"), page("portal", "2")),
    # the patient's own consent, as it already is (sensitive items not shared): nothing else in the matrix changes
    ("POST", "/portal/consent"): (lambda r, t, w: Call("POST", "/portal/consent", form={
        "action": "keep-sensitive", "csrf": r.csrf.get(w, "")}), page("portal", "2")),
    ("GET", "/clinician"): (lambda r, t, w: Call("GET", "/clinician"), page("clinician", "2")),
    ("POST", "/clinician/token"): (
        lambda r, t, w: Call("POST", "/clinician/token", headers={"X-CSRF-Token": r.csrf.get(w, "")}),
        {**dict.fromkeys(PRINCIPALS, "j"), "clinician": "2"}),
    ("GET", "/clinician/reports/{rtype}/{rid}"): (
        lambda r, t, w: Call("GET", f"/clinician/reports/DiagnosticReport/{t.report}"), page("clinician", "2244")),
    ("POST", "/clinician/reports/{rtype}/{rid}"): (
        lambda r, t, w: Call("POST", f"/clinician/reports/DiagnosticReport/{t.report}",
                             form={"reason": "急诊", "csrf": r.csrf.get(w, "")}), page("clinician", "2222")),
    # the image viewer of the target's imaging report (its images come through the DICOMweb rows below)
    ("GET", "/portal/reports/{rid}/images"): (lambda r, t, w: Call("GET", f"/portal/reports/{_imaging(r, t)}/images"),
                                              page("portal", "2244")),
    ("GET", "/clinician/reports/{rtype}/{rid}/images"): (
        lambda r, t, w: Call("GET", f"/clinician/reports/DiagnosticReport/{_imaging(r, t)}/images"),
        page("clinician", "2244")),
    ("POST", "/clinician/reports/{rtype}/{rid}/images"): (
        lambda r, t, w: Call("POST", f"/clinician/reports/DiagnosticReport/{_imaging(r, t)}/images",
                             form={"reason": "急诊", "csrf": r.csrf.get(w, "")}), page("clinician", "2222")),
    ("GET", "/stats"): (lambda r, t, w: Call("GET", "/stats"), page("stats", "2")),
    ("GET", "/stats/export.csv"): (lambda r, t, w: Call("GET", "/stats/export.csv"), page("stats", "2")),
}  # fmt: skip


def _imaging(r: Region, t: Target) -> str:
    """The target's imaging report (made with its study in the PACS: without one, the rows cannot run)."""
    if not t.imaging_report:
        pytest.skip(r.no_pacs)
    return t.imaging_report


def _dicomweb(prefix: str, path: str) -> Build:
    """A DICOMweb request about the target's study (its one series, instance and frame)."""

    def build(r: Region, t: Target, w: str) -> Call:
        study = t.study
        if study is None:
            pytest.skip(r.no_pacs)
        one = study.instances[0]
        url = path.format(study=study.uid, series=one.series, instance=one.sop, frames="1")
        if path == "/studies":
            url += f"?StudyInstanceUID={study.uid}"
        return Call("GET", prefix + url)

    return build


def _dicomweb_cases() -> dict[tuple[str, str], tuple[Build, dict[str, str]]]:
    unsigned = dict.fromkeys(PRINCIPALS, "1111")  # the pages' images answer 401 without a session of the area
    out: dict[tuple[str, str], tuple[Build, dict[str, str]]] = {}
    for path in DICOMWEB_PATHS:
        search = path == "/studies"
        out[("GET", f"/dicomweb{path}")] = (_dicomweb("/dicomweb", path), SEARCH if search else READ)
        for area, kind in (("portal", "patient"), ("clinician", "clinician")):
            allowed = (SEARCH if search else READ)[kind]
            out[("GET", f"/{area}/dicomweb{path}")] = (_dicomweb(f"/{area}/dicomweb", path),
                                                       {**unsigned, kind: allowed})  # fmt: skip
    return out


CASES.update(_dicomweb_cases())
OPENS_STUDY = {route for route in CASES if "dicomweb/studies/" in route[1]}
"""The DICOMweb routes that open a study: one AuditEvent per principal, study and hour (not one per request), so
their successes are checked by that event rather than by the request's id."""


UNAUDITED = {("GET", "/clinician"), ("POST", "/clinician/token"), ("GET", "/metrics")}
"""Routes that show no patient data leave no audit row when they answer: the order screen's frame and its token,
and a metrics scrape (its refusals are audited like every refusal, by the token check)."""

STATUS = {"1": {401}, "3": {403}, "4": {404}, "0": {400}, "5": {405}, "9": {409}, "r": {303}, "j": {401}}


def test_every_route_the_app_serves_has_a_policy_and_a_row_in_this_matrix(region: Region) -> None:
    served = set(served_routes(region.clients["admin"].app))  # type: ignore[arg-type]
    assert served - set(CASES) == set(), "routes without a row in the access matrix"
    assert set(CASES) - served == set(), "rows for routes the app no longer serves"
    assert served - set(policy.ROUTES) == set(), "routes without an access policy"
    assert set(policy.ROUTES) - served == set(), "policy entries for routes the app does not serve"


def _send(region: Region, who: str, call: Call) -> Any:
    headers = {"X-Request-Id": _rid(), **call.headers}
    if who in region.tokens:
        headers["Authorization"] = f"Bearer {region.tokens[who]}"
    client = region.clients[who]
    if call.json is not None:
        headers["Content-Type"] = "application/fhir+json"
        return client.request(call.method, call.url, content=orjson.dumps(call.json), headers=headers)
    if call.form is not None:
        return client.request(call.method, call.url, data=call.form, headers=headers)
    return client.request(call.method, call.url, headers=headers)


def _matches(r: Any) -> set[str] | None:
    """The ids of a searchset's matches, or the StudyInstanceUIDs of a QIDO-RS answer (None: neither)."""
    if "json" not in r.headers.get("content-type", ""):
        return None
    body = r.json()
    if r.headers["content-type"].startswith("application/dicom+json") and isinstance(body, list):
        return {s["0020000D"]["Value"][0] for s in body if "0020000D" in s}
    if body.get("resourceType") != "Bundle" or body.get("type") != "searchset":
        return None
    return {e["resource"]["id"] for e in body.get("entry") or [] if (e.get("search") or {}).get("mode") == "match"}


def _study_opened(region: Region, who: str, target: Target) -> bool:
    client = {"admin": "admin", "hospital": "hosp-b-system", "clinician": "dr-b", "patient": "patient-p1"}[who]
    with region.ctx.engine.connect() as conn:
        found = conn.execute(
            text("SELECT count(*) FROM audit_event WHERE client_id = :c AND resource_type = 'ImagingStudy' "
                 "AND resource_id = :s AND interaction = 'read' AND outcome = '0'"),
            {"c": client, "s": target.study_id},
        )  # fmt: skip
        return int(found.scalar_one()) > 0


def _audit(region: Region, request_id: str) -> list[str]:
    with region.ctx.engine.connect() as conn:
        rows = conn.execute(text("SELECT outcome FROM audit_event WHERE request_id = :r"), {"r": request_id})
        return [r.outcome for r in rows]


@pytest.mark.parametrize("route", sorted(CASES), ids=lambda r: f"{r[0]} {r[1]}")
def test_access_matrix(region: Region, route: tuple[str, str]) -> None:
    build, expected = CASES[route]
    rule = policy.route_for(*route)
    assert rule is not None
    problems: list[str] = []
    for who in PRINCIPALS:
        plan = expected[who]
        for target_name, want in zip(TARGETS if len(plan) == 4 else ("own",), plan, strict=True):
            target = region.targets[target_name]
            call = build(region, target, who)
            r = _send(region, who, call)
            where = f"{who} → {target_name}: {call.method} {call.url}"
            ok = 200 <= r.status_code < 300
            if want in "2e":
                if not ok:
                    problems.append(f"{where}: {r.status_code} {r.text[:200]}")
                    continue
                found = _matches(r)
                keys = {target.report} | ({target.study.uid} if target.study else set())
                if want == "e" and found is not None and keys & found:
                    problems.append(f"{where}: the target leaked into the result")
                if want == "2" and len(plan) == 4 and found is not None and not keys & found:
                    problems.append(f"{where}: the target is missing from the result")
            elif r.status_code not in STATUS[want]:
                problems.append(f"{where}: expected {STATUS[want]}, got {r.status_code} {r.text[:200]}")
                continue
            if not ok:
                sent = call.url + orjson.dumps(call.json or call.form or {}).decode()
                leaked = [s for s in target.secrets if s in r.text and s not in sent]
                leaked += FULL_ID.findall(r.text)
                if leaked:
                    problems.append(f"{where}: the refusal discloses {leaked}")
            audited = (rule.gate is policy.Gate.TOKEN and (not ok or route not in UNAUDITED)) or (
                rule.gate is policy.Gate.SESSION and r.status_code != 303 and route not in UNAUDITED
            )
            if audited and ok and route in OPENS_STUDY:
                if not _study_opened(region, who, target):
                    problems.append(f"{where}: no AuditEvent of the study opened")
            elif audited:
                outcomes = _audit(region, r.request.headers["X-Request-Id"])
                wanted = "0" if ok else "4"
                if not outcomes or (wanted not in outcomes) or (not ok and "0" in outcomes):
                    problems.append(f"{where}: audit outcomes {outcomes}, expected {wanted}")
    assert not problems, "\n".join(problems)


def test_break_glass_is_counted_where_it_opened_a_record(region: Region) -> None:
    """The matrix's break-glass page requests were audited with purpose BTG (the patient and the statistics see
    them); a search naming one report by break-glass opens it, one naming none is refused."""
    with region.ctx.engine.connect() as conn:
        n = conn.execute(text("SELECT count(*) FROM audit_event WHERE purpose = 'BTG'")).scalar_one()
    assert n >= 1
    out = region.targets["out"]
    r = _send(region, "clinician", Call("GET", f"/fhir/DiagnosticReport?_id={out.report}", headers=BTG))
    assert r.status_code == 200 and out.report in r.text
    assert _send(region, "clinician", Call("GET", "/fhir/DiagnosticReport", headers=BTG)).status_code == 400


FRAME_RENDERED = "/studies/{study}/series/{series}/instances/{instance}/frames/{frames}/rendered"


@pytest.mark.parametrize("route", [("GET", "/fhir/{rtype}/{rid}"), ("GET", "/fhir/{rtype}/{rid}/_history/{vid}"),
                                   ("GET", "/fhir/{rtype}"), ("GET", "/dicomweb/studies"),
                                   ("GET", "/dicomweb" + FRAME_RENDERED)],
                         ids=lambda r: f"HEAD {r[1]}")  # fmt: skip
def test_head_is_decided_like_get(region: Region, route: tuple[str, str]) -> None:
    """HEAD is GET without a body (the policy folds it into GET's rule): the same status for every principal and
    target, nothing disclosed in a body."""
    build = CASES[route][0]
    for who in PRINCIPALS:
        for target_name in TARGETS:
            call = build(region, region.targets[target_name], who)
            got = _send(region, who, call)
            head = _send(region, who, Call("HEAD", call.url))
            assert head.status_code == got.status_code, (who, target_name, call.url)
            assert head.content == b"", (who, target_name)


def _entry_status(r: Any) -> list[str]:
    assert r.status_code == 200, r.text
    return [e["response"]["status"].split(" ")[0] for e in r.json()["entry"]]


@pytest.mark.parametrize("kind", ["read", "vread", "search"])
def test_get_entries_of_a_batch_are_decided_like_the_rest_reads(region: Region, kind: str) -> None:
    """A batch's GET entry answers what the REST read, vread or search answers the same principal about the same
    target (READ / SEARCH above): a Bundle opens nothing; outside the care context 403, never the resource."""
    route = {"read": ("GET", "/fhir/{rtype}/{rid}"), "vread": ("GET", "/fhir/{rtype}/{rid}/_history/{vid}"),
             "search": ("GET", "/fhir/{rtype}")}[kind]  # fmt: skip
    build, expected = CASES[route]
    problems = []
    for who in ("admin", "hospital", "clinician", "patient"):
        for target_name, want in zip(TARGETS, expected[who], strict=True):
            target = region.targets[target_name]
            url = build(region, target, who).url.removeprefix("/fhir/")
            bundle = {"resourceType": "Bundle", "type": "batch", "entry": [{"request": {"method": "GET", "url": url}}]}
            r = _send(region, who, Call("POST", "/fhir", json=bundle))
            where = f"{who} → {target_name}: GET {url}"
            if r.status_code != 200:
                problems.append(f"{where}: the batch itself answered {r.status_code} {r.text[:200]}")
                continue
            (entry,) = r.json()["entry"]
            status = entry["response"]["status"].split(" ")[0]
            if want in "2e":
                if status != "200":
                    problems.append(f"{where}: {status}")
                elif kind == "search":
                    found = {e["resource"]["id"] for e in entry["resource"].get("entry", [])}
                    if (target.report in found) != (want == "2"):
                        problems.append(f"{where}: the search found {found}")
                elif entry["resource"]["id"] != target.report:
                    problems.append(f"{where}: another resource")
            else:
                if int(status) not in STATUS[want] or "resource" in entry:
                    problems.append(f"{where}: expected {STATUS[want]}, got {entry}")
                leaked = [s for s in target.secrets if s in r.text and s not in url]
                if leaked:
                    problems.append(f"{where}: the refusal discloses {leaked}")
            outcomes = _audit(region, r.request.headers["X-Request-Id"])
            if ("0" if want in "2e" else "4") not in outcomes:
                problems.append(f"{where}: audit outcomes {outcomes}")
    assert not problems, "\n".join(problems)


def test_a_transaction_whose_get_is_refused_fails_whole(region: Region) -> None:
    out = region.targets["out"]
    entries = [{"resource": _observation(region.targets["own"]), "request": {"method": "POST", "url": "Observation"}},
               {"request": {"method": "GET", "url": f"DiagnosticReport/{out.report}"}}]  # fmt: skip
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    r = _send(region, "hospital", Call("POST", "/fhir", json=bundle))
    assert r.status_code == 403 and "Bundle.entry[1]" in r.text, r.text
    assert not [s for s in out.secrets if s in r.text and s != out.report]
    assert "4" in _audit(region, r.request.headers["X-Request-Id"])
    # a clinician or patient may send a Bundle to read, never to write: the write entry is refused
    for who in ("clinician", "patient"):
        batch = {**bundle, "type": "batch"}
        assert _entry_status(_send(region, who, Call("POST", "/fhir", json=batch)))[0] == "403", who
        assert _send(region, who, Call("POST", "/fhir", json=bundle)).status_code == 403, who


CONSENT_ROUTES = (("GET", "/fhir/{rtype}/{rid}"), ("GET", "/fhir/{rtype}/{rid}/_history"),
                  ("GET", "/fhir/{rtype}/{rid}/_history/{vid}"), ("GET", "/fhir/{rtype}"),
                  ("POST", "/fhir/{rtype}/_search"))  # fmt: skip


def test_a_paused_share_withholds_the_care_target_from_the_paused_hospital_only(region: Region) -> None:
    """The consent column of the matrix (docs/design.md §6 consent): P1 pauses sharing with hospital B — B's system
    and clinician are then refused A's report of P1 (``care``: 403 on the reads, absent from the searches) while
    B's own report, the patient and the admin are answered as before; break-glass still opens it; after resuming,
    the matrix's own outcomes hold again."""
    patient = region.ctx.principals.get("patient-p1")
    assert patient is not None
    care, own = region.targets["care"], region.targets["own"]
    region.ctx.consent.change(patient, AuditContext("matrix", patient, "update", "Consent"), "pause", "hosp-b")
    problems: list[str] = []
    try:
        for route in CONSENT_ROUTES:
            build, expected = CASES[route]
            for who in ("admin", "hospital", "clinician", "patient"):
                paused = {"hospital": "3", "clinician": "3"} if route[0] == "GET" and "{rid}" in route[1] else {}
                want_care = paused.get(who, "e" if who in ("hospital", "clinician") else "2")
                for target, want in ((care, want_care), (own, expected[who][0])):
                    r = _send(region, who, build(region, target, who))
                    found = _matches(r)
                    ok = r.status_code == 200 and (found is None or (target.report in found) == (want == "2"))
                    if want == "3":
                        ok = r.status_code == 403 and target.report not in r.text.replace(
                            build(region, target, who).url, ""
                        )
                    if not ok:
                        problems.append(f"{who} {route} → {target.org}: {r.status_code} {r.text[:160]}")
        opened = _send(region, "clinician", Call("GET", f"/fhir/DiagnosticReport/{care.report}", headers=BTG))
        if opened.status_code != 200:
            problems.append(f"break-glass: {opened.status_code}")
    finally:
        region.ctx.consent.change(patient, AuditContext("matrix", patient, "update", "Consent"), "resume", "hosp-b")
    r = _send(region, "hospital", Call("GET", f"/fhir/DiagnosticReport/{care.report}"))
    assert r.status_code == 200, r.text
    assert not problems, "\n".join(problems)
