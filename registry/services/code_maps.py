"""Hospitals' local code maps (docs/design.md §4, §5 rule 1): a hospital's own order/result codes → catalog items.

A map is a FHIR R4 **ConceptMap** the hospital owns, named by the extension
``https://hr-registry.org.cn/fhir/StructureDefinition/code-map-organization`` (a reference to its Organization; a
hospital writing its own map may leave it out). Each ``group`` maps a local code system (``group.source``) to the
catalog: ``group.target`` is the recognized-items CodeSystem (item ids), the regional item code system, or LOINC —
any code the catalog resolves. Elements whose target ``equivalence`` is ``equivalent``, ``equal``, ``wider`` or
``subsumes`` map (the item is at least what the local code means); others are ignored. One local code maps to one
item per hospital; a second map claiming it is refused.

``hr-registry codes import --org … FILE.csv`` builds such a ConceptMap from ``system,code,item[,display]`` rows; an
``item`` of ``-`` declares a local test that is not a recognized item (an ``unmatched`` element: mapped to nothing).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from catalog import Catalog, Coding
from catalog.code_map_file import CodeMapFileError, parse_code_map
from catalog.codes import HR_CANONICAL_BASE, RECOGNIZED_ITEMS, SYSTEM_ALIASES
from registry.errors import BadRequestError, ConflictError, UnprocessableError
from registry.store.recognition import RecognitionStore
from registry.store.records import Stored
from registry.store.repository import Repository

CODE_MAP_ORG = f"{HR_CANONICAL_BASE}/StructureDefinition/code-map-organization"
MAPPING_EQUIVALENCE = frozenset({"equivalent", "equal", "wider", "subsumes"})


@dataclass(frozen=True, slots=True)
class Entry:
    system: str
    code: str
    item_id: str


def organization_of(concept_map: Mapping[str, Any]) -> str | None:
    for ext in concept_map.get("extension") or []:
        if isinstance(ext, Mapping) and ext.get("url") == CODE_MAP_ORG:
            ref = (ext.get("valueReference") or {}).get("reference", "")
            if isinstance(ref, str) and ref.startswith("Organization/"):
                return ref.split("/", 1)[1]
    return None


def entries_of(concept_map: Mapping[str, Any], catalog: Catalog) -> list[Entry]:
    """The (local system, code) → item entries of a ConceptMap; an unknown target is a clear error."""
    out: list[Entry] = []
    problems: list[str] = []
    for g, group in enumerate(concept_map.get("group") or []):
        if not isinstance(group, Mapping):
            continue
        source, target = group.get("source"), group.get("target") or RECOGNIZED_ITEMS
        if not isinstance(source, str) or not source:
            problems.append(f"ConceptMap.group[{g}].source: the local code system is required")
            continue
        target = SYSTEM_ALIASES.get(str(target), str(target))
        for e, element in enumerate(group.get("element") or []):
            code = element.get("code") if isinstance(element, Mapping) else None
            if not isinstance(code, str):
                continue
            for t in element.get("target") or []:
                if not isinstance(t, Mapping) or t.get("equivalence") not in MAPPING_EQUIVALENCE:
                    continue
                item = catalog.by_code(Coding(target, str(t.get("code", ""))))
                if item is None:
                    problems.append(
                        f"ConceptMap.group[{g}].element[{e}]: {target}|{t.get('code')} is not a catalog item"
                    )
                    continue
                out.append(Entry(source, code, item.id))
    if problems:
        raise UnprocessableError("; ".join(problems[:10]), expression=["ConceptMap.group"])
    seen: dict[tuple[str, str], str] = {}
    for entry in out:
        other = seen.setdefault((entry.system, entry.code), entry.item_id)
        if other != entry.item_id:
            raise UnprocessableError(f"{entry.system}|{entry.code} maps to both {other} and {entry.item_id}")
    return out


def sync(repo: Repository, stored: Stored, catalog: Catalog) -> set[str]:
    """Replace the code-map rows derived from this ConceptMap and forget the hospital's unmapped-code counts of the
    codes it now maps; return every local system it touched (old and new)."""
    before = repo.code_map_systems(stored.id)
    if stored.deleted or stored.org_id is None:
        repo.replace_code_map(stored.id, None, [])
        return before
    entries = entries_of(orjson.loads(stored.body), catalog)
    taken = repo.code_map_owners(stored.org_id, [(e.system, e.code) for e in entries])
    clash = {k: v for k, v in taken.items() if v != stored.id}
    if clash:
        (system, code), owner = next(iter(clash.items()))
        raise ConflictError(f"{system}|{code} is already mapped by ConceptMap/{owner} of Organization/{stored.org_id}")
    repo.replace_code_map(stored.id, stored.org_id, [(e.system, e.code, e.item_id) for e in entries])
    # the codes it maps are no longer unmapped (``hr-registry codes unmapped``): their results are re-mapped now
    RecognitionStore(repo.conn).forget_unmapped(stored.org_id, [(e.system, e.code) for e in entries])
    return before | {e.system for e in entries}


def concept_map_from_csv(text: str, org_id: str, catalog: Catalog, *, name: str | None = None) -> dict[str, Any]:
    """A ConceptMap from a code-map file (the grammar of ``catalog.code_map_file``, which ``hr-adapter`` reads too):
    every bad line is a 400 naming its line."""
    try:
        rows = parse_code_map(text, catalog)
    except CodeMapFileError as exc:
        raise BadRequestError("; ".join(exc.problems[:20])) from None
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        element: dict[str, Any] = {"code": row.code}
        if row.item is None:  # declared: a local test that is not a recognized item
            element["target"] = [{"equivalence": "unmatched", "comment": "not a recognized item"}]
        else:
            element["target"] = [{"code": row.item.id, "display": row.item.name_zh, "equivalence": "equivalent"}]
        if row.display:
            element["display"] = row.display
        groups.setdefault(row.system, []).append(element)
    if not groups:
        raise BadRequestError("the CSV has no mapping rows")
    return {
        "resourceType": "ConceptMap",
        "id": f"{org_id}-codes",
        "url": f"{HR_CANONICAL_BASE}/ConceptMap/{org_id}-codes",
        "name": name or f"LocalCodes_{org_id.replace('-', '_')}",
        "title": f"Local codes of Organization/{org_id} → recognized items",
        "status": "active",
        "extension": [{"url": CODE_MAP_ORG, "valueReference": {"reference": f"Organization/{org_id}"}}],
        "group": [
            {"source": system, "target": RECOGNIZED_ITEMS, "element": elements}
            for system, elements in sorted(groups.items())
        ],
    }
