"""What an operator sees of the notification queue and how dead letters go back into it (``hr-registry
subscriptions status|retry``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from registry.fhir.extract import to_us
from registry.store.repository import UnitOfWork
from registry.store.subscription_sql import SubscriptionSql


@dataclass(frozen=True, slots=True)
class SubscriptionState:
    id: str
    status: str
    client_id: str
    criteria: str
    endpoint: str
    failures: int
    error: str | None
    counts: dict[str, int] = field(default_factory=dict)  # pending | delivered | dead | withheld → how many


class NotificationQueue:
    def __init__(self, uow: UnitOfWork, clock: Callable[[], datetime]) -> None:
        self.uow = uow
        self.clock = clock

    def status(self) -> list[SubscriptionState]:
        with self.uow.begin() as repo:
            sql = SubscriptionSql(repo.conn)
            counts: dict[str, dict[str, int]] = {}
            for row in sql.counts():
                counts.setdefault(row.subscription_id, {})[row.state] = int(row.n)
            return [
                SubscriptionState(s.id, s.status, s.client_id, s.criteria, s.endpoint, s.failures, s.error,
                                  counts.get(s.id, {}))
                for s in sql.subscriptions()
            ]  # fmt: skip

    def dead_letters(self, subscription_id: str | None = None, limit: int = 100) -> list[Any]:
        with self.uow.begin() as repo:
            return SubscriptionSql(repo.conn).deliveries(state="dead", subscription_id=subscription_id, limit=limit)

    def retry(self, subscription_id: str | None = None, pk: int | None = None) -> int:
        """Dead letters pending again, due now; returns how many."""
        with self.uow.begin() as repo:
            return SubscriptionSql(repo.conn).requeue(now_us=to_us(self.clock()), subscription_id=subscription_id,
                                                      pk=pk)  # fmt: skip
