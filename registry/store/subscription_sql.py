"""SQL of Subscriptions and their notification queue (``registry.store.subscription_tables``).

A notification is claimed for sending with a lease: the claim moves its ``due_us`` past the lease in a short
transaction (``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two workers never claim one row; SQLite has one writer),
the HTTP request runs outside any transaction, and its outcome is recorded in another. A worker that dies mid-send
leaves the row to be claimed again when the lease ends. Only the oldest pending notification of a subscription is
claimable, so a subscriber receives its notifications in the order they were queued.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, and_, delete, func, insert, select, update
from sqlalchemy.orm import aliased

from registry.store.sql_base import SqlBase
from registry.store.tables import metadata

SUB = cast(Any, metadata.tables["subscription"])
DLV = cast(Any, metadata.tables["subscription_delivery"])

LIVE = ("active", "error")
"""Statuses whose subscriptions are matched and delivered to (R4: ``error`` keeps trying, ``off`` stops)."""


@dataclass(frozen=True, slots=True)
class Claimed:
    """A notification claimed for sending, with its subscription's channel."""

    pk: int
    subscription_id: str
    resource_type: str
    resource_id: str
    version: int
    attempts: int
    client_id: str
    endpoint: str
    payload: str | None
    headers: str
    status: str
    failures: int


class SubscriptionSql(SqlBase):
    def __init__(self, conn: Connection) -> None:
        super().__init__(conn)

    # ------------------------------------------------------------------ subscriptions
    def get_subscription(self, sid: str) -> Any | None:
        return self.conn.execute(select(SUB).where(SUB.c.id == sid)).first()

    def put_subscription(self, values: dict[str, Any]) -> None:
        """Insert or replace the row of one Subscription resource (its subscriber is kept when it exists)."""
        existing = self.get_subscription(values["id"])
        if existing is None:
            self.conn.execute(insert(SUB).values(**values))
            return
        changes = {k: v for k, v in values.items() if k not in ("id", "client_id")}
        self.conn.execute(update(SUB).where(SUB.c.id == values["id"]).values(**changes))

    def drop_subscription(self, sid: str) -> None:
        """A deleted Subscription: nothing more is queued for it, and what is queued is not sent."""
        self.conn.execute(delete(SUB).where(SUB.c.id == sid))
        self.conn.execute(
            update(DLV).where(DLV.c.subscription_id == sid, DLV.c.state == "pending").values(
                state="withheld", last_error="the subscription was deleted")
        )  # fmt: skip

    def live_subscriptions(self, resource_types: Sequence[str], now_us: int) -> list[Any]:
        """Subscriptions matched against writes of these types: active or in error, not past their ``end``."""
        return list(
            self.conn.execute(
                select(SUB)
                .where(SUB.c.criteria_type.in_(resource_types), SUB.c.status.in_(LIVE))
                .where((SUB.c.end_us.is_(None)) | (SUB.c.end_us > now_us))
                .order_by(SUB.c.id)
            )
        )

    def set_subscription_state(self, sid: str, *, status: str, failures: int, error: str | None,
                               now: datetime) -> None:  # fmt: skip
        self.conn.execute(update(SUB).where(SUB.c.id == sid).values(status=status, failures=failures, error=error,
                                                                    updated=now))  # fmt: skip

    def subscriptions(self) -> list[Any]:
        return list(self.conn.execute(select(SUB).order_by(SUB.c.id)))

    # ------------------------------------------------------------------ the queue
    def queue(self, rows: Sequence[dict[str, Any]]) -> int:
        """Queue notifications; one already queued for the same (subscription, resource version) is left as it
        is. Returns how many were new."""
        if not rows:
            return 0
        return len(self.conn.execute(self._insert_ignore(DLV).returning(DLV.c.pk), list(rows)).all())

    def claim(self, *, now_us: int, lease_us: int, limit: int) -> list[Claimed]:
        """Due notifications (the oldest pending one of each live subscription), leased until ``now + lease``; a
        subscription switched ``off`` keeps its pending rows unsent until it is switched on again."""
        older = aliased(DLV)
        blocked = (
            select(older.c.pk)
            .where(older.c.subscription_id == DLV.c.subscription_id, older.c.state == "pending", older.c.pk < DLV.c.pk)
            .exists()
        )
        stmt = (
            select(DLV.c.pk)
            .where(DLV.c.state == "pending", DLV.c.due_us <= now_us, ~blocked)
            .where(DLV.c.subscription_id.in_(select(SUB.c.id).where(SUB.c.status.in_(LIVE))))  # not once off
            .order_by(DLV.c.due_us, DLV.c.pk)
            .limit(limit)
        )
        if self.postgres:
            stmt = stmt.with_for_update(skip_locked=True)
        pks = list(self.conn.execute(stmt).scalars())
        if not pks:
            return []
        self.conn.execute(update(DLV).where(DLV.c.pk.in_(pks)).values(due_us=now_us + lease_us))
        rows = self.conn.execute(
            select(DLV, SUB.c.client_id, SUB.c.endpoint, SUB.c.payload, SUB.c.headers, SUB.c.status, SUB.c.failures)
            .join(SUB, SUB.c.id == DLV.c.subscription_id)
            .where(DLV.c.pk.in_(pks))
            .order_by(DLV.c.pk)
        )
        return [
            Claimed(r.pk, r.subscription_id, r.resource_type, r.resource_id, r.version, r.attempts, r.client_id,
                    r.endpoint, r.payload, r.headers, r.status, r.failures)
            for r in rows
        ]  # fmt: skip

    def delivered(self, pk: int, *, now: datetime) -> None:
        values = {"state": "delivered", "delivered": now, "attempts": DLV.c.attempts + 1, "last_error": None}
        self.conn.execute(update(DLV).where(DLV.c.pk == pk).values(**values))

    def failed(self, pk: int, *, error: str, due_us: int, dead: bool) -> None:
        values = {
            "state": "dead" if dead else "pending",
            "attempts": DLV.c.attempts + 1,
            "due_us": due_us,
            "last_error": error[:1000],
        }
        self.conn.execute(update(DLV).where(DLV.c.pk == pk).values(**values))

    def withhold(self, pk: int, reason: str) -> None:
        self.conn.execute(update(DLV).where(DLV.c.pk == pk).values(state="withheld", last_error=reason[:1000]))

    def requeue(self, *, now_us: int, subscription_id: str | None = None, pk: int | None = None) -> int:
        """Dead letters back to pending, due now, their attempts counted afresh (``hr-registry subscriptions
        retry``); returns how many."""
        conds = [DLV.c.state == "dead"]
        if subscription_id is not None:
            conds.append(DLV.c.subscription_id == subscription_id)
        if pk is not None:
            conds.append(DLV.c.pk == pk)
        return int(self.conn.execute(update(DLV).where(and_(*conds)).values(state="pending", attempts=0,
                                                                            due_us=now_us)).rowcount)  # fmt: skip

    def counts(self) -> list[Any]:
        """(subscription id, state, count) for every subscription with notifications."""
        return list(
            self.conn.execute(
                select(DLV.c.subscription_id, DLV.c.state, func.count().label("n"))
                .group_by(DLV.c.subscription_id, DLV.c.state)
                .order_by(DLV.c.subscription_id, DLV.c.state)
            )
        )

    def deliveries(self, *, state: str | None = None, subscription_id: str | None = None,
                   limit: int = 100) -> list[Any]:  # fmt: skip
        stmt = select(DLV).order_by(DLV.c.pk).limit(limit)
        if state is not None:
            stmt = stmt.where(DLV.c.state == state)
        if subscription_id is not None:
            stmt = stmt.where(DLV.c.subscription_id == subscription_id)
        return list(self.conn.execute(stmt))
