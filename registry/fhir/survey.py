"""One walk over a resource for what the write path needs from every node of it: its Reference objects, its
Identifier-shaped objects and the dateTime/instant values the registry cannot hold.

Written once per resource as it is prepared, instead of one walk per question (three walks, and the references walked
four times): the write path's cost grows with the nodes of each resource, and a report's Observations are most of what
hospitals send.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any

from registry.fhir.extract import INSTANT_RE, DateFormatError, held_range


@dataclass(slots=True)
class Survey:
    """What one walk found. ``references``: (dotted path without indices, the Reference object) outside
    ``contained`` and the narrative; ``identifiers``: (indexed path, object with a string ``system`` and ``value``)
    anywhere; ``unheld``: (indexed path, value) of each dateTime/instant with a time of day outside the held range
    (the narrative skipped: it is XHTML, not dates)."""

    references: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    identifiers: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    unheld: list[tuple[str, str]] = field(default_factory=list)


def survey(resource: dict[str, Any], local: tzinfo) -> Survey:
    out = Survey()
    refs, idents, unheld = out.references, out.identifiers, out.unheld

    def walk(node: Any, dotted: str, indexed: str, dates: bool, links: bool) -> None:
        if isinstance(node, dict):
            if links and dotted and isinstance(node.get("reference"), str):
                refs.append((dotted, node))
            if isinstance(node.get("system"), str) and isinstance(node.get("value"), str):
                idents.append((indexed, node))
            for key, value in node.items():
                if isinstance(value, (dict, list)) or (dates and isinstance(value, str)):
                    text = key == "text"
                    walk(value, f"{dotted}.{key}" if dotted else key, f"{indexed}.{key}" if indexed else key,
                         dates and not text, links and not text and key != "contained")  # fmt: skip
        elif isinstance(node, list):
            for i, element in enumerate(node):
                if isinstance(element, (dict, list)) or (dates and isinstance(element, str)):
                    walk(element, dotted, f"{indexed}[{i}]", dates, links)
        elif dates and isinstance(node, str) and INSTANT_RE.match(node):
            try:
                held_range(node, local)
            except DateFormatError:
                unheld.append((indexed, node))

    walk(resource, "", "", True, True)
    return out
