"""CDS Hooks feedback (CDS Hooks 2.0 §Feedback: ``POST {baseUrl}/cds-services/{id}/feedback``) on the cards a service
issued.

- **Only at the service that issued the card**: a card from ``hr-order-sign`` is answered at ``hr-order-sign``'s
  feedback, a reminder from ``hr-patient-view`` at its own; a card issued elsewhere (another service, or by
  ``$recognition-check``, whose decisions go to ``$recognition-decision``) is unknown there: 404, like a card this
  registry never issued. Only the hospital the card was issued to may answer it (403, as for decisions).
- **An order card** (one recognizable result): ``accepted`` records *recognized*; ``overridden`` records *declined*
  with the ``overrideReason.reason`` the clinician picked. The specification makes ``overrideReason`` optional —
  a clinician may dismiss a card without choosing — and so does this service where the card offered no reasons; but
  an order card offers the regional non-recognition reasons (不互认原因, ``overrideReasons``), and the registry's own
  rule (docs/design.md §5, after the 2022 national measures) is that declining a recognizable result names one of them:
  such an override without a reason is refused with 422 (the request is valid CDS Hooks; the rule is ours), and
  nothing of the request is recorded.
- **A patient-view reminder** (several results, no suggestions, no ``overrideReasons``): ``accepted`` and
  ``overridden``, with or without a reason or comment, are kept as they came (``reminder_feedback``), one per card;
  they are no recognition decision and count in no statistics.

All items are checked before any is recorded; a repeated post records nothing new, a different answer for an
answered card is 409. Every feedback is audited.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from registry.auth import Principal
from registry.errors import ConflictError, NotFoundError, RegistryError, UnprocessableError
from registry.services import policy
from registry.services.audit import AuditContext, AuditTrail, audit_row
from registry.services.decisions import DECLINED, RECOGNIZED, DecisionInput, Decisions
from registry.store.recognition import RecognitionStore
from registry.store.repository import UnitOfWork

ACCEPTED = "accepted"
OVERRIDDEN = "overridden"


@dataclass(frozen=True, slots=True)
class FeedbackInput:
    """One CDS Hooks Feedback: the card's uuid, the outcome and the clinician's override reason, if any."""

    card: str
    outcome: str  # accepted | overridden
    reason_system: str | None = None
    reason_code: str | None = None
    comment: str | None = None
    outcome_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class Answered:
    card: str
    outcome: str
    decision: str | None  # recognized | declined for an order card; None for a reminder
    new: bool


@dataclass(frozen=True, slots=True)
class _Plan:
    given: FeedbackInput
    decision: DecisionInput | None  # an order card's decision; None: a reminder
    reminder: Any | None = None


class Feedback:
    def __init__(self, uow: UnitOfWork, decisions: Decisions, clock: Callable[[], datetime]) -> None:
        self.uow = uow
        self.decisions = decisions
        self.clock = clock
        self.audit = AuditTrail(uow)

    def record(
        self, principal: Principal, audit: AuditContext, items: Sequence[FeedbackInput], *, hook: str
    ) -> list[Answered]:
        """Record every item fed back to the service of ``hook``, or none of them (see the module docstring)."""
        plans = [self._plan(principal, audit, item, hook) for item in items]
        return [self._apply(principal, audit, plan) for plan in plans]

    def _plan(self, principal: Principal, audit: AuditContext, item: FeedbackInput, hook: str) -> _Plan:
        try:
            with self.uow.begin(audit_only=True) as repo:
                store = RecognitionStore(repo.conn)
                card = store.card(item.card)
                reminder = store.reminder(item.card) if card is None else None
            issued = card if card is not None else reminder
            if issued is None or issued.source != hook:
                raise NotFoundError(f"card {item.card} was not issued by this service")
            policy.check_decision(principal, issued.ordering_org)
            if reminder is not None:
                return _Plan(item, None, reminder)
            if item.outcome == ACCEPTED:
                return _Plan(item, DecisionInput(item.card, RECOGNIZED, outcome_time=item.outcome_time))
            if not item.reason_code:
                raise UnprocessableError(
                    f"card {item.card} offered overrideReasons: declining a recognizable result needs one of them "
                    "(overrideReason.reason, a 不互认原因) — the registry's rule, the card's reasons say which"
                )
            decision = DecisionInput(item.card, DECLINED, item.reason_system, item.reason_code, item.comment,
                                     item.outcome_time)  # fmt: skip
            return _Plan(item, decision)
        except RegistryError as exc:
            if not exc.audited:
                self.audit.record([audit_row(audit, now=self.clock(), status=exc.status, detail=exc.diagnostics)])
                exc.audited = True
            raise

    def _apply(self, principal: Principal, audit: AuditContext, plan: _Plan) -> Answered:
        item = plan.given
        if plan.decision is not None:
            try:
                done = self.decisions.record(principal, audit, plan.decision, source="feedback")
            except RegistryError as exc:
                exc.diagnostics = f"card {item.card}: {exc.diagnostics}"
                raise
            return Answered(item.card, item.outcome, done.outcome, done.new)
        return self._reminder(principal, audit, item, plan.reminder)

    def _reminder(self, principal: Principal, audit: AuditContext, item: FeedbackInput, card: Any) -> Answered:
        now = self.clock()
        try:
            with self.uow.begin() as repo:
                store = RecognitionStore(repo.conn)
                existing = store.reminder_feedback_for(item.card, card.patient_key)
                if existing is not None and existing.outcome != item.outcome:
                    raise ConflictError(f"card {item.card} already has the feedback {existing.outcome}")
                new = existing is None and store.add_reminder_feedback({
                    "card_uuid": item.card, "recorded": now, "outcome_time": item.outcome_time,
                    "outcome": item.outcome, "reason_system": (item.reason_system or "")[:255] or None,
                    "reason_code": (item.reason_code or "")[:64] or None,
                    "comment": (item.comment or "").strip()[:1000] or None, "client_id": principal.client_id,
                    "patient_key": card.patient_key,
                })  # fmt: skip
                note = "" if new else " (a repeat)"
                detail = f"feedback {item.outcome} on reminder {item.card}{note}"
                repo.add_audit([audit_row(audit, now=now, status=200, patient_key=card.patient_key, detail=detail)])
            return Answered(item.card, item.outcome, None, new)
        except RegistryError as exc:
            if not exc.audited:
                self.audit.record([audit_row(audit, now=now, status=exc.status, detail=exc.diagnostics)])
            raise
