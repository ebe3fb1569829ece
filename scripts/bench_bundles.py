"""The registry benchmark's synthetic pushes: transaction Bundles of reports (a DiagnosticReport with 5 Observations
each, the Patient created on their first report), in patient-major order."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from typing import Any

import orjson

from scripts.bench_common import national_id

NATIONAL = "https://hr-registry.org.cn/fhir/sid/cn-resident-id"
BASE = "http://hosp-a.example"
ANALYTES = [
    ("6690-2", "10*9/L", 4.0, 10.0),
    ("789-8", "10*12/L", 4.3, 5.8),
    ("718-7", "g/L", 130, 175),
    ("4544-3", "%", 40, 50),
    ("777-3", "10*9/L", 125, 350),
]


def report_entries(n: int, patient: int, first: bool, rng: random.Random) -> list[dict[str, Any]]:
    mrn = f"A{patient:07d}"
    p_url = f"urn:uuid:{uuid.UUID(int=patient + 1)}"
    entries: list[dict[str, Any]] = []
    if first:
        entries.append(
            {
                "fullUrl": p_url,
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [
                        {"system": f"{BASE}/mrn", "value": mrn},
                        {"system": NATIONAL, "value": national_id(patient)},
                    ],
                    "gender": "female",
                    "managingOrganization": {"reference": "Organization/hosp-a"},
                },
                "request": {"method": "PUT", "url": f"Patient?identifier={BASE}/mrn|{mrn}"},
            }
        )
        subject = p_url
    else:
        subject = f"Patient?identifier={BASE}/mrn|{mrn}"
    when = f"2025-{n % 12 + 1:02d}-{n % 28 + 1:02d}T08:{n % 60:02d}:00+08:00"
    results = []
    for k, (code, unit, lo, hi) in enumerate(ANALYTES):
        o_url = f"urn:uuid:{uuid.UUID(int=(n << 8) + k + (1 << 100))}"
        results.append({"reference": o_url})
        entries.append(
            {
                "fullUrl": o_url,
                "resource": {
                    "resourceType": "Observation",
                    "identifier": [{"system": f"{BASE}/obs", "value": f"R{n}-{k}"}],
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                    "subject": {"reference": subject},
                    "effectiveDateTime": when,
                    "valueQuantity": {
                        "value": round(rng.uniform(lo, hi), 2),
                        "unit": unit,
                        "system": "http://unitsofmeasure.org",
                        "code": unit,
                    },
                    "performer": [{"reference": "Organization/hosp-a"}],
                },
                "request": {"method": "PUT", "url": f"Observation?identifier={BASE}/obs|R{n}-{k}"},
            }
        )
    entries.append(
        {
            "fullUrl": f"urn:uuid:{uuid.UUID(int=(n << 8) + 255 + (1 << 101))}",
            "resource": {
                "resourceType": "DiagnosticReport",
                "identifier": [{"system": f"{BASE}/report", "value": f"R{n}"}],
                "status": "final",
                "meta": {"tag": [{"system": "https://hr-registry.org.cn/fhir/CodeSystem/hr-mark", "code": "HR"}]},
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB"}]}],
                "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]},
                "subject": {"reference": subject},
                "effectiveDateTime": when,
                "issued": when,
                "performer": [{"reference": "Organization/hosp-a"}],
                "result": results,
            },
            "request": {"method": "PUT", "url": f"DiagnosticReport?identifier={BASE}/report|R{n}"},
        }
    )
    return entries


def bundles(reports: int, patients: int, per_bundle: int) -> Iterator[bytes]:
    """Reports in patient-major order so a patient's first report carries the Patient."""
    rng = random.Random(7)
    per_patient = max(1, reports // patients)
    batch: list[dict[str, Any]] = []
    n = 0
    for round_ in range(per_patient):
        for patient in range(patients):
            if n >= reports:
                break
            batch += report_entries(n, patient, round_ == 0, rng)
            n += 1
            if n % per_bundle == 0:
                yield orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": batch})
                batch = []
    if batch:
        yield orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": batch})
