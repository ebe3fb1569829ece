"""Reading the catalog document: every problem collected (:class:`Collector`), each naming where and which field,
and the readers of a text field and a list field that report into it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from catalog.errors import Problem
from catalog.model import Kind


class Collector:
    """The problems found so far, all reported at once."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, where: str, field: str, message: str) -> None:
        self.problems.append(Problem(where, field, message))


def text_of(c: Collector, where: str, raw: Mapping[str, Any], key: str, *, required: bool = True) -> str:
    value = raw.get(key)
    if value is None:
        if required:
            c.add(where, key, "missing")
        return ""
    if not isinstance(value, str) or not value.strip():
        c.add(where, key, "must be a non-empty string")
        return ""
    return value.strip()


def list_of(c: Collector, where: str, raw: Mapping[str, Any], key: str) -> Sequence[Any]:
    value = raw.get(key, [])
    if value is None:
        return []
    if not isinstance(value, list):
        c.add(where, key, "must be a list")
        return []
    return value


def kind_of(c: Collector, where: str, raw: Mapping[str, Any]) -> Kind | None:
    """The ``kind`` field: ``lab`` or ``imaging`` (None, and a problem, for anything else)."""
    kind_text = text_of(c, where, raw, "kind")
    try:
        return Kind(kind_text)
    except ValueError:
        c.add(where, "kind", f"must be 'lab' or 'imaging', got {kind_text!r}")
        return None
