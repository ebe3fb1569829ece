"""The resource repository: every SQL statement about FHIR resources lives here (docs/design.md §2: route handlers hold
no queries). Services open a :class:`UnitOfWork`, call the repository inside it, and the unit commits whole or not at
all.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine

from registry.store.audit_sql import AuditSql
from registry.store.index_sql import IndexSql
from registry.store.resource_sql import ResourceSql
from registry.store.search_sql import SearchSql


class Repository(ResourceSql, SearchSql, IndexSql, AuditSql):
    """Every SQL statement about FHIR resources, the result index and the audit trail, on one open connection."""

    def __init__(self, conn: Connection) -> None:
        super().__init__(conn)


class UnitOfWork:
    """One database transaction; commits when the block ends normally, rolls back on any exception."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @contextmanager
    def begin(self, *, audit_only: bool = False, plan_each: bool = False) -> Iterator[Repository]:
        """``audit_only``: the transaction writes nothing but read audits. ``plan_each``: every statement planned for
        its own parameters and the tables as they are now (the ingest: its tables grow under it; registry.store.db)."""
        with self.engine.begin() as conn:
            if conn.dialect.name == "postgresql" and (audit_only or plan_each):
                settings = []
                if audit_only:
                    # Read audits commit without waiting for the WAL flush: a crash may lose the last few hundred
                    # milliseconds of read audits, never a write (writes audit inside their own transaction).
                    settings.append("SET LOCAL synchronous_commit = off")
                if plan_each:
                    settings.append("SET LOCAL plan_cache_mode = force_custom_plan")
                for setting in settings:
                    conn.exec_driver_sql(setting)
            yield Repository(conn)
