"""A synthetic demo region: 5 hospitals, 50 patients, several hundred lab and imaging reports over the past months.

Everything is invented (names, ID numbers with valid check digits, values) and goes through the same write pipeline
as a hospital's push, as transaction Bundles of conditional updates keyed on business identifiers — so loading twice
changes nothing. ``./scripts/serve`` loads it once.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from catalog import Catalog, Coding
from catalog.codes import BODY_PART_SNOMED, HR_MARK, LOINC
from registry.auth import Principal, PrincipalKind, parse_scopes
from registry.services.administration import Administration
from registry.services.audit import AuditContext
from registry.services.identity import resident_id_check_char
from registry.services.ingest import Ingest
from registry.services.namespaces import IdentifierNamespaces

BEIJING = timezone(timedelta(hours=8))
NATIONAL_ID = "https://hr-registry.org.cn/fhir/sid/cn-resident-id"
ORG_CODE = "https://hr-registry.org.cn/fhir/sid/org-code"
REGION_EXT = "https://hr-registry.org.cn/fhir/StructureDefinition/recognition-region"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
INTERP = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
UCUM = "http://unitsofmeasure.org"
DEMO_STATE_KEY = "demo-region"


@dataclass(frozen=True, slots=True)
class Hospital:
    id: str
    name: str
    short: str
    regions: tuple[str, ...]
    code: str

    @property
    def base(self) -> str:
        return f"http://{self.id}.example.cn"


HOSPITALS = (
    Hospital("hosp-a", "北京市第一示范医院", "一院", ("beijing", "jjjl", "alliance:dongcheng"), "DEMO0001A"),
    Hospital("hosp-b", "北京市第二示范医院", "二院", ("beijing", "jjjl", "alliance:dongcheng"), "DEMO0002B"),
    Hospital("hosp-c", "北京朝阳示范医院", "朝阳", ("beijing", "jjjl"), "DEMO0003C"),
    Hospital("hosp-d", "北京海淀示范社区卫生服务中心", "海淀社区", ("beijing", "alliance:haidian"), "DEMO0004D"),
    Hospital("hosp-e", "天津示范医院", "天津", ("tianjin", "jjjl"), "DEMO0005E"),
)

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰建国红梅文俊欣怡子涵浩然宇轩思远雨萱晨阳嘉怡"

# (item abbreviation for the catalog, LOINC, unit, low, high, display) — reference ranges are typical adult ranges.
CBC = [
    ("WBC", "6690-2", "10*9/L", 4.0, 10.0, "白细胞计数"),
    ("RBC", "789-8", "10*12/L", 4.3, 5.8, "红细胞计数"),
    ("Hb", "718-7", "g/L", 130.0, 175.0, "血红蛋白"),
    ("HCT", "4544-3", "%", 40.0, 50.0, "血细胞比容"),
    ("PLT", "777-3", "10*9/L", 125.0, 350.0, "血小板计数"),
    ("MCV", "787-2", "fL", 82.0, 100.0, "平均红细胞体积"),
    ("MCH", "785-6", "pg", 27.0, 34.0, "平均红细胞血红蛋白量"),
    ("MCHC", "786-4", "g/L", 316.0, 354.0, "平均红细胞血红蛋白浓度"),
    ("NEUT%", "26511-6", "%", 40.0, 75.0, "中性粒细胞百分比"),
    ("LYM%", "26478-8", "%", 20.0, 50.0, "淋巴细胞百分比"),
]
LIVER = [
    ("ALT", "1742-6", "U/L", 9.0, 50.0, "丙氨酸氨基转移酶"),
    ("AST", "1920-8", "U/L", 15.0, 40.0, "天门冬氨酸氨基转移酶"),
    ("GGT", "2324-2", "U/L", 10.0, 60.0, "γ-谷氨酰基转移酶"),
    ("ALP", "6768-6", "U/L", 45.0, 125.0, "碱性磷酸酶"),
    ("TBIL", "1975-2", "umol/L", 0.0, 23.0, "总胆红素"),
    ("TP", "2885-2", "g/L", 65.0, 85.0, "总蛋白"),
    ("ALB", "1751-7", "g/L", 40.0, 55.0, "白蛋白"),
]
LIPIDS = [
    ("TC", "2093-3", "mmol/L", 2.8, 5.2, "总胆固醇"),
    ("TG", "2571-8", "mmol/L", 0.45, 1.7, "甘油三酯"),
    ("HDL-C", "2085-9", "mmol/L", 1.0, 2.0, "高密度脂蛋白胆固醇"),
    ("LDL-C", "2089-1", "mmol/L", 1.5, 3.4, "低密度脂蛋白胆固醇"),
]
SINGLE = [
    [("Glu", "2345-7", "mmol/L", 3.9, 6.1, "葡萄糖")],
    [("HbA1c", "4548-4", "%", 4.0, 6.0, "糖化血红蛋白A1c")],
    [("TSH", "3016-3", "m[IU]/L", 0.27, 4.2, "促甲状腺激素")],
]
PANELS: list[tuple[str, str, list[tuple[str, str, str, float, float, str]]]] = [
    ("58410-2", "血常规", CBC),
    ("", "肝功能", LIVER),
    ("", "血脂四项", LIPIDS),
]
# (LOINC of the procedure, modality, DICOM body part, conclusion templates)
IMAGING = [
    ("29252-4", "CT", "CHEST", ["双肺纹理清晰，未见明确实质性病变。", "右肺上叶见小结节，直径约4mm，建议随访。"]),
    ("30657-1", "MR", "BRAIN", ["颅脑MR平扫未见明显异常。", "双侧额叶皮层下少许缺血灶。"]),
    ("36554-4", "DX", "CHEST", ["心肺膈未见明显异常。", "双肺纹理增多。"]),
    ("24558-9", "US", "ABDOMEN", ["肝胆胰脾未见明显异常。", "脂肪肝（轻度）。"]),
]


def resident_id(rng: random.Random, birth: datetime, male: bool) -> str:
    area = rng.choice(["110101", "110102", "110105", "110106", "110108", "120101", "130102"])
    seq = rng.randrange(0, 50) * 2 + (1 if male else 0)
    body = f"{area}{birth:%Y%m%d}{rng.randrange(0, 10)}{seq % 100:02d}"[:17]
    return body + resident_id_check_char(body)


@dataclass(slots=True)
class DemoPatient:
    national_id: str
    family: str
    given: str
    male: bool
    birth: datetime
    hospitals: list[Hospital]
    mrns: dict[str, str] = field(default_factory=dict)
    baseline: dict[str, float] = field(default_factory=dict)


def _patients(rng: random.Random, count: int) -> list[DemoPatient]:
    out: list[DemoPatient] = []
    seen: set[str] = set()
    while len(out) < count:
        male = rng.random() < 0.5
        birth = datetime(rng.randrange(1940, 2005), rng.randrange(1, 13), rng.randrange(1, 29), tzinfo=BEIJING)
        nid = resident_id(rng, birth, male)
        if nid in seen:
            continue
        seen.add(nid)
        hospitals = rng.sample(list(HOSPITALS[:4]), k=rng.choice([1, 2, 2, 3])) + (
            [HOSPITALS[4]] if rng.random() < 0.15 else []
        )
        given = rng.choice(GIVEN) + (rng.choice(GIVEN) if rng.random() < 0.7 else "")
        p = DemoPatient(nid, rng.choice(SURNAMES), given, male, birth, hospitals)
        for h in hospitals:
            p.mrns[h.id] = f"{h.id[-1].upper()}{rng.randrange(100000, 999999)}"
        out.append(p)
    # The first patient is the scripted one: known at hospitals A and B (README walkthrough, browser tests).
    first = out[0]
    first.hospitals = [HOSPITALS[0], HOSPITALS[1]]
    first.mrns = {"hosp-a": "A-123", "hosp-b": "B-9"}
    return out


def _hospital_principal(h: Hospital) -> Principal:
    return Principal(
        f"{h.id}-system",
        PrincipalKind.HOSPITAL,
        parse_scopes("system/*.write system/*.read"),
        h.id,
        name=f"{h.name} 信息系统",
    )


def _interpretation(value: float, low: float, high: float) -> str:
    return "H" if value > high else "L" if value < low else "N"


class DemoRegion:
    def __init__(
        self,
        ingest: Ingest,
        catalog: Catalog,
        clock: Callable[[], datetime],
        *,
        administration: Administration | None = None,
        namespaces: IdentifierNamespaces | None = None,
        seed: int = 20261122,
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
            n = rng.randrange(1, 300) if modality in ("CT", "MR") else rng.randrange(1, 4)
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


def demo_principals() -> list[tuple[PrincipalKind, str, str, dict[str, str]]]:
    """The demo clients: (kind, client id, display name, extra fields)."""
    out: list[tuple[PrincipalKind, str, str, dict[str, str]]] = [
        (PrincipalKind.ADMIN, "demo-admin", "区域平台管理员", {}),
    ]
    for h in HOSPITALS:
        out.append((PrincipalKind.HOSPITAL, f"{h.id}-system", f"{h.name} 信息系统", {"org_id": h.id}))
    out.append((PrincipalKind.CLINICIAN, "dr-li-hosp-b", "李医生（二院）", {"org_id": "hosp-b"}))
    out.append((PrincipalKind.CLINICIAN, "dr-wang-hosp-a", "王医生（一院）", {"org_id": "hosp-a"}))
    return out


def first_patient_national_id(seed: int = 20261122) -> str:
    """The scripted patient's (synthetic) resident ID number: known at hospitals A (MRN A-123) and B (MRN B-9)."""
    return _patients(random.Random(seed), 1)[0].national_id  # noqa: S311
