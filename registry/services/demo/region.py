"""A synthetic demo region: 5 hospitals, 50 patients, several hundred lab and imaging reports over the past months.

Everything is invented (names, ID numbers with valid check digits, values) and goes through the same write pipeline
as a hospital's push, as transaction Bundles of conditional updates keyed on business identifiers — so loading twice
changes nothing. ``./scripts/serve`` loads it once.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import orjson

from catalog import Catalog
from registry.auth import Principal
from registry.services.administration import Administration
from registry.services.audit import AuditContext
from registry.services.demo.images import DemoStudy, demo_study
from registry.services.demo.people import (
    BEIJING,
    HOSPITALS,
    ORG_CODE,
    REGION_EXT,
    DemoPatient,
    _hospital_principal,
    _patients,
)
from registry.services.demo.records import DemoRecords
from registry.services.ingest import Ingest
from registry.services.namespaces import IdentifierNamespaces

SEED = 20261122
"""The demo region's random seed: the same people, reports and studies at every load."""


def demo_studies(catalog: Catalog, now: datetime, patients: int = 50, seed: int = SEED) -> list[DemoStudy]:
    """The imaging studies ``DemoRegion.load`` writes, as their hospital's PACS holds them: the same seed draws the
    same studies, series and UIDs (their dates follow ``now``, as the load's follow its clock)."""
    records = DemoRecords()
    records.catalog = catalog
    rng = random.Random(seed)  # noqa: S311 - synthetic demo data, not security
    counts = {"lab_reports": 0, "imaging_reports": 0}
    out: list[DemoStudy] = []
    for index, p in enumerate(_patients(rng, patients)):
        for h in p.hospitals:
            for entry in records._reports(rng, p, h, now.astimezone(BEIJING), scripted=index == 0, counts=counts):
                r = entry["resource"]
                if r["resourceType"] == "ImagingStudy":
                    out.append(demo_study(r, h.id, h.name, p.mrns[h.id], (p.family, p.given), p.male, p.birth))
    return out


class DemoRegion(DemoRecords):
    def __init__(
        self,
        ingest: Ingest,
        catalog: Catalog,
        clock: Callable[[], datetime],
        *,
        administration: Administration | None = None,
        namespaces: IdentifierNamespaces | None = None,
        seed: int = SEED,
    ):
        self.namespaces = namespaces
        self.ingest = ingest
        self.catalog = catalog
        self.clock = clock
        self.administration = administration
        self.seed = seed

    def organizations(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for h in HOSPITALS:
            yield (
                h.id,
                {
                    "resourceType": "Organization",
                    "id": h.id,
                    "identifier": [{"system": ORG_CODE, "value": h.code}],
                    "active": True,
                    "type": [
                        {
                            "coding": [
                                {
                                    "system": "http://terminology.hl7.org/CodeSystem/organization-type",
                                    "code": "prov",
                                    "display": "Healthcare Provider",
                                }
                            ]
                        }
                    ],
                    "name": h.name,
                    "alias": [h.short],
                    "extension": [{"url": REGION_EXT, "valueCode": r} for r in h.regions],
                },
            )

    def load(self, admin: Principal, *, patients: int = 50) -> dict[str, int]:
        rng = random.Random(self.seed)  # noqa: S311 - synthetic demo data, not security
        audit = AuditContext("demo-load", admin, "transaction")
        counts = {"organizations": 0, "patients": 0, "lab_reports": 0, "imaging_reports": 0}
        for org_id, org in self.organizations():
            self.ingest.update(admin, audit, "Organization", org_id, orjson.dumps(org).decode(), None)
            counts["organizations"] += 1
            if self.namespaces is not None:  # each hospital owns the identifier systems under its base URL
                hospital = next(h for h in HOSPITALS if h.id == org_id)
                self.namespaces.declare(admin, org_id, [f"{hospital.base}/*"])
        now = self.clock().astimezone(BEIJING)
        for h in HOSPITALS:
            endpoint = {
                "resourceType": "Endpoint",
                "id": f"{h.id}-wado",
                "identifier": [{"system": f"{h.base}/endpoint", "value": "wado-rs"}],
                "status": "active",
                "connectionType": {
                    "system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
                    "code": "dicom-wado-rs",
                },
                "name": f"{h.name} PACS (WADO-RS)",
                "managingOrganization": {"reference": f"Organization/{h.id}"},
                "payloadType": [{"text": "DICOM"}],
                "payloadMimeType": ["application/dicom"],
                "address": f"{h.base}/dicom-web",
            }
            self.ingest.update(
                _hospital_principal(h), audit, "Endpoint", f"{h.id}-wado", orjson.dumps(endpoint).decode(), None
            )
        self._qualifications(admin)
        self._code_maps(audit)
        for index, patient in enumerate(_patients(rng, patients)):
            counts["patients"] += 1
            for h in patient.hospitals:
                entries = [self._patient_entry(patient, h)]
                entries += list(self._reports(rng, patient, h, now, scripted=index == 0, counts=counts))
                bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
                self.ingest.bundle(_hospital_principal(h), audit, orjson.dumps(bundle).decode(), representation=False)
        return counts

    def people(self, patients: int = 50) -> list[DemoPatient]:
        """The demo patients ``load`` writes (the same seed: the same people)."""
        return _patients(random.Random(self.seed), patients)  # noqa: S311 - synthetic demo data, not security

    def _qualifications(self, admin: Principal) -> None:
        """EQA qualifications: every Beijing hospital for every group city-wide; the 京津冀鲁 members for the lab
        groups region-wide; the community centre for blood counts, chemistry and ultrasound only."""
        if self.administration is None:
            return
        existing = {q["id"] for q in self.administration.qualifications(admin)}
        lab = [g.code for g in self.catalog.groups.values() if g.kind.value == "lab"]
        everything = list(self.catalog.groups)
        plan: list[tuple[str, str, list[str]]] = [
            ("hosp-a", "beijing", everything), ("hosp-b", "beijing", everything), ("hosp-c", "beijing", everything),
            ("hosp-d", "beijing", ["hematology", "liver", "kidney", "lipid", "glucose", "us"]),
            ("hosp-a", "jjjl", lab), ("hosp-b", "jjjl", lab), ("hosp-c", "jjjl", lab), ("hosp-e", "jjjl", lab),
        ]  # fmt: skip
        for org, scope, groups in plan:
            for group in groups:
                qid = f"demo-{org}-{scope}-{group}"
                if qid not in existing:
                    self.administration.add(admin, {"id": qid, "org": org, "group": group, "scope": scope,
                                                    "valid_from": "2024-01-01", "note": "demo"})  # fmt: skip

    def _code_maps(self, audit: AuditContext) -> None:
        """Hospital B orders with its own codes (as real order screens do): its local code map."""
        from registry.services.code_maps import CODE_MAP_ORG

        b = HOSPITALS[1]
        rows = [("XCG", "血常规", "58410-2"), ("XHDB", "血红蛋白", "718-7"), ("GGN", "肝功能", "JY-GG-001"),
                ("XZ4", "血脂四项", "JY-XZ-001"), ("THXHDB", "糖化血红蛋白", "4548-4"),
                ("CT-XB-PS", "胸部CT平扫", "29252-4"), ("MR-LN-PS", "颅脑MR平扫", "30657-1"),
                ("US-FB", "腹部超声", "24558-9"), ("DR-XB-ZW", "胸部正位片", "36554-4")]  # fmt: skip
        elements = []
        for code, display, target in rows:
            item = self.catalog.search(target, limit=1)[0].item
            target_entry = {"code": item.id, "display": item.name_zh, "equivalence": "equivalent"}
            elements.append({"code": code, "display": display, "target": [target_entry]})
        concept_map: dict[str, Any] = {
            "resourceType": "ConceptMap", "id": f"{b.id}-order-codes", "status": "active",
            "url": f"https://hr-registry.org.cn/fhir/ConceptMap/{b.id}-order-codes",
            "name": "HospBOrderCodes", "title": f"{b.name} 本地医嘱编码 → 互认项目",
            "extension": [{"url": CODE_MAP_ORG, "valueReference": {"reference": f"Organization/{b.id}"}}],
            "group": [{"source": f"{b.base}/order-codes",
                       "target": "https://hr-registry.org.cn/fhir/CodeSystem/recognized-items",
                       "element": elements}],
        }  # fmt: skip
        self.ingest.update(
            _hospital_principal(b), audit, "ConceptMap", f"{b.id}-order-codes", orjson.dumps(concept_map).decode(), None
        )

    # ------------------------------------------------------------------ resources
