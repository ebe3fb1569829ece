"""The demo region's records as a hospital would push them: a Patient entry and transaction entries for lab reports
(with their Observations) and imaging studies with their reports."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from catalog import Catalog, Coding
from catalog.codes import BODY_PART_SNOMED, HR_MARK, LOINC
from registry.services.demo.images import STACKS, series_size
from registry.services.demo.people import (
    DCM,
    IMAGING,
    INTERP,
    NATIONAL_ID,
    PANELS,
    SINGLE,
    UCUM,
    V2_0074,
    DemoPatient,
    Hospital,
    _interpretation,
)


class DemoRecords:
    """Builders of one hospital's records for one patient (the catalog names the items)."""

    catalog: Catalog

    def _patient_entry(self, p: DemoPatient, h: Hospital) -> dict[str, Any]:
        mrn_system = f"{h.base}/mrn"
        resource = {
            "resourceType": "Patient",
            "identifier": [
                {
                    "use": "usual",
                    "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
                    "system": mrn_system,
                    "value": p.mrns[h.id],
                    "assigner": {"reference": f"Organization/{h.id}"},
                },
                {
                    "use": "official",
                    "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "NNCHN"}]},
                    "system": NATIONAL_ID,
                    "value": p.national_id,
                },
            ],
            "name": [{"use": "official", "text": p.family + p.given, "family": p.family, "given": [p.given]}],
            "gender": "male" if p.male else "female",
            "birthDate": p.birth.date().isoformat(),
            "managingOrganization": {"reference": f"Organization/{h.id}"},
        }
        return {
            "fullUrl": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, mrn_system + '|' + p.mrns[h.id])}",
            "resource": resource,
            "request": {"method": "PUT", "url": f"Patient?identifier={mrn_system}|{p.mrns[h.id]}"},
        }

    def _reports(
        self, rng: random.Random, p: DemoPatient, h: Hospital, now: datetime, *, scripted: bool, counts: dict[str, int]
    ) -> Iterator[dict[str, Any]]:
        patient_ref = f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{h.base}/mrn|' + p.mrns[h.id])}"
        n_lab = rng.randrange(2, 6)
        for i in range(n_lab):
            days_ago = 2 + rng.randrange(0, 180) if not (scripted and h.id == "hosp-a" and i == 0) else 2
            when = (now - timedelta(days=days_ago)).replace(
                hour=rng.randrange(7, 11), minute=rng.randrange(0, 60), second=0, microsecond=0
            )
            # the walkthrough's first report: a recent blood count at hospital A
            kind = 0 if scripted and h.id == "hosp-a" and i == 0 else rng.randrange(0, len(PANELS) + len(SINGLE))
            if kind < len(PANELS):
                code, title, analytes = PANELS[kind]
            else:
                analytes = SINGLE[kind - len(PANELS)]
                code, title = analytes[0][1], analytes[0][5]
            counts["lab_reports"] += 1
            report_no = f"{h.id[-1].upper()}L{p.mrns[h.id]}-{i}"
            yield from self._lab_report(rng, p, h, patient_ref, when, code, title, analytes, report_no)
        if rng.random() < 0.7 or scripted:
            for j in range(rng.randrange(1, 3)):
                loinc, modality, part, conclusions = IMAGING[0] if scripted and j == 0 else rng.choice(IMAGING)
                when = (now - timedelta(days=rng.randrange(3, 150))).replace(second=0, microsecond=0)
                counts["imaging_reports"] += 1
                yield from self._imaging(rng, p, h, patient_ref, when, loinc, modality, part, conclusions, j)

    def _lab_report(
        self,
        rng: random.Random,
        p: DemoPatient,
        h: Hospital,
        patient_ref: str,
        when: datetime,
        code: str,
        title: str,
        analytes: list[tuple[str, str, str, float, float, str]],
        report_no: str,
    ) -> Iterator[dict[str, Any]]:
        issued = when + timedelta(hours=2, minutes=rng.randrange(0, 50))
        obs_refs: list[str] = []
        hr_marked = rng.random() < 0.9
        tag = [{"system": HR_MARK, "code": "HR", "display": "互认"}] if hr_marked else []
        for k, (abbr, loinc, unit, low, high, display) in enumerate(analytes):
            low_sex, high_sex = (low, high)
            if abbr in ("Hb", "RBC") and not p.male:
                low_sex, high_sex = (115.0, 150.0) if abbr == "Hb" else (3.8, 5.1)
            base = p.baseline.setdefault(abbr, rng.uniform(low_sex, high_sex))
            value = base * rng.uniform(0.9, 1.1) if rng.random() < 0.85 else base * rng.uniform(0.6, 1.45)
            decimals = 0 if high >= 100 else 1 if high >= 10 else 2
            value = round(max(value, 0.0), decimals)
            obs_id = f"{report_no}-{k + 1}"
            full = f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, f'{h.base}/observation|{obs_id}')}"
            obs_refs.append(full)
            obs = {
                "resourceType": "Observation",
                "meta": {"tag": tag} if tag else {},
                "identifier": [{"system": f"{h.base}/observation", "value": obs_id}],
                "status": "final",
                "category": [
                    {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                "code": "laboratory",
                            }
                        ]
                    }
                ],
                "code": {"coding": [{"system": LOINC, "code": loinc, "display": display}], "text": display},
                "subject": {"reference": patient_ref},
                "effectiveDateTime": when.isoformat(),
                "issued": issued.isoformat(),
                "performer": [{"reference": f"Organization/{h.id}"}],
                "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
                "interpretation": [{"coding": [{"system": INTERP, "code": _interpretation(value, low_sex, high_sex)}]}],
                "referenceRange": [
                    {
                        "low": {"value": low_sex, "unit": unit, "system": UCUM, "code": unit},
                        "high": {"value": high_sex, "unit": unit, "system": UCUM, "code": unit},
                    }
                ],
            }
            if not obs["meta"]:
                del obs["meta"]
            yield _put(full, obs, f"Observation?identifier={h.base}/observation|{obs_id}")
        report_code = (
            {"coding": [{"system": LOINC, "code": code, "display": title}], "text": title}
            if code
            else {"text": title, "coding": [{"system": f"{h.base}/lab-order", "code": title}]}
        )
        report = {
            "resourceType": "DiagnosticReport",
            "identifier": [{"system": f"{h.base}/report-no", "value": report_no}],
            "status": "final",
            "category": [{"coding": [{"system": V2_0074, "code": "LAB", "display": "Laboratory"}]}],
            "code": report_code,
            "subject": {"reference": patient_ref},
            "effectiveDateTime": when.isoformat(),
            "issued": issued.isoformat(),
            "performer": [{"reference": f"Organization/{h.id}"}],
            "result": [{"reference": r} for r in obs_refs],
        }
        if tag:
            report["meta"] = {"tag": tag}
        yield _put(
            _urn(f"{h.base}/report-no|{report_no}"),
            report,
            f"DiagnosticReport?identifier={h.base}/report-no|{report_no}",
        )

    def _imaging(
        self,
        rng: random.Random,
        p: DemoPatient,
        h: Hospital,
        patient_ref: str,
        when: datetime,
        loinc: str,
        modality: str,
        part: str,
        conclusions: list[str],
        j: int,
    ) -> Iterator[dict[str, Any]]:
        item = self.catalog.by_code(Coding(LOINC, loinc))
        title = item.name_zh if item else loinc
        accession = f"{h.id[-1].upper()}ACC{p.mrns[h.id]}{j}"
        study_uid = f"2.25.{uuid.uuid5(uuid.NAMESPACE_URL, f'{h.base}/study|{accession}').int}"
        series_n = rng.randrange(1, 4)
        series = []
        total = 0
        for s in range(series_n):
            # what the demo's local PACS holds for the series (registry.services.demo.images): the number drawn
            # picks a stack's length, so the demo's other draws stay as they were
            n = series_size(modality, rng.randrange(1, 300) if modality in STACKS else rng.randrange(1, 4))
            total += n
            series.append(
                {
                    "uid": f"{study_uid}.{s + 1}",
                    "number": s + 1,
                    "modality": {"system": DCM, "code": modality},
                    "numberOfInstances": n,
                    "bodySite": {
                        "system": "http://snomed.info/sct",
                        "code": BODY_PART_SNOMED[part][0],
                        "display": BODY_PART_SNOMED[part][1],
                    },
                    "started": when.isoformat(),
                }
            )
        study_full = f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, study_uid)}"
        hr_marked = rng.random() < 0.9
        tag = [{"system": HR_MARK, "code": "HR", "display": "互认"}] if hr_marked else []
        study: dict[str, Any] = {
            "resourceType": "ImagingStudy",
            "identifier": [
                {"system": "urn:dicom:uid", "value": f"urn:oid:{study_uid}"},
                {
                    "use": "usual",
                    "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}]},
                    "system": f"{h.base}/accession",
                    "value": accession,
                    "assigner": {"reference": f"Organization/{h.id}"},
                },
            ],
            "status": "available",
            "modality": [{"system": DCM, "code": modality}],
            "subject": {"reference": patient_ref},
            "started": when.isoformat(),
            "endpoint": [{"reference": f"Endpoint/{h.id}-wado"}],
            "numberOfSeries": series_n,
            "numberOfInstances": total,
            "procedureCode": [{"coding": [{"system": LOINC, "code": loinc, "display": title}], "text": title}],
            "description": title,
            "series": series,
        }
        if tag:
            study["meta"] = {"tag": tag}
        yield _put(study_full, study, f"ImagingStudy?identifier=urn:dicom:uid|urn:oid:{study_uid}")
        report_no = f"{h.id[-1].upper()}R{accession}"
        report = {
            "resourceType": "DiagnosticReport",
            "identifier": [{"system": f"{h.base}/report-no", "value": report_no}],
            "status": "final",
            "category": [{"coding": [{"system": V2_0074, "code": "RAD", "display": "Radiology"}]}],
            "code": {"coding": [{"system": LOINC, "code": loinc, "display": title}], "text": title},
            "subject": {"reference": patient_ref},
            "effectiveDateTime": when.isoformat(),
            "issued": (when + timedelta(hours=rng.randrange(1, 30))).isoformat(),
            "performer": [{"reference": f"Organization/{h.id}"}],
            "imagingStudy": [{"reference": study_full}],
            "conclusion": rng.choice(conclusions),
        }
        if tag:
            report["meta"] = {"tag": tag}
        yield _put(
            _urn(f"{h.base}/report-no|{report_no}"),
            report,
            f"DiagnosticReport?identifier={h.base}/report-no|{report_no}",
        )


def _urn(key: str) -> str:
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, key)}"


def _put(full_url: str, resource: dict[str, Any], url: str) -> dict[str, Any]:
    """A transaction entry that creates or updates the resource found by its business identifier."""
    return {"fullUrl": full_url, "resource": resource, "request": {"method": "PUT", "url": url}}
