"""Codes in the words people read: units, flags and body parts (registry.web.display, catalog.body_parts)."""

from __future__ import annotations

import pytest

from catalog.body_parts import BODY_PART_NAMES, body_part_name
from catalog.codes import BODY_PART_SNOMED
from registry.catalog_file import load_catalog
from registry.web.display import flag_text, flags_text, unit_text
from tests.conftest import ROOT


@pytest.mark.parametrize(
    ("code", "shown"),
    [("10*9/L", "10⁹/L"), ("10*12/L", "10¹²/L"), ("/uL", "/μL"), ("umol/L", "μmol/L"), ("m[IU]/L", "mIU/L"),
     ("10*3/uL", "10³/μL"), ("10*-2/L", "10⁻²/L"), ("ug/L", "μg/L"), ("g/L", "g/L"), ("mmol/L", "mmol/L"), ("", "")],
)  # fmt: skip
def test_ucum_units_as_people_write_them(code: str, shown: str) -> None:
    assert unit_text(code) == shown


def test_seconds_are_written_in_the_pages_language() -> None:
    assert unit_text("s", "zh") == "秒" and unit_text("s", "en") == "s"


def test_flags_in_words() -> None:
    assert flag_text("H") == "↑ 偏高" and flag_text("L") == "↓ 偏低"
    assert flag_text("H", "en") == "↑ high" and flag_text("LL", "en") == "↓↓ critically low"
    assert flag_text("N") == "正常" and flag_text("A") == "异常"
    assert flags_text(["H", "A"]) == "↑ 偏高、异常"
    assert flag_text("XYZ") == "XYZ"  # an unknown code as it came


def test_every_body_part_the_catalog_uses_has_a_chinese_and_english_name() -> None:
    catalog = load_catalog(ROOT / "data" / "recognized_items.yaml")
    used = {i.imaging.body_part for i in catalog.items if i.imaging is not None}
    assert used and used <= set(BODY_PART_NAMES)
    assert set(BODY_PART_NAMES) == set(BODY_PART_SNOMED)
    for term in used:
        zh, en = BODY_PART_NAMES[term]
        assert zh != term and en and not zh.isascii()
    assert body_part_name("CHEST") == "胸部" and body_part_name("CHEST", "en") == "Chest"
    assert body_part_name("816094009") == "胸部"  # the SNOMED CT code an ImagingStudy carries
    assert body_part_name("Thorax") == "Thorax"  # a term outside the table: as it came
