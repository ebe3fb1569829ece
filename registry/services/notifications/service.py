"""Patient notifications as the portal and the CLI use them (docs/notifications.md): a patient's own settings and
the messages sent to them; the queue's state and the retry of dead letters for an admin."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from registry.auth import Principal
from registry.errors import BadRequestError
from registry.fhir.extract import to_us
from registry.services import policy
from registry.services.audit import AuditContext, audit_row
from registry.store.notification_sql import DEAD, Message, NotificationSql, Preference
from registry.store.repository import UnitOfWork

LANGUAGES = ("zh", "en")


@dataclass(frozen=True, slots=True)
class QueueState:
    counts: dict[str, int]
    oldest_queued: datetime | None
    dead: list[Message]


class Notifications:
    def __init__(self, uow: UnitOfWork, clock: Callable[[], datetime]) -> None:
        self.uow, self.clock = uow, clock

    # ------------------------------------------------------------------ the patient's own
    def settings(self, principal: Principal, audit: AuditContext | None = None) -> Preference:
        """The patient's settings (every channel off, Chinese, until they choose)."""
        key = policy.notification_owner(principal)
        with self.uow.begin(audit_only=True) as repo:
            if audit is not None:
                repo.add_audit([audit_row(audit, now=self.clock(), status=200, patient_key=key)])
            found = NotificationSql(repo.conn).preferences([key]).get(key)
        return found or Preference(key, principal.client_id, False, False, "zh", self.clock())

    def choose(self, principal: Principal, audit: AuditContext, *, sms: bool, push: bool, language: str) -> Preference:
        """Save the patient's choice; the gateway will address them by this portal account."""
        key = policy.notification_owner(principal)
        if language not in LANGUAGES:
            raise BadRequestError(f"language must be one of {', '.join(LANGUAGES)}")
        now = self.clock()
        pref = Preference(key, principal.client_id, sms, push, language, now)
        with self.uow.begin() as repo:
            NotificationSql(repo.conn).save_preference(pref)
            repo.add_audit([audit_row(audit, now=now, status=200, patient_key=key)])
        return pref

    def sent(self, principal: Principal, audit: AuditContext | None = None, limit: int = 100) -> list[Message]:
        """The messages queued for the patient, newest first (what was sent, and what is still on its way)."""
        key = policy.notification_owner(principal)
        with self.uow.begin(audit_only=True) as repo:
            if audit is not None:
                repo.add_audit([audit_row(audit, now=self.clock(), status=200, patient_key=key)])
            return NotificationSql(repo.conn).messages(patient_key=key, limit=limit)

    # ------------------------------------------------------------------ operators
    def state(self, principal: Principal, limit: int = 50) -> QueueState:
        policy.require_admin(principal, "see the notification queue")
        with self.uow.begin() as repo:
            sql = NotificationSql(repo.conn)
            oldest = sql.oldest_queued_us()
            return QueueState(
                sql.counts(),
                datetime.fromtimestamp(oldest / 1e6, self.clock().tzinfo) if oldest is not None else None,
                sql.messages(status=DEAD, limit=limit),
            )

    def retry(self, principal: Principal, pks: Sequence[int] | None = None) -> int:
        """Put dead letters (all, or these) back in the queue, due now, attempts reset."""
        policy.require_admin(principal, "retry notifications")
        with self.uow.begin() as repo:
            return NotificationSql(repo.conn).retry(now_us=to_us(self.clock()), pks=pks)
