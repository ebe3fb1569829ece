"""The rules of the registry's own surfaces beyond FHIR resources: statistics, administration, the audit trail,
decisions on cards and the page areas (docs/design.md §6). Services ask here instead of deciding themselves."""

from __future__ import annotations

from registry.auth import Principal, PrincipalKind
from registry.errors import ForbiddenError
from registry.services.policy.routes import AREAS


def require_admin(principal: Principal, what: str) -> None:
    if principal.kind is not PrincipalKind.ADMIN:
        raise ForbiddenError(f"only admins {what}")


def own_organization(principal: Principal, asked: str | None, what: str) -> str | None:
    """The organization a manager's view is limited to: None (everything) for an admin, the hospital's own for a
    hospital system (asking for another is refused); others are refused."""
    if principal.kind is PrincipalKind.ADMIN:
        return asked
    if principal.kind is PrincipalKind.HOSPITAL and principal.org_id:
        if asked not in (None, "", principal.org_id):
            raise ForbiddenError(f"a hospital sees {what} of its own organization only")
        return principal.org_id
    raise ForbiddenError(f"{what} are for admins and hospital systems")


def audit_reader_key(principal: Principal) -> str | None:
    """None for an admin (the whole trail); the patient's own key for a patient; refusal for anyone else."""
    if principal.kind is PrincipalKind.ADMIN:
        return None
    if principal.kind is PrincipalKind.PATIENT and principal.patient_key:
        return principal.patient_key
    raise ForbiddenError("only admins, and patients for their own records, may read the audit trail")


def check_decision(principal: Principal, card_ordering_org: str | None) -> None:
    """A decision on a card is recorded by the hospital (system or clinician) the advice was given to."""
    if principal.kind is PrincipalKind.ADMIN:
        return
    if principal.kind not in (PrincipalKind.HOSPITAL, PrincipalKind.CLINICIAN) or card_ordering_org is None:
        raise ForbiddenError("a decision can only be recorded by the hospital the advice was given to")
    if card_ordering_org != principal.org_id:
        raise ForbiddenError("a decision can only be recorded by the hospital the advice was given to")


def may_use_area(area: str, principal: Principal) -> bool:
    return principal.kind in AREAS.get(area, frozenset())


def notification_owner(principal: Principal) -> str:
    """Notification settings and the messages sent are the patient's own: their master key, refusal for others."""
    if principal.kind is PrincipalKind.PATIENT and principal.patient_key:
        return principal.patient_key
    raise ForbiddenError("notification settings are the patient's own")
