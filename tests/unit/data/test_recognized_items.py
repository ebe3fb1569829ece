"""The shipped catalog, data/recognized_items.yaml: counts, codes, the 京津冀鲁 60, provenance."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from catalog import Catalog, Contrast, Kind, parse_catalog
from catalog.codes import LOINC
from catalog.model import DICOM_MODALITIES
from registry.reference_tables import USABLE_STATUSES, load_loinc_reference

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return parse_catalog(yaml.safe_load((ROOT / "data" / "recognized_items.yaml").read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def jjjl_published() -> list[dict[str, Any]]:
    doc = yaml.safe_load((ROOT / "data" / "reference" / "recognition_lists.yaml").read_text(encoding="utf-8"))
    groups = doc["jjjl_2023_2024_clinical_lab_recognition"]["groups"]
    return [item for g in groups for item in g.get("items", []) if "zh" in item]


def test_exactly_181_lab_and_300_imaging_items(catalog: Catalog) -> None:
    assert len(catalog.of_kind(Kind.LAB)) == 181
    assert len(catalog.of_kind(Kind.IMAGING)) == 300


def test_ids_are_sequential_and_unique(catalog: Catalog) -> None:
    assert [i.id for i in catalog.of_kind(Kind.LAB)] == [f"L{n:03d}" for n in range(1, 182)]
    assert [i.id for i in catalog.of_kind(Kind.IMAGING)] == [f"I{n:03d}" for n in range(1, 301)]


def test_codes_and_regional_codes_are_unique(catalog: Catalog) -> None:
    codes = Counter(c for i in catalog for c in i.codes)
    assert [c for c, n in codes.items() if n > 1] == []
    regional = Counter(i.regional_code for i in catalog)
    assert [c for c, n in regional.items() if n > 1] == []
    assert all(i.regional_code.startswith("JY-" if i.kind is Kind.LAB else "JC-") for i in catalog)


def test_every_loinc_code_is_verified_in_the_shipped_tables(catalog: Catalog) -> None:
    reference = load_loinc_reference()
    assert len(reference) > 400
    for item in catalog:
        for coding in item.codes:
            assert coding.system == LOINC, item.id
            entry = reference.get(coding.code)
            assert entry is not None, f"{item.id}: {coding.code} not in data/reference"
            assert entry.status in USABLE_STATUSES, f"{item.id}: {coding.code} has status {entry.status}"
            expected_table = "loinc_lab" if item.kind is Kind.LAB else "loinc_imaging"
            assert entry.table == expected_table, f"{item.id}: {coding.code} comes from {entry.table}"


def test_no_conflicting_code_is_used_anywhere(catalog: Catalog) -> None:
    conflicting = {code for code, e in load_loinc_reference().items() if e.status == "C"}
    assert conflicting, "the reference tables mark some codes C"
    assert not conflicting & {c.code for i in catalog for c in i.codes}


def test_all_60_jjjl_items_are_present_and_flagged(catalog: Catalog, jjjl_published) -> None:
    flagged = [i for i in catalog if any(x.list_id == "jjjl-2023-2024" for x in i.listings)]
    assert len(flagged) == 60
    assert all("jjjl" in i.scopes for i in flagged)
    assert {i.id for i in catalog if "jjjl" in i.scopes} == {i.id for i in flagged}
    by_name = {i.name_zh: i for i in flagged}
    assert len(jjjl_published) == 46
    for entry in jjjl_published:
        item = by_name.get(entry["zh"])
        assert item is not None, f"published 京津冀鲁 item {entry['zh']} missing"
        assert item.listings[0].evidence == "published"
    inferred = [i for i in flagged if i.listings[0].evidence == "inferred"]
    assert len(inferred) == 14
    assert all(i.note for i in inferred), "an inferred listing must say why"


def test_every_item_has_validity_and_fee_provenance(catalog: Catalog) -> None:
    for item in catalog:
        assert item.validity.days > 0
        assert item.validity.source == "assumed" or item.validity.source.startswith("published:")
        assert item.fee.source == "assumed"


def test_published_hubei_windows_match_the_reference(catalog: Catalog) -> None:
    expected = {
        "钾": 7,
        "钠": 7,
        "氯": 7,
        "钙": 7,
        "镁": 7,
        "磷": 7,
        "血清铁": 7,
        "总铁结合力": 7,
        "锂": 7,
        "总蛋白": 30,
        "白蛋白": 30,
        "铁蛋白": 30,
        "葡萄糖": 30,
        "糖化血红蛋白A1c": 60,
        "总胆固醇": 30,
        "甘油三酯": 30,
        "高密度脂蛋白胆固醇": 30,
        "低密度脂蛋白胆固醇": 30,
        "载脂蛋白A1": 30,
        "载脂蛋白B": 30,
        "总胆红素": 30,
        "直接胆红素": 30,
    }
    by_name = {i.name_zh: i for i in catalog}
    for name, days in expected.items():
        assert by_name[name].validity.days == days, name
        assert by_name[name].validity.source == "published:hubei", name
    assert sum(1 for i in catalog if i.validity.source == "published:hubei") == len(expected)


def test_lab_items_have_specimen_and_imaging_items_dicom_attributes(catalog: Catalog) -> None:
    for item in catalog.of_kind(Kind.LAB):
        assert item.lab is not None and item.lab.specimen in catalog.specimens
        assert item.imaging is None
    for item in catalog.of_kind(Kind.IMAGING):
        assert item.imaging is not None and item.lab is None
        assert item.imaging.modality in DICOM_MODALITIES


def test_blood_count_panel_and_its_analytes(catalog: Catalog) -> None:
    cbc = catalog.by_code(next(c for c in catalog.item("L001").codes))
    assert cbc is not None and cbc.loinc == ("58410-2",)
    names = {catalog.item(m).abbr[0] for m in cbc.members}
    assert {"WBC", "RBC", "Hb", "HCT", "PLT"} <= names
    assert catalog.satisfies("L001", "L004")  # a blood count answers an order for haemoglobin


def test_imaging_covers_every_modality_and_contrast(catalog: Catalog) -> None:
    modalities = Counter(i.imaging.modality for i in catalog.of_kind(Kind.IMAGING) if i.imaging)
    assert {"CT", "MR", "DX", "MG", "US", "NM", "PT"} <= set(modalities)
    contrasts = {i.imaging.contrast for i in catalog.of_kind(Kind.IMAGING) if i.imaging}
    assert contrasts == set(Contrast)
    chest = catalog.by_imaging("CT", "CHEST", Contrast.WITHOUT)
    assert chest is not None and chest.name_zh == "胸部CT平扫"


def test_header_carries_edition_effective_date_and_loinc_notice(catalog: Catalog) -> None:
    assert catalog.edition and catalog.effective.year >= 2024
    assert catalog.loinc_notice is not None and "Regenstrief" in catalog.loinc_notice
    text = (ROOT / "data" / "recognized_items.yaml").read_text(encoding="utf-8")
    assert "http://loinc.org/license" in text.split("catalog:")[0]


def test_reference_tables_keep_their_provenance_header() -> None:
    for name in ("loinc_lab.tsv", "loinc_imaging.tsv", "nonrecognition_reasons.tsv"):
        head = (ROOT / "data" / "reference" / name).read_text(encoding="utf-8").splitlines()[:3]
        assert head[0].startswith("# Copied from"), name
        assert any("LOINC" in line or "Reasons" in line for line in head), name


def test_hiv_syphilis_and_hepatitis_serology_are_sensitive(catalog: Catalog) -> None:
    cat = catalog
    sensitive = {i.name_en for i in cat.items if i.sensitive}
    assert any("hiv" in n.lower() for n in sensitive)
    assert any("syphilis" in n.lower() or "treponema" in n.lower() for n in sensitive)
    assert any("hepatitis b" in n.lower() for n in sensitive) and any("hepatitis c" in n.lower() for n in sensitive)
    assert not any("haemoglobin" in n.lower() or "hemoglobin" in n.lower() for n in sensitive)
