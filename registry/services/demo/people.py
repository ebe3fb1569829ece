"""The demo region's people and places: its hospitals, synthetic patients (valid GB 11643 check digits) and the
lab panels and imaging items they are tested with — all invented."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from registry.auth import Principal, PrincipalKind, parse_scopes
from registry.services.identity import resident_id_check_char

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
