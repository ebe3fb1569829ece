"""One item of the catalog document: its fields checked (id form, kind, group, codes with LOINC check digits, validity,
fee, scopes, lab or imaging specifics, regional listings) into an :class:`Item`, every problem collected."""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from catalog.codes import LOINC, SYSTEM_ALIASES, Coding
from catalog.fields import Collector, kind_of, list_of, text_of
from catalog.model import (
    DICOM_MODALITIES,
    Contrast,
    Fee,
    Group,
    ImagingSpec,
    Item,
    Kind,
    LabSpec,
    RegionalListing,
    Scope,
    Specimen,
    Validity,
)

_ID = {Kind.LAB: re.compile(r"^L\d{3}$"), Kind.IMAGING: re.compile(r"^I\d{3}$")}
_LOINC = re.compile(r"^\d{1,7}-\d$")
_VALIDITY_SOURCE = re.compile(r"^(assumed|published:[a-z][a-z0-9-]*)$")
_BODY_PART = re.compile(r"^[A-Z][A-Z0-9]*$")
_TECHNIQUE = re.compile(r"^[a-z0-9][a-z0-9-]*$")

_ITEM_KEYS = {
    "id", "kind", "group", "name_zh", "name_en", "abbr", "codes", "regional_code", "validity", "fee_cny",
    "scope", "members", "specimen", "unit", "modality", "body_part", "contrast", "technique", "listings", "note",
    "sensitive",
}  # fmt: skip
_LAB_ONLY = {"specimen", "unit"}
_IMAGING_ONLY = {"modality", "body_part", "contrast", "technique"}


def loinc_check_digit_ok(code: str) -> bool:
    """LOINC codes end in a mod-10 (Luhn) check digit over the part before the hyphen."""
    if not _LOINC.match(code):
        return False
    body, check = code.split("-")
    total = 0
    for pos, ch in enumerate(reversed(body)):
        d = int(ch)
        if pos % 2 == 0:
            d *= 2
            d = d - 9 if d > 9 else d
        total += d
    return (10 - total % 10) % 10 == int(check)


def _parse_codes(c: Collector, where: str, raw: Mapping[str, Any]) -> tuple[Coding, ...]:
    out: list[Coding] = []
    for j, entry in enumerate(list_of(c, where, raw, "codes")):
        field = f"codes[{j}]"
        if not isinstance(entry, Mapping):
            c.add(where, field, "must be a mapping with system and code")
            continue
        system = text_of(c, where, entry, "system")
        code = entry.get("code")
        if not isinstance(code, str) or not code.strip():
            c.add(where, field, "code must be a non-empty string (quote LOINC codes)")
            continue
        uri = SYSTEM_ALIASES.get(system.lower(), system)
        if uri == LOINC and not loinc_check_digit_ok(code):
            c.add(where, field, f"{code!r} is not a LOINC code (form NNNNN-N with a valid check digit)")
        coding = Coding(uri, code.strip())
        if coding in out:
            c.add(where, field, f"{coding} listed twice")
        out.append(coding)
    return tuple(out)


def parse_item(
    c: Collector,
    index: int,
    raw: object,
    scopes: Mapping[str, Scope],
    groups: Mapping[str, Group],
    specimens: Mapping[str, Specimen],
) -> Item | None:
    if not isinstance(raw, Mapping):
        c.add(f"items[{index}]", "-", "must be a mapping")
        return None
    item_id = raw.get("id")
    where = item_id if isinstance(item_id, str) and item_id else f"items[{index}]"
    before = len(c.problems)
    for key in raw:
        if key not in _ITEM_KEYS:
            c.add(where, str(key), "unknown field")

    kind = kind_of(c, where, raw)
    if kind is None:
        return None
    if not isinstance(item_id, str) or not _ID[kind].match(item_id):
        c.add(where, "id", f"must look like {'L001' if kind is Kind.LAB else 'I001'} for a {kind} item")

    group = text_of(c, where, raw, "group")
    if group and group not in groups:
        c.add(where, "group", f"undeclared group {group!r}")
    elif group and groups[group].kind is not kind:
        c.add(where, "group", f"group {group!r} is a {groups[group].kind} group, item is {kind}")

    name_zh = text_of(c, where, raw, "name_zh")
    name_en = text_of(c, where, raw, "name_en")
    abbr = tuple(str(a).strip() for a in list_of(c, where, raw, "abbr") if str(a).strip())
    codes = _parse_codes(c, where, raw)
    regional_code = text_of(c, where, raw, "regional_code")
    validity = _parse_validity(c, where, raw.get("validity"))
    fee = _parse_fee(c, where, raw.get("fee_cny"))

    scope_list = [str(s) for s in list_of(c, where, raw, "scope")]
    if not scope_list:
        c.add(where, "scope", "at least one recognition scope is required")
    for s in scope_list:
        if s not in scopes:
            c.add(where, "scope", f"undeclared scope {s!r}")

    members = tuple(str(m) for m in list_of(c, where, raw, "members"))
    sensitive = raw.get("sensitive", False)
    if not isinstance(sensitive, bool):
        c.add(where, "sensitive", f"must be true or false, got {sensitive!r}")
        sensitive = False
    listings = _parse_listings(c, where, raw)

    lab: LabSpec | None = None
    imaging: ImagingSpec | None = None
    if kind is Kind.LAB:
        for key in _IMAGING_ONLY & set(raw):
            c.add(where, key, "only imaging items have this field")
        specimen = text_of(c, where, raw, "specimen")
        if specimen and specimen not in specimens:
            c.add(where, "specimen", f"undeclared specimen {specimen!r}")
        unit = raw.get("unit")
        if unit is not None and (not isinstance(unit, str) or not unit or " " in unit):
            c.add(where, "unit", f"must be a UCUM unit string without spaces or null, got {unit!r}")
            unit = None
        lab = LabSpec(specimen, unit)
    else:
        for key in _LAB_ONLY & set(raw):
            c.add(where, key, "only lab items have this field")
        imaging = _parse_imaging(c, where, raw)

    if len(c.problems) > before or not isinstance(item_id, str) or (imaging is None and kind is Kind.IMAGING):
        return None
    return Item(
        id=item_id,
        kind=kind,
        group=group,
        name_zh=name_zh,
        name_en=name_en,
        abbr=abbr,
        codes=codes,
        regional_code=regional_code,
        validity=validity,
        fee=fee,
        scopes=frozenset(scope_list),
        members=members,
        lab=lab,
        imaging=imaging,
        listings=listings,
        note=raw.get("note") if isinstance(raw.get("note"), str) else None,
        sensitive=sensitive,
    )


def _parse_validity(c: Collector, where: str, raw: object) -> Validity:
    if not isinstance(raw, Mapping):
        c.add(where, "validity", "missing: give {days: N, source: assumed | published:<region>}")
        return Validity(0, "")
    days = raw.get("days")
    if not isinstance(days, int) or isinstance(days, bool) or days <= 0:
        c.add(where, "validity.days", f"must be a positive whole number of days, got {days!r}")
        days = 0
    source = raw.get("source")
    if not isinstance(source, str) or not _VALIDITY_SOURCE.match(source):
        c.add(where, "validity.source", f"must be 'assumed' or 'published:<region>', got {source!r}")
        source = ""
    return Validity(days, source)


def _parse_fee(c: Collector, where: str, raw: object) -> Fee:
    if not isinstance(raw, Mapping):
        c.add(where, "fee_cny", "missing: give {amount: N, source: assumed | published:<where>}")
        return Fee(Decimal(0), "")
    try:
        amount = Decimal(str(raw.get("amount")))
    except InvalidOperation:
        amount = Decimal(-1)
    if not amount.is_finite() or amount < 0:
        c.add(where, "fee_cny.amount", f"must be a non-negative number, got {raw.get('amount')!r}")
        amount = Decimal(0)
    source = raw.get("source")
    if not isinstance(source, str) or not _VALIDITY_SOURCE.match(source):
        c.add(where, "fee_cny.source", f"must be 'assumed' or 'published:<where>', got {source!r}")
        source = ""
    return Fee(amount, source)


def _parse_listings(c: Collector, where: str, raw: Mapping[str, Any]) -> tuple[RegionalListing, ...]:
    out: list[RegionalListing] = []
    for j, entry in enumerate(list_of(c, where, raw, "listings")):
        if not isinstance(entry, Mapping):
            c.add(where, f"listings[{j}]", "must be a mapping {list: …, evidence: published|inferred}")
            continue
        list_id = text_of(c, where, entry, "list")
        evidence = text_of(c, where, entry, "evidence")
        if evidence and evidence not in ("published", "inferred"):
            c.add(where, f"listings[{j}].evidence", f"must be 'published' or 'inferred', got {evidence!r}")
        out.append(RegionalListing(list_id, evidence))
    return tuple(out)


def _parse_imaging(c: Collector, where: str, raw: Mapping[str, Any]) -> ImagingSpec | None:
    modality = text_of(c, where, raw, "modality").upper()
    if modality and modality not in DICOM_MODALITIES:
        c.add(where, "modality", f"unknown DICOM modality {modality!r}")
    body_part = text_of(c, where, raw, "body_part")
    if body_part and not _BODY_PART.match(body_part):
        c.add(where, "body_part", f"must be a DICOM Body Part Examined term (e.g. CHEST), got {body_part!r}")
    contrast_text = text_of(c, where, raw, "contrast")
    try:
        contrast = Contrast(contrast_text)
    except ValueError:
        c.add(where, "contrast", f"must be one of {[x.value for x in Contrast]}, got {contrast_text!r}")
        return None
    technique = raw.get("technique")
    if technique is not None and (not isinstance(technique, str) or not _TECHNIQUE.match(technique)):
        c.add(where, "technique", f"must be a lowercase token or null, got {technique!r}")
        technique = None
    return ImagingSpec(modality, body_part, contrast, technique)
