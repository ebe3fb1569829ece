"""The catalog published as FHIR CodeSystems (FHIR R4 CodeSystem; concept properties per §CodeSystem.property).

``recognized-items``: one concept per item (code = item id, display = Chinese name, an English designation),
with properties for kind, group, codes, specimen/unit or modality/body part/contrast, validity and its source,
fee and its source, recognition scope and panel members.
``nonrecognition-reasons``: 不互认原因 01–08, 98, 99 with ``counts-as-nonrecognition``.
"""

from __future__ import annotations

from typing import Any

from catalog import REASONS, Catalog, Item, Kind
from catalog.codes import HR_CANONICAL_BASE, NONRECOGNITION_REASONS, RECOGNIZED_ITEMS, REGIONAL_ITEM_CODE

_P = f"{HR_CANONICAL_BASE}/CodeSystem/recognized-items#"

ITEM_PROPERTIES: tuple[tuple[str, str, str], ...] = (
    ("kind", "code", "lab (检验) or imaging (检查)"),
    ("group", "code", "Item group (e.g. hematology, ct)"),
    ("regional-code", "Coding", "The region's own item code (互认项目编码)"),
    ("code", "Coding", "A verified standard code for the item (LOINC)"),
    ("abbreviation", "string", "Abbreviation clinicians search by"),
    ("specimen", "code", "Specimen type (lab)"),
    ("unit", "string", "UCUM unit of the reported value (lab)"),
    ("modality", "Coding", "DICOM Modality (0008,0060) (imaging)"),
    ("body-part", "string", "DICOM Body Part Examined (0018,0015) term (imaging)"),
    ("contrast", "code", "without | with | without_then_with | not_applicable (imaging)"),
    ("technique", "code", "Distinguishes special exams of the same part and contrast (imaging)"),
    ("validity-days", "integer", "Days a result stays recognizable after its effective time (互认时限)"),
    ("validity-source", "string", "Where the validity comes from: published:<region> or assumed"),
    ("fee-cny", "decimal", "Price in yuan, used for money-saved statistics"),
    ("fee-source", "string", "Where the fee comes from (assumed)"),
    ("scope", "code", "Recognition scope (互认范围): beijing, jjjl, alliance"),
    ("member", "code", "A panel's member item (a panel result answers an order for its members)"),
    ("listing", "string", "Published regional list the item belongs to, with evidence (list:evidence)"),
)


def _concept(item: Item) -> dict[str, Any]:
    props: list[dict[str, Any]] = [
        {"code": "kind", "valueCode": item.kind.value},
        {"code": "group", "valueCode": item.group},
        {"code": "regional-code", "valueCoding": {"system": REGIONAL_ITEM_CODE, "code": item.regional_code}},
    ]
    props += [{"code": "code", "valueCoding": {"system": c.system, "code": c.code}} for c in item.codes]
    props += [{"code": "abbreviation", "valueString": a} for a in item.abbr]
    if item.lab is not None:
        props.append({"code": "specimen", "valueCode": item.lab.specimen})
        if item.lab.unit:
            props.append({"code": "unit", "valueString": item.lab.unit})
    if item.imaging is not None:
        im = item.imaging
        props.append(
            {
                "code": "modality",
                "valueCoding": {
                    "system": "http://dicom.nema.org/resources/ontology/DCM",
                    "code": im.modality,
                },
            }
        )
        props.append({"code": "body-part", "valueString": im.body_part})
        props.append({"code": "contrast", "valueCode": im.contrast.value})
        if im.technique:
            props.append({"code": "technique", "valueCode": im.technique})
    props += [
        {"code": "validity-days", "valueInteger": item.validity.days},
        {"code": "validity-source", "valueString": item.validity.source},
        {"code": "fee-cny", "valueDecimal": float(item.fee.amount)},
        {"code": "fee-source", "valueString": item.fee.source},
    ]
    props += [{"code": "scope", "valueCode": s} for s in sorted(item.scopes)]
    props += [{"code": "member", "valueCode": m} for m in item.members]
    props += [{"code": "listing", "valueString": f"{x.list_id}:{x.evidence}"} for x in item.listings]
    concept: dict[str, Any] = {
        "code": item.id,
        "display": item.name_zh,
        "designation": [{"language": "en", "value": item.name_en}],
        "property": props,
    }
    if item.note:
        concept["definition"] = item.note
    return concept


def recognized_items_codesystem(catalog: Catalog) -> dict[str, Any]:
    """The whole catalog as a complete CodeSystem; its ``count`` is the number of items."""
    lab = len(catalog.of_kind(Kind.LAB))
    imaging = len(catalog.of_kind(Kind.IMAGING))
    cs: dict[str, Any] = {
        "resourceType": "CodeSystem",
        "id": "recognized-items",
        "url": RECOGNIZED_ITEMS,
        "version": catalog.edition,
        "name": "RecognizedItems",
        "title": catalog.title_zh,
        "status": "active",
        "experimental": False,
        "date": catalog.effective.isoformat(),
        "publisher": "HR Registry",
        "description": f"互认项目目录: {lab} lab (检验) and {imaging} imaging (检查) items, region {catalog.region}, "
        f"effective {catalog.effective.isoformat()}.",
        "caseSensitive": True,
        "content": "complete",
        "count": len(catalog),
        "property": [
            {"code": code, "uri": _P + code, "type": type_, "description": desc}
            for code, type_, desc in ITEM_PROPERTIES
        ],
        "concept": [_concept(i) for i in catalog],
    }
    if catalog.loinc_notice:
        cs["copyright"] = catalog.loinc_notice
    return cs


def nonrecognition_reasons_codesystem() -> dict[str, Any]:
    """不互认原因 as a CodeSystem; 98 and 99 are recorded but not counted as refusals."""
    return {
        "resourceType": "CodeSystem",
        "id": "nonrecognition-reasons",
        "url": NONRECOGNITION_REASONS,
        "version": "2022",
        "name": "NonrecognitionReasons",
        "title": "不互认原因",
        "status": "active",
        "experimental": False,
        "publisher": "HR Registry",
        "description": "Reasons a clinician gives for declining a recognizable prior result (医疗机构检查检验结果互认"
        "管理办法, 2022, and regional practice). 01–08 count as refusals (不互认); 98 and 99 are recorded only.",
        "caseSensitive": True,
        "content": "complete",
        "count": len(REASONS),
        "property": [
            {
                "code": "counts-as-nonrecognition",
                "uri": f"{HR_CANONICAL_BASE}/CodeSystem/nonrecognition-reasons#counts-as-nonrecognition",
                "type": "boolean",
                "description": "Whether the decision counts as a refusal to recognize in the statistics",
            },
            {
                "code": "requires-comment",
                "uri": f"{HR_CANONICAL_BASE}/CodeSystem/nonrecognition-reasons#requires-comment",
                "type": "boolean",
                "description": "The clinician must add a comment (99: the disease monitored)",
            },
        ],
        "concept": [
            {
                "code": r.code,
                "display": r.display_zh,
                "designation": [{"language": "en", "value": r.display_en}],
                "property": [
                    {"code": "counts-as-nonrecognition", "valueBoolean": r.counts_as_nonrecognition},
                    {"code": "requires-comment", "valueBoolean": r.requires_comment},
                ],
            }
            for r in REASONS
        ],
    }
