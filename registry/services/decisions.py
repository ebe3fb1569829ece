"""The clinician's decision on a card (docs/design.md §5): recognized (the order is withdrawn), or declined with a coded
reason (不互认原因 01–08, 98, 99; 99 needs a comment naming the disease monitored). Decisions are append-only — the
database refuses UPDATE and DELETE — and one per card: a repeated post of the same decision changes nothing, a
different one for a decided card is a conflict. Every decision is audited.

A decision records the card's status (``card_status``: a same-hospital duplicate is counted on its own, never as a
recognition) and whether the card's result was still recognizable when the decision arrived: withdrawn
(``entered-in-error``, so gone from the result index), cancelled, deleted, or otherwise no longer final since the
card was issued sets ``result_withdrawn`` — the decision is recorded all the same, and the statistics keep it out of
the money saved (``registry.services.stats``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from catalog import FINAL_STATUSES, Catalog, reason
from catalog.codes import NONRECOGNITION_REASONS
from registry.auth import Principal
from registry.errors import BadRequestError, ConflictError, NotFoundError, RegistryError
from registry.fhir.extract import to_us
from registry.services import policy
from registry.services.audit import AuditContext, AuditTrail, audit_row
from registry.store.recognition import RecognitionStore
from registry.store.repository import UnitOfWork

RECOGNIZED = "recognized"
DECLINED = "declined"


@dataclass(frozen=True, slots=True)
class DecisionInput:
    card_uuid: str
    outcome: str  # recognized | declined
    reason_system: str | None = None
    reason_code: str | None = None
    comment: str | None = None
    outcome_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class Recorded:
    card_uuid: str
    outcome: str
    new: bool  # False when it repeated a decision already on file
    result_withdrawn: bool = False  # the card's result was no longer recognizable when the decision arrived


class Decisions:
    def __init__(self, uow: UnitOfWork, catalog: Catalog, clock: Callable[[], datetime]) -> None:
        self.uow = uow
        self.catalog = catalog
        self.clock = clock
        self.audit = AuditTrail(uow)

    def _validate(self, d: DecisionInput) -> tuple[str | None, bool]:
        if d.outcome == RECOGNIZED:
            if d.reason_code:
                raise BadRequestError("a recognition takes no reason")
            return None, False
        if d.outcome != DECLINED:
            raise BadRequestError(f"outcome must be {RECOGNIZED} or {DECLINED}, got {d.outcome!r}")
        if not d.reason_code:
            raise BadRequestError("declining a recognizable result needs a reason code (01–08, 98, 99)")
        if d.reason_system not in (None, NONRECOGNITION_REASONS):
            raise BadRequestError(f"the reason must be coded in {NONRECOGNITION_REASONS}")
        found = reason(d.reason_code)
        if found is None:
            raise BadRequestError(f"{d.reason_code!r} is not a non-recognition reason (01–08, 98, 99)")
        if found.requires_comment and not (d.comment and d.comment.strip()):
            raise BadRequestError(f"reason {found.code} needs a comment ({found.display_zh})")
        return found.code, found.counts_as_nonrecognition

    @staticmethod
    def _withdrawn(store: RecognitionStore, card: Any) -> bool:
        """The card's result is no longer in the result index as a final result (withdrawn, cancelled, deleted)."""
        if not card.result_ref:
            return False
        rows = store.result_rows(card.patient_key, card.result_ref)
        return not any(r.status in FINAL_STATUSES for r in rows)

    def record(self, principal: Principal, audit: AuditContext, d: DecisionInput, *, source: str) -> Recorded:
        now = self.clock()
        try:
            reason_code, counts = self._validate(d)
            with self.uow.begin() as repo:
                store = RecognitionStore(repo.conn)
                card = store.card(d.card_uuid)
                if card is None:
                    raise NotFoundError(f"card {d.card_uuid} was not issued by this registry")
                policy.check_decision(principal, card.ordering_org)
                existing = store.decision_for(d.card_uuid, card.patient_key)
                if existing is not None:
                    if existing.outcome == d.outcome and existing.reason_code == reason_code:
                        repo.add_audit(
                            [
                                audit_row(
                                    audit,
                                    now=now,
                                    status=200,
                                    patient_key=card.patient_key,
                                    detail=f"decision {d.outcome} on card {d.card_uuid} (a repeat)",
                                )
                            ]
                        )
                        return Recorded(d.card_uuid, d.outcome, new=False, result_withdrawn=existing.result_withdrawn)
                    raise ConflictError(f"card {d.card_uuid} already has the decision {existing.outcome}")
                item = self.catalog.item(card.item_id)
                withdrawn = self._withdrawn(store, card)
                row = {
                    "card_uuid": d.card_uuid, "recorded": now, "recorded_us": to_us(now),
                    "outcome_time": d.outcome_time, "outcome": d.outcome, "reason_code": reason_code,
                    "counts_as_refusal": counts, "comment": (d.comment or "").strip()[:1000] or None, "source": source,
                    "client_id": principal.client_id, "ordering_org": card.ordering_org, "issuer_org": card.issuer_org,
                    "patient_key": card.patient_key, "item_id": card.item_id, "kind": item.kind.value,
                    "fee_fen": int(item.fee.amount * 100), "result_ref": card.result_ref,
                    "card_status": card.status, "result_withdrawn": withdrawn,
                }  # fmt: skip
                new = store.add_decision(row)
                note = " (the result was withdrawn since the card was issued)" if withdrawn else ""
                repo.add_audit([audit_row(audit, now=now, status=200, patient_key=card.patient_key,
                                          detail=f"decision {d.outcome} on card {d.card_uuid}{note}")])  # fmt: skip
            return Recorded(d.card_uuid, d.outcome, new=new, result_withdrawn=withdrawn)
        except RegistryError as exc:
            self.audit.record([audit_row(audit, now=now, status=exc.status, detail=exc.diagnostics)])
            raise
