"""``GET /metrics`` (Prometheus text format, prometheus-client) on SQLite and PostgreSQL: admins only; requests by
route template and status with latency histograms, resources written, orders checked and decisions recorded; bounded
labels (raw paths and ids never become series) and no patient data."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import NATIONAL, Api, resident_id, unique

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _scrape(api: Api) -> tuple[str, Samples]:
    r = api.get("/metrics", who="admin", headers={"Accept": "text/plain"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return r.text, samples


def _value(samples: Samples, name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= set(ls))


def _sign(api: Api, nid: str) -> dict[str, Any]:
    body = {
        "hook": "order-sign", "hookInstance": unique("h"),
        "context": {"userId": "Practitioner/p", "patientId": "ehr", "draftOrders": {
            "resourceType": "Bundle", "type": "collection", "entry": [{"resource": {
                "resourceType": "ServiceRequest", "id": "o1", "status": "draft", "intent": "order",
                "subject": {"reference": "Patient/ehr"},
                "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]}}}]}},
        "prefetch": {"patient": {"resourceType": "Patient", "identifier": [{"system": NATIONAL, "value": nid}]}},
    }  # fmt: skip
    r = api.post("/cds-services/hr-order-sign", body, who="dr-b")
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_metrics_are_for_admins_only(api: Api) -> None:
    assert api.get("/metrics", who=None).status_code == 401
    for who in ("hosp-a-system", "dr-b"):
        assert api.get("/metrics", who=who).status_code == 403


def test_metrics_count_requests_writes_checks_and_decisions(api: Api) -> None:
    _, before = _scrape(api)
    nid = resident_id(7001)
    patient = api.patient("hosp-b", unique("B"), nid)
    for _ in range(30):  # thirty different ids: one series (the route template), never one per id
        api.get(f"/fhir/Patient/{unique('nobody')}", who="hosp-b-system")
    api.get(f"/no/such/{unique('path')}", who=None)
    _sign(api, nid)
    text, after = _scrape(api)

    def grew(name: str, by: float = 1, **labels: str) -> None:
        delta = _value(after, name, **labels) - _value(before, name, **labels)
        assert delta >= by, (name, labels, delta)

    grew("hr_http_requests_total", method="POST", route="/fhir/{rtype}", status="201")
    grew("hr_http_requests_total", 30, method="GET", route="/fhir/{rtype}/{rid}", status="404")
    grew("hr_http_requests_total", method="GET", route="unmatched", status="404")
    grew("hr_http_request_duration_seconds_count", method="POST", route="/cds-services/{service_id}")
    grew("hr_ingest_writes_total", type="Patient", status="201")
    grew("hr_order_checks_total", source="order-sign", status="no-prior-result")
    routes = {dict(ls).get("route") for (n, ls) in after if n == "hr_http_requests_total"}
    assert all(r == "unmatched" or r.startswith("/") for r in routes), routes
    assert not [r for r in routes if "nobody" in str(r) or "path-" in str(r)], routes
    # nothing about a patient, a client or an organization
    for secret in (patient["id"], nid, patient["identifier"][0]["value"], "hosp-b", "dr-b", "admin"):
        assert secret not in text, secret


def test_checks_of_the_operation_are_counted(api: Api) -> None:
    nid = resident_id(7002)
    api.patient("hosp-b", unique("B"), nid)
    _, before = _scrape(api)
    params = {"resourceType": "Parameters", "parameter": [
        {"name": "patientIdentifier", "valueIdentifier": {"system": NATIONAL, "value": nid}},
        {"name": "order", "resource": {"resourceType": "ServiceRequest", "id": "m1", "status": "draft",
         "intent": "order", "subject": {"reference": "Patient/x"},
         "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]}}}]}  # fmt: skip
    r = api.post("/fhir/ServiceRequest/$recognition-check", params, who="hosp-b-system")
    assert r.status_code == 200, r.text
    _, after = _scrape(api)
    key = {"source": "operation", "status": "no-prior-result"}
    assert _value(after, "hr_order_checks_total", **key) == _value(before, "hr_order_checks_total", **key) + 1
