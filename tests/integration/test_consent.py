"""The patient's sharing consent (docs/design.md §6 consent; PIPL Art. 28–29), end to end through the portal, FHIR
REST, CDS Hooks, ``$recognition-check`` and the statistics, on SQLite and PostgreSQL.

The region of tests/integration/test_recognition.py: a person registered at hospitals A and B; A issues the results,
B is the other hospital whose order screen asks. The patient signs in to the portal and pauses or resumes sharing,
and gives or withdraws the separate consent for sensitive items (HBsAg here)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text

from registry.auth import PrincipalKind
from registry.fhir.validation import validate
from registry.services.audit import AuditContext
from tests.integration.cds_rules import assert_valid_cds_response
from tests.integration.conftest import NATIONAL, Api, Database, unique
from tests.integration.recognition_region import new_person, recognition_region
from tests.integration.test_recognition import HR_MARK, T0, Clock, card_for, push_cbc, sign

BTG = {
    "Category": 'http://terminology.hl7.org/CodeSystem/v3-ActReason#BTG; scheme="http://hl7.org/fhir/tag/security"',
    "X-Break-Glass-Reason": "%E6%80%A5%E8%AF%8A%E6%8A%A2%E6%95%91",  # 急诊抢救, percent-encoded
}
RESTRICTED = "患者已限制共享"
CBC_ORDER = [("o-cbc", "http://loinc.org", "58410-2")]
HBSAG_ORDER = [("o-hbs", "http://loinc.org", "5196-1")]


@pytest.fixture(scope="module")
def api(database: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with recognition_region(database, tmp_path_factory.mktemp("var"), Clock(T0)) as region:
        admin = region.ctx.principals.get("admin")
        assert admin is not None
        for org in ("hosp-a", "hosp-b"):  # qualified for the serology too, so only the consent can withhold it
            region.ctx.administration.add(admin, {"org": org, "group": "infection", "scope": "beijing",
                                                  "valid_from": "2025-01-01"})  # fmt: skip
        yield region


class Portal:
    """The person's portal session (a patient principal signed in through the form)."""

    def __init__(self, api: Api, nid: str) -> None:
        self.api = api
        key = api.ctx.identity.master_key(NATIONAL, nid)
        self.client_id = unique("patient")
        self.secret = api.ctx.principals.add(PrincipalKind.PATIENT, self.client_id, "患者", patient_key=key).secret
        form = api.client.get("/portal/login")
        api.client.post("/portal/login", data={"account": self.client_id, "secret": self.secret,
                                               "csrf": _csrf(form.text)}, follow_redirects=False)  # fmt: skip

    def page(self) -> Any:
        r = self.api.client.get("/portal/consent")
        assert r.status_code == 200, r.text
        return r

    def change(self, action: str, org: str = "", *, status: int = 200) -> Any:
        csrf = _csrf(self.page().text)
        r = self.api.client.post("/portal/consent", data={"action": action, "org": org, "csrf": csrf})
        assert r.status_code == status, r.text
        return r

    def consents(self) -> list[dict[str, Any]]:
        r = self.api.get("/fhir/Consent", who=self.client_id)
        assert r.status_code == 200, r.text
        return [e["resource"] for e in r.json().get("entry", [])]


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found
    return found.group(1)


def _select(api: Api, who: str, nid: str, orders: list[tuple[str, str, str]], **headers: str) -> dict[str, Any]:
    entries = [
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
    ]
    body = {"hook": "order-select", "hookInstance": unique("hook"),
            "context": {"userId": "Practitioner/p1", "patientId": "ehr-1",
                        "selections": [f"ServiceRequest/{oid}" for oid, _s, _c in orders],
                        "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": entries}},
            "prefetch": {"patient": {"resourceType": "Patient", "id": "ehr-1",
                                     "identifier": [{"system": NATIONAL, "value": nid}]}}}  # fmt: skip
    r = api.post("/cds-services/hr-order-select", body, who=who, headers=headers)
    assert r.status_code == 200, r.text
    response = dict(r.json())
    assert_valid_cds_response(response)
    return response


def _report_id(bundle: dict[str, Any]) -> str:
    return next(
        e["response"]["location"].split("/")[1]
        for e in bundle["entry"]
        if e["response"]["location"].startswith("DiagnosticReport/")
    )


def push_hbsag(api: Api, org: str, patient_ref: str, number: str) -> dict[str, Any]:
    """A serology report with one sensitive result (HBsAg, L145), marked HR."""
    base = f"http://{org}.example"
    effective = (T0 - timedelta(hours=3)).isoformat()
    tag = {"meta": {"tag": [{"system": HR_MARK, "code": "HR"}]}}
    obs = {
        "resourceType": "Observation",
        "status": "final",
        **tag,
        "identifier": [{"system": f"{base}/obs", "value": f"{number}-s"}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "5196-1"}]},
        "subject": {"reference": patient_ref},
        "effectiveDateTime": effective,
        "valueString": "阴性",
        "performer": [{"reference": f"Organization/{org}"}],
    }
    report = {
        "resourceType": "DiagnosticReport",
        "status": "final",
        **tag,
        "identifier": [{"system": f"{base}/report", "value": number}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "5196-1"}]},
        "subject": {"reference": patient_ref},
        "effectiveDateTime": effective,
        "performer": [{"reference": f"Organization/{org}"}],
        "result": [{"reference": "urn:uuid:1"}],
    }
    entries = [{"fullUrl": "urn:uuid:1", "resource": obs, "request": {"method": "POST", "url": "Observation"}},
               {"resource": report, "request": {"method": "POST", "url": "DiagnosticReport"}}]  # fmt: skip
    r = api.post("/fhir", {"resourceType": "Bundle", "type": "transaction", "entry": entries}, who=f"{org}-system")
    assert r.status_code == 200, r.text
    return dict(r.json())


def _found(api: Api, who: str, query: str, **headers: str) -> set[str]:
    r = api.get(f"/fhir/{query}", who=who, headers=headers)
    assert r.status_code == 200, r.text
    return {e["resource"]["id"] for e in r.json().get("entry", []) if e.get("search", {}).get("mode") == "match"}


def _paused_orders(api: Api) -> int:
    r = api.get("/stats/api/summary")
    assert r.status_code == 200, r.text
    return int(r.json()["sharing_paused"])


# ------------------------------------------------------------------------------------------------ pause / resume
def test_a_pause_withholds_the_results_from_that_hospital_until_resumed(api: Api) -> None:
    person = new_person(api)
    report = _report_id(push_cbc(api, "hosp-a", f"Patient/{person['a']['id']}", unique("R")))
    portal = Portal(api, person["nid"])
    assert card_for(sign(api, "hosp-b-system", person["nid"], CBC_ORDER), "o-cbc") is not None
    assert report in _found(api, "dr-hosp-b", f"DiagnosticReport?patient={person['a']['id']}")
    paused_before = _paused_orders(api)

    page = portal.change("pause", "hosp-b")
    assert 'data-org="hosp-b" data-state="paused"' in page.text and 'data-testid="saved"' in page.text

    # the other hospital's order screen: a notice, not silence, and no card to recognize
    response = _select(api, "dr-hosp-b", person["nid"], CBC_ORDER)
    (notice,) = response["cards"]
    assert notice["summary"].startswith(RESTRICTED) and "suggestions" not in notice and "overrideReasons" not in notice
    assert card_for(sign(api, "hosp-b-system", person["nid"], CBC_ORDER), "o-cbc") is None
    view = {"hook": "patient-view", "hookInstance": unique("hook"),
            "context": {"userId": "Practitioner/p1", "patientId": "ehr-1"},
            "prefetch": {"patient": {"resourceType": "Patient", "id": "ehr-1",
                                     "identifier": [{"system": NATIONAL, "value": person["nid"]}]}}}  # fmt: skip
    reminder = api.post("/cds-services/hr-patient-view", view, who="dr-hosp-b").json()
    assert [c["summary"][: len(RESTRICTED)] for c in reminder["cards"]] == [RESTRICTED]
    # its search finds nothing of A's, its read is refused
    assert _found(api, "dr-hosp-b", f"DiagnosticReport?patient={person['a']['id']}") == set()
    assert _found(api, "hosp-b-system", f"Observation?patient={person['a']['id']}") == set()
    refused = api.get(f"/fhir/DiagnosticReport/{report}", who="hosp-b-system")
    assert refused.status_code == 403 and "restricted sharing" in refused.text
    assert api.get(f"/fhir/DiagnosticReport/{report}/_history", who="dr-hosp-b").status_code == 403
    # the issuer, the patient and the admin still see it; another hospital not paused is unaffected (A here)
    assert api.get(f"/fhir/DiagnosticReport/{report}", who="hosp-a-system").status_code == 200
    assert api.get(f"/fhir/DiagnosticReport/{report}", who=portal.client_id).status_code == 200
    # $recognition-check says so too
    check = api.post("/fhir/ServiceRequest/$recognition-check", {"resourceType": "Parameters", "parameter": [
        {"name": "patientIdentifier", "valueIdentifier": {"system": NATIONAL, "value": person["nid"]}},
        {"name": "order", "resource": {"resourceType": "ServiceRequest", "id": "o1", "status": "draft",
                                       "intent": "order", "subject": {"reference": "Patient/x"},
                                       "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]}}}]},
        who="hosp-b-system")  # fmt: skip
    parts = {p["name"]: p for p in check.json()["parameter"][0]["part"]}
    assert parts["sharingRestricted"]["valueBoolean"] is True and RESTRICTED in parts["notice"]["valueString"]
    assert "candidate" not in parts
    # the statistics count the orders where sharing was paused
    assert _paused_orders(api) >= paused_before + 2
    assert "sharing_paused" in api.get("/stats/api/export.csv").text.splitlines()[0]
    secret = api.ctx.principals.rotate_secret("hosp-b-system")
    api.tokens.pop("hosp-b-system", None)  # the rotation ended the old token
    form = api.client.get("/stats/login")
    api.client.post("/stats/login", data={"account": "hosp-b-system", "secret": secret, "csrf": _csrf(form.text)})
    stats_page = api.client.get("/stats")
    shown = re.search(r'data-testid="kpi-sharing_paused">(\d+)<', stats_page.text)
    assert shown and int(shown.group(1)) >= 2  # B's own orders where sharing was paused

    # break-glass opens it, audited, and the patient sees who did
    opened = api.get(f"/fhir/DiagnosticReport/{report}", who="dr-hosp-b", headers=BTG)
    assert opened.status_code == 200 and opened.json()["id"] == report
    glass = _select(api, "dr-hosp-b", person["nid"], CBC_ORDER, **BTG)
    assert (
        glass["cards"]
        and "overrideReasons" in glass["cards"][0]
        and not glass["cards"][0]["summary"].startswith(RESTRICTED)
    )
    access = api.client.get("/portal/access")
    assert access.status_code == 200 and "急诊抢救" in access.text

    # the record: a Consent denying hospital B, audited
    (sharing,) = portal.consents()
    assert validate(sharing) == "Consent"  # a valid R4 Consent (the R4B model and the required bindings)
    assert sharing["status"] == "active" and sharing["scope"]["coding"][0]["code"] == "patient-privacy"
    assert sharing["category"][0]["coding"][0] == {"system": "http://loinc.org", "code": "59284-0",
                                                   "display": "Patient Consent"}  # fmt: skip
    (deny,) = sharing["provision"]["provision"]
    assert deny["type"] == "deny" and deny["actor"][0]["reference"]["reference"] == "Organization/hosp-b"

    portal.change("resume", "hosp-b")
    assert card_for(sign(api, "hosp-b-system", person["nid"], CBC_ORDER), "o-cbc") is not None
    assert report in _found(api, "dr-hosp-b", f"DiagnosticReport?patient={person['a']['id']}")
    history = api.get(f"/fhir/Consent/{sharing['id']}/_history", who=portal.client_id).json()
    states = [e["resource"]["status"] for e in history["entry"]]
    assert states == ["inactive", "active"]  # newest first: the resume, then the pause
    with api.ctx.engine.connect() as conn:
        written = text(
            "SELECT interaction, outcome FROM audit_event WHERE resource_type = 'Consent' "
            "AND resource_id = :i AND action IN ('C', 'U') ORDER BY pk"
        )
        rows = conn.execute(written, {"i": sharing["id"]}).all()
    assert [(r.interaction, r.outcome) for r in rows] == [("create", "0"), ("update", "0")]


def test_pausing_every_other_hospital_withholds_from_all_but_the_issuer(api: Api) -> None:
    person = new_person(api)
    report = _report_id(push_cbc(api, "hosp-a", f"Patient/{person['a']['id']}", unique("R")))
    portal = Portal(api, person["nid"])
    page = portal.change("pause")
    assert 'data-org="*" data-state="paused"' in page.text
    assert _select(api, "dr-hosp-b", person["nid"], CBC_ORDER)["cards"][0]["summary"].startswith(RESTRICTED)
    assert api.get(f"/fhir/DiagnosticReport/{report}", who="hosp-b-system").status_code == 403
    assert api.get(f"/fhir/DiagnosticReport/{report}", who="hosp-a-system").status_code == 200
    (sharing,) = portal.consents()
    assert sharing["provision"]["provision"] == [{"type": "deny"}]  # no actor: every recipient
    portal.change("pause")  # a repeat changes nothing and writes no version
    assert api.get(f"/fhir/Consent/{sharing['id']}", who=portal.client_id).json()["meta"]["versionId"] == "1"
    portal.change("resume")
    assert card_for(sign(api, "hosp-b-system", person["nid"], CBC_ORDER), "o-cbc") is not None


# ------------------------------------------------------------------------------------------------ sensitive items
def test_sensitive_results_stay_with_the_issuer_until_the_patient_consents_separately(api: Api) -> None:
    person = new_person(api)
    bundle = push_hbsag(api, "hosp-a", f"Patient/{person['a']['id']}", unique("S"))
    report = _report_id(bundle)
    obs = next(e["response"]["location"].split("/")[1] for e in bundle["entry"]
               if e["response"]["location"].startswith("Observation/"))  # fmt: skip
    cbc = _report_id(push_cbc(api, "hosp-a", f"Patient/{person['a']['id']}", unique("R")))
    portal = Portal(api, person["nid"])

    # default: not shared — no card, no notice (it would tell that the test was done), no search match, no read
    assert _select(api, "dr-hosp-b", person["nid"], HBSAG_ORDER)["cards"] == []
    assert _found(api, "dr-hosp-b", f"DiagnosticReport?patient={person['a']['id']}") == {cbc}
    assert obs not in _found(api, "hosp-b-system", f"Observation?patient={person['a']['id']}")
    for path in (f"DiagnosticReport/{report}", f"Observation/{obs}"):
        assert api.get(f"/fhir/{path}", who="hosp-b-system").status_code == 403
        assert api.get(f"/fhir/{path}", who="hosp-a-system").status_code == 200  # the issuer
        assert api.get(f"/fhir/{path}", who=portal.client_id).status_code == 200  # the patient
    included = api.get(f"/fhir/Patient?_id={person['a']['id']}&_revinclude=DiagnosticReport:patient", who="dr-hosp-b")
    assert included.status_code == 200, included.text
    assert {e["resource"]["id"] for e in included.json()["entry"]} == {person["a"]["id"], cbc}
    secret = api.ctx.principals.rotate_secret("dr-hosp-b")
    form = api.client.get("/clinician/login")
    api.client.post("/clinician/login", data={"account": "dr-hosp-b", "secret": secret, "csrf": _csrf(form.text)})
    api.tokens.pop("dr-hosp-b", None)  # the rotation ended the old token
    refused_page = api.client.get(f"/clinician/reports/DiagnosticReport/{report}")
    assert refused_page.status_code == 404 and 'data-testid="break-glass"' in refused_page.text
    glass_page = api.client.post(f"/clinician/reports/DiagnosticReport/{report}",
                                 data={"reason": "急诊", "csrf": _csrf(refused_page.text)})  # fmt: skip
    assert glass_page.status_code == 200 and "阴性" in glass_page.text
    # break-glass reveals it (an emergency), audited
    assert api.get(f"/fhir/DiagnosticReport/{report}", who="dr-hosp-b", headers=BTG).status_code == 200

    page = portal.change("share-sensitive")
    assert 'data-testid="sensitive-state" data-state="shared"' in page.text
    assert report in _found(api, "dr-hosp-b", f"DiagnosticReport?patient={person['a']['id']}")
    assert card_for(sign(api, "hosp-b-system", person["nid"], HBSAG_ORDER), "o-hbs") is not None
    sensitive = next(c for c in portal.consents() if c["policyRule"]["coding"][0]["code"] == "OPTIN")
    assert validate(sensitive) == "Consent"
    assert sensitive["status"] == "active" and sensitive["provision"]["securityLabel"][0]["code"] == "R"
    assert {"system": "https://hr-registry.org.cn/fhir/CodeSystem/recognized-items", "code": "L145"} in [
        c["coding"][0] for c in sensitive["provision"]["code"]]  # fmt: skip
    # a pause still withholds a consented sensitive result — and then announces it
    portal.change("pause", "hosp-b")
    assert _select(api, "dr-hosp-b", person["nid"], HBSAG_ORDER)["cards"][0]["summary"].startswith(RESTRICTED)
    portal.change("resume", "hosp-b")
    portal.change("keep-sensitive")
    assert report not in _found(api, "dr-hosp-b", f"DiagnosticReport?patient={person['a']['id']}")


# ------------------------------------------------------------------------------------------------ who writes it
def test_only_the_patient_records_their_consent_and_only_they_read_it(api: Api) -> None:
    person = new_person(api)
    portal = Portal(api, person["nid"])
    portal.change("pause", "hosp-b")
    (sharing,) = portal.consents()
    body = {**sharing, "status": "inactive"}
    for who in ("hosp-a-system", "hosp-b-system", "admin"):
        assert api.put(f"/fhir/Consent/{sharing['id']}", body, who=who).status_code == 403, who
        assert api.post("/fhir/Consent", {k: v for k, v in body.items() if k not in ("id", "meta")},
                        who=who).status_code == 403, who  # fmt: skip
    assert api.delete(f"/fhir/Consent/{sharing['id']}", who="hosp-b-system").status_code == 403
    for who in ("hosp-a-system", "dr-hosp-b"):
        assert api.get(f"/fhir/Consent/{sharing['id']}", who=who).status_code == 403, who
        assert api.get("/fhir/Consent", who=who).status_code == 403, who
    assert api.get(f"/fhir/Consent/{sharing['id']}", who="admin").status_code == 200
    assert api.get(f"/fhir/Consent/{sharing['id']}", who=portal.client_id).json()["status"] == "active"
    statement = api.get("/fhir/metadata", who=None).json()
    consent = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Consent")
    assert {i["code"] for i in consent["interaction"]} == {"read", "vread", "history-instance", "search-type"}


def test_bad_consent_input_is_a_clear_refusal_that_changes_nothing(api: Api) -> None:
    person = new_person(api)
    portal = Portal(api, person["nid"])
    assert 'data-testid="error"' in portal.change("pause", "no-such-hospital", status=400).text
    assert 'data-testid="error"' in portal.change("explode", status=400).text
    stale = api.client.post("/portal/consent", data={"action": "pause", "org": "", "csrf": "forged"})
    assert stale.status_code == 403
    assert portal.consents() == []
    assert 'data-org="*" data-state="shared"' in portal.page().text
    key = api.ctx.identity.master_key(NATIONAL, person["nid"])
    with api.ctx.engine.connect() as conn:
        rows = conn.execute(text("SELECT count(*) FROM share_restriction WHERE patient_key = :k"), {"k": key})
        assert rows.scalar_one() == 0
        refusals = conn.execute(
            text(
                "SELECT count(*) FROM audit_event WHERE patient_key IS NULL AND outcome = '4' "
                "AND resource_type = 'Consent' AND detail LIKE '%no hospital%'"
            )
        ).scalar_one()
    assert refusals >= 1  # the refusal is audited


def test_concurrent_changes_of_one_patients_consent_are_serialized(api: Api) -> None:
    """Two changes at once (two tabs): both land, one after the other — one Consent, two versions, both pauses."""
    person = new_person(api)
    portal = Portal(api, person["nid"])
    patient = api.ctx.principals.get(portal.client_id)
    assert patient is not None

    def pause(org: str) -> bool:
        return api.ctx.consent.change(patient, AuditContext(unique("r"), patient, "update", "Consent"), "pause", org)

    with ThreadPoolExecutor(2) as pool:
        assert list(pool.map(pause, ["hosp-a", "hosp-c"])) == [True, True]
    (sharing,) = portal.consents()
    assert sharing["meta"]["versionId"] == "2"
    actors = {d["actor"][0]["reference"]["reference"] for d in sharing["provision"]["provision"]}
    assert actors == {"Organization/hosp-a", "Organization/hosp-c"}
