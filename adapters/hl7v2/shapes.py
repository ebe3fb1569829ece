"""The FHIR element shapes the ORU^R01 mapping writes, and the check that a mapped resource has only those shapes with
valid values — the proof that lets ``registry_rules.check_bundle`` skip building the fhir.resources models, which is
most of the cost of mapping a message.

The check proves and never refuses: a resource is ``proven`` only when every element is one listed here (with its
cardinality), no complex element or list is empty, every element a type requires is present, no choice (``value[x]``,
``effective[x]``) has two types, no string holds a control character, and every primitive value passes the very
pydantic type fhir.resources validates that primitive with (the same ``fhirtypes`` annotations, decimals read back as
the registry reads them). Anything else — an element not listed, an extension, an odd value — is not proven, and the
caller validates that resource with the fhir.resources models as before, so an error reads the same as ever.

tests/unit/adapters/test_hl7_shapes.py holds the shapes against the fhir.resources R4B models (every element, its
type, its cardinality, the required elements and the choices), checks on generated resources that what is proven
validates, and that check_bundle answers mutated messages the same with the proof as without it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson
from fhir.resources.R4B import fhirtypes
from pydantic import TypeAdapter, ValidationError

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # registry_rules' (the registry's store refuses them)

PRIMITIVES: dict[str, Any] = {
    "string": fhirtypes.StringType,
    "code": fhirtypes.CodeType,
    "uri": fhirtypes.UriType,
    "markdown": fhirtypes.MarkdownType,
    "decimal": fhirtypes.DecimalType,
    "date": fhirtypes.DateType,
    "dateTime": fhirtypes.DateTimeType,
    "instant": fhirtypes.InstantType,
    "time": fhirtypes.TimeType,
}
"""Primitive type name → the fhir.resources annotation its elements carry."""

_VALIDATORS = {name: TypeAdapter(annotation).validator for name, annotation in PRIMITIVES.items()}
"""The pydantic-core validators of the fhir.resources primitive types (what ``TypeAdapter.validate_python`` calls)."""


@dataclass(frozen=True)
class Shape:
    """A FHIR complex type or resource as the mapping writes it: element name → (primitive type name or shape,
    repeated)."""

    name: str
    elements: Mapping[str, tuple[str | Shape, bool]]
    required: frozenset[str] = frozenset()
    choices: tuple[frozenset[str], ...] = ()
    resource: bool = False
    _keys: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_keys", frozenset(self.elements))


def _one(kind: str | Shape) -> tuple[str | Shape, bool]:
    return kind, False


def _many(kind: str | Shape) -> tuple[str | Shape, bool]:
    return kind, True


CODING = Shape("Coding", {"system": _one("uri"), "code": _one("code"), "display": _one("string")})
CODEABLE_CONCEPT = Shape("CodeableConcept", {"coding": _many(CODING), "text": _one("string")})
IDENTIFIER = Shape("Identifier", {"type": _one(CODEABLE_CONCEPT), "system": _one("uri"), "value": _one("string")})
REFERENCE = Shape(
    "Reference",
    {"reference": _one("string"), "type": _one("uri"), "identifier": _one(IDENTIFIER), "display": _one("string")},
)
QUANTITY = Shape(
    "Quantity",
    {
        "value": _one("decimal"),
        "comparator": _one("code"),
        "unit": _one("string"),
        "system": _one("uri"),
        "code": _one("code"),
    },
)
SIMPLE_QUANTITY = Shape(
    "Quantity", {"value": _one("decimal"), "unit": _one("string"), "system": _one("uri"), "code": _one("code")}
)
RANGE = Shape("Range", {"low": _one(SIMPLE_QUANTITY), "high": _one(SIMPLE_QUANTITY)})
RATIO = Shape("Ratio", {"numerator": _one(QUANTITY), "denominator": _one(QUANTITY)})
META = Shape("Meta", {"tag": _many(CODING)})
ANNOTATION = Shape("Annotation", {"text": _one("markdown")}, required=frozenset({"text"}))
HUMAN_NAME = Shape("HumanName", {"family": _one("string"), "given": _many("string")})
REFERENCE_RANGE = Shape(
    "ObservationReferenceRange", {"low": _one(SIMPLE_QUANTITY), "high": _one(SIMPLE_QUANTITY), "text": _one("string")}
)

PATIENT = Shape(
    "Patient",
    {
        "identifier": _many(IDENTIFIER),
        "name": _many(HUMAN_NAME),
        "gender": _one("code"),
        "birthDate": _one("date"),
        "managingOrganization": _one(REFERENCE),
    },
    resource=True,
)
OBSERVATION = Shape(
    "Observation",
    {
        "meta": _one(META),
        "identifier": _many(IDENTIFIER),
        "status": _one("code"),
        "category": _many(CODEABLE_CONCEPT),
        "code": _one(CODEABLE_CONCEPT),
        "subject": _one(REFERENCE),
        "effectiveDateTime": _one("dateTime"),
        "issued": _one("instant"),
        "performer": _many(REFERENCE),
        "valueQuantity": _one(QUANTITY),
        "valueCodeableConcept": _one(CODEABLE_CONCEPT),
        "valueString": _one("string"),
        "valueRatio": _one(RATIO),
        "valueRange": _one(RANGE),
        "valueDateTime": _one("dateTime"),
        "valueTime": _one("time"),
        "dataAbsentReason": _one(CODEABLE_CONCEPT),
        "interpretation": _many(CODEABLE_CONCEPT),
        "note": _many(ANNOTATION),
        "referenceRange": _many(REFERENCE_RANGE),
    },
    required=frozenset({"status", "code"}),
    choices=(
        frozenset(
            {
                "valueQuantity",
                "valueCodeableConcept",
                "valueString",
                "valueRatio",
                "valueRange",
                "valueDateTime",
                "valueTime",
            }
        ),
    ),
    resource=True,
)
DIAGNOSTIC_REPORT = Shape(
    "DiagnosticReport",
    {
        "meta": _one(META),
        "identifier": _many(IDENTIFIER),
        "basedOn": _many(REFERENCE),
        "status": _one("code"),
        "category": _many(CODEABLE_CONCEPT),
        "code": _one(CODEABLE_CONCEPT),
        "subject": _one(REFERENCE),
        "effectiveDateTime": _one("dateTime"),
        "issued": _one("instant"),
        "performer": _many(REFERENCE),
        "result": _many(REFERENCE),
        "imagingStudy": _many(REFERENCE),
        "conclusion": _one("string"),
    },
    required=frozenset({"status", "code"}),
    resource=True,
)

RESOURCES = {s.name: s for s in (PATIENT, OBSERVATION, DIAGNOSTIC_REPORT)}


def proven(resource: dict[str, Any]) -> bool:
    """Whether ``resource`` is certain to validate with the fhir.resources R4B model of its type and to hold no
    control character (False proves nothing: validate it with the models)."""
    shape = RESOURCES.get(resource.get("resourceType"))  # type: ignore[arg-type]
    return shape is not None and _fits(resource, shape)


def _fits(node: Any, shape: Shape) -> bool:
    if type(node) is not dict or not node:
        return False
    elements = shape.elements
    for key, value in node.items():
        spec = elements.get(key)
        if spec is None:
            if key == "resourceType" and shape.resource and value == shape.name:
                continue
            return False
        kind, repeated = spec
        if repeated:
            if type(value) is not list or not value:
                return False
            for item in value:
                if not _value_fits(item, kind):
                    return False
        elif not _value_fits(value, kind):
            return False
    if shape.resource and node.get("resourceType") != shape.name:
        return False
    if shape.required and not shape.required <= node.keys():
        return False
    return not shape.choices or all(len(group & node.keys()) <= 1 for group in shape.choices)


def _value_fits(value: Any, kind: str | Shape) -> bool:
    if type(kind) is Shape:
        return _fits(value, kind)
    if kind == "decimal":
        if isinstance(value, Decimal):
            if not value.is_finite():
                return False
            try:
                value = orjson.loads(str(value))  # as the registry reads the Bundle (adapters.fhir.dumps)
            except orjson.JSONDecodeError:
                return False
        if type(value) not in (int, float):
            return False
    elif type(value) is not str or _CONTROL.search(value):
        return False
    try:
        _VALIDATORS[kind].validate_python(value)  # type: ignore[index]
    except (ValidationError, ValueError, TypeError):
        return False
    return True
