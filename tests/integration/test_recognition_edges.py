"""Edges of the recognition rule through the registry, on SQLite and PostgreSQL (docs/design.md §5 rules 2 and 5): a
panel answers an analyte order only with the analyte's value; an imprecise effective date is judged safely; cards
show the last valid day."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from catalog.codes import HR_MARK
from tests.integration.conftest import NATIONAL, Api, Database, unique
from tests.integration.recognition_region import new_person, recognition_region
from tests.integration.test_recognition import Clock, card_for, push_cbc, sign

LOINC = "http://loinc.org"
T0 = datetime(2026, 11, 30, 2, 0, tzinfo=UTC)  # 10:00 in Beijing; every test sets its own time from here on


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture(scope="module")
def api(database: Database, tmp_path_factory: pytest.TempPathFactory, clock: Clock) -> Iterator[Api]:
    with recognition_region(database, tmp_path_factory.mktemp("var"), clock) as region:
        yield region


@pytest.fixture
def person(api: Api) -> dict[str, Any]:
    return new_person(api)


def push_report(api: Api, patient_ref: str, effective: str, *, results: list[dict[str, Any]] | None = None) -> str:
    """A marked, final blood-count report of hospital A, with these Observations (none: a report without values)."""
    base = "http://hosp-a.example"
    entries: list[dict[str, Any]] = []
    for k, obs in enumerate(results or []):
        entries.append(
            {
                "fullUrl": f"urn:uuid:00000000-0000-4000-8000-0000000000{k:02d}",
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "meta": {"tag": [{"system": HR_MARK, "code": "HR"}]},
                    "subject": {"reference": patient_ref},
                    "effectiveDateTime": effective,
                    "performer": [{"reference": "Organization/hosp-a"}],
                    **obs,
                },
                "request": {"method": "POST", "url": "Observation"},
            }
        )
    entries.append(
        {
            "fullUrl": "urn:uuid:00000000-0000-4000-8000-0000000000ff",
            "resource": {
                "resourceType": "DiagnosticReport",
                "status": "final",
                "meta": {"tag": [{"system": HR_MARK, "code": "HR"}]},
                "identifier": [{"system": f"{base}/report", "value": unique("R")}],
                "code": {"coding": [{"system": LOINC, "code": "58410-2"}]},
                "subject": {"reference": patient_ref},
                "effectiveDateTime": effective,
                "performer": [{"reference": "Organization/hosp-a"}],
                "result": [{"reference": e["fullUrl"]} for e in entries],
            },
            "request": {"method": "POST", "url": "DiagnosticReport"},
        }
    )
    r = api.post("/fhir", {"resourceType": "Bundle", "type": "transaction", "entry": entries}, who="hosp-a-system")
    assert r.status_code == 200, r.text
    return str(r.json()["entry"][-1]["response"]["location"]).split("/")[1]


def check(api: Api, nid: str, code: str) -> dict[str, Any]:
    """``$recognition-check`` for one order by LOINC code, as hospital B: the parts of its answer by name."""
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "patientIdentifier", "valueIdentifier": {"system": NATIONAL, "value": nid}},
            {
                "name": "order",
                "resource": {
                    "resourceType": "ServiceRequest",
                    "id": "o-1",
                    "status": "draft",
                    "intent": "order",
                    "subject": {"reference": "Patient/x"},
                    "code": {"coding": [{"system": LOINC, "code": code}]},
                },
            },
        ],
    }
    r = api.post("/fhir/ServiceRequest/$recognition-check", params, who="hosp-b-system")
    assert r.status_code == 200, r.text
    (recognition,) = r.json()["parameter"]
    return {p["name"]: p for p in recognition["part"]}


# ------------------------------------------------------------------ rule 2: a panel answers with the analyte's value
def test_a_blood_count_without_an_mcv_value_does_not_answer_an_mcv_order(
    api: Api, person: dict[str, Any], clock: Clock
) -> None:
    clock.now = T0
    push_cbc(api, "hosp-a", f"Patient/{person['a']['id']}", unique("R"), when=T0)  # WBC and Hb values only
    response = sign(api, "dr-hosp-b", person["nid"], [("o-mcv", LOINC, "787-2"), ("o-hb", LOINC, "718-7")])
    assert card_for(response, "o-mcv") is None
    assert card_for(response, "o-hb") is not None
    assert check(api, person["nid"], "787-2")["status"]["valueCode"] == "no-prior-result"


def test_a_blood_count_report_without_observations_answers_no_analyte_order(
    api: Api, person: dict[str, Any], clock: Clock
) -> None:
    clock.now = T0
    push_report(api, f"Patient/{person['a']['id']}", (T0 - timedelta(hours=2)).isoformat())
    response = sign(api, "dr-hosp-b", person["nid"], [("o-hb", LOINC, "718-7"), ("o-cbc", LOINC, "58410-2")])
    assert card_for(response, "o-hb") is None
    assert card_for(response, "o-cbc") is not None  # the panel order itself is answered by the panel


def test_a_blood_count_answers_for_an_analyte_whatever_the_type_of_its_value(
    api: Api, person: dict[str, Any], clock: Clock
) -> None:
    clock.now = T0
    results = [
        {"code": {"coding": [{"system": LOINC, "code": "787-2"}]}, "valueInteger": 88},  # MCV
        {"code": {"coding": [{"system": LOINC, "code": "789-8"}]}, "dataAbsentReason": {"text": "溶血"}},  # RBC
    ]
    push_report(api, f"Patient/{person['a']['id']}", (T0 - timedelta(hours=2)).isoformat(), results=results)
    parts = check(api, person["nid"], "787-2")
    assert parts["status"]["valueCode"] == "recognizable"
    candidate = {p["name"]: p for p in parts["candidate"]["part"]}
    assert candidate["result"]["valueReference"]["reference"].startswith("DiagnosticReport/")  # the panel answers
    assert check(api, person["nid"], "4544-3")["status"]["valueCode"] == "no-prior-result"  # HCT: not in it


# ------------------------------------------------------------------ rule 5: imprecise dates, judged safely
def test_a_month_only_date_is_not_taken_for_the_first_of_the_month(
    api: Api, person: dict[str, Any], clock: Clock
) -> None:
    clock.now = datetime(2026, 12, 5, 2, 0, tzinfo=UTC)  # 2026-12-05 10:00 in Beijing
    try:
        push_report(api, f"Patient/{person['a']['id']}", "2026-12", results=[_hb(131)])
        parts = check(api, person["nid"], "58410-2")
        assert parts["status"]["valueCode"] == "expired"
        assert "after the order" in parts["detail"]["valueString"]
        assert card_for(sign(api, "dr-hosp-b", person["nid"], [("o-cbc", LOINC, "58410-2")]), "o-cbc") is None
    finally:
        clock.now = T0


def test_a_day_only_date_counts_from_its_last_instant_and_its_window_from_its_first(
    api: Api, person: dict[str, Any], clock: Clock
) -> None:
    try:
        clock.now = datetime(2026, 12, 1, 4, 0, tzinfo=UTC)  # 12:00 in Beijing, the same day
        push_report(api, f"Patient/{person['a']['id']}", "2026-12-01", results=[_hb(131)])
        assert check(api, person["nid"], "58410-2")["status"]["valueCode"] == "expired"
        clock.now = datetime(2026, 12, 1, 16, 0, tzinfo=UTC)  # 00:00 on the 2nd in Beijing
        parts = check(api, person["nid"], "58410-2")
        assert parts["status"]["valueCode"] == "recognizable"
        candidate = {p["name"]: p for p in parts["candidate"]["part"]}
        # 7 days from 2026-12-01T00:00+08:00; the operation keeps the exact instant
        assert candidate["validUntil"]["valueDateTime"] == "2026-12-07T16:00:00.000Z"
    finally:
        clock.now = T0


# ------------------------------------------------------------------ the last valid day on cards
def test_a_card_shows_the_last_valid_day_of_a_window_ending_at_midnight(
    api: Api, person: dict[str, Any], clock: Clock
) -> None:
    try:
        clock.now = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
        push_report(api, f"Patient/{person['a']['id']}", "2026-11-26T00:00:00+08:00", results=[_hb(131)])
        card = card_for(sign(api, "dr-hosp-b", person["nid"], [("o-cbc", LOINC, "58410-2")]), "o-cbc")
        assert card is not None
        # the window is [2026-11-26T00:00, 2026-12-03T00:00) in +08:00: valid through the 2nd
        assert "有效至2026-12-02" in card["summary"]
        assert "2026-12-03" not in card["summary"]
        parts = check(api, person["nid"], "58410-2")
        candidate = {p["name"]: p for p in parts["candidate"]["part"]}
        assert candidate["validUntil"]["valueDateTime"] == "2026-12-02T16:00:00.000Z"
        body = {
            "hook": "patient-view",
            "hookInstance": unique("h"),
            "context": {"userId": "Practitioner/p", "patientId": "ehr-1"},
            "prefetch": {
                "patient": {"resourceType": "Patient", "identifier": [{"system": NATIONAL, "value": person["nid"]}]}
            },
        }
        r = api.post("/cds-services/hr-patient-view", body, who="dr-hosp-b")
        assert r.status_code == 200, r.text
        (history,) = r.json()["cards"]
        assert "| 2026-11-26 | 2026-12-02 |" in history["detail"]
    finally:
        clock.now = T0


def _hb(value: float) -> dict[str, Any]:
    return {"code": {"coding": [{"system": LOINC, "code": "718-7"}]}, "valueQuantity": {"value": value, "unit": "g/L"}}
