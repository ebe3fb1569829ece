"""Trust, on SQLite and PostgreSQL (issue: one ownership and access policy): identifier namespaces, references on
write, who governs a result in the index, the configured HR codes, duplicate JSON keys, and the care context of the
order check with registration and break-glass — each the way a hostile hospital or a curious clinician would try it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from typer.testing import CliRunner

from catalog.codes import HR_MARK
from registry.app import create_app
from registry.auth import PrincipalKind
from registry.context import AppContext
from registry.services.audit import AuditContext
from registry.services.demo import REGION_EXT
from tests.integration.conftest import (
    NATIONAL,
    Api,
    Database,
    make_settings,
    namespaces_of,
    new_resident_id,
    unique,
)
from tests.integration.test_recognition import T0, Clock, card_for, push_cbc, sign

ORDERS = [("o-cbc", "http://loinc.org", "58410-2")]
BTG = {
    "Category": 'http://terminology.hl7.org/CodeSystem/v3-ActReason#BTG; scheme="http://hl7.org/fhir/tag/security"',
    "X-Break-Glass-Reason": "%E6%80%A5%E8%AF%8A%E6%98%8F%E8%BF%B7",  # 急诊昏迷, percent-encoded UTF-8
}


@pytest.fixture(scope="module")
def api(database: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    settings = make_settings(tmp_path_factory.mktemp("var"), database.url)
    app = create_app(settings, clock=Clock(T0))
    ctx: AppContext = app.state.ctx
    admin = ctx.principals.add(PrincipalKind.ADMIN, "admin", "Admin").principal
    audit = AuditContext("setup", admin, "update")
    for org in ("hosp-a", "hosp-b", "hosp-c"):
        body = {"resourceType": "Organization", "id": org, "name": f"{org} 医院",
                "extension": [{"url": REGION_EXT, "valueCode": "beijing"}]}  # fmt: skip
        ctx.ingest.update(admin, audit, "Organization", org, orjson.dumps(body).decode(), None)
        ctx.namespaces.declare(admin, org, namespaces_of(org))
        ctx.principals.add(PrincipalKind.HOSPITAL, f"{org}-system", org, org_id=org)
        ctx.principals.add(PrincipalKind.CLINICIAN, f"dr-{org}", f"医生 {org}", org_id=org)
        for group in ("hematology", "ct"):
            ctx.administration.add(admin, {"org": org, "group": group, "scope": "beijing", "valid_from": "2025-01-01"})
    with TestClient(app) as client:
        yield Api(client, ctx)
    ctx.engine.dispose()


def _nid() -> str:
    return new_resident_id()


def _issue(r: Any) -> str:
    return str(r.json()["issue"][0]["diagnostics"])


def _audit_rows(api: Api, request_id: str) -> list[dict[str, Any]]:
    with api.ctx.engine.connect() as conn:
        rows = conn.execute(text("SELECT * FROM audit_event WHERE request_id = :r ORDER BY pk"), {"r": request_id})
        return [dict(r._mapping) for r in rows]


def _report(org: str, patient_id: str, number: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "DiagnosticReport",
        "identifier": [{"system": f"http://{org}.example/report", "value": number}],
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": "2026-03-01T08:00:00+08:00",
        "performer": [{"reference": f"Organization/{org}"}],
        **extra,
    }


def _observations(api: Api, bundle_response: dict[str, Any]) -> list[str]:
    return [e["response"]["location"].split("/")[1] for e in bundle_response["entry"][:-1]]


# ------------------------------------------------------------------------------------------------ namespaces
def test_a_hospital_cannot_squat_another_hospitals_mrn_or_report_numbers(api: Api) -> None:
    nid, mrn, number = _nid(), unique("B"), unique("R")
    squat = {
        "resourceType": "Patient",
        "identifier": [{"system": "http://hosp-b.example/mrn", "value": mrn}, {"system": NATIONAL, "value": nid}],
        "managingOrganization": {"reference": "Organization/hosp-a"},
    }
    r = api.post("/fhir/Patient", squat, who="hosp-a-system")
    assert r.status_code == 403, r.text
    assert "namespace of Organization/hosp-b" in _issue(r)
    pa = api.patient("hosp-a", unique("A"), nid)
    report = _report("hosp-a", pa["id"], number)
    report["identifier"] = [{"system": "http://hosp-b.example/report", "value": number}]
    r = api.post("/fhir/DiagnosticReport", report, who="hosp-a-system")
    assert r.status_code == 403 and "namespace of Organization/hosp-b" in _issue(r)
    # hospital B's own pushes of that MRN and that report number go through
    pb = api.patient("hosp-b", mrn, nid)
    put = api.put(f"/fhir/DiagnosticReport?identifier=http://hosp-b.example/report|{number}",
                  _report("hosp-b", pb["id"], number), who="hosp-b-system")  # fmt: skip
    assert put.status_code == 201, put.text


def test_an_undeclared_identifier_system_is_refused_saying_how_to_declare_it(api: Api) -> None:
    pa = api.patient("hosp-a", unique("A"), _nid())
    report = _report("hosp-a", pa["id"], unique("R"))
    report["identifier"] = [{"system": "http://nobody.example/report", "value": "1"}]
    r = api.post("/fhir/DiagnosticReport", report, who="hosp-a-system")
    assert r.status_code == 403
    assert "hr-registry namespaces add --org hosp-a" in _issue(r)
    # a shared system (a StudyInstanceUID) is nobody's namespace
    study = {
        "resourceType": "ImagingStudy",
        "status": "available",
        "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:2.25.{uuid.uuid4().int}"}],
        "subject": {"reference": f"Patient/{pa['id']}"},
    }
    assert api.post("/fhir/ImagingStudy", study, who="hosp-a-system").status_code == 201


def test_a_study_uid_held_by_another_hospital_is_a_conflict_that_names_nothing_of_it(api: Api) -> None:
    nid = _nid()
    pa, pb = api.patient("hosp-a", unique("A"), nid), api.patient("hosp-b", unique("B"), nid)
    uid = f"urn:oid:2.25.{uuid.uuid4().int}"

    def study(patient: str) -> dict[str, Any]:
        return {
            "resourceType": "ImagingStudy",
            "status": "available",
            "subject": {"reference": patient},
            "identifier": [{"system": "urn:dicom:uid", "value": uid}],
        }

    first = api.put(
        f"/fhir/ImagingStudy?identifier=urn:dicom:uid|{uid}", study(f"Patient/{pb['id']}"), who="hosp-b-system"
    )
    assert first.status_code == 201
    again = api.put(
        f"/fhir/ImagingStudy?identifier=urn:dicom:uid|{uid}", study(f"Patient/{pa['id']}"), who="hosp-a-system"
    )
    assert again.status_code == 409, again.text
    assert first.json()["id"] not in again.text and "hosp-b" not in again.text
    # If-None-Exist does not hand hospital A the other hospital's study either
    r = api.post("/fhir/ImagingStudy", study(f"Patient/{pa['id']}"), who="hosp-a-system",
                 headers={"If-None-Exist": f"identifier=urn:dicom:uid|{uid}"})  # fmt: skip
    assert r.status_code == 409 and first.json()["id"] not in r.text


def test_namespaces_are_declared_by_admins_and_never_overlap(api: Api) -> None:
    admin = api.ctx.principals.get("admin")
    assert admin is not None
    from registry.errors import BadRequestError, ConflictError, ForbiddenError

    with pytest.raises(ConflictError, match="Organization/hosp-b"):
        api.ctx.namespaces.declare(admin, "hosp-a", ["http://hosp-b.example/mrn"])
    with pytest.raises(ConflictError):
        api.ctx.namespaces.declare(admin, "hosp-a", ["http://*"[:-1] + "hosp-b.example/x/*"])
    with pytest.raises(BadRequestError):
        api.ctx.namespaces.declare(admin, "hosp-a", ["http://hosp-a.example*"])  # a prefix ends at a separator
    hospital = api.ctx.principals.get("hosp-a-system")
    assert hospital is not None
    with pytest.raises(ForbiddenError):
        api.ctx.namespaces.declare(hospital, "hosp-a", ["urn:oid:2.16.156.99.*"])


def test_the_namespaces_cli_declares_lists_and_removes(api: Api, database: Database, tmp_path: Any) -> None:
    from registry.cli import app as cli

    env = {"REGISTRY_VAR_DIR": str(tmp_path), "REGISTRY_DATABASE_URL": database.url,
           "REGISTRY_IDENTITY_SECRET": "test-identity-secret"}  # fmt: skip
    runner = CliRunner()
    added = runner.invoke(cli, ["namespaces", "add", "--org", "hosp-c", "urn:oid:2.16.156.777.*"], env=env)
    assert added.exit_code == 0, added.output
    listed = runner.invoke(cli, ["namespaces", "list", "--org", "hosp-c"], env=env)
    assert "urn:oid:2.16.156.777.*" in listed.output
    clash = runner.invoke(cli, ["namespaces", "add", "--org", "hosp-a", "urn:oid:2.16.156.777.5"], env=env)
    assert clash.exit_code == 1 and "Organization/hosp-c" in clash.output
    pc = api.patient("hosp-c", unique("C"), _nid())
    report = _report("hosp-c", pc["id"], "x", identifier=[{"system": "urn:oid:2.16.156.777.5", "value": unique("R")}])
    assert api.post("/fhir/DiagnosticReport", report, who="hosp-c-system").status_code == 201  # at once
    removed = runner.invoke(cli, ["namespaces", "remove", "urn:oid:2.16.156.777.*"], env=env)
    assert removed.exit_code == 0, removed.output
    report["identifier"] = [{"system": "urn:oid:2.16.156.777.5", "value": unique("R")}]
    assert api.post("/fhir/DiagnosticReport", report, who="hosp-c-system").status_code == 403


# ------------------------------------------------------------------------------------------------ references on write
def test_a_report_lists_only_its_own_hospitals_results_of_the_same_patient(api: Api) -> None:
    nid = _nid()
    pa, pb = api.patient("hosp-a", unique("A"), nid), api.patient("hosp-b", unique("B"), nid)
    a_obs = _observations(api, push_cbc(api, "hosp-a", f"Patient/{pa['id']}", unique("R"), marked=False))
    number = unique("R")
    forged = _report("hosp-b", pb["id"], number, result=[{"reference": f"Observation/{a_obs[0]}"}],
                     meta={"tag": [{"system": HR_MARK, "code": "HR"}]})  # fmt: skip
    r = api.post("/fhir/DiagnosticReport", forged, who="hosp-b-system")
    assert r.status_code == 403 and "issued by another organization" in _issue(r), r.text
    # another patient's result of its own, in a transaction: refused whole, nothing written
    other = api.patient("hosp-b", unique("B"), _nid())
    b_obs = _observations(api, push_cbc(api, "hosp-b", f"Patient/{other['id']}", unique("R")))
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": _report("hosp-b", pb["id"], number, result=[{"reference": f"Observation/{b_obs[0]}"}]),
                "request": {
                    "method": "PUT",
                    "url": f"DiagnosticReport?identifier=http://hosp-b.example/report|{number}",
                },
            }
        ],
    }
    r = api.post("/fhir", bundle, who="hosp-b-system")  # fmt: skip
    assert r.status_code == 422 and "another patient" in _issue(r)  # a content rule, not an access refusal
    assert r.json()["issue"][0]["code"] == "business-rule"
    found = api.get(f"/fhir/DiagnosticReport?identifier=http://hosp-b.example/report|{number}", who="admin")
    assert found.json().get("total", len(found.json().get("entry", []))) == 0
    member = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "panel"},
        "subject": {"reference": f"Patient/{pb['id']}"},
        "hasMember": [{"reference": f"Observation/{a_obs[1]}"}],
    }
    assert api.post("/fhir/Observation", member, who="hosp-b-system").status_code == 403  # fmt: skip


def test_another_issuers_report_can_neither_withdraw_nor_mark_a_result(api: Api) -> None:
    """Even a report an admin lets through (admins may reference other issuers' results) governs nothing of a result
    that is not its own issuer's: the index keeps A's unmarked result unmarked, and a withdrawal leaves it alone."""
    nid = _nid()
    pa = api.patient("hosp-a", unique("A"), nid)
    api.patient("hosp-b", unique("B"), nid)
    marked = push_cbc(api, "hosp-a", f"Patient/{pa['id']}", unique("R"), marked=True)
    assert card_for(sign(api, "dr-hosp-b", nid, ORDERS[:1]), "o-cbc") is not None
    obs = _observations(api, marked)
    number = unique("R")
    foreign = _report("hosp-c", pa["id"], number, result=[{"reference": f"Observation/{o}"} for o in obs])
    foreign["identifier"] = [{"system": "http://hosp-c.example/report", "value": number}]
    assert api.post("/fhir/DiagnosticReport", foreign, who="admin").status_code == 201
    foreign["status"] = "entered-in-error"
    put = api.put(f"/fhir/DiagnosticReport?identifier=http://hosp-c.example/report|{number}", foreign, who="admin")
    assert put.status_code == 200, put.text
    assert card_for(sign(api, "dr-hosp-b", nid, ORDERS[:1]), "o-cbc") is not None  # A's result still stands
    # and an HR-marked report of another issuer does not lend its mark to A's unmarked result
    nid2 = _nid()
    pa2 = api.patient("hosp-a", unique("A"), nid2)
    api.patient("hosp-b", unique("B"), nid2)
    unmarked = _observations(api, push_cbc(api, "hosp-a", f"Patient/{pa2['id']}", unique("R"), marked=False))
    number = unique("R")
    lending = _report("hosp-c", pa2["id"], number, result=[{"reference": f"Observation/{o}"} for o in unmarked],
                      identifier=[{"system": "http://hosp-c.example/report", "value": number}],
                      meta={"tag": [{"system": HR_MARK, "code": "HR"}]}, code={"text": "会诊意见"})  # fmt: skip
    assert api.post("/fhir/DiagnosticReport", lending, who="admin").status_code == 201
    hb = [("o-hb", "http://loinc.org", "718-7")]
    card = card_for(sign(api, "dr-hosp-b", nid2, hb), "o-hb")
    assert card is None


def test_only_a_configured_hr_code_marks_a_result(api: Api) -> None:
    nid = _nid()
    pa = api.patient("hosp-a", unique("A"), nid)
    api.patient("hosp-b", unique("B"), nid)
    number = unique("R")
    push_cbc(api, "hosp-a", f"Patient/{pa['id']}", number, marked=False)
    bogus = api.get(f"/fhir/DiagnosticReport?identifier=http://hosp-a.example/report|{number}", who="admin")
    report = bogus.json()["entry"][0]["resource"]
    report["meta"] = {"tag": [{"system": HR_MARK, "code": "XX"}]}
    put = api.put(f"/fhir/DiagnosticReport/{report['id']}", report, who="hosp-a-system")
    assert put.status_code == 200, put.text
    assert card_for(sign(api, "dr-hosp-b", nid, ORDERS[:1]), "o-cbc") is None
    report["meta"] = {"tag": [{"system": HR_MARK, "code": "京HR"}]}
    assert api.put(f"/fhir/DiagnosticReport/{report['id']}", report, who="hosp-a-system").status_code == 200
    assert card_for(sign(api, "dr-hosp-b", nid, ORDERS[:1]), "o-cbc") is not None


def test_duplicate_json_keys_are_refused_whatever_their_spelling(api: Api) -> None:
    pa = api.patient("hosp-a", unique("A"), _nid())
    body = orjson.dumps(_report("hosp-a", pa["id"], unique("R"))).decode()
    twice = body[:-1] + ', "performer": [{"reference": "Organization/hosp-b"}]}'
    escaped = body[:-1] + ', "\\u0070erformer": [{"reference": "Organization/hosp-b"}]}'
    for text_ in (twice, escaped):
        r = api.post("/fhir/DiagnosticReport", text_, who="hosp-a-system")
        assert r.status_code == 400 and "twice" in _issue(r), r.text
        bundle = '{"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": ' + text_
        bundle += ', "request": {"method": "POST", "url": "DiagnosticReport"}}]}'
        assert api.post("/fhir", bundle, who="hosp-a-system").status_code == 400


# ------------------------------------------------------------------------------------------------ care context
def _check(api: Api, who: str, identifiers: list[dict[str, str]], *, patient: str | None = None,
           headers: dict[str, str] | None = None) -> Any:  # fmt: skip
    params: list[dict[str, Any]] = [{"name": "patientIdentifier", "valueIdentifier": i} for i in identifiers]
    if patient:
        params.append({"name": "patient", "valueReference": {"reference": f"Patient/{patient}"}})
    params.append({"name": "order", "resource": {"resourceType": "ServiceRequest", "id": "o1", "status": "draft",
                   "intent": "order", "subject": {"reference": "Patient/x"},
                   "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]}}})  # fmt: skip
    return api.post("/fhir/ServiceRequest/$recognition-check", {"resourceType": "Parameters", "parameter": params},
                    who=who, headers=headers or {})  # fmt: skip


def _status(r: Any) -> str:
    assert r.status_code == 200, r.text
    return str({p["name"]: p for p in r.json()["parameter"][0]["part"]}["status"]["valueCode"])


def test_knowing_an_id_or_another_hospitals_mrn_is_never_enough(api: Api) -> None:
    nid = _nid()
    pa = api.patient("hosp-a", (a_mrn := unique("A")), nid)
    push_cbc(api, "hosp-a", f"Patient/{pa['id']}", unique("R"))
    stranger = _nid()  # known nowhere
    attempts = [
        _check(api, "dr-hosp-b", [{"system": NATIONAL, "value": nid}]),
        _check(api, "dr-hosp-b", [{"system": "http://hosp-a.example/mrn", "value": a_mrn}]),
        _check(api, "dr-hosp-b", [], patient=pa["id"]),
        _check(api, "hosp-b-system", [{"system": NATIONAL, "value": nid}]),
        _check(api, "dr-hosp-b", [{"system": NATIONAL, "value": stranger}]),
    ]
    texts = set()
    for r in attempts:
        assert r.status_code == 403, r.text
        assert pa["id"] not in r.text and a_mrn not in r.text and "hosp-a" not in r.text
        texts.add(_issue(r))
    assert len(texts) == 1  # a known person and a stranger get the very same refusal
    body = {"hook": "patient-view", "hookInstance": unique("h"), "context": {"userId": "Practitioner/p",
            "patientId": pa["id"]}}  # fmt: skip
    assert api.post("/cds-services/hr-patient-view", body, who="dr-hosp-b").status_code == 403


def test_the_hospitals_own_mrn_with_the_national_id_registers_the_patient(api: Api) -> None:
    nid, b_mrn = _nid(), unique("B")
    pa = api.patient("hosp-a", unique("A"), nid)
    push_cbc(api, "hosp-a", f"Patient/{pa['id']}", unique("R"))
    own = {"system": "http://hosp-b.example/mrn", "value": b_mrn}
    alone = _check(api, "dr-hosp-b", [own])
    assert alone.status_code == 412 and "national identifier" in _issue(alone)
    rid = {"X-Request-Id": uuid.uuid4().hex}
    registered = _check(api, "dr-hosp-b", [own, {"system": NATIONAL, "value": nid}], headers=rid)
    assert _status(registered) == "recognizable"
    rows = _audit_rows(api, rid["X-Request-Id"])
    assert any(r["resource_type"] == "Patient" and "registered by the order check" in (r["detail"] or "")
               for r in rows), rows  # fmt: skip
    patients = api.get(f"/fhir/Patient?identifier=http://hosp-b.example/mrn|{b_mrn}", who="hosp-b-system").json()
    (entry,) = patients["entry"]
    assert entry["resource"]["managingOrganization"]["reference"] == "Organization/hosp-b"
    assert nid not in orjson.dumps(entry).decode()
    assert _status(_check(api, "dr-hosp-b", [own])) == "recognizable"  # the MRN alone now names the patient
    other = _nid()
    wrong = _check(api, "dr-hosp-b", [own, {"system": NATIONAL, "value": other}])
    assert wrong.status_code == 409


def test_break_glass_opens_the_check_with_a_reason_audited_and_shown_to_the_patient(api: Api) -> None:
    nid = _nid()
    pa = api.patient("hosp-a", unique("A"), nid)
    push_cbc(api, "hosp-a", f"Patient/{pa['id']}", unique("R"))
    no_reason = _check(api, "dr-hosp-b", [{"system": NATIONAL, "value": nid}], headers={"Category": BTG["Category"]})
    assert no_reason.status_code == 400 and "reason" in _issue(no_reason)
    rid = {"X-Request-Id": uuid.uuid4().hex}
    r = _check(api, "dr-hosp-b", [{"system": NATIONAL, "value": nid}], headers={**BTG, **rid})
    assert _status(r) == "recognizable"
    (row,) = [x for x in _audit_rows(api, rid["X-Request-Id"]) if x["patient_key"]]
    assert row["purpose"] == "BTG" and row["purpose_reason"] == "急诊昏迷" and "break-glass" in row["detail"]
    events = api.get(f"/fhir/AuditEvent?patient=Patient/{pa['id']}&agent=dr-hosp-b", who="admin").json()["entry"]
    purposes = [e["resource"].get("purposeOfEvent") for e in events]
    assert [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "BTG",
                         "display": "break the glass"}], "text": "急诊昏迷"}] in purposes  # fmt: skip
    patient = api.ctx.principals.add(PrincipalKind.PATIENT, unique("pt"), "患者",
                                     patient_key=api.ctx.identity.master_key(NATIONAL, nid)).principal  # fmt: skip
    seen = api.ctx.portal.access_log(patient)
    assert any(v.purpose == "BTG" and v.purpose_reason == "急诊昏迷" and v.who == "医生 hosp-b" for v in seen)
    # a break-glass search opens one patient's records, never a list of many
    many = api.get("/fhir/DiagnosticReport?code=58410-2", who="dr-hosp-b", headers=BTG)
    assert many.status_code == 400


def test_surfaces_refuse_principals_they_are_not_for_and_audit_it(api: Api) -> None:
    patient = api.ctx.principals.add(PrincipalKind.PATIENT, unique("pt"), "患者",
                                     patient_key=api.ctx.identity.master_key(NATIONAL, _nid())).client_id  # fmt: skip
    body = {"hook": "order-sign", "hookInstance": "x", "context": {"userId": "Patient/p", "patientId": "p",
            "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": []}}}  # fmt: skip
    rid = {"X-Request-Id": uuid.uuid4().hex}
    r = api.post("/cds-services/hr-order-sign", body, who=patient, headers=rid)
    assert r.status_code == 403 and r.json()["resourceType"] == "OperationOutcome"
    assert [(x["status"], x["outcome"]) for x in _audit_rows(api, rid["X-Request-Id"])] == [(403, "4")]
    for path in ("/stats/api/summary", "/admin/unmapped-codes", "/admin/qualifications"):
        rid = {"X-Request-Id": uuid.uuid4().hex}
        assert api.get(path, who="dr-hosp-b", headers=rid).status_code == 403, path
        assert [(x["status"], x["outcome"]) for x in _audit_rows(api, rid["X-Request-Id"])] == [(403, "4")], path
    rid = {"X-Request-Id": uuid.uuid4().hex}
    assert api.get("/stats/api/summary?hospital=hosp-a", who="hosp-b-system", headers=rid).status_code == 403
    assert [(x["status"], x["outcome"]) for x in _audit_rows(api, rid["X-Request-Id"])] == [(403, "4")]


def test_pix_refusal_names_no_other_hospitals_ids(api: Api) -> None:
    nid = _nid()
    pa = api.patient("hosp-a", (mrn := unique("A")), nid)
    r = api.get(f"/fhir/Patient/$ihe-pix?sourceIdentifier=http://hosp-a.example/mrn|{mrn}", who="dr-hosp-b")
    assert r.status_code == 403
    assert pa["id"] not in r.text and "hosp-a" not in r.text
    api.patient("hosp-b", unique("B"), nid)
    ok = api.get(f"/fhir/Patient/$ihe-pix?sourceIdentifier=http://hosp-a.example/mrn|{mrn}", who="dr-hosp-b")
    assert ok.status_code == 200 and pa["id"] in ok.text


def test_break_glass_is_counted_in_the_statistics_by_the_requesting_hospital(api: Api) -> None:
    before = api.get("/stats/api/summary?hospital=hosp-c", who="admin").json()
    nid = _nid()
    pa = api.patient("hosp-a", unique("A"), nid)
    push_cbc(api, "hosp-a", f"Patient/{pa['id']}", unique("R"))
    assert _status(_check(api, "dr-hosp-c", [{"system": NATIONAL, "value": nid}], headers=BTG)) == "recognizable"
    refused = _check(api, "dr-hosp-c", [{"system": NATIONAL, "value": nid}])
    assert refused.status_code == 403  # without the glass broken: refused, and no break-glass access
    after = api.get("/stats/api/summary?hospital=hosp-c", who="admin").json()
    assert after["break_glass_accesses"] == before["break_glass_accesses"] + 1
    (row,) = after["break_glass_by_hospital"]
    assert row["hospital"] == "hosp-c" and row["accesses"] >= 1
    own = api.get("/stats/api/summary", who="hosp-c-system").json()
    assert own["break_glass_accesses"] == after["break_glass_accesses"]
    csv = api.get("/stats/api/export.csv", who="hosp-c-system").text
    assert "break-glass,hosp-c," in csv


# ------------------------------------------------------------------------------------------------ the issuer
def _owner(api: Api, rtype: str, rid: str) -> str | None:
    with api.ctx.uow.begin() as repo:
        stored = repo.get(rtype, rid)
    assert stored is not None
    return stored.org_id


def test_the_issuer_is_the_performing_organization_else_the_writer_for_every_type(api: Api) -> None:
    """One decision for every type (policy.decide_issuer): a report or an Observation whose performer is a
    Practitioner (R4 allows Practitioner, PractitionerRole, Organization, CareTeam), or that names no performer, is the
    writing hospital's; naming another hospital's Organization is writing as it (403)."""
    pa = api.patient("hosp-a", unique("A"), _nid())
    doctor = api.post("/fhir/Practitioner", {"resourceType": "Practitioner", "name": [{"text": "王医生"}]},
                      who="hosp-a-system").json()["id"]  # fmt: skip
    by_doctor = [{"reference": f"Practitioner/{doctor}"}]
    observation = {"resourceType": "Observation", "status": "final", "code": {"text": "Hb"},
                   "subject": {"reference": f"Patient/{pa['id']}"}, "performer": by_doctor}  # fmt: skip
    cases = {
        "DiagnosticReport": _report("hosp-a", pa["id"], unique("R"), performer=by_doctor),
        "Observation": observation,
    }
    for rtype, body in cases.items():
        r = api.post(f"/fhir/{rtype}", body, who="hosp-a-system")
        assert r.status_code == 201, (rtype, r.text)
        assert _owner(api, rtype, r.json()["id"]) == "hosp-a"
        unnamed = {k: v for k, v in body.items() if k != "performer"}
        if rtype == "DiagnosticReport":
            unnamed["identifier"] = [{"system": "http://hosp-a.example/report", "value": unique("R")}]
        r = api.post(f"/fhir/{rtype}", unnamed, who="hosp-a-system")
        assert r.status_code == 201, (rtype, r.text)
        assert _owner(api, rtype, r.json()["id"]) == "hosp-a"
        # the performer's Organization decides when named; another hospital's is refused as writing as it
        foreign = {**unnamed, "performer": [*by_doctor, {"reference": "Organization/hosp-b"}]}
        if rtype == "DiagnosticReport":
            foreign["identifier"] = [{"system": "http://hosp-a.example/report", "value": unique("R")}]
        r = api.post(f"/fhir/{rtype}", foreign, who="hosp-a-system")
        assert r.status_code == 403 and "Organization/hosp-b is named as the issuer" in _issue(r), r.text
    # an admin writing on a hospital's behalf: the named Organization is the issuer
    r = api.post("/fhir/Observation", {**observation, "performer": [{"reference": "Organization/hosp-a"}]})
    assert r.status_code == 201 and _owner(api, "Observation", r.json()["id"]) == "hosp-a"
    # a Patient without managingOrganization is the writing hospital's local identity (its care context)
    bare = {"resourceType": "Patient", "identifier": [{"system": "http://hosp-c.example/mrn", "value": unique("C")},
            {"system": NATIONAL, "value": _nid()}]}  # fmt: skip
    r = api.post("/fhir/Patient", bare, who="hosp-c-system")
    assert r.status_code == 201, r.text
    assert _owner(api, "Patient", r.json()["id"]) == "hosp-c"
    assert api.get(f"/fhir/Patient/{r.json()['id']}", who="dr-hosp-c").status_code == 200
