"""The patient's sharing consent (docs/design.md §6 consent; PIPL Art. 28–29: medical health data is sensitive
personal information and needs the person's separate consent).

Who sees a result **beyond its issuer** — another hospital's system or clinicians, already inside their care context:

- **paused sharing** — the patient paused sharing with that hospital, or with every hospital other than the issuer:
  no card, no read, no search match. The order check says so (a notice "患者已限制共享" / "The patient has restricted
  sharing" when earlier results exist but are withheld), instead of silence;
- **sensitive items** (``Item.sensitive`` in the catalog: HIV, syphilis, hepatitis serology and their panels; a report
  is sensitive when any of its results is) are shared only with the patient's **separate consent**; without it
  (the default) they stay with their issuer — and nothing announces them: a notice would itself tell that such a test
  was done elsewhere;
- **break-glass** (an explicit reason, audited with purpose of use BTG, listed to the patient and counted) lifts both
  for the one patient it opens: it is an emergency, in which withholding an HIV or hepatitis result can harm;
- the **issuer**, the **patient** and **admins** always see them.

The patient alone records their consent (through the portal, as their own principal); no hospital, and no admin,
writes a patient's Consent, and only the patient (and admins) read it: it names the hospitals the patient paused.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from registry.auth import Principal, PrincipalKind
from registry.errors import ForbiddenError
from registry.fhir.search_params import PATIENT_COMPARTMENT
from registry.services.policy.purpose import BreakGlass
from registry.store.consent_tables import ALL_HOSPITALS
from registry.store.query import SharingClause

RESTRICTED_ZH = "患者已限制共享"
RESTRICTED_EN = "The patient has restricted sharing"
WITHHELD = (
    "the patient has restricted sharing of this record with your hospital (their consent); in an emergency break "
    "the glass with a reason"
)
CONSENT_TYPES = frozenset({"Consent"})
"""The patient's own statements: read by the patient and admins, written by the patient through the portal only."""
CONSENT_WRITER = "a patient's sharing consent is recorded by the patient, through the portal; no hospital writes it"
CONSENT_READER = "a patient's sharing consent is read by the patient (and admins) only"


@dataclass(frozen=True, slots=True)
class Sharing:
    """A patient's current setting (the projection of their Consent)."""

    paused_all: bool = False
    paused_orgs: frozenset[str] = frozenset()
    sensitive_shared: bool = False

    @classmethod
    def of(cls, paused: frozenset[str], sensitive_shared: bool) -> Sharing:
        return cls(ALL_HOSPITALS in paused, paused - {ALL_HOSPITALS}, sensitive_shared)

    def paused_for(self, org_id: str | None) -> bool:
        return self.paused_all or (org_id is not None and org_id in self.paused_orgs)

    @property
    def paused(self) -> frozenset[str]:
        """The projection's rows: hospitals paused, ``*`` for all."""
        return self.paused_orgs | ({ALL_HOSPITALS} if self.paused_all else frozenset())


NOT_SHARED = Sharing()
"""The default: nothing paused, sensitive items not shared (no separate consent given)."""


class Withheld(StrEnum):
    NO = ""
    PAUSED = "paused"  # the patient paused sharing with this hospital: announced
    SENSITIVE = "sensitive"  # a sensitive result without the separate consent: not announced


def bound_by_consent(principal: Principal) -> bool:
    """Whether the principal reads as a hospital other hospitals' results are shared with (or withheld from)."""
    return principal.kind in (PrincipalKind.HOSPITAL, PrincipalKind.CLINICIAN)


def withheld(
    principal: Principal,
    issuer_org: str | None,
    sharing: Sharing,
    *,
    sensitive: bool,
    break_glass: BreakGlass | None,
) -> Withheld:
    """Whether one result of ``issuer_org`` is withheld from ``principal`` by the patient's consent, and why."""
    if not bound_by_consent(principal) or (issuer_org is not None and issuer_org == principal.org_id):
        return Withheld.NO
    if break_glass is not None:
        return Withheld.NO
    if sensitive and not sharing.sensitive_shared:
        return Withheld.SENSITIVE
    if sharing.paused_for(principal.org_id):
        return Withheld.PAUSED
    return Withheld.NO


def needs_sharing_check(principal: Principal, resource_type: str, issuer_org: str | None) -> bool:
    """A read of one stored record that the consent may withhold (the caller then looks up the patient's setting)."""
    return (
        bound_by_consent(principal)
        and resource_type in PATIENT_COMPARTMENT
        and (issuer_org is None or issuer_org != principal.org_id)
    )


def check_shared(found: Withheld) -> None:
    """A read refused by consent: one text whatever the reason (a read by id must not tell that it is sensitive)."""
    if found is not Withheld.NO:
        raise ForbiddenError(WITHHELD)


def sharing_filter(
    principal: Principal, resource_type: str, sensitive_items: frozenset[str], *, break_glass: BreakGlass | None
) -> SharingClause | None:
    """The clause that keeps a search to what the patients share with the principal's hospital (None: no limit)."""
    if break_glass is not None or not bound_by_consent(principal) or resource_type not in PATIENT_COMPARTMENT:
        return None
    return SharingClause(principal.org_id or "", tuple(sorted(sensitive_items)))


def check_consent_read(principal: Principal) -> None:
    if bound_by_consent(principal):
        raise ForbiddenError(CONSENT_READER)


def check_consent_writer(principal: Principal) -> str:
    """The patient key a consent change is about: the signed-in patient's own; anyone else is refused."""
    if principal.kind is not PrincipalKind.PATIENT or not principal.patient_key:
        raise ForbiddenError(CONSENT_WRITER)
    return principal.patient_key
