"""The recognition scenario on SQLite and PostgreSQL: hospital A pushes a blood count and a chest CT; at hospital B
the same person's orders get cards (by B's local code too); validity, qualification, the HR mark, corrections,
withdrawals, feedback and statistics."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from catalog.codes import HR_MARK, NONRECOGNITION_REASONS
from registry.app import create_app
from registry.auth import PrincipalKind
from registry.context import AppContext
from registry.services.audit import AuditContext
from registry.services.code_maps import CODE_MAP_ORG
from registry.services.demo import REGION_EXT
from tests.integration.cds_rules import assert_valid_cds_response
from tests.integration.conftest import (
    NATIONAL,
    Api,
    Database,
    make_settings,
    namespaces_of,
    new_resident_id,
    unique,
)

T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # 10:00 in Beijing
B_CODES = "http://hosp-b.example/order-codes"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture(scope="module")
def api(database: Database, tmp_path_factory: pytest.TempPathFactory, clock: Clock) -> Iterator[Api]:
    settings = make_settings(tmp_path_factory.mktemp("var"), database.url)
    app = create_app(settings, clock=clock)
    ctx: AppContext = app.state.ctx
    admin = ctx.principals.add(PrincipalKind.ADMIN, "admin", "Admin").principal
    audit = AuditContext("setup", admin, "update")
    for org, regions in (("hosp-a", ["beijing", "jjjl"]), ("hosp-b", ["beijing", "jjjl"]), ("hosp-c", ["beijing"])):
        body = {
            "resourceType": "Organization",
            "id": org,
            "name": f"{org.upper()} 医院",
            "extension": [{"url": REGION_EXT, "valueCode": r} for r in regions],
        }
        ctx.ingest.update(admin, audit, "Organization", org, orjson.dumps(body).decode(), None)
        ctx.namespaces.declare(admin, org, namespaces_of(org))
        ctx.principals.add(PrincipalKind.HOSPITAL, f"{org}-system", org, org_id=org)
        ctx.principals.add(PrincipalKind.CLINICIAN, f"dr-{org}", f"医生 {org}", org_id=org)
    for group in ("hematology", "ct", "mr"):  # hosp-c has none: an unqualified issuer
        for org in ("hosp-a", "hosp-b"):
            ctx.administration.add(admin, {"org": org, "group": group, "scope": "beijing", "valid_from": "2025-01-01"})
    concept_map = {
        "resourceType": "ConceptMap",
        "id": "hosp-b-orders",
        "status": "active",
        "extension": [{"url": CODE_MAP_ORG, "valueReference": {"reference": "Organization/hosp-b"}}],
        "group": [
            {
                "source": B_CODES,
                "target": "https://hr-registry.org.cn/fhir/CodeSystem/recognized-items",
                "element": [
                    {"code": "XCG", "display": "血常规", "target": [{"code": "L001", "equivalence": "equivalent"}]},
                    {"code": "LOCAL-HB", "target": [{"code": "L004", "equivalence": "equivalent"}]},
                ],
            }
        ],
    }
    ctx.ingest.update(admin, audit, "ConceptMap", "hosp-b-orders", orjson.dumps(concept_map).decode(), None)
    with TestClient(app) as client:
        yield Api(client, ctx)
    ctx.engine.dispose()


def _tag(marked: bool) -> dict[str, Any]:
    return {"meta": {"tag": [{"system": HR_MARK, "code": "HR"}]}} if marked else {}


def push_cbc(
    api: Api,
    org: str,
    patient_ref: str,
    number: str,
    *,
    hb: float = 131,
    when: datetime = T0,
    marked: bool = True,
    status: str = "final",
) -> dict[str, Any]:
    base = f"http://{org}.example"
    effective = (when - timedelta(hours=2)).isoformat()
    entries = []
    for k, (code, value, unit) in enumerate((("6690-2", 6.1, "10*9/L"), ("718-7", hb, "g/L"))):
        entries.append(
            {
                "fullUrl": f"urn:uuid:00000000-0000-4000-8000-00000000000{k}",
                "resource": {
                    "resourceType": "Observation",
                    "status": status,
                    **_tag(marked),
                    "identifier": [{"system": f"{base}/obs", "value": f"{number}-{k}"}],
                    "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                    "subject": {"reference": patient_ref},
                    "effectiveDateTime": effective,
                    "valueQuantity": {"value": value, "unit": unit},
                    "interpretation": [{"coding": [{"code": "L" if code == "718-7" and value < 130 else "N"}]}],
                    "performer": [{"reference": f"Organization/{org}"}],
                },
                "request": {"method": "PUT", "url": f"Observation?identifier={base}/obs|{number}-{k}"},
            }
        )
    entries.append(
        {
            "fullUrl": "urn:uuid:00000000-0000-4000-8000-00000000000f",
            "resource": {
                "resourceType": "DiagnosticReport",
                "status": status,
                **_tag(marked),
                "identifier": [{"system": f"{base}/report", "value": number}],
                "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]},
                "subject": {"reference": patient_ref},
                "effectiveDateTime": effective,
                "performer": [{"reference": f"Organization/{org}"}],
                "result": [{"reference": e["fullUrl"]} for e in entries],
            },
            "request": {"method": "PUT", "url": f"DiagnosticReport?identifier={base}/report|{number}"},
        }
    )
    r = api.post("/fhir", {"resourceType": "Bundle", "type": "transaction", "entry": entries}, who=f"{org}-system")
    assert r.status_code == 200, r.text
    return dict(r.json())


def push_chest_ct(api: Api, org: str, patient_ref: str, accession: str, *, when: datetime = T0) -> None:
    base = f"http://{org}.example"
    study = {
        "resourceType": "ImagingStudy",
        "status": "available",
        **_tag(True),
        "identifier": [
            {"system": "urn:dicom:uid", "value": f"urn:oid:2.25.{abs(hash(accession)) % 10**12}"},
            {"system": f"{base}/accession", "value": accession, "assigner": {"reference": f"Organization/{org}"}},
        ],
        "subject": {"reference": patient_ref},
        "started": (when - timedelta(days=1)).isoformat(),
        "modality": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CT"}],
        "procedureCode": [{"coding": [{"system": "http://loinc.org", "code": "29252-4"}]}],
        "numberOfSeries": 2,
        "numberOfInstances": 240,
    }
    r = api.post("/fhir/ImagingStudy", study, who=f"{org}-system")
    assert r.status_code == 201, r.text


def sign(api: Api, who: str, nid: str | None, orders: list[tuple[str, str, str]], **extra: Any) -> dict[str, Any]:
    body = {
        "hook": "order-sign",
        "hookInstance": unique("hook"),
        "context": {
            "userId": "Practitioner/p1",
            "patientId": "ehr-1",
            "draftOrders": {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [
                    {
                        "resource": {
                            "resourceType": "ServiceRequest",
                            "id": oid,
                            "status": "draft",
                            "intent": "order",
                            "subject": {"reference": "Patient/ehr-1"},
                            "code": {"coding": [{"system": system, "code": code}]},
                        }
                    }
                    for oid, system, code in orders
                ],
            },
        },
        **(
            {
                "prefetch": {
                    "patient": {
                        "resourceType": "Patient",
                        "id": "ehr-1",
                        "identifier": [{"system": NATIONAL, "value": nid}],
                    }
                }
            }
            if nid
            else {}
        ),
        **extra,
    }
    r = api.post("/cds-services/hr-order-sign", body, who=who)
    assert r.status_code == 200, r.text
    response = dict(r.json())
    assert_valid_cds_response(response)
    return response


def card_for(response: dict[str, Any], order_id: str) -> dict[str, Any] | None:
    for card in response["cards"]:
        actions = [a for s in card.get("suggestions", []) for a in s["actions"]]
        if any(a.get("resourceId") == f"ServiceRequest/{order_id}" for a in actions):
            return card
    return None


@pytest.fixture
def person(api: Api) -> dict[str, Any]:
    """One person at A (MRN A-…) and at B (MRN B-…), one national identifier."""
    nid = new_resident_id()
    pa = api.patient("hosp-a", unique("A"), nid)
    pb = api.patient("hosp-b", unique("B"), nid)
    return {"nid": nid, "a": pa, "b": pb}


ORDERS = [("o-cbc", B_CODES, "XCG"), ("o-ct", "http://loinc.org", "29252-4"), ("o-mri", "http://loinc.org", "30657-1")]


def test_orders_at_b_get_cards_for_results_pushed_by_a(api: Api, person: dict[str, Any], clock: Clock) -> None:
    clock.now = T0
    push_cbc(api, "hosp-a", f"Patient/{person['a']['id']}", unique("R"), hb=128)
    push_chest_ct(api, "hosp-a", f"Patient/{person['a']['id']}", unique("ACC"))
    response = sign(api, "dr-hosp-b", person["nid"], ORDERS)
    cbc, ct, mri = (card_for(response, o) for o in ("o-cbc", "o-ct", "o-mri"))
    assert cbc is not None and ct is not None
    assert mri is None
    assert len(response["cards"]) == 2
    assert "血常规" in cbc["summary"] and "HOSP-A 医院" in cbc["summary"] and "2026-03-02" in cbc["summary"]
    assert "有效至2026-03-09" in cbc["summary"]
    assert "| 血红蛋白 | 128 g/L | ↓ |" in cbc["detail"]
    assert cbc["indicator"] == "warning"
    assert cbc["source"]["topic"]["code"] == "duplicate-therapy"
    assert [r["code"] for r in cbc["overrideReasons"]] == ["01", "02", "03", "04", "05", "06", "07", "08", "98", "99"]
    assert cbc["suggestions"][0]["isRecommended"] is True
    assert cbc["links"][0]["url"].startswith("http://testserver/clinician/reports/DiagnosticReport/")
    assert "胸部CT平扫" in ct["summary"] and "有效至2026-05-30" in ct["summary"]


def test_an_order_for_a_panel_member_is_answered_by_the_panel(api: Api, person: dict[str, Any]) -> None:
    push_cbc(api, "hosp-a", f"Patient/{person['a']['id']}", unique("R"))
    response = sign(
        api, "dr-hosp-b", person["nid"], [("o-hb", B_CODES, "LOCAL-HB"), ("o-hb2", "http://loinc.org", "718-7")]
    )
    assert card_for(response, "o-hb") is not None
    assert card_for(response, "o-hb2") is not None


def test_after_the_validity_window_the_card_is_gone(api: Api, person: dict[str, Any], clock: Clock) -> None:
    clock.now = T0
    push_cbc(api, "hosp-a", f"Patient/{person['a']['id']}", unique("R"))
    push_chest_ct(api, "hosp-a", f"Patient/{person['a']['id']}", unique("ACC"))
    try:
        clock.now = T0 + timedelta(days=7)  # the blood count was taken 2 h before T0: its 7 days are over
        response = sign(api, "dr-hosp-b", person["nid"], ORDERS)
        assert card_for(response, "o-cbc") is None
        assert card_for(response, "o-ct") is not None  # a CT stays valid 90 days
    finally:
        clock.now = T0


def test_no_card_for_an_unqualified_issuer_or_a_result_without_the_hr_mark(api: Api) -> None:
    nid = new_resident_id()
    pc = api.patient("hosp-c", unique("C"), nid)
    api.patient("hosp-b", unique("B"), nid)
    push_cbc(api, "hosp-c", f"Patient/{pc['id']}", unique("R"))  # hosp-c passed no EQA
    assert card_for(sign(api, "dr-hosp-b", nid, ORDERS[:1]), "o-cbc") is None
    nid2 = new_resident_id()
    pa = api.patient("hosp-a", unique("A"), nid2)
    api.patient("hosp-b", unique("B"), nid2)
    push_cbc(api, "hosp-a", f"Patient/{pa['id']}", unique("R"), marked=False)
    assert card_for(sign(api, "dr-hosp-b", nid2, ORDERS[:1]), "o-cbc") is None


def test_a_same_hospital_repeat_is_a_duplicate_order(api: Api, person: dict[str, Any]) -> None:
    push_cbc(api, "hosp-b", f"Patient/{person['b']['id']}", unique("R"), marked=False)
    card = card_for(sign(api, "dr-hosp-b", person["nid"], ORDERS[:1]), "o-cbc")
    assert card is not None
    assert card["summary"].startswith("重复开单：本院")


def test_a_correction_updates_the_card_and_a_withdrawal_removes_it(api: Api, person: dict[str, Any]) -> None:
    number = unique("R")
    push_cbc(api, "hosp-a", f"Patient/{person['a']['id']}", number, hb=131)
    assert "| 血红蛋白 | 131 g/L |" in card_for(sign(api, "dr-hosp-b", person["nid"], ORDERS[:1]), "o-cbc")["detail"]
    push_cbc(api, "hosp-a", f"Patient/{person['a']['id']}", number, hb=112, status="corrected")
    detail = card_for(sign(api, "dr-hosp-b", person["nid"], ORDERS[:1]), "o-cbc")["detail"]
    assert "| 血红蛋白 | 112 g/L | ↓ |" in detail
    assert "131 g/L" not in detail
    push_cbc(api, "hosp-a", f"Patient/{person['a']['id']}", number, hb=112, status="entered-in-error")
    assert card_for(sign(api, "dr-hosp-b", person["nid"], ORDERS[:1]), "o-cbc") is None


def test_the_patient_is_found_by_the_calling_hospitals_mrn_and_an_unknown_one_is_refused(
    api: Api, person: dict[str, Any]
) -> None:
    push_cbc(api, "hosp-a", f"Patient/{person['a']['id']}", unique("R"))
    mrn = person["b"]["identifier"][0]
    prefetch = {"patient": {"resourceType": "Patient", "identifier": [mrn]}}
    response = sign(api, "dr-hosp-b", None, ORDERS[:1], prefetch=prefetch)
    assert card_for(response, "o-cbc") is not None
    body = {
        "hook": "order-sign",
        "hookInstance": "x",
        "context": {
            "userId": "Practitioner/p",
            "patientId": "nobody",
            "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": []},
        },
    }
    r = api.post("/cds-services/hr-order-sign", body, who="dr-hosp-b")
    assert r.status_code == 403  # nobody of hosp-b's: the same refusal whether "nobody" exists anywhere or not
    assert r.json()["resourceType"] == "OperationOutcome"


def test_a_prefetched_patient_read_from_the_registry_is_recognized_despite_its_masked_national_id(
    api: Api, person: dict[str, Any]
) -> None:
    """An EHR that prefetches the Patient from this registry sends the masked national ID back; it is a display
    form, so the patient is found by the hospital's MRN instead of the request failing."""
    push_cbc(api, "hosp-a", f"Patient/{person['a']['id']}", unique("R"))
    read = api.get(f"/fhir/Patient/{person['b']['id']}", who="dr-hosp-b")
    assert read.status_code == 200, read.text
    patient = read.json()
    assert any("*" in str(i.get("value")) for i in patient["identifier"])
    response = sign(api, "dr-hosp-b", None, ORDERS[:1], prefetch={"patient": patient})
    assert card_for(response, "o-cbc") is not None


def test_order_select_checks_only_the_selection(api: Api, person: dict[str, Any]) -> None:
    push_cbc(api, "hosp-a", f"Patient/{person['a']['id']}", unique("R"))
    push_chest_ct(api, "hosp-a", f"Patient/{person['a']['id']}", unique("ACC"))
    request = {
        "hook": "order-select",
        "hookInstance": unique("h"),
        "context": {
            "userId": "Practitioner/p",
            "patientId": "ehr-1",
            "selections": ["ServiceRequest/o-ct"],
            "draftOrders": {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [
                    {
                        "resource": {
                            "resourceType": "ServiceRequest",
                            "id": oid,
                            "status": "draft",
                            "intent": "order",
                            "subject": {"reference": "Patient/ehr-1"},
                            "code": {"coding": [{"system": s, "code": c}]},
                        }
                    }
                    for oid, s, c in ORDERS
                ],
            },
        },
        "prefetch": {
            "patient": {"resourceType": "Patient", "identifier": [{"system": NATIONAL, "value": person["nid"]}]}
        },
    }
    r = api.post("/cds-services/hr-order-select", request, who="dr-hosp-b")
    assert r.status_code == 200
    assert_valid_cds_response(r.json())
    assert [card_for(r.json(), o) is not None for o in ("o-cbc", "o-ct")] == [False, True]


def test_patient_view_summarizes_recognizable_results(api: Api, person: dict[str, Any]) -> None:
    push_cbc(api, "hosp-a", f"Patient/{person['a']['id']}", unique("R"))
    push_chest_ct(api, "hosp-a", f"Patient/{person['a']['id']}", unique("ACC"))
    body = {
        "hook": "patient-view",
        "hookInstance": unique("h"),
        "context": {"userId": "Practitioner/p", "patientId": "ehr-1"},
        "prefetch": {
            "patient": {"resourceType": "Patient", "identifier": [{"system": NATIONAL, "value": person["nid"]}]}
        },
    }
    r = api.post("/cds-services/hr-patient-view", body, who="dr-hosp-b")
    assert r.status_code == 200
    assert_valid_cds_response(r.json())
    (card,) = r.json()["cards"]
    assert card["indicator"] == "info"
    assert "血常规" in card["summary"] and "胸部CT平扫" in card["summary"]
    assert card["summary"].startswith("外院可互认结果 2 项")


def _decision_counts(api: Api) -> dict[str, Any]:
    s = api.get("/stats/api/summary", who="admin").json()
    reasons = {r["code"]: r["count"] for r in s["declined_by_reason"]}
    return {
        "recognized": s["recognized"],
        "declined": s["declined"],
        "refusals": s["refusals"],
        "02": reasons["02"],
        "99": reasons["99"],
        "saved": s["money_saved_cny"],
        "patients": s["patients_benefited"],
    }


def test_accept_and_override_feedback_are_counted_exactly_once(api: Api, person: dict[str, Any]) -> None:
    push_cbc(api, "hosp-a", f"Patient/{person['a']['id']}", unique("R"))
    push_chest_ct(api, "hosp-a", f"Patient/{person['a']['id']}", unique("ACC"))
    before = _decision_counts(api)
    response = sign(api, "dr-hosp-b", person["nid"], ORDERS)
    cbc, ct = card_for(response, "o-cbc"), card_for(response, "o-ct")
    assert cbc is not None and ct is not None
    feedback = {
        "feedback": [
            {
                "card": cbc["uuid"],
                "outcome": "accepted",
                "acceptedSuggestions": [{"id": cbc["suggestions"][0]["uuid"]}],
                "outcomeTimestamp": "2026-03-02T02:05:00Z",
            },
            {
                "card": ct["uuid"],
                "outcome": "overridden",
                "outcomeTimestamp": "2026-03-02T02:06:00Z",
                "overrideReason": {
                    "reason": {"system": NONRECOGNITION_REASONS, "code": "02"},
                    "userComment": "病情变化快",
                },
            },
        ]
    }
    for _ in range(2):  # the repeat changes nothing
        r = api.post("/cds-services/hr-order-sign/feedback", feedback, who="dr-hosp-b")
        assert r.status_code == 200, r.text
    after = _decision_counts(api)
    assert after["recognized"] == before["recognized"] + 1
    assert after["declined"] == before["declined"] + 1
    assert after["refusals"] == before["refusals"] + 1
    assert after["02"] == before["02"] + 1
    assert float(after["saved"]) == pytest.approx(float(before["saved"]) + 20.0)  # the blood count's fee
    conflicting = {
        "feedback": [
            {
                "card": cbc["uuid"],
                "outcome": "overridden",
                "outcomeTimestamp": "2026-03-02T03:00:00Z",
                "overrideReason": {"reason": {"system": NONRECOGNITION_REASONS, "code": "07"}},
            }
        ]
    }
    assert api.post("/cds-services/hr-order-sign/feedback", conflicting, who="dr-hosp-b").status_code == 409
    assert _decision_counts(api) == after


def test_feedback_errors(api: Api, person: dict[str, Any]) -> None:
    push_cbc(api, "hosp-a", f"Patient/{person['a']['id']}", unique("R"))
    card = card_for(sign(api, "dr-hosp-b", person["nid"], ORDERS[:1]), "o-cbc")
    assert card is not None
    url = "/cds-services/hr-order-sign/feedback"
    no_reason = {
        "feedback": [{"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-03-02T00:00:00Z"}]
    }
    # valid CDS Hooks (overrideReason is optional), but the card offered reasons and declining needs one: our rule
    r = api.post(url, no_reason, who="dr-hosp-b")
    assert r.status_code == 422, r.text
    assert "overrideReasons" in r.json()["issue"][0]["diagnostics"]
    bad_reason = {
        "feedback": [
            {
                "card": card["uuid"],
                "outcome": "overridden",
                "outcomeTimestamp": "2026-03-02T00:00:00Z",
                "overrideReason": {"reason": {"system": NONRECOGNITION_REASONS, "code": "42"}},
            }
        ]
    }
    assert api.post(url, bad_reason, who="dr-hosp-b").status_code == 400
    needs_comment = {
        "feedback": [
            {
                "card": card["uuid"],
                "outcome": "overridden",
                "outcomeTimestamp": "2026-03-02T00:00:00Z",
                "overrideReason": {"reason": {"system": NONRECOGNITION_REASONS, "code": "99"}},
            }
        ]
    }
    assert api.post(url, needs_comment, who="dr-hosp-b").status_code == 400
    unknown = {
        "feedback": [{"card": "no-such-card", "outcome": "accepted", "outcomeTimestamp": "2026-03-02T00:00:00Z"}]
    }
    assert api.post(url, unknown, who="dr-hosp-b").status_code == 404
    other_hospital = {
        "feedback": [{"card": card["uuid"], "outcome": "accepted", "outcomeTimestamp": "2026-03-02T00:00:00Z"}]
    }
    assert api.post(url, other_hospital, who="dr-hosp-c").status_code == 403
    assert api.post(url, {"nope": 1}, who="dr-hosp-b").status_code == 400


def test_the_fhir_operations_check_and_decide(api: Api, person: dict[str, Any]) -> None:
    push_cbc(api, "hosp-a", f"Patient/{person['a']['id']}", unique("R"), hb=125)
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "patientIdentifier", "valueIdentifier": {"system": NATIONAL, "value": person["nid"]}},
            {
                "name": "order",
                "resource": {
                    "resourceType": "ServiceRequest",
                    "id": "op-1",
                    "status": "draft",
                    "intent": "order",
                    "subject": {"reference": "Patient/x"},
                    "code": {"coding": [{"system": B_CODES, "code": "XCG"}]},
                },
            },
            {
                "name": "order",
                "resource": {
                    "resourceType": "ServiceRequest",
                    "status": "draft",
                    "intent": "order",
                    "subject": {"reference": "Patient/x"},
                    "code": {"coding": [{"system": "urn:none", "code": "?"}]},
                },
            },
        ],
    }
    r = api.post("/fhir/ServiceRequest/$recognition-check", params, who="hosp-b-system")
    assert r.status_code == 200, r.text
    first, second = r.json()["parameter"]
    parts = {p["name"]: p for p in first["part"]}
    assert parts["status"]["valueCode"] == "recognizable"
    assert parts["item"]["valueCoding"]["code"] == "L001"
    candidate = {p["name"]: p for p in parts["candidate"]["part"]}
    assert candidate["issuer"]["valueReference"]["reference"] == "Organization/hosp-a"
    assert candidate["validUntil"]["valueDateTime"].startswith("2026-03-09")
    assert {p["name"]: p for p in second["part"]}["status"]["valueCode"] == "not-in-catalog"
    decision = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "card", "valueString": parts["card"]["valueString"]},
            {"name": "outcome", "valueCode": "declined"},
            {"name": "reason", "valueCoding": {"system": NONRECOGNITION_REASONS, "code": "99"}},
            {"name": "comment", "valueString": "糖尿病监测"},
        ],
    }
    r = api.post("/fhir/ServiceRequest/$recognition-decision", decision, who="hosp-b-system")
    assert r.status_code == 200, r.text
    assert {p["name"]: p for p in r.json()["parameter"]}["new"]["valueBoolean"] is True
    r = api.post("/fhir/ServiceRequest/$recognition-decision", decision, who="hosp-b-system")
    assert {p["name"]: p for p in r.json()["parameter"]}["new"]["valueBoolean"] is False
    bad = {"resourceType": "Parameters", "parameter": [{"name": "order", "resource": {"resourceType": "Patient"}}]}
    assert api.post("/fhir/ServiceRequest/$recognition-check", bad, who="hosp-b-system").status_code == 400


def test_statistics_reconcile_with_the_decision_log(api: Api) -> None:
    s = api.get("/stats/api/summary", who="admin").json()
    with api.ctx.engine.connect() as conn:
        from sqlalchemy import text

        rows = conn.execute(
            text("select outcome, reason_code, counts_as_refusal, patient_key, fee_fen from decision")
        ).all()
    recognized = [r for r in rows if r.outcome == "recognized"]
    assert s["recognized"] == len(recognized)
    assert s["declined"] == sum(1 for r in rows if r.outcome == "declined")
    assert s["refusals"] == sum(1 for r in rows if r.counts_as_refusal)
    assert s["patients_benefited"] == len({r.patient_key for r in recognized})
    assert float(s["money_saved_cny"]) == pytest.approx(sum(r.fee_fen for r in recognized) / 100)
    assert sum(d["recognized"] for d in s["by_day"]) == s["recognized"]
    assert sum(h["recognized"] for h in s["by_hospital"]) == s["recognized"]
    assert sum(i["refusals"] for i in s["by_item"]) == s["refusals"]
    if s["recognized"] + s["refusals"]:
        assert s["recognition_rate"] == round(s["recognized"] / (s["recognized"] + s["refusals"]), 4)
    csv = api.get("/stats/api/export.csv", who="admin")
    assert csv.status_code == 200
    assert csv.headers["content-type"].startswith("text/csv")
    total = next(line for line in csv.text.splitlines() if line.startswith("total"))
    assert total.split(",")[5] == str(s["recognized"])
    mine = api.get("/stats/api/summary", who="hosp-c-system").json()
    assert mine["filters"]["hospital"] == "hosp-c"
    assert api.get("/stats/api/summary", who="hosp-c-system", params={"hospital": "hosp-b"}).status_code == 403
    assert api.get("/stats/api/summary", who="admin", params={"start": "nope"}).status_code == 400


def test_unmapped_codes_are_counted_per_hospital(api: Api, person: dict[str, Any]) -> None:
    local = unique("LOCAL")
    obs = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://hosp-a.example/lab-codes", "code": local, "display": "某本地项目"}]},
        "subject": {"reference": f"Patient/{person['a']['id']}"},
        "effectiveDateTime": T0.isoformat(),
        "performer": [{"reference": "Organization/hosp-a"}],
    }
    for _ in range(2):
        assert api.post("/fhir/Observation", obs, who="hosp-a-system").status_code == 201
    listed = api.get("/admin/unmapped-codes", who="hosp-a-system").json()["unmapped"]
    mine = [u for u in listed if u["code"] == local]
    assert mine and mine[0]["count"] == 2 and mine[0]["display"] == "某本地项目"
    assert api.get("/admin/unmapped-codes", who="hosp-a-system", params={"org": "hosp-b"}).status_code == 403


def test_a_code_map_change_remaps_stored_results(api: Api, person: dict[str, Any]) -> None:
    local = unique("X")
    obs = {
        "resourceType": "Observation",
        "status": "final",
        **_tag(True),
        "code": {"coding": [{"system": "http://hosp-a.example/lab-codes", "code": local}]},
        "subject": {"reference": f"Patient/{person['a']['id']}"},
        "effectiveDateTime": T0.isoformat(),
        "valueQuantity": {"value": 5.5, "unit": "mmol/L"},
        "performer": [{"reference": "Organization/hosp-a"}],
    }
    api.post("/fhir/Observation", obs, who="hosp-a-system")
    glucose = [("o-glu", "http://loinc.org", "2345-7")]
    assert card_for(sign(api, "dr-hosp-b", person["nid"], glucose), "o-glu") is None
    api.ctx.administration.add(
        api.ctx.principals.get("admin"),
        {
            "org": "hosp-a",
            "group": "glucose",  # type: ignore[arg-type]
            "scope": "beijing",
            "valid_from": "2025-01-01",
        },
    )
    concept_map = {
        "resourceType": "ConceptMap",
        "status": "active",
        "group": [
            {
                "source": "http://hosp-a.example/lab-codes",
                "target": "loinc",
                "element": [{"code": local, "target": [{"code": "2345-7", "equivalence": "equivalent"}]}],
            }
        ],
    }
    cm_id = unique("cm")
    r = api.put(f"/fhir/ConceptMap/{cm_id}", {**concept_map, "id": cm_id}, who="hosp-a-system")
    assert r.status_code == 201, r.text
    assert card_for(sign(api, "dr-hosp-b", person["nid"], glucose), "o-glu") is not None
    r = api.delete(f"/fhir/ConceptMap/{r.json()['id']}", who="hosp-a-system")
    assert r.status_code == 204
    assert card_for(sign(api, "dr-hosp-b", person["nid"], glucose), "o-glu") is None


def test_the_index_matches_a_recomputation(api: Api) -> None:
    diff = api.ctx.administration.check()
    assert diff.clean, (diff.missing[:3], diff.extra[:3])
    assert api.ctx.administration.rebuild() > 0
    assert api.ctx.administration.check().clean


def test_the_index_check_lists_rows_that_differ_in_a_value_one_of_them_lacks(api: Api, person: dict[str, Any]) -> None:
    """``index check`` compares rows whose mark (or report) is missing in one and present in another: it lists
    them, it does not fail on comparing nothing with text."""
    push_cbc(api, "hosp-a", f"Patient/{person['a']['id']}", unique("R"))
    kept = "patient_key, effective_us, effective_high_us, org_id, status, res_type, res_id, res_pk, report_id"
    first = "(SELECT min(pk) FROM result_index WHERE res_type = 'Observation')"
    copy = (
        f"INSERT INTO result_index ({kept}, item_id, hr_mark) "
        f"SELECT {kept}, 'L999', {{mark}} FROM result_index WHERE pk = {first}"
    )
    with api.ctx.uow.begin() as repo:
        for mark in ("NULL", "'HR'"):
            repo.conn.execute(text(copy.format(mark=mark)))
    try:
        diff = api.ctx.administration.check()
        assert sorted(str(row["hr_mark"]) for row in diff.extra) == ["HR", "None"] and not diff.missing
    finally:
        api.ctx.administration.rebuild()
    assert api.ctx.administration.check().clean
