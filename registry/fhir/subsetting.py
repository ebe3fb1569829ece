"""``_summary`` and ``_elements`` (FHIR R4 search.html §3.1.1.5.8 "Summary", §3.1.1.5.9 "Elements"): a subset of a
resource, marked with the ``SUBSETTED`` tag in ``meta.tag`` (v3-ObservationValue).

- ``_summary=true``: the elements marked *summary* in the R4 definitions, in backbone elements too (an ImagingStudy's
  ``series`` without its ``instance`` list); data types are kept whole;
- ``_summary=text``: ``text``, ``id``, ``meta`` and the top-level mandatory elements;
- ``_summary=data``: everything but ``text``;
- ``_summary=false``: the whole resource (no tag); ``_summary=count`` is a search's and handled there;
- ``_elements=a,b``: those top-level elements (a choice type by its name without type: ``effective``,
  ``value``), and always ``id``, ``meta`` and the mandatory elements (R4: servers SHOULD return them).

The kept members are cut from the stored text, never re-serialized (``135.50`` stays ``135.50``); only ``meta`` is
written anew.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import orjson

from registry.fhir.elements import Element, elements_of
from registry.fhir.json_text import elements, members

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED",
             "display": "subsetted"}  # fmt: skip
SUMMARY_MODES = frozenset({"true", "text", "data", "false"})
_ALWAYS = frozenset({"resourceType", "id", "meta"})


class SubsetError(ValueError):
    """A ``_summary`` or ``_elements`` value this server does not take."""


@dataclass(frozen=True, slots=True)
class Subset:
    """What to return of each resource: a summary mode, or the named top-level elements."""

    summary: str | None = None  # true | text | data
    elements: frozenset[str] = frozenset()

    @classmethod
    def of(cls, summary: str | None, element_names: Iterable[str]) -> Subset | None:
        """The subset asked for (None: the whole resource); ``SubsetError`` for a value not taken."""
        names = frozenset(n.strip() for raw in element_names for n in raw.split(",") if n.strip())
        if summary is not None and summary not in SUMMARY_MODES:
            raise SubsetError(f"_summary must be one of true, text, data, count, false; got {summary!r}")
        if any("." in n for n in names):
            raise SubsetError("_elements takes top-level element names (R4 search.html §3.1.1.5.9), not paths")
        if summary not in (None, "false") and names:
            raise SubsetError("_summary and _elements cannot be combined; ask for one of them")
        if names:
            return cls(None, names)
        return cls(summary) if summary not in (None, "false") else None

    def apply(self, text: bytes) -> bytes:
        """The subset of one resource's JSON text, tagged SUBSETTED."""
        decoded = text.decode()
        spans = members(decoded)
        rtype = next((orjson.loads(decoded[v:e]) for k, _m, v, e in spans if k == "resourceType"), None)
        try:
            defined = elements_of(str(rtype))
        except KeyError:
            return text  # not a resource this server models (an OperationOutcome): left whole
        kept: list[str] = []
        meta: dict[str, object] = {}
        for key, m_start, v_start, v_end in spans:
            if key == "meta":
                loaded = orjson.loads(decoded[v_start:v_end])
                meta = loaded if isinstance(loaded, dict) else {}
                continue
            base = key[1:] if key.startswith("_") else key  # a primitive's extensions go with it
            found = defined.get(base)
            if not self._keeps(key, found):
                continue
            if self.summary == "true" and found is not None and found.backbone:
                kept.append(f"{decoded[m_start:v_start]}{_summary_of(decoded, v_start, v_end, found)}")
            else:
                kept.append(decoded[m_start:v_end])
        given = meta.get("tag")
        tags = [t for t in given if isinstance(t, dict)] if isinstance(given, list) else []
        if not any(t.get("system") == SUBSETTED["system"] and t.get("code") == "SUBSETTED" for t in tags):
            tags.append(SUBSETTED)
        meta = {**meta, "tag": tags}
        head = [f'"resourceType":{orjson.dumps(rtype).decode()}']
        rest = [k for k in kept if not k.lstrip().startswith('"resourceType"')]
        id_first = [k for k in rest if k.lstrip().startswith('"id"')]
        others = [k for k in rest if k not in id_first]
        return ("{" + ",".join([*head, *id_first, f'"meta":{orjson.dumps(meta).decode()}', *others]) + "}").encode()

    def _keeps(self, key: str, found: Element | None) -> bool:
        base = key[1:] if key.startswith("_") else key
        if base in _ALWAYS:
            return True
        if found is None:
            return self.summary == "data"  # an element the definitions do not name is kept only by "data"
        if self.summary == "true":
            return found.summary
        if self.summary == "text":
            return base == "text" or found.required
        if self.summary == "data":
            return base != "text"
        return found.required or found.base in self.elements or found.name in self.elements


def _summary_of(text: str, start: int, end: int, element: Element) -> str:
    """A backbone element (or a list of them) with only its summary children."""
    assert element.type_name is not None  # noqa: S101 - a backbone element has a type
    children = elements_of(element.type_name)

    def one(at: int) -> str:
        kept = []
        for key, m_start, v_start, v_end in members(text, at):
            base = key[1:] if key.startswith("_") else key
            child = children.get(base)
            if child is None or not child.summary:
                continue
            value = _summary_of(text, v_start, v_end, child) if child.backbone else text[v_start:v_end]
            kept.append(f"{text[m_start:v_start]}{value}")
        return "{" + ",".join(kept) + "}"

    stripped = text[start:end].lstrip()
    if stripped.startswith("["):
        return "[" + ",".join(one(s) for s, _e in elements(text, start)) + "]"
    if stripped.startswith("{"):
        return one(start)
    return text[start:end]
