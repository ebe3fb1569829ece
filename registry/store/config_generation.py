"""The configuration generation (docs/design.md §7: any number of registry processes share one database): a counter
bumped in the transaction of every change to recognition's configuration — a hospital's code map (ConceptMap), an
Organization (its recognition regions), a quality-control qualification. A process caching that configuration reads
the counter once per order check (one primary-key SELECT) and trusts its cache only for the generation it was
filled at, so a change committed by any process — the server, another worker, the command line — is seen by the
next check everywhere."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Connection, bindparam, insert, select, update

from registry.store.compiled import Compiled
from registry.store.tables import metadata

GEN = cast(Any, metadata.tables["config_generation"])
RECOGNITION = "recognition"
CURRENT_GENERATION = Compiled(lambda _d: select(GEN.c.generation).where(GEN.c.name == bindparam("name")))


class ConfigGenerations:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def current(self, name: str = RECOGNITION) -> int:
        found = CURRENT_GENERATION.first(self.conn, {"name": name})
        return int(found.generation if found is not None else 0)

    def bump(self, name: str = RECOGNITION) -> None:
        """One more generation, committed with the caller's transaction (on PostgreSQL the row stays locked until
        then, so concurrent configuration changes take turns; they are rare)."""
        done = self.conn.execute(update(GEN).where(GEN.c.name == name).values(generation=GEN.c.generation + 1))
        if not done.rowcount:  # a database created without migration 0004's row
            self.conn.execute(insert(GEN).values(name=name, generation=1))
