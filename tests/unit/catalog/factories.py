"""A small, hand-made catalog and fact builders for rule tests (pure, no files)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from catalog import (
    Catalog,
    CodeMap,
    Coding,
    OrgFacts,
    PriorResult,
    Qualification,
    ResultStatus,
    parse_catalog,
)
from catalog.codes import LOINC

NOTICE = "LOINC content, copyright Regenstrief Institute, Inc.; see http://loinc.org/license"


def _lab(item_id: str, name: str, loinc: str | None, days: int, scope: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "id": item_id,
        "kind": "lab",
        "group": "hematology",
        "name_zh": name,
        "name_en": name,
        "codes": [{"system": "loinc", "code": loinc}] if loinc else [],
        "regional_code": f"JY-T-{item_id}",
        "specimen": "whole_blood",
        "unit": "g/L",
        "validity": {"days": days, "source": "assumed"},
        "fee_cny": {"amount": 10, "source": "assumed"},
        "scope": scope,
        **extra,
    }


def _img(item_id: str, name: str, loinc: str | None, part: str, contrast: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": item_id,
        "kind": "imaging",
        "group": "ct",
        "name_zh": name,
        "name_en": name,
        "codes": [{"system": "loinc", "code": loinc}] if loinc else [],
        "regional_code": f"JC-T-{item_id}",
        "modality": extra.pop("modality", "CT"),
        "body_part": part,
        "contrast": contrast,
        "technique": extra.pop("technique", None),
        "validity": {"days": 90, "source": "assumed"},
        "fee_cny": {"amount": 300, "source": "assumed"},
        "scope": ["beijing"],
        **extra,
    }


def document() -> dict[str, Any]:
    return {
        "catalog": {
            "edition": "test",
            "effective": "2025-01-01",
            "region": "beijing",
            "title_zh": "测试目录",
            "timezone": "+08:00",
            "loinc_notice": NOTICE,
        },
        "scopes": [
            {"code": "beijing", "kind": "region", "name_zh": "北京", "name_en": "Beijing"},
            {"code": "jjjl", "kind": "region", "name_zh": "京津冀鲁", "name_en": "JJJL"},
            {"code": "alliance", "kind": "alliance", "name_zh": "医联体", "name_en": "Alliance"},
        ],
        "groups": [
            {"code": "hematology", "kind": "lab", "name_zh": "血液", "name_en": "Hematology"},
            {"code": "liver", "kind": "lab", "name_zh": "肝功", "name_en": "Liver"},
            {"code": "ct", "kind": "imaging", "name_zh": "CT", "name_en": "CT"},
        ],
        "specimens": [{"code": "whole_blood", "name_zh": "全血", "name_en": "Whole blood"}],
        "items": [
            _lab("L001", "血常规", "58410-2", 7, ["beijing", "jjjl"], members=["L002", "L003"], abbr=["CBC"]),
            _lab("L002", "血红蛋白", "718-7", 7, ["beijing", "jjjl"], abbr=["Hb"]),
            _lab("L003", "白细胞计数", "6690-2", 7, ["beijing", "jjjl"], abbr=["WBC"]),
            _lab("L004", "丙氨酸氨基转移酶", "1742-6", 30, ["beijing"], group="liver", abbr=["ALT"]),
            _lab("L005", "糖化血红蛋白", "4548-4", 60, ["alliance"], abbr=["HbA1c"]),
            _img("I001", "胸部CT平扫", "29252-4", "CHEST", "without"),
            _img("I002", "胸部CT增强", "24628-0", "CHEST", "with"),
            _img("I003", "颅脑MR平扫", None, "HEAD", "without", modality="MR"),
            _img("I004", "头颅CT灌注", "24728-8", "HEAD", "not_applicable", technique="perfusion"),
        ],
    }


def catalog() -> Catalog:
    return parse_catalog(document())


# ------------------------------------------------------------------ facts
T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
ORDERER = OrgFacts("org-b", frozenset({"beijing", "jjjl", "alliance:east"}))
ISSUER = OrgFacts("org-a", frozenset({"beijing", "jjjl", "alliance:east"}))
TIANJIN = OrgFacts("org-tj", frozenset({"jjjl"}))
OUTSIDER = OrgFacts("org-x", frozenset({"beijing", "alliance:west"}))
PATIENT = "pk-1"

B_LOCAL = "http://hospital-b.example/order-codes"
B_MAP = CodeMap("org-b", {Coding(B_LOCAL, "XCG"): "L001", Coding(B_LOCAL, "HB"): "L002"})


def loinc(code: str) -> tuple[Coding, ...]:
    return (Coding(LOINC, code),)


def result(
    ref: str = "DiagnosticReport/1",
    *,
    code: str = "58410-2",
    patient: str = PATIENT,
    status: ResultStatus = ResultStatus.FINAL,
    effective: datetime = T0,
    issuer: OrgFacts = ISSUER,
    hr_mark: bool = True,
    codes: tuple[Coding, ...] | None = None,
    latest: datetime | None = None,
    contains: frozenset[str] = frozenset(),
) -> PriorResult:
    return PriorResult(
        ref,
        patient,
        codes if codes is not None else loinc(code),
        status,
        effective,
        issuer,
        hr_mark,
        effective_latest=latest,
        contains=contains,
    )


CBC_VALUES = frozenset({"L002", "L003"})
"""A blood count carrying both of its members' values (Hb, WBC) in the test catalog."""


def qualified(org: str = "org-a", scope: str = "beijing", **kw: Any) -> Qualification:
    kw.setdefault("group", "hematology")
    return Qualification(org, scope, kw.pop("valid_from", T0.date() - timedelta(days=365)), **kw)


QUALS = (
    qualified(),
    qualified(scope="jjjl"),
    qualified(scope="alliance"),
    qualified(group="liver"),
    qualified(group="ct"),
    qualified("org-tj", "jjjl"),
    qualified("org-x", "beijing"),
    qualified("org-x", "alliance"),
)
