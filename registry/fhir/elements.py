"""What the R4 definitions say about each element of a resource — its JSON name, whether it is in the summary
(``isSummary``), mandatory (min 1), repeating (max ``*``), and for a backbone element or data type the model of its
children — read from the fhir.resources R4B models (``registry.fhir.models``), never written out by hand.

``_summary`` / ``_elements`` (FHIR R4 search.html §3.1.1.5.8–9) and FHIRPath Patch (R4 fhirpatch.html) use it.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from functools import cache
from typing import Any

from registry.fhir.models import model_class

PRIMITIVES = frozenset({"str", "int", "float", "bool", "Decimal", "date", "datetime", "time", "bytes"})


@dataclass(frozen=True, slots=True)
class Element:
    name: str  # the JSON name: effectiveDateTime
    base: str  # the element's name in the definition: effective (for a choice type effective[x])
    summary: bool
    required: bool
    repeating: bool
    type_name: str | None  # the FHIR type of a complex element (HumanName, ImagingStudySeries); None: primitive
    backbone: bool  # a BackboneElement defined inside the resource (its children are filtered like the resource's)


def _leaf(annotation: Any) -> tuple[Any, bool]:
    """The element's own type inside ``Optional[List[...]]``, and whether it repeats."""
    repeating = False
    while True:
        origin = typing.get_origin(annotation)
        if origin in (list, typing.List):  # noqa: UP006 - the models annotate with typing.List
            repeating = True
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if not args or origin is typing.Annotated:
            return (args[0] if origin is typing.Annotated and args else annotation), repeating
        annotation = args[0]


@cache
def elements_of(type_name: str) -> dict[str, Element]:
    """The elements of a resource, data type or backbone element, by JSON name (``KeyError``: not a FHIR type)."""
    model = model_class(type_name)
    backbone_base = model_class("BackboneElement")
    out: dict[str, Element] = {}
    for field_name, info in model.model_fields.items():
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        if not extra.get("element_property"):
            continue
        name = info.alias or field_name
        leaf, repeating = _leaf(info.annotation)
        leaf_name = getattr(leaf, "__name__", "")
        complex_name = leaf_name[:-4] if leaf_name.endswith("Type") and leaf_name not in PRIMITIVES else None
        backbone = False
        if complex_name:
            try:
                backbone = issubclass(model_class(complex_name), backbone_base)
            except KeyError:
                complex_name = None
        choice = extra.get("one_of_many")
        out[name] = Element(
            name=name,
            base=str(choice) if choice else name,
            summary=bool(extra.get("summary_element_property")),
            required=bool(extra.get("element_required")) or info.is_required(),
            repeating=repeating,
            type_name=complex_name,
            backbone=backbone,
        )
    return out


def element(type_name: str, name: str) -> Element | None:
    try:
        return elements_of(type_name).get(name)
    except KeyError:
        return None
