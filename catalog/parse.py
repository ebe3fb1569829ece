"""Turn the catalog document (a plain mapping, as ``data/recognized_items.yaml`` holds it) into a :class:`Catalog`.

Every problem is collected and reported at once, each naming the item (or section) and the field, so a reviewer
fixing the YAML sees the whole list (``hr-registry catalog validate FILE``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import date, timedelta, timezone
from typing import Any, TypeVar

from catalog.codes import Coding
from catalog.errors import InvalidCatalogError, Problem
from catalog.fields import Collector, kind_of, list_of, text_of
from catalog.items import loinc_check_digit_ok, parse_item
from catalog.model import Catalog, Contrast, Group, Item, Scope, Specimen

__all__ = ["loinc_check_digit_ok", "parse_catalog"]

T = TypeVar("T")
_TZ = re.compile(r"^([+-])(\d{2}):(\d{2})$")


def _parse_date(c: Collector, where: str, key: str, value: object) -> date:
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    c.add(where, key, f"must be an ISO date (YYYY-MM-DD), got {value!r}")
    return date.min


def _parse_tz(c: Collector, value: object) -> timezone:
    m = _TZ.match(value) if isinstance(value, str) else None
    if m is None:
        c.add("catalog", "timezone", f"must be a fixed UTC offset such as '+08:00', got {value!r}")
        return timezone(timedelta(hours=8))
    sign = 1 if m.group(1) == "+" else -1
    return timezone(sign * timedelta(hours=int(m.group(2)), minutes=int(m.group(3))))


def parse_catalog(document: Mapping[str, Any]) -> Catalog:
    """Validate and build the catalog; raise :class:`InvalidCatalogError` listing every problem.

    Checks: header fields; declared scopes, groups and specimens; per item: id form and uniqueness, kind/group
    agreement, names, codes (LOINC form and check digit, one code never claimed by two items), regional code
    uniqueness, positive validity with its provenance, fee, scope, lab specimen/unit, imaging modality (DICOM
    defined term), body part, contrast, and uniqueness of (modality, body part, contrast, technique), panel members.
    """
    c = Collector()
    if not isinstance(document, Mapping):
        raise InvalidCatalogError([Problem("document", "-", "must be a mapping with 'catalog' and 'items'")])

    header = document.get("catalog")
    if not isinstance(header, Mapping):
        c.add("catalog", "-", "missing header mapping 'catalog'")
        header = {}
    edition = text_of(c, "catalog", header, "edition")
    effective = _parse_date(c, "catalog", "effective", header.get("effective"))
    region = text_of(c, "catalog", header, "region")
    title_zh = text_of(c, "catalog", header, "title_zh")
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
        item = parse_item(c, index, raw, scopes, groups, specimens)
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
    c: Collector, document: Mapping[str, Any], section: str, build: Callable[[str, Mapping[str, Any]], T | None]
) -> dict[str, T]:
    """A declaration section (scopes, groups, specimens): a list of mappings, each with a unique ``code``."""
    out: dict[str, T] = {}
    for i, raw in enumerate(list_of(c, section, document, section)):
        where = f"{section}[{i}]"
        if not isinstance(raw, Mapping):
            c.add(where, "-", "must be a mapping")
            continue
        code = text_of(c, where, raw, "code")
        value = build(where, raw)
        if value is None:
            continue
        if code in out:
            c.add(where, "code", f"duplicate {section[:-1]} {code!r}")
        out[code] = value
    return out


def _parse_scopes(c: Collector, document: Mapping[str, Any]) -> dict[str, Scope]:
    def build(where: str, raw: Mapping[str, Any]) -> Scope:
        kind = text_of(c, where, raw, "kind")
        if kind and kind not in ("region", "alliance"):
            c.add(where, "kind", f"must be 'region' or 'alliance', got {kind!r}")
        return Scope(str(raw.get("code")), text_of(c, where, raw, "name_zh"), text_of(c, where, raw, "name_en"), kind)

    out = _declared(c, document, "scopes", build)
    if not out:
        c.add("scopes", "-", "at least one scope must be declared")
    return out


def _parse_groups(c: Collector, document: Mapping[str, Any]) -> dict[str, Group]:
    def build(where: str, raw: Mapping[str, Any]) -> Group | None:
        kind = kind_of(c, where, raw)
        if kind is None:
            return None
        return Group(str(raw.get("code")), kind, text_of(c, where, raw, "name_zh"), text_of(c, where, raw, "name_en"))

    return _declared(c, document, "groups", build)


def _parse_specimens(c: Collector, document: Mapping[str, Any]) -> dict[str, Specimen]:
    def build(where: str, raw: Mapping[str, Any]) -> Specimen:
        return Specimen(str(raw.get("code")), text_of(c, where, raw, "name_zh"), text_of(c, where, raw, "name_en"))

    return _declared(c, document, "specimens", build)


def _check_members(c: Collector, items: list[Item]) -> None:
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
