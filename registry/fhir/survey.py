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


def _unheld(value: str, local: tzinfo) -> bool:
    if not INSTANT_RE.match(value):
        return False
    try:
        held_range(value, local)
    except DateFormatError:
        return True
    return False


def survey(resource: dict[str, Any], local: tzinfo) -> Survey:
    out = Survey()
    refs, idents, unheld = out.references, out.identifiers, out.unheld

    # Strings are checked where they stand (no call per string, no path built unless one is unheld): most nodes of
    # a resource are strings.
    def walk(node: Any, dotted: str, indexed: str, dates: bool, links: bool) -> None:
        if isinstance(node, dict):
            if links and dotted and isinstance(node.get("reference"), str):
                refs.append((dotted, node))
            if isinstance(node.get("system"), str) and isinstance(node.get("value"), str):
                idents.append((indexed, node))
            for key, value in node.items():
                if isinstance(value, str):
                    if dates and key != "text" and _unheld(value, local):
                        unheld.append((f"{indexed}.{key}" if indexed else key, value))
                elif isinstance(value, (dict, list)):
                    text = key == "text"
                    walk(value, f"{dotted}.{key}" if dotted else key, f"{indexed}.{key}" if indexed else key,
                         dates and not text, links and not text and key != "contained")  # fmt: skip
        else:
            for i, element in enumerate(node):
                if isinstance(element, str):
                    if dates and _unheld(element, local):
                        unheld.append((f"{indexed}[{i}]", element))
                elif isinstance(element, (dict, list)):
                    walk(element, dotted, f"{indexed}[{i}]", dates, links)

    if isinstance(resource, dict):
        walk(resource, "", "", True, True)
    return out
