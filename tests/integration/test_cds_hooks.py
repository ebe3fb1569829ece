"""CDS Hooks 2.0 exactly (cds-hooks.hl7.org/2.0 §Card, §Feedback), on SQLite and PostgreSQL: every card carries a
``uuid`` (the patient-view reminder too) and feedback on it is accepted — ``overridden`` without ``overrideReason``
included where the card offered no reasons —, feedback is accepted only at the service that issued the card, and a
card's Markdown ``detail`` keeps hospitals' data as text when a real CommonMark/GFM renderer renders it."""

# ruff: noqa: F811 - the fixtures of test_recognition are imported by name and used as parameters

from __future__ import annotations

import re
from typing import Any

import orjson
from markdown_it import MarkdownIt

from catalog.codes import HR_MARK, NONRECOGNITION_REASONS
from registry.auth import PrincipalKind
from registry.services.audit import AuditContext
from registry.services.demo import REGION_EXT
from tests.integration.cds_rules import assert_valid_cds_response
from tests.integration.conftest import NATIONAL, Api, namespaces_of, new_resident_id, unique
from tests.integration.test_recognition import (  # noqa: F401 - the module's fixtures
    ORDERS,
    api,
    card_for,
    clock,
    person,
    push_cbc,
    sign,
)

PAYLOAD = (
    "](javascript:alert(1)) <script>alert(1)</script> <img src=x onerror=alert(1)> **b** [x](https://evil.example)"
)


def _patient_view(api: Api, nid: str, who: str = "dr-hosp-b") -> dict[str, Any]:
    body = {
        "hook": "patient-view",
        "hookInstance": unique("h"),
        "context": {"userId": "Practitioner/p", "patientId": "ehr-1"},
        "prefetch": {"patient": {"resourceType": "Patient", "identifier": [{"system": NATIONAL, "value": nid}]}},
    }
    r = api.post("/cds-services/hr-patient-view", body, who=who)
    assert r.status_code == 200, r.text
    response = dict(r.json())
    assert_valid_cds_response(response)  # every card has a uuid
    return response


def _feedback(card: str, outcome: str, **extra: Any) -> dict[str, Any]:
    return {"feedback": [{"card": card, "outcome": outcome, "outcomeTimestamp": "2026-03-02T02:10:00Z", **extra}]}


def _decisions(api: Api) -> tuple[int, int]:
    s = api.get("/stats/api/summary", who="admin").json()
    return s["recognized"], s["declined"]


def test_the_patient_view_card_has_a_uuid_and_takes_feedback(api: Api, person: dict[str, Any]) -> None:
    push_cbc(api, "hosp-a", f"Patient/{person['a']['id']}", unique("R"))
    (card,) = _patient_view(api, person["nid"])["cards"]
    assert "overrideReasons" not in card  # it offers no reasons …
    before = _decisions(api)
    url = "/cds-services/hr-patient-view/feedback"
    # … so overridden without overrideReason is simply recorded (CDS Hooks 2.0: overrideReason is OPTIONAL)
    r = api.post(url, _feedback(card["uuid"], "overridden"), who="dr-hosp-b")
    assert r.status_code == 200, r.text
    assert r.json()["recorded"] == [{"card": card["uuid"], "outcome": "overridden", "decision": None, "new": True}]
    r = api.post(url, _feedback(card["uuid"], "overridden"), who="dr-hosp-b")
    assert r.json()["recorded"][0]["new"] is False  # a repeat records nothing new
    assert api.post(url, _feedback(card["uuid"], "accepted"), who="dr-hosp-b").status_code == 409
    assert _decisions(api) == before  # a reminder is no recognition decision
    # another hospital's clinician may not answer it; another service does not know it
    assert api.post(url, _feedback(card["uuid"], "overridden"), who="dr-hosp-c").status_code == 403
    (other,) = _patient_view(api, person["nid"])["cards"]
    assert other["uuid"] != card["uuid"]
    r = api.post("/cds-services/hr-order-sign/feedback", _feedback(other["uuid"], "accepted"), who="dr-hosp-b")
    assert r.status_code == 404, r.text
    comment = {"overrideReason": {"userComment": "已知"}}
    r = api.post(url, _feedback(other["uuid"], "overridden", **comment), who="dr-hosp-b")
    assert r.status_code == 200, r.text


def test_feedback_is_accepted_only_at_the_service_that_issued_the_card(api: Api, person: dict[str, Any]) -> None:
    push_cbc(api, "hosp-a", f"Patient/{person['a']['id']}", unique("R"))
    card = card_for(sign(api, "dr-hosp-b", person["nid"], ORDERS[:1]), "o-cbc")
    assert card is not None
    before = _decisions(api)
    for service in ("hr-order-select", "hr-patient-view"):
        r = api.post(f"/cds-services/{service}/feedback", _feedback(card["uuid"], "accepted"), who="dr-hosp-b")
        assert r.status_code == 404, (service, r.text)
        assert "not issued by this service" in r.json()["issue"][0]["diagnostics"]
    assert _decisions(api) == before
    # a card of $recognition-check is decided by $recognition-decision, not by CDS Hooks feedback
    params = {"resourceType": "Parameters", "parameter": [
        {"name": "patientIdentifier", "valueIdentifier": {"system": NATIONAL, "value": person["nid"]}},
        {"name": "order", "resource": {"resourceType": "ServiceRequest", "id": "op", "status": "draft",
         "intent": "order", "subject": {"reference": "Patient/x"},
         "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]}}}]}  # fmt: skip
    r = api.post("/fhir/ServiceRequest/$recognition-check", params, who="hosp-b-system")
    parts = {p["name"]: p for p in r.json()["parameter"][0]["part"]}
    op_card = parts["card"]["valueString"]
    r = api.post("/cds-services/hr-order-sign/feedback", _feedback(op_card, "accepted"), who="hosp-b-system")
    assert r.status_code == 404, r.text
    # all items are checked before any is recorded
    mixed = {
        "feedback": [_feedback(card["uuid"], "accepted")["feedback"][0], _feedback(op_card, "accepted")["feedback"][0]]
    }
    assert api.post("/cds-services/hr-order-sign/feedback", mixed, who="dr-hosp-b").status_code == 404
    assert _decisions(api) == before
    r = api.post("/cds-services/hr-order-sign/feedback", _feedback(card["uuid"], "accepted"), who="dr-hosp-b")
    assert r.status_code == 200, r.text
    assert r.json()["recorded"] == [
        {"card": card["uuid"], "outcome": "accepted", "decision": "recognized", "new": True}
    ]
    assert _decisions(api) == (before[0] + 1, before[1])
    metrics = api.get("/metrics", who="admin").text  # and counted for the operators (registry.metrics)
    assert 'hr_decisions_total{new="true",outcome="recognized",source="feedback"}' in metrics


def _hospital_with_a_name(api: Api, name: str) -> str:
    """A qualified hospital in Beijing whose Organization.name is ``name``."""
    org = unique("hosp")
    admin = api.ctx.principals.get("admin")
    assert admin is not None
    audit = AuditContext("setup", admin, "update")
    body = {"resourceType": "Organization", "id": org, "name": name,
            "extension": [{"url": REGION_EXT, "valueCode": "beijing"}]}  # fmt: skip
    api.ctx.ingest.update(admin, audit, "Organization", org, orjson.dumps(body).decode(), None)
    api.ctx.namespaces.declare(admin, org, namespaces_of(org))
    api.ctx.administration.add(admin, {"org": org, "group": "hematology", "scope": "beijing",
                                       "valid_from": "2025-01-01"})  # fmt: skip
    api.ctx.principals.add(PrincipalKind.HOSPITAL, f"{org}-system", org, org_id=org)
    return org


def _render(markdown: str) -> str:
    """As an EHR would: CommonMark with GFM tables and strikethrough, raw HTML allowed."""
    return MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"]).render(markdown)


def _assert_inert(html: str) -> None:
    assert "<script" not in html and "<img" not in html, html
    hrefs = re.findall(r'href="([^"]*)"', html)
    assert all(h.startswith("http://testserver/") for h in hrefs), hrefs  # only the registry's own links
    assert "<strong>b</strong>" not in html, html


def test_hospital_data_in_a_card_detail_cannot_break_out_of_its_text(api: Api) -> None:
    org = _hospital_with_a_name(api, f"示范医院{PAYLOAD}")
    nid = new_resident_id()
    pa = api.patient(org, unique("X"), nid)
    api.patient("hosp-b", unique("B"), nid)
    observation = {
        "resourceType": "Observation", "status": "final", "meta": {"tag": [{"system": HR_MARK, "code": "HR"}]},
        "identifier": [{"system": f"http://{org}.example/obs", "value": unique("O")}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
        "subject": {"reference": f"Patient/{pa['id']}"}, "effectiveDateTime": "2026-03-02T08:00:00+08:00",
        "valueString": f"128 g/L{PAYLOAD}\n| 伪造 | 行 |\n<script>alert(2)</script>",
        "performer": [{"reference": f"Organization/{org}"}],
    }  # fmt: skip
    r = api.post("/fhir/Observation", observation, who=f"{org}-system")
    assert r.status_code == 201, r.text
    card = card_for(sign(api, "dr-hosp-b", nid, [("o-hb", "http://loinc.org", "718-7")]), "o-hb")
    assert card is not None
    (reminder,) = _patient_view(api, nid)["cards"]
    for detail in (card["detail"], reminder["detail"]):
        html = _render(detail)
        _assert_inert(html)
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # shown as the text it is
        assert "](javascript:alert(1))" in html
        assert "伪造" not in re.findall(r"<td>([^<]*)</td>", html)  # no table cell smuggled in
    # the reminder's link label is the value: it still links to the report, and only there
    links = re.findall(r'<a href="([^"]*)">', _render(reminder["detail"]))
    assert links and all(h.startswith("http://testserver/clinician/reports/") for h in links)


def test_a_patient_view_reminder_offers_no_reasons_and_an_order_card_needs_one(
    api: Api, person: dict[str, Any]
) -> None:
    push_cbc(api, "hosp-a", f"Patient/{person['a']['id']}", unique("R"))
    card = card_for(sign(api, "dr-hosp-b", person["nid"], ORDERS[:1]), "o-cbc")
    assert card is not None and card["overrideReasons"]
    url = "/cds-services/hr-order-sign/feedback"
    only_comment = _feedback(card["uuid"], "overridden", overrideReason={"userComment": "不需要"})
    assert api.post(url, only_comment, who="dr-hosp-b").status_code == 422
    reason = {"reason": {"system": NONRECOGNITION_REASONS, "code": "07"}, "userComment": "复查"}
    r = api.post(url, _feedback(card["uuid"], "overridden", overrideReason=reason), who="dr-hosp-b")
    assert r.status_code == 200, r.text
    assert r.json()["recorded"][0]["decision"] == "declined"
