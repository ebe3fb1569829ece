"""Care context for the order check and the reminders (docs/design.md §6; CDS Hooks ``order-select``, ``order-sign``,
``patient-view`` and ``$recognition-check``).

The registry answers a hospital (its system or its clinicians) only about a person who has a **local identity** there:
a live Patient managed by the hospital's Organization, with an identifier in the hospital's own namespace (its MRN)
and linked to the person's national identifier. The local identity comes from the hospital's HIS (it pushes the
Patient at registration) or from the check itself: a request presenting the hospital's own MRN **together with** the
full national identifier (the ID card read at the desk) registers that Patient, audited as such.

Knowing a registry Patient id, another hospital's MRN or a national identifier is never enough on its own: without a
local identity the call is refused — the same refusal whether or not the person is known anywhere, so it tells
nothing. Only an explicit break-glass (with a reason, audited with purpose of use BTG) opens the check for a patient
outside the care context. Admins are answered for anyone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from registry.auth import Principal, PrincipalKind
from registry.errors import BadRequestError, ConflictError, ForbiddenError, PreconditionFailedError
from registry.services.identity import MASK, IdentityPolicy, NationalIdError
from registry.services.policy.purpose import BreakGlass
from registry.services.policy.reading import OUTSIDE_CARE, require_scope
from registry.store.query import Query, TokenClause, TokenValue
from registry.store.repository import Repository


@dataclass(frozen=True, slots=True)
class Registration:
    """The local identity the check creates: a Patient of ``org_id`` with its MRN and the national identifier."""

    org_id: str
    mrn_system: str
    mrn_value: str
    national_system: str
    national_value: str


@dataclass(frozen=True, slots=True)
class CheckSubject:
    """Whom the check is about and on what grounds: ``local`` (a local identity), ``register`` (one the check creates),
    ``break-glass`` or ``admin``."""

    patient_key: str
    grounds: str
    registration: Registration | None = None
    break_glass: BreakGlass | None = None


def _patients(repo: Repository, system: str, value: str) -> list[tuple[str | None, str]]:
    clause = TokenClause("identifier", (TokenValue(system, value),))
    rows, _ = repo.search(Query("Patient", (clause,), count=10))
    return [(r.org_id, r.patient_key) for r in rows if r.patient_key]


def presented_national_key(identity: IdentityPolicy, identifiers: Sequence[tuple[str, str]]) -> str | None:
    """The master key of the one national identifier presented in full, if there is exactly one person's; None
    otherwise (a bad or conflicting one is check_subject's to refuse)."""
    keys: set[str] = set()
    for system, value in identifiers:
        if identity.is_national(system) and MASK not in value:
            try:
                keys.add(identity.master_key(system, value))
            except NationalIdError:
                return None
    return keys.pop() if len(keys) == 1 else None


def check_subject(
    principal: Principal,
    repo: Repository,
    identity: IdentityPolicy,
    owners: Mapping[str, str],
    identifiers: Sequence[tuple[str, str]],
    patient_id: str | None,
    break_glass: BreakGlass | None,
    in_care: Mapping[tuple[str, str], bool] | None = None,
) -> CheckSubject:
    """Decide whom an order check (or reminder) may be answered about; refuse otherwise (module docstring).
    ``in_care``: care-context facts ``(org, patient key) → bool`` already read in the transaction (the order check
    reads them ahead with its other first reads); any other is looked up."""

    def cared(org_id: str, key: str) -> bool:
        known = in_care.get((org_id, key)) if in_care else None
        return repo.has_care_context(org_id, key) if known is None else known

    if principal.kind not in (PrincipalKind.ADMIN, PrincipalKind.HOSPITAL, PrincipalKind.CLINICIAN):
        raise ForbiddenError("the order check is for hospitals and their clinicians")
    require_scope(principal, "DiagnosticReport", "read")
    national: list[tuple[str, str, str]] = []
    others: list[tuple[str, str]] = []
    for system, value in identifiers:
        if identity.is_national(system):
            if MASK in value:
                continue  # a masked form read back from this registry is a display value, not an identifier
            try:
                national.append((system, value, identity.master_key(system, value)))
            except NationalIdError as exc:
                raise BadRequestError(f"patient identifier: {exc}") from None
        else:
            others.append((system, value))
    if len({k for _s, _v, k in national}) > 1:
        raise BadRequestError("the national identifiers presented belong to two different people")
    national_key = national[0][2] if national else None

    def any_key() -> str | None:
        """The person named by any identifier or id, wherever registered (admins and break-glass only)."""
        if national_key:
            return national_key
        for system, value in others:
            keys = {k for _o, k in _patients(repo, system, value)}
            if len(keys) == 1:
                return keys.pop()
        if patient_id:
            found = repo.get("Patient", patient_id)
            if found is not None and not found.deleted and found.patient_key:
                return found.patient_key
        return None

    if principal.kind is PrincipalKind.ADMIN:
        key = any_key()
        if key is None:
            raise PreconditionFailedError("the patient cannot be identified from what was sent")
        return CheckSubject(key, "admin", break_glass=break_glass)

    org = principal.org_id
    if not org:
        raise ForbiddenError(f"{principal.kind.value} {principal.client_id} belongs to no organization")
    own = [(s, v) for s, v in others if owners.get(s) == org]
    for system, value in own:
        local = [k for o, k in _patients(repo, system, value) if o == org]
        if local:
            key = local[0]
            if national_key is not None and national_key != key:
                raise ConflictError(
                    f"the national identifier does not belong to the patient registered under {system}|{value} at "
                    "your hospital"
                )
            return CheckSubject(key, "local", break_glass=break_glass)
    if own and national and national_key is not None:
        system, value = own[0]
        nat_system, nat_value, _key = national[0]
        registration = Registration(org, system, value, nat_system, nat_value)
        return CheckSubject(national_key, "register", registration, break_glass)
    if own:
        system, value = own[0]
        raise PreconditionFailedError(
            f"no patient {system}|{value} is registered at your hospital: send the national identifier with the MRN "
            "(the ID card read at registration) to register them, or push the Patient from your HIS first"
        )
    if national_key is not None and cared(org, national_key):
        return CheckSubject(national_key, "local", break_glass=break_glass)
    if patient_id:
        found = repo.get("Patient", patient_id)
        key = found.patient_key if found is not None and not found.deleted and found.org_id == org else None
        if key:
            return CheckSubject(key, "local", break_glass=break_glass)
    if break_glass is not None:
        key = any_key()
        if key is None:
            raise PreconditionFailedError("the patient cannot be identified from what was sent")
        grounds = "local" if cared(org, key) else "break-glass"
        return CheckSubject(key, grounds, break_glass=break_glass)
    raise ForbiddenError(f"the order check answers only for your hospital's patients: {OUTSIDE_CARE}")
