"""Hostile and unusual input gets a clear 4xx OperationOutcome, never a 5xx, and changes nothing (docs/design.md §6):
date values at the ends of the calendar and with impossible time-zone offsets (FHIR R4 datatypes §2.24.0.7: offsets
lie within ±14:00), whole numbers of thousands of digits, searches past the registry's bounds on their size
(``too-costly``, FHIR R4 search §3.1.1), and resources dated where the registry cannot hold an instant — on SQLite
and PostgreSQL."""

from __future__ import annotations

import itertools
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.integration.conftest import NATIONAL, Api, resident_id, unique

_SEEDS = itertools.count(7100)
LOINC_HB = {"coding": [{"system": "http://loinc.org", "code": "718-7"}]}


def _outcome(r: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, (r.status_code, r.text[:500])
    body: dict[str, Any] = r.json()
    assert body["resourceType"] == "OperationOutcome", body
    if code is not None:
        assert body["issue"][0]["code"] == code, body
    return body


def _patient(api: Api, org: str = "hosp-a") -> tuple[dict[str, Any], str]:
    mrn = unique("MRN")
    created = api.patient(org, mrn, resident_id(next(_SEEDS)))
    return created, mrn


# ---------------------------------------------------------------------------------------------------- date values
@pytest.mark.parametrize(
    "value",
    [
        "1980-01-01T00:00:00+99:00",
        "1980-01-01T00:00:00-24:00",
        "1980-01-01T00:00:00+14:01",
        "1980-01-01T00:00:00+05:60",
        "1980-01-01T00:00+15:00",
        "ap1980-01-01T00:00:00+99:00",
        "sa1980-01-01T00:00:00-99:59",
        "eb1980-01-01T00:00:00+24:00",
        "0000",
        "0000-01-01",
        "10000",
        "10000-01-01",
        "1980-02-30",
        "1980-13",
    ],
)
def test_an_impossible_date_search_value_is_400(api: Api, value: str) -> None:
    body = _outcome(api.get(f"/fhir/Patient?birthdate={quote(value)}"), 400, "invalid")
    assert "birthdate" in body["issue"][0]["diagnostics"]


@pytest.mark.parametrize(
    "value",
    [
        "9999-12-31T23:59:59-14:00",
        "0001-01-01T00:00:00+14:00",
        "9999",
        "9999-12",
        "9999-12-31",
        "0001",
        "0001-01-01",
        "1980-01-01T00:00:00+14:00",
        "1980-01-01T00:00:00-14:00",
        *(f"{p}{v}" for p in ("ap", "sa", "eb", "gt", "lt", "ge", "le", "ne")
          for v in ("9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "9999", "0001")),
    ],
)  # fmt: skip
def test_a_date_search_value_at_the_ends_of_the_calendar_is_answered(api: Api, value: str) -> None:
    for path in ("/fhir/Patient?birthdate=", "/fhir/Observation?date=", "/fhir/Patient?_lastUpdated=",
                 "/fhir/AuditEvent?date="):  # fmt: skip
        r = api.get(path + quote(value))
        assert r.status_code == 200, (path, r.text[:300])
        assert r.json()["resourceType"] == "Bundle"


def test_dates_at_the_ends_of_the_calendar_still_compare_as_instants(api: Api) -> None:
    created, _ = _patient(api)
    rid = created["id"]  # born 1980-05-06
    found = api.get(f"/fhir/Patient?_id={rid}&birthdate=lt9999-12-31T23:59:59-14:00").json()
    assert [e["resource"]["id"] for e in found.get("entry", [])] == [rid]
    found = api.get(f"/fhir/Patient?_id={rid}&birthdate=gt{quote('0001-01-01T00:00:00+14:00')}").json()
    assert [e["resource"]["id"] for e in found.get("entry", [])] == [rid]
    found = api.get(f"/fhir/Patient?_id={rid}&birthdate=eb9999").json()
    assert [e["resource"]["id"] for e in found.get("entry", [])] == [rid]
    assert not api.get(f"/fhir/Patient?_id={rid}&birthdate=sa9999").json().get("entry")


# ---------------------------------------------------------------------------------------------------- whole numbers
HUGE = "9" * 5000


@pytest.mark.parametrize(
    "path",
    [
        f"/fhir/Patient?_count={HUGE}",
        "/fhir/Patient?_count=" + "9" * 30,
        "/fhir/Patient?_count=%C2%B2",  # '²' passes str.isdigit() and fails int()
        "/fhir/Patient?_count=-1",
        f"/fhir/AuditEvent?_count={HUGE}",
        f"/fhir/AuditEvent?_before={HUGE}",
        "/fhir/AuditEvent?_before=" + "9" * 30,
        "/fhir/AuditEvent?_before=%C2%B2",
    ],
)
def test_a_number_too_long_to_hold_is_400(api: Api, path: str) -> None:
    _outcome(api.get(path), 400, "invalid")


def test_a_version_or_id_too_long_to_hold_is_404(api: Api) -> None:
    created, _ = _patient(api)
    rid = created["id"]
    for version in (HUGE, "9" * 30, "%C2%B2", "9" * 18):
        _outcome(api.get(f"/fhir/Patient/{rid}/_history/{version}"), 404, "not-found")
    for event in (HUGE, "9" * 30):
        _outcome(api.get(f"/fhir/AuditEvent/{event}"), 404, "not-found")
    for query in (f"_before_version={HUGE}", "_before_version=" + "9" * 30, f"_count={HUGE}"):
        _outcome(api.get(f"/fhir/Patient/{rid}/_history?{query}"), 400, "invalid")
    assert api.get(f"/fhir/Patient/{rid}/_history/1").status_code == 200
    # an id longer than any the registry holds: unknown, and the refusal is audited (its id clipped)
    _outcome(api.get(f"/fhir/Patient/{'x' * 5000}"), 404, "not-found")
    _outcome(api.get(f"/fhir/Patient/{'x' * 5000}/_history/1"), 404, "not-found")


# ---------------------------------------------------------------------------------------------------- bounded cost
def test_too_many_parameters_is_400_too_costly_naming_the_limit(api: Api) -> None:
    query = "&".join(f"name=n{i}" for i in range(41))
    body = _outcome(api.get(f"/fhir/Patient?{query}"), 400, "too-costly")
    assert "REGISTRY_SEARCH_MAX_PARAMS" in body["issue"][0]["diagnostics"] and "40" in body["issue"][0]["diagnostics"]
    # lenient handling does not lift a cost bound
    r = api.get(f"/fhir/Patient?{query}", headers={"Prefer": "handling=lenient"})
    _outcome(r, 400, "too-costly")
    # nor does the POST form
    r = api.client.post(
        "/fhir/Patient/_search", content=query, headers={**api.headers("admin"),
                                                         "Content-Type": "application/x-www-form-urlencoded"},
    )  # fmt: skip
    _outcome(r, 400, "too-costly")


@pytest.mark.parametrize("count", [101, 600])
def test_too_many_values_in_one_parameter_is_400_too_costly(api: Api, count: int) -> None:
    values = ",".join(f"n{i}" for i in range(count))
    for path in (f"/fhir/Patient?name={values}", f"/fhir/Observation?code={values}",
                 f"/fhir/Patient?identifier={values}", f"/fhir/AuditEvent?agent={values}"):  # fmt: skip
        body = _outcome(api.get(path), 400, "too-costly")
        assert "REGISTRY_SEARCH_MAX_VALUES" in body["issue"][0]["diagnostics"]


def test_too_long_a_search_is_400_too_costly(api: Api) -> None:
    body = _outcome(api.get("/fhir/Patient?name=" + "x" * 9000), 400, "too-costly")
    assert "REGISTRY_SEARCH_MAX_LENGTH" in body["issue"][0]["diagnostics"]


@pytest.mark.parametrize("param", ["name", "identifier", "birthdate", "organization", "_id", "gender"])
def test_a_search_at_every_bound_is_answered(api: Api, param: str) -> None:
    """40 parameters of 100 values each (SQLite builds no expression tree too deep to run)."""
    created, mrn = _patient(api)

    def value(i: int, j: int) -> str:
        if param == "birthdate":
            return f"19{(i + j) % 100:02d}"
        if param == "organization":
            return f"o{i}-{j}"
        return f"v{i}x{j}"

    first = {"name": "测", "identifier": mrn, "birthdate": "1980-05-06", "organization": "hosp-a",
             "_id": created["id"], "gender": "female"}[param]  # fmt: skip
    params = [("_id", created["id"])]
    params += [(param, ",".join([first, *(value(i, j) for j in range(99))])) for i in range(39)]
    length = sum(len(k) + len(v) + 2 for k, v in params)
    limits = api.ctx.reads.ctx.limits
    if length > limits.max_length:
        params = params[: max(1, len(params) * limits.max_length // length - 1)]
    r = api.get("/fhir/Patient", params=params)
    assert r.status_code == 200, r.text[:300]
    assert [e["resource"]["id"] for e in r.json().get("entry", [])] == [created["id"]]


# ---------------------------------------------------------------------------------------------------- ingest
def _count_of(api: Api, rtype: str, patient_id: str) -> int:
    found = api.get(f"/fhir/{rtype}?patient={patient_id}&_summary=count").json()
    return int(found["total"])


@pytest.mark.parametrize(
    ("element", "value"),
    [
        ("effectiveDateTime", "9999-12-31T23:59:59-14:00"),
        ("issued", "0001-01-01T00:00:00+14:00"),
        ("effectiveDateTime", "0001-01-01T00:00:00+00:01"),
        ("effectiveInstant", "9999-12-31T23:00:00Z"),
        ("effectivePeriod", {"start": "2025-01-01", "end": "9999-12-31T23:59:59-14:00"}),
        ("valueDateTime", "9999-12-31T23:59:59-14:00"),
    ],
)
def test_a_resource_dated_where_no_instant_can_be_held_is_422_and_nothing_is_written(
    api: Api, element: str, value: Any
) -> None:
    created, _ = _patient(api)
    pid = created["id"]
    number = unique("OBS")
    resource = {
        "resourceType": "Observation", "status": "final", "code": LOINC_HB,
        "identifier": [{"system": "http://hosp-a.example/obs", "value": number}],
        "subject": {"reference": f"Patient/{pid}"}, "performer": [{"reference": "Organization/hosp-a"}],
        element: value,
    }  # fmt: skip
    if element != "valueDateTime":
        resource["valueQuantity"] = {"value": 131, "unit": "g/L"}
    body = _outcome(api.post("/fhir/Observation", resource, who="hosp-a-system"), 422, "processing")
    assert "0001-01-02 to 9999-12-30" in body["issue"][0]["diagnostics"]
    assert body["issue"][0]["expression"][0].startswith(f"Observation.{element}")
    # the same in a transaction: nothing of it is written
    report = {
        "resourceType": "DiagnosticReport", "status": "final", "code": LOINC_HB,
        "identifier": [{"system": "http://hosp-a.example/report", "value": number}],
        "subject": {"reference": f"Patient/{pid}"}, "performer": [{"reference": "Organization/hosp-a"}],
        "effectiveDateTime": "2025-03-01T08:00:00+08:00", "result": [{"reference": "urn:uuid:obs-1"}],
    }  # fmt: skip
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:obs-1", "resource": resource, "request": {"method": "POST", "url": "Observation"}},
        {"resource": report, "request": {"method": "POST", "url": "DiagnosticReport"}},
    ]}  # fmt: skip
    bundle["entry"][0]["fullUrl"] = "urn:uuid:00000000-0000-4000-8000-000000000001"
    report["result"] = [{"reference": "urn:uuid:00000000-0000-4000-8000-000000000001"}]
    r = api.post("/fhir", bundle, who="hosp-a-system")
    assert 400 <= r.status_code < 500, r.text[:300]
    assert r.json()["resourceType"] == "OperationOutcome"
    assert _count_of(api, "Observation", pid) == 0
    assert _count_of(api, "DiagnosticReport", pid) == 0


def test_a_birth_date_the_registry_cannot_hold_is_422(api: Api) -> None:
    resource = {
        "resourceType": "Patient", "birthDate": "9999-12-31",
        "identifier": [{"system": "http://hosp-a.example/mrn", "value": unique("MRN")},
                       {"system": NATIONAL, "value": resident_id(next(_SEEDS))}],
        "managingOrganization": {"reference": "Organization/hosp-a"},
    }  # fmt: skip
    _outcome(api.post("/fhir/Patient", resource, who="hosp-a-system"), 422, "processing")


def test_a_result_dated_near_the_end_of_the_calendar_does_not_break_the_order_check(api: Api) -> None:
    created, mrn = _patient(api)
    resource = {
        "resourceType": "Observation", "status": "final", "code": LOINC_HB,
        "meta": {"tag": [{"system": "https://hr-registry.org.cn/fhir/CodeSystem/hr-mark", "code": "HR"}]},
        "identifier": [{"system": "http://hosp-a.example/obs", "value": unique("OBS")}],
        "subject": {"reference": f"Patient/{created['id']}"}, "performer": [{"reference": "Organization/hosp-a"}],
        "effectiveDateTime": "9999-12-29T00:00:00Z", "valueQuantity": {"value": 131, "unit": "g/L"},
    }  # fmt: skip
    assert api.post("/fhir/Observation", resource, who="hosp-a-system").status_code == 201
    check = {"resourceType": "Parameters", "parameter": [
        {"name": "patientIdentifier", "valueIdentifier": {"system": "http://hosp-a.example/mrn", "value": mrn}},
        {"name": "order", "resource": {"resourceType": "ServiceRequest", "id": "o1", "status": "draft",
                                       "intent": "order", "subject": {"reference": f"Patient/{created['id']}"},
                                       "code": LOINC_HB}},
    ]}  # fmt: skip
    r = api.post("/fhir/ServiceRequest/$recognition-check", check, who="hosp-a-system")
    assert r.status_code == 200, r.text[:500]
    portal_view = api.get(f"/fhir/Observation?patient={created['id']}")
    assert portal_view.status_code == 200
