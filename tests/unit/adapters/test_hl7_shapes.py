"""adapters/hl7v2/shapes.py against the fhir.resources R4B models: the shapes name only elements the models have, with
their types, cardinalities, required elements and choices; a generated resource the check proves validates with the
models; and a mapped message comes out of ``check_bundle`` the same (Bundle or error) with the proof as without it.
"""

from __future__ import annotations

import types
import typing
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from adapters.codes import Coder, read_code_map
from adapters.errors import AdapterError
from adapters.fhir import dumps
from adapters.hl7v2 import registry_rules
from adapters.hl7v2.mapping import OruMapper
from adapters.hl7v2.message import parse
from adapters.hl7v2.shapes import PRIMITIVES, RESOURCES, Shape, proven
from catalog import Catalog

from .conftest import hosp_a_config
from .test_hl7_fuzz import FUZZ, MUTATED, SAMPLES, sample_encoding

pytestmark = pytest.mark.filterwarnings("ignore:The 'warn' method is deprecated:DeprecationWarning")  # hl7.util

PROPERTY = FUZZ  # the HL7 fuzz tests' settings (HR_FUZZ_EXAMPLES)


def all_shapes() -> list[Shape]:
    found: dict[int, Shape] = {}
    todo = list(RESOURCES.values())
    while todo:
        shape = todo.pop()
        if id(shape) in found:
            continue
        found[id(shape)] = shape
        todo += [kind for kind, _ in shape.elements.values() if isinstance(kind, Shape)]
    return list(found.values())


def model_of(shape: Shape, parent: Any = None, key: str = "") -> Any:
    if parent is None or shape.resource:
        return get_fhir_model_class(shape.name)
    inner, _ = unwrap(parent.model_fields[key].annotation)
    return inner.get_model_klass()


def unwrap(annotation: Any) -> tuple[Any, bool]:
    """(the element's type, repeated) of a model field's annotation."""
    repeated = False
    while True:
        origin = typing.get_origin(annotation)
        if origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            assert len(args) == 1, annotation
            annotation = args[0]
        elif origin is list:
            repeated = True
            annotation = typing.get_args(annotation)[0]
        else:
            return annotation, repeated


# ---------------------------------------------------------------------------------------------------- the shapes
def check_shape(shape: Shape, model: Any) -> None:
    fields = {f.alias or name: f for name, f in model.model_fields.items()}
    for key, (kind, repeated) in shape.elements.items():
        assert key in fields, f"{shape.name}.{key} is no element of {model.__name__}"
        inner, model_repeated = unwrap(fields[key].annotation)
        assert repeated == model_repeated, f"{shape.name}.{key}: cardinality"
        if isinstance(kind, Shape):
            sub = inner.get_model_klass()
            assert sub.__resource_type__ == kind.name, f"{shape.name}.{key}: {sub.__resource_type__}, not {kind.name}"
            check_shape(kind, sub)
        else:
            expected = PRIMITIVES[kind]
            assert typing.get_origin(inner) is typing.Annotated, f"{shape.name}.{key} is not a primitive"
            assert typing.get_args(inner)[0] is typing.get_args(expected)[0], f"{shape.name}.{key}: {inner}"
            assert [type(m) for m in inner.__metadata__] == [type(m) for m in expected.__metadata__], (
                f"{shape.name}.{key}: {inner}, not {kind}"
            )
    required = {
        f.alias or name
        for name, f in model.model_fields.items()
        if f.is_required() or (f.json_schema_extra or {}).get("element_required")  # type: ignore[union-attr]
    }
    assert required == set(shape.required), f"{shape.name}: required {required}, the shape says {shape.required}"
    groups: dict[str, set[str]] = {}
    for name, f in model.model_fields.items():
        group = (f.json_schema_extra or {}).get("one_of_many")  # type: ignore[union-attr]
        if group and (f.alias or name) in shape.elements:
            groups.setdefault(str(group), set()).add(f.alias or name)
    for group, members in groups.items():
        if len(members) > 1:
            assert any(members <= choice for choice in shape.choices), f"{shape.name}: choice {group}[x]"


@pytest.mark.parametrize("name", sorted(RESOURCES))
def test_the_shapes_are_the_models(name: str) -> None:
    shape = RESOURCES[name]
    assert shape.resource
    check_shape(shape, get_fhir_model_class(name))


# ---------------------------------------------------------------------------------------------------- generated
VALID: dict[str, list[Any]] = {
    "string": ["x", " ", "  a  ", "白细胞", "a\nb", "a\tb", "a\u3000"],
    "code": ["final", "a b", "L", "10*9/L", "a\u3000b"],
    "uri": ["http://loinc.org", "urn:oid:1.2", "urn:uuid:x"],
    "markdown": ["text", " ", "a\nb"],
    "decimal": [Decimal("5.20"), Decimal("-0"), Decimal("0.0000001"), Decimal("12345678901234567890.5"), 3, 2.5],
    "date": ["2025", "2025-11", "2025-11-03"],
    "dateTime": ["2025-11-03T10:15:00+08:00", "2025-11-03T10:15:00.1234+08:00", "2025-11", "2025-11-03T10:15:00Z",
                 "2025"],
    "instant": ["2025-11-03T10:15:00+08:00", "2016-12-31T23:59:60Z"],
    "time": ["10:15:00", "23:59:60"],
}  # fmt: skip
ODD: dict[str, list[Any]] = {
    "string": ["\u3000", "\u00a0", "\x1c", "a\x0bb", "", "a\x00"],
    "code": ["a  b", " a", "a ", "\u3000", "a\x1cb", ""],
    "uri": ["a b", "", " ", "http://x/\u3000"],
    "markdown": [""],
    "decimal": [Decimal("1E+400"), Decimal("NaN"), Decimal("Infinity"), True, "5", float("inf")],
    "date": ["2025-02-30", "2025-13", "20251103", "0000", ""],
    "dateTime": ["2025-11-03T10:15:60+08:00", "2025-11-03T10:15:00", "2025-02-30T10:15:00+08:00",
                 "2025-11-03T24:00:00+08:00", "2025-11-03T10:15:00+15:00"],
    "instant": ["2025-11-03", "2025-11-03T10:15+08:00"],
    "time": ["24:00:00", "10:15", "10:15:00+08:00"],
}  # fmt: skip
JUNK: list[Any] = [None, {}, [], "x", 1, {"extension": [{"url": "http://x"}]}]


def primitive(kind: str) -> st.SearchStrategy[Any]:
    """Mostly a valid value of ``kind``, now and then an invalid one."""
    return st.integers(0, 100).flatmap(lambda i: st.sampled_from(ODD[kind] if i == 0 else VALID[kind]))


@st.composite
def resources(draw: st.DrawFn, shape: Shape) -> Any:
    """A node of ``shape``: a random subset of its elements (at least one) with values mostly valid, now and then an
    invalid value, junk in place of a value, an empty list, an unknown element, a required element left out, or two
    types of a choice."""
    chosen = {draw(st.sampled_from(sorted(group))) for group in shape.choices}
    keys = [
        key
        for key in shape.elements
        if (draw(st.integers(0, 80)) > 0 if key in shape.required else key in chosen or draw(st.integers(0, 50)) == 0)
        or (all(key not in g for g in shape.choices) and key not in shape.required and draw(st.booleans()))
    ]
    if not keys:
        keys = [draw(st.sampled_from(sorted(shape.elements)))]
    node: dict[str, Any] = {"resourceType": shape.name} if shape.resource else {}
    for key in keys:
        kind, repeated = shape.elements[key]
        value = resources(kind) if isinstance(kind, Shape) else primitive(kind)
        if draw(st.integers(0, 300)) == 0:
            node[key] = draw(st.sampled_from(JUNK))
        elif repeated:
            node[key] = draw(st.lists(value, min_size=0 if draw(st.integers(0, 150)) == 0 else 1, max_size=2))
        else:
            node[key] = draw(value)
    if draw(st.integers(0, 150)) == 0:
        node[draw(st.sampled_from(["id", "extension", "text", "valueBoolean", "_status"]))] = "x"
    return node


def validates(resource: dict[str, Any]) -> bool:
    try:
        get_fhir_model_class(resource["resourceType"]).model_validate(orjson.loads(dumps(resource)))
    except (ValidationError, ValueError, TypeError):
        return False
    return not any(registry_rules._CONTROL.search(text) for _, text in registry_rules._strings(resource))


@PROPERTY
@given(data=st.data(), name=st.sampled_from(sorted(RESOURCES)))
def test_what_is_proven_validates(data: st.DataObject, name: str) -> None:
    resource = data.draw(resources(RESOURCES[name]))
    if proven(resource):
        assert validates(resource), resource


def test_the_proof_is_not_vacuous() -> None:
    """The generator reaches both answers, and a proven resource made invalid in any one value is not proven."""
    resource = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}], "text": "血红蛋白"},
        "effectiveDateTime": "2025-11-03T10:15:00+08:00",
        "valueQuantity": {"value": Decimal("135"), "unit": "g/L", "system": "http://unitsofmeasure.org", "code": "g/L"},
    }
    assert proven(resource) and validates(resource)
    for broken in (
        {"status": "fi  nal"},
        {"effectiveDateTime": "2025-02-30T10:15:00+08:00"},
        {"code": {"coding": []}},
        {"valueString": "x"},  # a second value[x]
        {"id": "x"},
        {"code": {"text": "a\x00b"}},
        {"valueQuantity": {"value": Decimal("NaN")}},
    ):
        assert not proven({**resource, **broken}), broken
    assert not proven({k: v for k, v in resource.items() if k != "code"})
    assert not proven({**resource, "resourceType": "Patient"})


# ---------------------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def mappers(tmp_path_factory: pytest.TempPathFactory, catalog: Catalog) -> dict[str, OruMapper]:
    tmp: Path = tmp_path_factory.mktemp("shapes")
    out = {}
    for policy in ("strict", "lenient"):
        config = hosp_a_config(tmp, hl7={"policy": policy})
        assert config.codes.map_file is not None
        out[policy] = OruMapper(config, Coder(catalog, "hosp-a", read_code_map(config.codes.map_file, catalog)))
    return out


def outcome(raw: bytes, mapper: OruMapper) -> Any:
    try:
        message = parse(raw, default_encoding=sample_encoding(raw))
    except AdapterError:
        return None
    try:
        return dumps(mapper.map(message).bundle)
    except AdapterError as exc:
        return (type(exc).__name__, str(exc), getattr(exc, "error_code", None), getattr(exc, "location", None))


def without_proof(raw: bytes, mapper: OruMapper) -> Any:
    original = registry_rules.proven
    registry_rules.proven = lambda resource: False
    try:
        return outcome(raw, mapper)
    finally:
        registry_rules.proven = original


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_samples_are_proven_and_validate(name: str, mappers: dict[str, OruMapper]) -> None:
    raw = SAMPLES[name]
    result = outcome(raw, mappers["lenient"])
    assert result == without_proof(raw, mappers["lenient"])
    if isinstance(result, bytes):
        for entry in orjson.loads(result)["entry"]:
            get_fhir_model_class(entry["resource"]["resourceType"]).model_validate(entry["resource"])


@PROPERTY
@given(raw=MUTATED, policy=st.sampled_from(["strict", "lenient"]))
def test_check_bundle_answers_the_same_with_the_proof(raw: bytes, policy: str, mappers: dict[str, OruMapper]) -> None:
    assert outcome(raw, mappers[policy]) == without_proof(raw, mappers[policy])
