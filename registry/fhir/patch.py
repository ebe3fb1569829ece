"""PATCH documents (FHIR R4 http.html §3.1.0.5 patch): JSON Patch (RFC 6902, ``application/json-patch+json``, applied
by the ``jsonpatch`` library) and FHIRPath Patch (R4 fhirpatch.html: a Parameters resource of ``operation``s).

FHIRPath Patch is supported for simple paths — ``Type``, then element names and ``[n]`` indexes
(``Patient.name[0].given``) — with the five R4 operations:

- ``add`` (path: the element to add to, ``name``, ``value``): appended when the element repeats, else set (an element
  already there is an error); a choice element by its base name (``value`` with a ``valueQuantity``);
- ``insert`` (path: a repeating element, ``index``, ``value``); ``move`` (path, ``source``, ``destination``);
- ``delete`` (path: one element; none is no change); ``replace`` (path: one element, ``value``).

Values are ``value[x]`` or, for a complex type, ``part``s named after its elements. Any other FHIRPath (functions such
as ``where()``, ``first()``, ``ofType()``, operators) is refused as not supported (422), a malformed document is 400,
and a patch that does not apply to the resource (a path that selects nothing or several, an index out of range) is
422 — the resource is then left as it was.
"""

from __future__ import annotations

import base64
import copy
import re
from dataclasses import dataclass
from typing import Any

import jsonpatch
import jsonpointer

from registry.fhir.elements import element

JSON_PATCH = "application/json-patch+json"
_STEP = re.compile(r"^([A-Za-z][A-Za-z0-9_]*)(?:\[(\d+)\])?$")


class PatchSyntaxError(ValueError):
    """The PATCH document is not well-formed (400)."""


class PatchUnsupportedError(ValueError):
    """A well-formed PATCH document asking for what this server does not support (422, not-supported)."""


class PatchFailedError(ValueError):
    """The patch does not apply to the resource as it is (422)."""


@dataclass(frozen=True, slots=True)
class Patch:
    """A parsed PATCH document; ``apply`` returns the patched copy of a resource."""

    kind: str  # json-patch | fhirpath-patch
    operations: Any

    def apply(self, resource: dict[str, Any]) -> dict[str, Any]:
        if self.kind == "json-patch":
            try:
                patched = jsonpatch.JsonPatch(self.operations).apply(resource)
            except jsonpatch.InvalidJsonPatch as exc:
                raise PatchSyntaxError(f"not a JSON Patch (RFC 6902): {exc}") from None
            except (
                jsonpatch.JsonPatchConflict,
                jsonpatch.JsonPatchTestFailed,
                jsonpointer.JsonPointerException,
            ) as exc:
                raise PatchFailedError(f"the JSON Patch does not apply: {exc}") from None
            if not isinstance(patched, dict):
                raise PatchFailedError("the JSON Patch does not leave a resource (a JSON object)")
            return patched
        document = copy.deepcopy(resource)
        for n, operation in enumerate(self.operations):
            _fhirpath_operation(document, operation, f"Parameters.parameter[{n}]")
        return document


def json_patch(document: Any) -> Patch:
    if not isinstance(document, list) or not all(isinstance(op, dict) and "op" in op for op in document):
        raise PatchSyntaxError("a JSON Patch (RFC 6902) is an array of operations, each with 'op' and 'path'")
    return Patch("json-patch", document)


def fhirpath_patch(document: Any) -> Patch:
    if not isinstance(document, dict) or document.get("resourceType") != "Parameters":
        raise PatchSyntaxError("a FHIRPath Patch is a Parameters resource (R4 fhirpatch.html)")
    operations = []
    for n, parameter in enumerate(document.get("parameter") or []):
        where = f"Parameters.parameter[{n}]"
        if not isinstance(parameter, dict) or parameter.get("name") != "operation":
            raise PatchSyntaxError(f"{where}: every parameter of a FHIRPath Patch is an 'operation'")
        parts: dict[str, Any] = {}
        for part in parameter.get("part") or []:
            if not isinstance(part, dict) or not isinstance(part.get("name"), str):
                raise PatchSyntaxError(f"{where}.part: each part has a name")
            if part["name"] in parts:
                raise PatchSyntaxError(f"{where}: part {part['name']!r} is given twice")
            parts[part["name"]] = part
        kind = _value_of(parts.get("type"), "valueCode")
        if kind not in ("add", "insert", "delete", "replace", "move"):
            raise PatchSyntaxError(f"{where}: type must be add, insert, delete, replace or move; got {kind!r}")
        if not isinstance(_value_of(parts.get("path"), "valueString"), str):
            raise PatchSyntaxError(f"{where}: a path (valueString) is required")
        needed = {"add": ("name", "value"), "insert": ("index", "value"), "replace": ("value",),
                  "move": ("source", "destination"), "delete": ()}[kind]  # fmt: skip
        missing = [name for name in needed if name not in parts]
        if missing:
            raise PatchSyntaxError(f"{where}: a {kind} operation needs {', '.join(missing)}")
        operations.append(parts)
    if not operations:
        raise PatchSyntaxError("the FHIRPath Patch has no operation")
    return Patch("fhirpath-patch", operations)


def binary_json_patch(binary: dict[str, Any]) -> Patch:
    """A JSON Patch carried in a Binary (R4 bundle.html: how a transaction entry holds one)."""
    if binary.get("contentType") != JSON_PATCH or not isinstance(binary.get("data"), str):
        raise PatchSyntaxError(f"a Binary patch has contentType {JSON_PATCH} and base64 data")
    import orjson

    try:
        return json_patch(orjson.loads(base64.b64decode(binary["data"], validate=True)))
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise PatchSyntaxError(f"the Binary's data is not a base64 JSON Patch: {exc}") from None


# ------------------------------------------------------------------------------------------------ FHIRPath Patch
def _value_of(part: Any, key: str) -> Any:
    return part.get(key) if isinstance(part, dict) else None


def _integer(parts: dict[str, Any], name: str, where: str) -> int:
    value = _value_of(parts.get(name), "valueInteger")
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise PatchSyntaxError(f"{where}: {name} must be a valueInteger ≥ 0")
    return value


def _new_value(part: dict[str, Any], type_name: str | None, where: str) -> tuple[Any, str | None]:
    """The value of a ``value`` part and the FHIR type its ``value[x]`` names (None for ``part``s)."""
    keys = [k for k in part if k.startswith("value") and len(k) > 5]
    if len(keys) == 1 and not part.get("part"):
        return part[keys[0]], keys[0][5:]
    if part.get("part") and not keys:
        return _complex(part["part"], type_name, where), None
    raise PatchSyntaxError(f"{where}: a value is one value[x], or parts for a complex type")


def _complex(parts: list[Any], type_name: str | None, where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part in parts:
        if not isinstance(part, dict) or not isinstance(part.get("name"), str):
            raise PatchSyntaxError(f"{where}.part: each part has a name")
        defined = element(type_name, part["name"]) if type_name else None
        value, _type = _new_value(part, defined.type_name if defined else None, where)
        if part["name"] in out or (defined is not None and defined.repeating):
            existing = out.get(part["name"], [])
            out[part["name"]] = [*(existing if isinstance(existing, list) else [existing]), value]
        else:
            out[part["name"]] = value
    return out


@dataclass(slots=True)
class _Node:
    container: Any  # the dict or list holding the value (None for the resource itself)
    key: Any  # its key there
    value: Any
    type_name: str | None


def _steps(path: str, rtype: str, where: str) -> list[tuple[str, int | None]]:
    head, *rest = path.split(".")
    if head != rtype:
        if _STEP.match(head) and head[:1].isupper():
            raise PatchFailedError(f"{where}: the path starts with {head}, not {rtype}")
        raise PatchUnsupportedError(f"{where}: only simple paths (Type.element[n]…) are supported, not {path!r}")
    steps: list[tuple[str, int | None]] = []
    for step in rest:
        match = _STEP.match(step)
        if match is None:
            raise PatchUnsupportedError(
                f"{where}: only simple paths (Type.element[n]…) are supported, not {path!r} (no functions)"
            )
        steps.append((match.group(1), int(match.group(2)) if match.group(2) is not None else None))
    return steps


def _select(document: dict[str, Any], path: str, where: str) -> list[_Node]:
    """The nodes a simple path selects, as FHIRPath would (a repeating element gives each of its items)."""
    rtype = str(document.get("resourceType"))
    nodes = [_Node(None, None, document, rtype)]
    for name, index in _steps(path, rtype, where):
        found: list[_Node] = []
        for node in nodes:
            if not isinstance(node.value, dict) or name not in node.value:
                continue
            defined = element(node.type_name, name) if node.type_name else None
            child_type = defined.type_name if defined else None
            child = node.value[name]
            if isinstance(child, list):
                found += [_Node(child, i, item, child_type) for i, item in enumerate(child)]
            else:
                found.append(_Node(node.value, name, child, child_type))
        if index is not None:
            found = [found[index]] if index < len(found) else []
        nodes = found
    return nodes


def _one(nodes: list[_Node], path: str, where: str) -> _Node:
    if len(nodes) != 1:
        raise PatchFailedError(f"{where}: the path {path!r} selects {len(nodes)} elements, not one")
    return nodes[0]


def _list_at(document: dict[str, Any], path: str, where: str) -> tuple[list[Any], str | None]:
    """The repeating element a path names (insert, move), with the type of its items."""
    parent_path, _, name = path.rpartition(".")
    if not parent_path or "[" in name:
        raise PatchFailedError(f"{where}: insert and move name a repeating element (Type.element), not {path!r}")
    parent = _one(_select(document, parent_path, where), parent_path, where)
    if not isinstance(parent.value, dict):
        raise PatchFailedError(f"{where}: {parent_path} is not an element with children")
    defined = element(parent.type_name, name) if parent.type_name else None
    items = parent.value.setdefault(name, [])
    if not isinstance(items, list):
        raise PatchFailedError(f"{where}: {path} does not repeat")
    return items, defined.type_name if defined else None


def _fhirpath_operation(document: dict[str, Any], parts: dict[str, Any], where: str) -> None:
    kind, path = parts["type"]["valueCode"], parts["path"]["valueString"]
    if kind == "delete":
        nodes = _select(document, path, where)
        if nodes:
            node = _one(nodes, path, where)
            if node.container is None:
                raise PatchFailedError(f"{where}: the resource itself cannot be deleted by a patch")
            del node.container[node.key]
        return
    if kind == "replace":
        node = _one(_select(document, path, where), path, where)
        if node.container is None:
            raise PatchFailedError(f"{where}: the resource itself cannot be replaced by a patch")
        node.container[node.key] = _new_value(parts["value"], node.type_name, where)[0]
        return
    if kind == "add":
        target = _one(_select(document, path, where), path, where)
        name = _value_of(parts["name"], "valueString")
        if not isinstance(target.value, dict) or not isinstance(name, str) or not _STEP.match(name):
            raise PatchFailedError(f"{where}: add puts a named element (name) into an element with children")
        defined = element(target.type_name, name) if target.type_name else None
        value, value_type = _new_value(parts["value"], defined.type_name if defined else None, where)
        if defined is None and target.type_name and value_type:
            name = f"{name}{value_type}"  # a choice element by its base name: value + Quantity → valueQuantity
            defined = element(target.type_name, name)
        existing = target.value.get(name)
        if isinstance(existing, list) or (existing is None and defined is not None and defined.repeating):
            target.value[name] = [*(existing or []), value]
        elif existing is not None:
            raise PatchFailedError(f"{where}: {path}.{name} is already there and does not repeat; use replace")
        else:
            target.value[name] = value
        return
    items, item_type = _list_at(document, path, where)
    if kind == "insert":
        index = _integer(parts, "index", where)
        if index > len(items):
            raise PatchFailedError(f"{where}: index {index} is past the end of {path} ({len(items)} items)")
        items.insert(index, _new_value(parts["value"], item_type, where)[0])
        return
    source, destination = _integer(parts, "source", where), _integer(parts, "destination", where)
    if source >= len(items) or destination >= len(items):
        raise PatchFailedError(f"{where}: move {source} → {destination} is outside {path} ({len(items)} items)")
    items.insert(destination, items.pop(source))
