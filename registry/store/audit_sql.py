"""The audit trail (docs/design.md §6): append-only rows, read newest first."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    or_,
    select,
)

from registry.store.records import (
    AUD,
    AuditFilter,
)
from registry.store.sql_base import SqlBase


class AuditSql(SqlBase):
    def add_audit(self, rows: Sequence[dict[str, Any]]) -> None:
        self._bulk_insert(AUD, list(rows))

    def audit_events(self, filters: AuditFilter) -> list[Any]:
        stmt = select(AUD)
        if filters.patient_keys is not None:
            stmt = stmt.where(AUD.c.patient_key.in_(filters.patient_keys))
        for agent in filters.agents:
            stmt = stmt.where(or_(AUD.c.client_id.in_(agent.client_ids), AUD.c.org_id.in_(agent.org_ids)))
        if filters.exclude_client_ids:
            stmt = stmt.where(or_(AUD.c.client_id.is_(None), AUD.c.client_id.not_in(filters.exclude_client_ids)))
        if filters.actions:
            stmt = stmt.where(AUD.c.action.in_(filters.actions))
        if filters.outcomes:
            stmt = stmt.where(AUD.c.outcome.in_(filters.outcomes))
        if filters.resource_types:
            stmt = stmt.where(AUD.c.resource_type.in_(filters.resource_types))
        for v in filters.dates:
            stmt = stmt.where(self._date_match(AUD.c.recorded_us, AUD.c.recorded_us, v))
        if filters.before_pk is not None:
            stmt = stmt.where(AUD.c.pk < filters.before_pk)
        if filters.pk is not None:
            stmt = stmt.where(AUD.c.pk == filters.pk)
        return list(self.conn.execute(stmt.order_by(AUD.c.pk.desc()).limit(filters.count)))
