"""The Bundles every client sends (FHIR R4 bundle.html, http.html §3.1.0.11): a transaction of writes (conditional
Patient, Observation and DiagnosticReport linked by ``urn:uuid`` fullUrls), the same with a GET entry, which R4
processes last so it sees the Bundle's own writes, and a batch of GET entries (a read and a search) with a write."""

from __future__ import annotations

from typing import Any

from tests.integration.conftest import unique
from tests.interop.conftest import MRN, ORG, Live

PATIENT, OBSERVATION, REPORT = (f"urn:uuid:b0000000-0000-4000-8000-00000000000{i}" for i in (1, 2, 3))


def observation(subject: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "identifier": [{"system": "http://hosp-b.example/obs", "value": unique("O")}],
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
        "subject": {"reference": subject},
        "effectiveDateTime": "2025-03-01T08:00:00+08:00",
        "valueQuantity": {"value": 131, "unit": "g/L", "system": "http://unitsofmeasure.org", "code": "g/L"},
        "performer": [{"reference": f"Organization/{ORG}"}],
    }


def transaction(live: Live, mrn: str, *, with_get: bool = False) -> dict[str, Any]:
    report = live.report_body(PATIENT)
    report["subject"] = {"reference": PATIENT}
    report["result"] = [{"reference": OBSERVATION}]
    entries: list[dict[str, Any]] = [
        {"fullUrl": PATIENT, "resource": live.patient_body(mrn),
         "request": {"method": "PUT", "url": f"Patient?identifier={MRN}|{mrn}"}},
        {"fullUrl": OBSERVATION, "resource": observation(PATIENT), "request": {"method": "POST", "url": "Observation"}},
        {"fullUrl": REPORT, "resource": report, "request": {"method": "POST", "url": "DiagnosticReport"}},
    ]  # fmt: skip
    if with_get:  # first in the Bundle, processed last (R4 bundle.html §transaction processing rules)
        entries.insert(0, {"request": {"method": "GET", "url": f"Patient?identifier={MRN}|{mrn}"}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def batch_with_reads(patient_id: str) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"request": {"method": "GET", "url": f"Patient/{patient_id}"}},
            {"request": {"method": "GET", "url": f"DiagnosticReport?patient=Patient/{patient_id}"}},
            {"resource": observation(f"Patient/{patient_id}"), "request": {"method": "POST", "url": "Observation"}},
        ],
    }
