"""parse_catalog rejects a bad catalog with an error naming the item and field."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from catalog import Contrast, InvalidCatalogError, Kind, loinc_check_digit_ok, parse_catalog
from tests.unit.catalog.factories import document


def _problems(mutate: Callable[[dict[str, Any]], None]) -> list[tuple[str, str, str]]:
    doc = copy.deepcopy(document())
    mutate(doc)
    with pytest.raises(InvalidCatalogError) as info:
        parse_catalog(doc)
    return [(p.where, p.field, p.message) for p in info.value.problems]


def _item(doc: dict[str, Any], item_id: str) -> dict[str, Any]:
    return next(i for i in doc["items"] if i["id"] == item_id)


def test_the_test_document_is_valid() -> None:
    cat = parse_catalog(document())
    assert len(cat) == 9
    assert len(cat.of_kind(Kind.IMAGING)) == 4


def test_duplicate_id() -> None:
    def mutate(doc: dict[str, Any]) -> None:
        dup = copy.deepcopy(_item(doc, "L002"))
        dup["codes"], dup["regional_code"] = [], "JY-OTHER"
        doc["items"].append(dup)

    assert ("L002", "id", "duplicate id") in _problems(mutate)


def test_one_code_claimed_by_two_items() -> None:
    def mutate(doc: dict[str, Any]) -> None:
        _item(doc, "L003")["codes"] = [{"system": "loinc", "code": "718-7"}]

    (where, field, message), *_ = _problems(mutate)
    assert (where, field) == ("L003", "codes")
    assert "already claimed by L002" in message


def test_regional_code_reused() -> None:
    def mutate(doc: dict[str, Any]) -> None:
        _item(doc, "L003")["regional_code"] = "JY-T-L002"

    assert any(p[:2] == ("L003", "regional_code") for p in _problems(mutate))


def test_unknown_modality() -> None:
    def mutate(doc: dict[str, Any]) -> None:
        _item(doc, "I001")["modality"] = "XYZ"

    assert ("I001", "modality", "unknown DICOM modality 'XYZ'") in _problems(mutate)


@pytest.mark.parametrize("days", [0, -3, "7", 2.5, None, True])
def test_non_positive_or_non_integer_validity(days: object) -> None:
    def mutate(doc: dict[str, Any]) -> None:
        _item(doc, "L002")["validity"]["days"] = days

    assert any(p[:2] == ("L002", "validity.days") for p in _problems(mutate))


def test_validity_needs_a_source() -> None:
    def mutate(doc: dict[str, Any]) -> None:
        _item(doc, "L002")["validity"]["source"] = "somewhere"

    assert any(p[:2] == ("L002", "validity.source") for p in _problems(mutate))


@pytest.mark.parametrize("field", ["name_zh", "name_en", "regional_code"])
def test_missing_name_or_code(field: str) -> None:
    def mutate(doc: dict[str, Any]) -> None:
        del _item(doc, "L004")[field]

    assert ("L004", field, "missing") in _problems(mutate)


def test_bad_loinc_check_digit() -> None:
    def mutate(doc: dict[str, Any]) -> None:
        _item(doc, "L002")["codes"] = [{"system": "loinc", "code": "718-6"}]

    assert any(p[:2] == ("L002", "codes[0]") and "check digit" in p[2] for p in _problems(mutate))


def test_unknown_field_undeclared_group_scope_and_specimen() -> None:
    def mutate(doc: dict[str, Any]) -> None:
        item = _item(doc, "L004")
        item["colour"] = "red"
        item["group"] = "nope"
        item["scope"] = ["mars"]
        item["specimen"] = "blood?"

    problems = {p[:2] for p in _problems(mutate)}
    assert {("L004", "colour"), ("L004", "group"), ("L004", "scope"), ("L004", "specimen")} <= problems


def test_lab_item_with_imaging_fields_and_wrong_id_form() -> None:
    def mutate(doc: dict[str, Any]) -> None:
        item = _item(doc, "L004")
        item["modality"] = "CT"
        item["id"] = "I999"

    problems = {p[:2] for p in _problems(mutate)}
    assert ("I999", "modality") in problems
    assert ("I999", "id") in problems


def test_imaging_tuple_must_be_unique() -> None:
    def mutate(doc: dict[str, Any]) -> None:
        _item(doc, "I002")["contrast"] = "without"

    (where, field, message), *_ = _problems(mutate)
    assert (where, field) == ("I002", "body_part")
    assert "already I001" in message


def test_bad_contrast() -> None:
    assert any(p[:2] == ("I001", "contrast") for p in _problems(lambda d: _item(d, "I001").update(contrast="iv")))


def test_panel_members_must_exist_and_not_nest() -> None:
    def mutate(doc: dict[str, Any]) -> None:
        _item(doc, "L001")["members"] = ["L002", "L999", "L001"]
        _item(doc, "L004")["members"] = ["L001"]

    problems = _problems(mutate)
    assert ("L001", "members", "unknown member 'L999'") in problems
    assert ("L001", "members", "an item cannot be its own member") in problems
    assert ("L004", "members", "member L001 is itself a panel; panels do not nest") in problems


def test_header_and_loinc_notice() -> None:
    def mutate(doc: dict[str, Any]) -> None:
        doc["catalog"]["timezone"] = "Asia/Shanghai"
        doc["catalog"]["effective"] = "01/01/2025"
        del doc["catalog"]["loinc_notice"]

    problems = {p[:2] for p in _problems(mutate)}
    assert {("catalog", "timezone"), ("catalog", "effective"), ("catalog", "loinc_notice")} <= problems


def test_every_problem_is_reported_at_once() -> None:
    def mutate(doc: dict[str, Any]) -> None:
        _item(doc, "L002")["validity"]["days"] = 0
        _item(doc, "I001")["modality"] = "XYZ"

    where = {p[0] for p in _problems(mutate)}
    assert {"L002", "I001"} <= where


def test_not_a_mapping() -> None:
    with pytest.raises(InvalidCatalogError):
        parse_catalog([1, 2, 3])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "ok"),
    [("718-7", True), ("2345-7", True), ("58410-2", True), ("718-8", False), ("7187", False), ("abc-1", False)],
)
def test_loinc_check_digit(code: str, ok: bool) -> None:
    assert loinc_check_digit_ok(code) is ok


def test_contrast_values_are_the_documented_ones() -> None:
    assert [c.value for c in Contrast] == ["without", "with", "without_then_with", "not_applicable"]


def test_sensitive_is_a_flag_and_a_panel_of_sensitive_members_is_sensitive() -> None:
    doc = copy.deepcopy(document())
    panel = next(i for i in doc["items"] if i.get("members"))
    member = _item(doc, panel["members"][0])
    member["sensitive"] = True
    panel["sensitive"] = True
    cat = parse_catalog(doc)
    assert cat.item(member["id"]).sensitive and cat.item(panel["id"]).sensitive
    assert not any(i.sensitive for i in cat.items if i.id not in (member["id"], panel["id"]))

    def unmarked_panel(d: dict[str, Any]) -> None:
        p = next(i for i in d["items"] if i.get("members"))
        _item(d, p["members"][0])["sensitive"] = True

    problems = _problems(unmarked_panel)
    assert any(f == "sensitive" and "must be marked sensitive too" in m for _w, f, m in problems)

    def not_a_flag(d: dict[str, Any]) -> None:
        _item(d, "L002")["sensitive"] = "yes"

    assert ("L002", "sensitive", "must be true or false, got 'yes'") in _problems(not_a_flag)


def test_a_kind_other_than_lab_or_imaging_is_named_for_items_and_groups() -> None:
    def mutate(doc: dict[str, Any]) -> None:
        _item(doc, "L002")["kind"] = "pathology"
        doc["groups"][0]["kind"] = "x"

    problems = _problems(mutate)
    assert ("L002", "kind", "must be 'lab' or 'imaging', got 'pathology'") in problems
    assert ("groups[0]", "kind", "must be 'lab' or 'imaging', got 'x'") in problems
