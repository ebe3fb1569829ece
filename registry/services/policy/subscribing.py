"""Who may subscribe, to what, and what a subscription delivers (FHIR R4 subscription.html; docs/design.md §6).

- **Who.** Hospital systems (as their Organization, which then owns the Subscription) and admin-registered clients
  (an app backend registered with ``hr-registry clients add-admin``). Clinicians and patients may not: 403.
- **About whom.** A criteria that names patients (``patient=``, ``subject=``, ``patient.identifier=``…) names only
  patients of the hospital's care context; anyone else is refused (403) the same way whether or not the person
  exists.
- **What is delivered.** A subscription never widens access: each matching resource is delivered only if its
  subscriber may read it right now under :func:`check_read` (care context; no break-glass — a subscription is no
  emergency), checked when the notification is queued and again when it is sent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from registry.auth import Principal, PrincipalKind
from registry.errors import ForbiddenError
from registry.services.policy.reading import OUTSIDE_CARE, check_read, needs_care_context_check
from registry.store.records import Stored

SUBSCRIBERS = frozenset({PrincipalKind.HOSPITAL, PrincipalKind.ADMIN})


def check_subscriber(principal: Principal) -> None:
    """Only hospital systems and admin-registered clients create or change Subscriptions (403 otherwise)."""
    if principal.kind not in SUBSCRIBERS:
        raise ForbiddenError(f"{principal.kind.value} principals cannot subscribe; a hospital system or an "
                             "admin-registered client can")  # fmt: skip
    if principal.kind is PrincipalKind.HOSPITAL and not principal.org_id:
        raise ForbiddenError(f"hospital client {principal.client_id} belongs to no organization")


def check_named_patients(principal: Principal, named: Iterable[str | None], in_care: Callable[[str], bool]) -> None:
    """Every patient a hospital's criteria names (by master key; None: the reference resolves to nobody) is in its
    care context — the same refusal for an unknown patient and for another hospital's."""
    if principal.kind is PrincipalKind.ADMIN:
        return
    for key in named:
        if key is None or not in_care(key):
            raise ForbiddenError(
                f"the subscription's criteria name a patient outside your care context: {OUTSIDE_CARE}"
            )


def may_receive(subscriber: Principal, stored: Stored, in_care: Callable[[str, str], bool]) -> bool:
    """Whether the subscriber may read ``stored`` now (``in_care(org, patient_key)`` asked only when it matters)."""
    care = (
        in_care(subscriber.org_id or "", stored.patient_key or "")
        if needs_care_context_check(subscriber, stored)
        else None
    )
    try:
        check_read(subscriber, stored, care)
    except ForbiddenError:
        return False
    return True
