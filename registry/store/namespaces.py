"""Identifier namespaces (docs/design.md §6 ownership): which Organization owns which identifier systems.

A namespace is an exact system (``http://hosp-a.example.cn/mrn``) or a prefix ending in a separator and ``*``
(``http://hosp-a.example.cn/*``, ``urn:oid:2.16.156.10011.1.9.*``). A system's owner is the organization of the
longest namespace that matches it; namespaces of two organizations never overlap.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, delete, insert, or_, select

from registry.store.tables import metadata

NS = cast(Any, metadata.tables["identifier_namespace"])
SEPARATORS = "/:.#-_|"
"""A prefix namespace ends with one of these before its ``*``: ``http://h/`` owns ``http://h/mrn``, not ``http://hx``."""


@dataclass(frozen=True, slots=True)
class Namespace:
    pattern: str
    org_id: str
    created: datetime

    @property
    def prefix(self) -> str | None:
        return self.pattern[:-1] if self.pattern.endswith("*") else None

    def matches(self, system: str) -> bool:
        prefix = self.prefix
        return system.startswith(prefix) if prefix is not None else system == self.pattern


def candidate_patterns(system: str) -> list[str]:
    """Every namespace that could own ``system``: the system itself and each of its separator-ended prefixes + ``*``."""
    out = [system]
    out += [system[: i + 1] + "*" for i, ch in enumerate(system) if ch in SEPARATORS]
    return out


class NamespaceStore:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    @staticmethod
    def _row(r: Any) -> Namespace:
        return Namespace(r.pattern, r.org_id, r.created)

    def owners(self, systems: Iterable[str]) -> dict[str, str]:
        """system → the Organization id owning it (absent: nobody declared it)."""
        wanted = sorted(set(systems))
        candidates = sorted({p for s in wanted for p in candidate_patterns(s)})
        found: list[Namespace] = []
        for i in range(0, len(candidates), 500):
            rows = self.conn.execute(select(NS).where(NS.c.pattern.in_(candidates[i : i + 500])))
            found += [self._row(r) for r in rows]
        out: dict[str, str] = {}
        for system in wanted:
            matching = [n for n in found if n.matches(system)]
            if matching:
                out[system] = max(matching, key=lambda n: len(n.pattern)).org_id
        return out

    def overlapping(self, pattern: str) -> list[Namespace]:
        """Namespaces that share a system with ``pattern`` (one inside the other, or equal)."""
        base = pattern[:-1] if pattern.endswith("*") else pattern
        conds: list[Any] = [NS.c.pattern.in_(candidate_patterns(base))]
        if pattern.endswith("*"):
            conds.append(NS.c.pattern.startswith(base, autoescape=True))
        rows = self.conn.execute(select(NS).where(or_(*conds)))
        return [n for r in rows if (n := self._row(r)).pattern == pattern or _overlap(n.pattern, pattern)]

    def add(self, pattern: str, org_id: str, now: datetime) -> None:
        self.conn.execute(insert(NS).values(pattern=pattern, org_id=org_id, created=now))

    def remove(self, pattern: str) -> bool:
        return bool(self.conn.execute(delete(NS).where(NS.c.pattern == pattern)).rowcount)

    def all(self, org_ids: Sequence[str] | None = None) -> list[Namespace]:
        stmt = select(NS)
        if org_ids is not None:
            stmt = stmt.where(NS.c.org_id.in_(list(org_ids)))
        return [self._row(r) for r in self.conn.execute(stmt.order_by(NS.c.org_id, NS.c.pattern))]


def _overlap(a: str, b: str) -> bool:
    def covers(outer: str, inner: str) -> bool:
        if outer.endswith("*"):
            return inner.removesuffix("*").startswith(outer[:-1])
        return outer == inner

    return covers(a, b) or covers(b, a)
