"""SQL for the studies opened through the DICOMweb gateway (``registry.store.imaging_tables``)."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Connection, delete

from registry.store.tables import metadata

OPEN = cast(Any, metadata.tables["imaging_study_open"])
KEEP_HOURS = 2
"""Rows older than this many hours are dropped when a new one is written: only the current hour's rows decide."""


class StudyOpens:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def first_open(self, client_id: str, study_id: str, purpose: str, hour: int) -> bool:
        """Record that ``client_id`` opened the study in this hour; True only for the call that recorded it (the
        primary key makes a concurrent second insert — in this process or another — a no-op)."""
        values = {"client_id": client_id, "study_id": study_id, "purpose": purpose, "hour": hour}
        if self.conn.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            stmt: Any = pg_insert(OPEN).values(values).on_conflict_do_nothing()
        else:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            stmt = sqlite_insert(OPEN).values(values).on_conflict_do_nothing()
        # RETURNING, not rowcount: psycopg reports no row count for an INSERT … ON CONFLICT DO NOTHING here
        created = self.conn.execute(stmt.returning(OPEN.c.hour)).first() is not None
        if created:
            self.conn.execute(delete(OPEN).where(OPEN.c.hour < hour - KEEP_HOURS))
        return created
