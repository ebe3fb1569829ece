"""OBX-6 units: any valid UCUM expression as written, the LIS spellings that are not UCUM through the synonym table,
nonsense refused (under the strict policy, with its ACK)."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.hl7v2 import units
from catalog import Catalog

from .test_hl7_bad_input import CBC, make_processor, observations, queued_bundles, read_ack, set_field

ISSUE_UNITS = ["mg/g", "{INR}", "g/(24.h)", "mg/L{FEU}", "[pH]", "mmol/mol", "mU/L"]


def test_every_unit_of_the_catalog_is_taken_as_written(catalog: Catalog) -> None:
    used = sorted({item.lab.unit for item in catalog.items if item.lab is not None and item.lab.unit})
    assert len(used) >= 25 and set(ISSUE_UNITS) - {"mmol/mol", "mU/L"} <= set(used), used
    assert [u for u in used if units.ucum(u) != u] == []


@pytest.mark.parametrize("unit", ISSUE_UNITS)
def test_the_units_the_strict_policy_used_to_refuse_pass_a_message(tmp_path: Path, catalog: Catalog, unit: str) -> None:
    processor, box = make_processor(tmp_path, catalog)
    result = processor.handle(set_field(CBC, "OBX", 6, unit), "test")
    assert (result.code, read_ack(result.ack).code) == ("AA", "AA"), result.text
    wbc = observations(queued_bundles(box)[0])[0]
    assert wbc["valueQuantity"] == {"value": 11.2, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}


@pytest.mark.parametrize(
    ("written", "code"),
    [
        ("×10^9/L", "10*9/L"),  # what Chinese LIS print
        ("×10\u00b9\u00b2/L", None),  # superscript digits are no spelling we know
        ("10^12/L", "10*12/L"),
        ("个/uL", "/uL"),
        ("秒", "s"),
        ("μmol/L", "umol/L"),
        ("µmol/L", "umol/L"),
        ("mIU/mL", "m[IU]/mL"),
        ("IU/L", "[IU]/L"),
        ("mEq/L", "meq/L"),
        ("S/CO", "{s_co_ratio}"),
        ("sec", "s"),
        ("mg / L", "mg/L"),
        # capitals: looked up first, since UCUM is case sensitive (MG/L would be megagauss per litre)
        ("MG/L", "mg/L"),
        ("MMOL/L", "mmol/L"),
        ("FL", "fL"),
        ("ML", "mL"),
        ("U/L", "U/L"),
        ("[IU]/L", "[IU]/L"),  # capitals without a synonym, valid UCUM as written
        ("{INR}", "{INR}"),
        # valid UCUM as written (case kept: l is litre in UCUM)
        ("g/l", "g/l"),
        ("10*9/L", "10*9/L"),
        ("mL/min/{1.73_m2}", "mL/min/{1.73_m2}"),
        ("%", "%"),
        ("1", "1"),
    ],
)
def test_lis_spellings(written: str, code: str | None) -> None:
    assert units.ucum(written) == code


@pytest.mark.parametrize("nonsense", ["furlongs", "abc", "mg//L", "g/(L", "{unclosed", "cells/uL/x", "mg L?"])
def test_nonsense_is_no_unit(nonsense: str) -> None:
    assert units.ucum(nonsense) is None


def test_a_non_ucum_unit_under_the_strict_policy_is_refused(tmp_path: Path, catalog: Catalog) -> None:
    processor, outbox = make_processor(tmp_path, catalog)
    ack = read_ack(processor.handle(set_field(CBC, "OBX", 6, "furlongs", occurrence=2), "test").ack)
    assert (ack.code, ack.error_code, ack.location) == ("AE", 103, "OBX^2^6")
    assert "not a UCUM expression" in ack.err
    assert outbox.pending_count() == 0


def test_a_unit_marked_ucum_must_be_ucum(tmp_path: Path, catalog: Catalog) -> None:
    processor, outbox = make_processor(tmp_path, catalog)
    ack = read_ack(processor.handle(set_field(CBC, "OBX", 6, "10*12/LL^^UCUM", occurrence=2), "test").ack)
    assert (ack.code, ack.error_code, ack.location) == ("AE", 103, "OBX^2^6")
    assert "marked UCUM" in ack.err
    assert outbox.pending_count() == 0


def test_a_non_ucum_unit_under_the_lenient_policy_is_kept_as_text(tmp_path: Path, catalog: Catalog) -> None:
    processor, box = make_processor(tmp_path, catalog, hl7={"policy": "lenient"})
    result = processor.handle(set_field(CBC, "OBX", 6, "furlongs"), "test")
    assert result.code == "AA"
    assert any("furlongs" in w for w in result.warnings)
    assert observations(queued_bundles(box)[0])[0]["valueQuantity"] == {"value": 11.2, "unit": "furlongs"}


def test_a_power_of_ten_with_an_unescaped_caret_is_one_unit(tmp_path: Path, catalog: Catalog) -> None:
    """LIS print ``×10^9/L`` without escaping the ``^`` (HL7's component separator): OBX-6 reads as code ``×10``,
    text ``9/L`` — taken as the unit it is, never as the number 10 (which is valid UCUM)."""
    assert units.unescaped_power("×10", "9/L", "") == "×10^9/L"
    assert units.unescaped_power("10", "12/L", "") == "10^12/L"
    assert units.unescaped_power("mg", "dL", "") is None
    assert units.unescaped_power("10", "9/L", "UCUM") is None
    processor, box = make_processor(tmp_path, catalog)
    assert processor.handle(set_field(CBC, "OBX", 6, "×10^9/L"), "test").code == "AA"
    assert observations(queued_bundles(box)[0])[0]["valueQuantity"] == {
        "value": 11.2,
        "unit": "×10^9/L",
        "system": "http://unitsofmeasure.org",
        "code": "10*9/L",
    }
