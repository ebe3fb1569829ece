"""Who may read what (docs/design.md §6): the rules every read surface applies — FHIR read/vread/history/search and
``_include``, the pages, ``$ihe-pix``, the order check's look-ups.

- **admins** read everything, the audit trail included;
- **hospital systems and clinicians** read directory resources (Organization, Practitioner, Endpoint, ConceptMap)
  and the records of patients in their **care context**: a person with a local identity — a live Patient managed by
  their own Organization. Outside it only **break-glass** (an explicit reason, audited) opens a record, one patient at
  a time;
- **patients** read only their own records (the same master patient key) and their own audit trail;
- a **Subscription** (:data:`OWNED`) is read by the hospital that created it and by admins, nobody else.
- within the care context, what another issuer holds is further limited by the patient's **sharing consent**
  (:mod:`.consent`: paused sharing, sensitive items), again except by break-glass; a patient's Consent itself is
  read by the patient and admins only.

Refusals never name other hospitals' resources, identifiers or counts.
"""

from __future__ import annotations

from collections.abc import Sequence

from registry.auth import Principal, PrincipalKind
from registry.errors import BadRequestError, ForbiddenError
from registry.fhir.search_params import PATIENT_COMPARTMENT
from registry.services.policy.consent import CONSENT_TYPES, check_consent_read
from registry.services.policy.purpose import BreakGlass
from registry.store.query import CareContextClause, Clause, OrgClause, PatientKeyClause
from registry.store.records import Stored

DIRECTORY = frozenset({"Organization", "Practitioner", "Endpoint", "ConceptMap"})
OWNED = frozenset({"Subscription"})
"""Types only their owner (the creating hospital) and admins read: a Subscription names its subscriber's endpoint."""
PATIENT_SCOPED = PATIENT_COMPARTMENT | {"Patient"} | CONSENT_TYPES
OUTSIDE_CARE = (
    "the patient has no local identity at your hospital (outside your care context); present the patient's record "
    "at your hospital, or break the glass with a reason"
)
SINGLE_PATIENT_PARAMS = frozenset({"_id", "patient", "subject", "patient.identifier", "subject:Patient.identifier",
                                   "subject.identifier"})  # fmt: skip
"""A break-glass search must name one patient (or one record) with one of these, given once with one value."""


def require_scope(principal: Principal, resource_type: str, permission: str) -> None:
    if not principal.may(resource_type, permission):
        raise ForbiddenError(
            f"{principal.kind.value} {principal.client_id} has no scope to {permission} {resource_type}"
        )


def _in_org(principal: Principal) -> str:
    if not principal.org_id:
        raise ForbiddenError(f"{principal.kind.value} {principal.client_id} belongs to no organization")
    return principal.org_id


def read_filter(
    principal: Principal,
    resource_type: str,
    *,
    break_glass: BreakGlass | None = None,
    params: Sequence[tuple[str, str]] = (),
) -> Clause | None:
    """The clause that limits a search to what the principal may see (None: no limit). Break-glass lifts the care
    context only for a search naming one patient or record (``_id``, ``patient``, ``subject``,
    ``patient.identifier``; for Patient also ``identifier``)."""
    if principal.kind is PrincipalKind.ADMIN or resource_type in DIRECTORY:
        return None
    if resource_type in OWNED:
        if principal.kind is not PrincipalKind.HOSPITAL:
            raise ForbiddenError(f"{resource_type} is readable by its owner only")
        return OrgClause(_in_org(principal))
    if resource_type not in PATIENT_SCOPED:
        raise ForbiddenError(f"{resource_type} is not readable by {principal.kind.value} principals")
    if resource_type in CONSENT_TYPES:
        check_consent_read(principal)
    if principal.kind is PrincipalKind.PATIENT:
        if not principal.patient_key:
            raise ForbiddenError("this patient principal is not linked to a patient")
        return PatientKeyClause((principal.patient_key,))
    org = _in_org(principal)
    if break_glass is not None:
        allowed = SINGLE_PATIENT_PARAMS | ({"identifier"} if resource_type == "Patient" else set())
        named = [(k, v) for k, v in params if k in allowed]
        if len(named) != 1 or "," in named[0][1]:
            raise BadRequestError(
                "a break-glass search opens one patient's records: name exactly one patient or record "
                "(_id, patient, subject or patient.identifier, one value)"
            )
        return None
    return CareContextClause(org)


def needs_care_context(principal: Principal, resource_type: str) -> bool:
    """Whether reads of this type by this principal are limited to its care context."""
    return principal.kind in (PrincipalKind.HOSPITAL, PrincipalKind.CLINICIAN) and resource_type in PATIENT_SCOPED


def needs_care_context_check(principal: Principal, stored: Stored) -> bool:
    return (
        principal.kind in (PrincipalKind.HOSPITAL, PrincipalKind.CLINICIAN)
        and stored.type in PATIENT_SCOPED
        and stored.org_id != principal.org_id
        and stored.patient_key is not None
    )


def check_read(
    principal: Principal, stored: Stored, has_care_context: bool | None, *, break_glass: BreakGlass | None = None
) -> None:
    """Whether ``principal`` may read this stored resource; ``has_care_context`` is asked only when it matters
    (:func:`needs_care_context_check`)."""
    if principal.kind is PrincipalKind.ADMIN or stored.type in DIRECTORY:
        return
    if stored.type in OWNED:
        if principal.kind is not PrincipalKind.HOSPITAL or stored.org_id != _in_org(principal):
            raise ForbiddenError(f"{stored.type}/{stored.id} is readable by its owner only")
        return
    if stored.type not in PATIENT_SCOPED:
        raise ForbiddenError(f"{stored.type} is not readable by {principal.kind.value} principals")
    if stored.type in CONSENT_TYPES:
        check_consent_read(principal)
    if principal.kind is PrincipalKind.PATIENT:
        if stored.patient_key is None or stored.patient_key != principal.patient_key:
            raise ForbiddenError("a patient may read only their own records")
        return
    _in_org(principal)
    if stored.org_id is not None and stored.org_id == principal.org_id:
        return
    if not has_care_context and break_glass is None:
        raise ForbiddenError(OUTSIDE_CARE)


def check_break_glass_result(patient_keys: Sequence[str | None]) -> None:
    """A break-glass search that turned out to span several patients is refused whole (it opens one at a time)."""
    if len({k for k in patient_keys if k}) > 1:
        raise ForbiddenError("a break-glass search opens one patient's records at a time; this one matched several")
