"""Code lookup, imaging lookup by DICOM attributes, panel equivalence and search."""

from __future__ import annotations

from catalog import CodeMap, Coding, Contrast
from catalog.codes import LOINC, RECOGNIZED_ITEMS, REGIONAL_ITEM_CODE
from tests.unit.catalog.factories import B_LOCAL, B_MAP, catalog

CAT = catalog()


def test_lookup_by_loinc_regional_code_and_item_id() -> None:
    for coding in (
        Coding(LOINC, "718-7"),
        Coding(REGIONAL_ITEM_CODE, "JY-T-L002"),
        Coding(RECOGNIZED_ITEMS, "L002"),
    ):
        item = CAT.by_code(coding)
        assert item is not None and item.id == "L002"


def test_lookup_through_a_local_map_and_the_map_wins() -> None:
    item = CAT.by_code(Coding(B_LOCAL, "HB"), B_MAP)
    assert item is not None and item.id == "L002"
    overriding = CodeMap("org-b", {Coding(LOINC, "718-7"): "L003"})
    overridden = CAT.by_code(Coding(LOINC, "718-7"), overriding)
    assert overridden is not None and overridden.id == "L003"
    assert CAT.by_code(Coding(B_LOCAL, "HB")) is None


def test_token_parsing_accepts_aliases() -> None:
    assert Coding.parse("loinc|718-7") == Coding(LOINC, "718-7")
    assert Coding.parse("http://loinc.org|718-7") == Coding(LOINC, "718-7")
    assert Coding.parse("718-7") == Coding("", "718-7")


def test_imaging_lookup_by_modality_body_part_contrast() -> None:
    item = CAT.by_imaging("CT", "CHEST", Contrast.WITH)
    assert item is not None and item.id == "I002"
    item = CAT.by_imaging("ct", "chest", Contrast.WITHOUT)
    assert item is not None and item.id == "I001"
    assert CAT.by_imaging("MR", "CHEST", Contrast.WITHOUT) is None


def test_imaging_lookup_with_unknown_contrast_only_when_unambiguous() -> None:
    assert CAT.by_imaging("CT", "CHEST", None) is None  # plain or enhanced? not a guess
    item = CAT.by_imaging("MR", "HEAD", None)
    assert item is not None and item.id == "I003"


def test_imaging_lookup_with_technique() -> None:
    item = CAT.by_imaging("CT", "HEAD", Contrast.NOT_APPLICABLE, "perfusion")
    assert item is not None and item.id == "I004"
    assert CAT.by_imaging("CT", "HEAD", Contrast.NOT_APPLICABLE) is None


def test_panel_equivalence() -> None:
    assert CAT.satisfies("L001", "L002")
    assert not CAT.satisfies("L002", "L001")
    assert CAT.satisfies("L004", "L004")
    assert CAT.panels_containing("L002") == ("L001",)


def test_search_by_chinese_english_abbreviation_and_code() -> None:
    assert CAT.search("血红蛋白")[0].item.id == "L002"
    assert CAT.search("hb")[0].item.id == "L002"
    assert CAT.search("ＡＬＴ")[0].item.id == "L004"  # full-width input
    assert CAT.search("1742-6")[0].item.id == "L004"
    assert CAT.search("loinc|29252-4")[0].item.id == "I001"
    assert [h.item.id for h in CAT.search("胸部CT")] == ["I001", "I002"]
    assert CAT.search("") == []
    assert CAT.search("zzz") == []
