"""The portal's "互认有效期至" says what the order check would do, on SQLite and PostgreSQL: shown, with the last valid
day, exactly for a report another hospital can recognize now — never for one without the HR mark, not final,
expired or from an issuer without the qualification (docs/design.md §5 rules 4–6, one judgement: ``catalog.assess``)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from fastapi.testclient import TestClient

from catalog import Coding
from catalog.codes import HR_MARK
from registry.auth import PrincipalKind
from tests.integration.conftest import NATIONAL, Api, Database, new_resident_id, unique
from tests.integration.recognition_region import recognition_region
from tests.integration.test_pages import sign_in
from tests.integration.test_recognition import Clock, push_cbc

T0 = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)  # 10:00 in Beijing
LOINC = "http://loinc.org"


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture(scope="module")
def api(database: Database, tmp_path_factory: pytest.TempPathFactory, clock: Clock) -> Iterator[Api]:
    with recognition_region(database, tmp_path_factory.mktemp("var"), clock) as region:
        admin = region.ctx.principals.get("admin")
        assert admin is not None
        region.ctx.administration.add(
            admin, {"org": "hosp-a", "group": "lipid", "scope": "beijing", "valid_from": "2025-01-01"}
        )
        yield region


def patient_at(api: Api, org: str) -> dict[str, Any]:
    """A person with a record at ``org`` and at hospital B, and a portal sign-in of their own."""
    nid = new_resident_id()
    patient = api.patient(org, unique("P"), nid)
    api.patient("hosp-b", unique("B"), nid)
    key = api.ctx.identity.master_key(NATIONAL, nid)
    client_id = unique("patient")
    secret = api.ctx.principals.add(PrincipalKind.PATIENT, client_id, "患者", patient_key=key).secret
    return {"nid": nid, "patient": patient, "client": client_id, "secret": secret}


def last_day(valid_until: datetime) -> str:
    """The local date of the last instant inside a window ending at ``valid_until`` (+08:00, the catalog's zone)."""
    return (valid_until - timedelta(microseconds=1)).astimezone(timezone(timedelta(hours=8))).date().isoformat()


def report_id(pushed: dict[str, Any]) -> str:
    return str(pushed["entry"][-1]["response"]["location"]).split("/")[1]


def portal_page(api: Api, who: dict[str, Any], rid: str) -> str:
    with TestClient(api.client.app, follow_redirects=False) as browser:
        assert sign_in(browser, "portal", who["client"], who["secret"]).status_code == 303
        page = browser.get(f"/portal/reports/{rid}")
        assert page.status_code == 200, page.text
        listing = browser.get("/portal")
        assert listing.status_code == 200
    assert page.text.count("互认有效期至") == listing.text.count("互认有效期至")  # the list says the same
    return page.text


def check_status(api: Api, nid: str) -> str:
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "patientIdentifier", "valueIdentifier": {"system": NATIONAL, "value": nid}},
            {
                "name": "order",
                "resource": {
                    "resourceType": "ServiceRequest",
                    "status": "draft",
                    "intent": "order",
                    "subject": {"reference": "Patient/x"},
                    "code": {"coding": [{"system": LOINC, "code": "58410-2"}]},
                },
            },
        ],
    }
    r = api.post("/fhir/ServiceRequest/$recognition-check", params, who="hosp-b-system")
    assert r.status_code == 200, r.text
    parts = {p["name"]: p for p in r.json()["parameter"][0]["part"]}
    return str(parts["status"]["valueCode"])


@pytest.mark.parametrize(
    ("case", "org", "marked", "status", "age", "shown"),
    [
        ("marked, final, qualified issuer", "hosp-a", True, "final", timedelta(0), "valid"),
        ("no HR mark", "hosp-a", False, "final", timedelta(0), None),
        ("issuer without the qualification", "hosp-c", True, "final", timedelta(0), None),
        ("preliminary", "hosp-a", True, "preliminary", timedelta(0), None),
        ("its window has ended", "hosp-a", True, "final", timedelta(days=10), "expired"),
    ],
)
def test_the_portal_shows_validity_exactly_when_another_hospital_may_recognize_the_report(
    api: Api, clock: Clock, case: str, org: str, marked: bool, status: str, age: timedelta, shown: str | None
) -> None:
    clock.now = T0
    who = patient_at(api, org)
    pushed = push_cbc(api, org, f"Patient/{who['patient']['id']}", unique("R"), marked=marked, status=status,
                      when=T0 - age)  # fmt: skip
    page = portal_page(api, who, report_id(pushed))
    recognizable = check_status(api, who["nid"]) == "recognizable"
    assert ("互认有效期至" in page) is recognizable, case
    if shown == "valid":
        until = (T0 - age - timedelta(hours=2)) + timedelta(days=7)
        assert f"互认有效期至 {last_day(until)}" in page
    else:
        assert "互认有效期至" not in page, case
    assert ("已过期" in page) is (shown == "expired"), case
    assert (">HR<" in page) is marked, case


def test_the_portal_shows_the_last_valid_day_of_a_window_ending_at_midnight(api: Api, clock: Clock) -> None:
    clock.now = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
    try:
        who = patient_at(api, "hosp-a")
        # taken 2026-11-26 00:00 in Beijing: 7 days end at 2026-12-03 00:00, so the 2nd is the last valid day
        pushed = push_cbc(api, "hosp-a", f"Patient/{who['patient']['id']}", unique("R"),
                          when=datetime(2026, 11, 25, 18, 0, tzinfo=UTC))  # fmt: skip
        page = portal_page(api, who, report_id(pushed))
        assert "互认有效期至 2026-12-02" in page
        assert "2026-12-03" not in page
    finally:
        clock.now = T0


def test_an_uncoded_panel_is_recognizable_as_long_as_its_shortest_result_window(api: Api, clock: Clock) -> None:
    clock.now = T0
    who = patient_at(api, "hosp-a")
    when = T0 - timedelta(days=1)
    results = []
    for loinc, value in (("2093-3", 4.1), ("2571-8", 1.2)):  # total cholesterol, triglycerides
        obs = {
            "resourceType": "Observation",
            "status": "final",
            "meta": {"tag": [{"system": HR_MARK, "code": "HR"}]},
            "code": {"coding": [{"system": LOINC, "code": loinc}]},
            "subject": {"reference": f"Patient/{who['patient']['id']}"},
            "performer": [{"reference": "Organization/hosp-a"}],
            "effectiveDateTime": when.isoformat(),
            "valueQuantity": {
                "value": value,
                "unit": "mmol/L",
                "system": "http://unitsofmeasure.org",
                "code": "mmol/L",
            },
        }
        r = api.post("/fhir/Observation", obs, who="hosp-a-system")
        assert r.status_code == 201, r.text
        results.append({"reference": f"Observation/{r.json()['id']}"})
    report = api.report(
        "hosp-a",
        who["patient"]["id"],
        unique("R"),
        code={"text": "血脂（本院套餐）"},
        effectiveDateTime=when.isoformat(),
        result=results,
        meta={"tag": [{"system": HR_MARK, "code": "HR"}]},
    )
    days = min(
        item.validity.days
        for loinc in ("2093-3", "2571-8")
        if (item := api.ctx.catalog.by_code(Coding(LOINC, loinc))) is not None
    )
    page = portal_page(api, who, report["id"])
    assert f"互认有效期至 {last_day(when + timedelta(days=days))}" in page
