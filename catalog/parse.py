"""Turn the catalog document (a plain mapping, as ``data/recognized_items.yaml`` holds it) into a :class:`Catalog`.

Every problem is collected and reported at once, each naming the item (or section) and the field, so a reviewer
fixing the YAML sees the whole list (``hr-registry catalog validate FILE``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import date, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from catalog.codes import LOINC, SYSTEM_ALIASES, Coding
from catalog.errors import InvalidCatalogError, Problem
from catalog.model import (
    DICOM_MODALITIES,
    Catalog,
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

T = TypeVar("T")

_ID = {Kind.LAB: re.compile(r"^L\d{3}$"), Kind.IMAGING: re.compile(r"^I\d{3}$")}
_LOINC = re.compile(r"^\d{1,7}-\d$")
_VALIDITY_SOURCE = re.compile(r"^(assumed|published:[a-z][a-z0-9-]*)$")
_BODY_PART = re.compile(r"^[A-Z][A-Z0-9]*$")
_TECHNIQUE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_TZ = re.compile(r"^([+-])(\d{2}):(\d{2})$")

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


class _Collector:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, where: str, field: str, message: str) -> None:
        self.problems.append(Problem(where, field, message))


def _text(c: _Collector, where: str, raw: Mapping[str, Any], key: str, *, required: bool = True) -> str:
    value = raw.get(key)
    if value is None:
        if required:
            c.add(where, key, "missing")
        return ""
    if not isinstance(value, str) or not value.strip():
        c.add(where, key, "must be a non-empty string")
        return ""
    return value.strip()


def _parse_date(c: _Collector, where: str, key: str, value: object) -> date:
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    c.add(where, key, f"must be an ISO date (YYYY-MM-DD), got {value!r}")
    return date.min


def _parse_tz(c: _Collector, value: object) -> timezone:
    m = _TZ.match(value) if isinstance(value, str) else None
    if m is None:
        c.add("catalog", "timezone", f"must be a fixed UTC offset such as '+08:00', got {value!r}")
        return timezone(timedelta(hours=8))
    sign = 1 if m.group(1) == "+" else -1
    return timezone(sign * timedelta(hours=int(m.group(2)), minutes=int(m.group(3))))


def _list(c: _Collector, where: str, raw: Mapping[str, Any], key: str) -> Sequence[Any]:
    value = raw.get(key, [])
    if value is None:
        return []
    if not isinstance(value, list):
        c.add(where, key, "must be a list")
        return []
    return value


def parse_catalog(document: Mapping[str, Any]) -> Catalog:
    """Validate and build the catalog; raise :class:`InvalidCatalogError` listing every problem.

    Checks: header fields; declared scopes, groups and specimens; per item: id form and uniqueness, kind/group
    agreement, names, codes (LOINC form and check digit, one code never claimed by two items), regional code
    uniqueness, positive validity with its provenance, fee, scope, lab specimen/unit, imaging modality (DICOM
    defined term), body part, contrast, and uniqueness of (modality, body part, contrast, technique), panel members.
    """
    c = _Collector()
    if not isinstance(document, Mapping):
        raise InvalidCatalogError([Problem("document", "-", "must be a mapping with 'catalog' and 'items'")])

    header = document.get("catalog")
    if not isinstance(header, Mapping):
        c.add("catalog", "-", "missing header mapping 'catalog'")
        header = {}
    edition = _text(c, "catalog", header, "edition")
    effective = _parse_date(c, "catalog", "effective", header.get("effective"))
    region = _text(c, "catalog", header, "region")
    title_zh = _text(c, "catalog", header, "title_zh")
    tz = _parse_tz(c, header.get("timezone", "+08:00"))

    scopes = _parse_scopes(c, document)
    groups = _parse_groups(c, document)
    specimens = _parse_specimens(c, document)

    raw_items = document.get("items")
    if not isinstance(raw_items, list) or not raw_items:
        c.add("items", "-", "missing or empty list 'items'")
        raw_items = []

    items: list[Item] = []
    seen_ids: set[str] = set()
    code_owner: dict[Coding, str] = {}
    regional_owner: dict[str, str] = {}
    imaging_owner: dict[tuple[str, str, Contrast, str | None], str] = {}
    for index, raw in enumerate(raw_items):
        item = _parse_item(c, index, raw, scopes, groups, specimens)
        if item is None:
            continue
        if item.id in seen_ids:
            c.add(item.id, "id", "duplicate id")
            continue
        seen_ids.add(item.id)
        for coding in item.codes:
            owner = code_owner.setdefault(coding, item.id)
            if owner != item.id:
                c.add(item.id, "codes", f"code {coding} is already claimed by {owner}")
        owner = regional_owner.setdefault(item.regional_code, item.id)
        if owner != item.id:
            c.add(item.id, "regional_code", f"{item.regional_code} is already used by {owner}")
        if item.imaging is not None:
            im = item.imaging
            key = (im.modality, im.body_part, im.contrast, im.technique)
            owner = imaging_owner.setdefault(key, item.id)
            if owner != item.id:
                c.add(
                    item.id,
                    "body_part",
                    f"(modality, body_part, contrast, technique) = {key} is already {owner}; "
                    "set a distinguishing technique",
                )
        items.append(item)

    _check_members(c, items)
    loinc_notice = header.get("loinc_notice")
    if loinc_notice is not None and (not isinstance(loinc_notice, str) or "loinc.org/license" not in loinc_notice):
        c.add("catalog", "loinc_notice", "must be the LOINC copyright notice naming http://loinc.org/license")
        loinc_notice = None
    if loinc_notice is None and any(i.loinc for i in items):
        c.add("catalog", "loinc_notice", "items carry LOINC codes, so the header must carry the LOINC notice")
    if c.problems:
        raise InvalidCatalogError(c.problems)
    return Catalog(
        edition=edition,
        effective=effective,
        region=region,
        title_zh=title_zh,
        timezone=tz,
        scopes=scopes.values(),
        groups=groups.values(),
        specimens=specimens.values(),
        items=items,
        loinc_notice=loinc_notice,
    )


def _declared(
    c: _Collector, document: Mapping[str, Any], section: str, build: Callable[[str, Mapping[str, Any]], T | None]
) -> dict[str, T]:
    """A declaration section (scopes, groups, specimens): a list of mappings, each with a unique ``code``."""
    out: dict[str, T] = {}
    for i, raw in enumerate(_list(c, section, document, section)):
        where = f"{section}[{i}]"
        if not isinstance(raw, Mapping):
            c.add(where, "-", "must be a mapping")
            continue
        code = _text(c, where, raw, "code")
        value = build(where, raw)
        if value is None:
            continue
        if code in out:
            c.add(where, "code", f"duplicate {section[:-1]} {code!r}")
        out[code] = value
    return out


def _parse_scopes(c: _Collector, document: Mapping[str, Any]) -> dict[str, Scope]:
    def build(where: str, raw: Mapping[str, Any]) -> Scope:
        kind = _text(c, where, raw, "kind")
        if kind and kind not in ("region", "alliance"):
            c.add(where, "kind", f"must be 'region' or 'alliance', got {kind!r}")
        return Scope(str(raw.get("code")), _text(c, where, raw, "name_zh"), _text(c, where, raw, "name_en"), kind)

    out = _declared(c, document, "scopes", build)
    if not out:
        c.add("scopes", "-", "at least one scope must be declared")
    return out


def _parse_groups(c: _Collector, document: Mapping[str, Any]) -> dict[str, Group]:
    def build(where: str, raw: Mapping[str, Any]) -> Group | None:
        kind_text = _text(c, where, raw, "kind")
        try:
            kind = Kind(kind_text)
        except ValueError:
            c.add(where, "kind", f"must be 'lab' or 'imaging', got {kind_text!r}")
            return None
        return Group(str(raw.get("code")), kind, _text(c, where, raw, "name_zh"), _text(c, where, raw, "name_en"))

    return _declared(c, document, "groups", build)


def _parse_specimens(c: _Collector, document: Mapping[str, Any]) -> dict[str, Specimen]:
    def build(where: str, raw: Mapping[str, Any]) -> Specimen:
        return Specimen(str(raw.get("code")), _text(c, where, raw, "name_zh"), _text(c, where, raw, "name_en"))

    return _declared(c, document, "specimens", build)


def _parse_codes(c: _Collector, where: str, raw: Mapping[str, Any]) -> tuple[Coding, ...]:
    out: list[Coding] = []
    for j, entry in enumerate(_list(c, where, raw, "codes")):
        field = f"codes[{j}]"
        if not isinstance(entry, Mapping):
            c.add(where, field, "must be a mapping with system and code")
            continue
        system = _text(c, where, entry, "system")
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


def _parse_item(
    c: _Collector,
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

    kind_text = _text(c, where, raw, "kind")
    try:
        kind = Kind(kind_text)
    except ValueError:
        c.add(where, "kind", f"must be 'lab' or 'imaging', got {kind_text!r}")
        return None
    if not isinstance(item_id, str) or not _ID[kind].match(item_id):
        c.add(where, "id", f"must look like {'L001' if kind is Kind.LAB else 'I001'} for a {kind} item")

    group = _text(c, where, raw, "group")
    if group and group not in groups:
        c.add(where, "group", f"undeclared group {group!r}")
    elif group and groups[group].kind is not kind:
        c.add(where, "group", f"group {group!r} is a {groups[group].kind} group, item is {kind}")

    name_zh = _text(c, where, raw, "name_zh")
    name_en = _text(c, where, raw, "name_en")
    abbr = tuple(str(a).strip() for a in _list(c, where, raw, "abbr") if str(a).strip())
    codes = _parse_codes(c, where, raw)
    regional_code = _text(c, where, raw, "regional_code")
    validity = _parse_validity(c, where, raw.get("validity"))
    fee = _parse_fee(c, where, raw.get("fee_cny"))

    scope_list = [str(s) for s in _list(c, where, raw, "scope")]
    if not scope_list:
        c.add(where, "scope", "at least one recognition scope is required")
    for s in scope_list:
        if s not in scopes:
            c.add(where, "scope", f"undeclared scope {s!r}")

    members = tuple(str(m) for m in _list(c, where, raw, "members"))
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
        specimen = _text(c, where, raw, "specimen")
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


def _parse_validity(c: _Collector, where: str, raw: object) -> Validity:
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


def _parse_fee(c: _Collector, where: str, raw: object) -> Fee:
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


def _parse_listings(c: _Collector, where: str, raw: Mapping[str, Any]) -> tuple[RegionalListing, ...]:
    out: list[RegionalListing] = []
    for j, entry in enumerate(_list(c, where, raw, "listings")):
        if not isinstance(entry, Mapping):
            c.add(where, f"listings[{j}]", "must be a mapping {list: …, evidence: published|inferred}")
            continue
        list_id = _text(c, where, entry, "list")
        evidence = _text(c, where, entry, "evidence")
        if evidence and evidence not in ("published", "inferred"):
            c.add(where, f"listings[{j}].evidence", f"must be 'published' or 'inferred', got {evidence!r}")
        out.append(RegionalListing(list_id, evidence))
    return tuple(out)


def _parse_imaging(c: _Collector, where: str, raw: Mapping[str, Any]) -> ImagingSpec | None:
    modality = _text(c, where, raw, "modality").upper()
    if modality and modality not in DICOM_MODALITIES:
        c.add(where, "modality", f"unknown DICOM modality {modality!r}")
    body_part = _text(c, where, raw, "body_part")
    if body_part and not _BODY_PART.match(body_part):
        c.add(where, "body_part", f"must be a DICOM Body Part Examined term (e.g. CHEST), got {body_part!r}")
    contrast_text = _text(c, where, raw, "contrast")
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


def _check_members(c: _Collector, items: list[Item]) -> None:
    by_id = {i.id: i for i in items}
    for item in items:
        for m in item.members:
            member = by_id.get(m)
            if member is None:
                c.add(item.id, "members", f"unknown member {m!r}")
            elif m == item.id:
                c.add(item.id, "members", "an item cannot be its own member")
            elif member.kind is not item.kind:
                c.add(item.id, "members", f"member {m} is {member.kind}, panel is {item.kind}")
            elif member.sensitive and not item.sensitive:
                c.add(item.id, "sensitive", f"member {m} is sensitive, so the panel must be marked sensitive too")
            elif member.members:
                c.add(item.id, "members", f"member {m} is itself a panel; panels do not nest")
