"""The patient's sharing setting as the read surfaces ask for it (policy.consent decides; this looks it up): one
indexed look-up of the consent's projection per patient, and whether a stored record is a sensitive result."""

from __future__ import annotations

from registry.auth import Principal
from registry.services import policy
from registry.services.policy import BreakGlass
from registry.store.consent import ConsentStore
from registry.store.records import R, Stored
from registry.store.repository import Repository


def sharing_of(repo: Repository, patient_key: str | None) -> policy.Sharing:
    if not patient_key:
        return policy.NOT_SHARED
    rows = ConsentStore(repo.conn).sharing(patient_key)
    return policy.Sharing.of(rows.paused, rows.sensitive_shared)


def check_shared_read(
    repo: Repository,
    principal: Principal,
    stored: Stored,
    sensitive_items: frozenset[str],
    break_glass: BreakGlass | None,
) -> None:
    """Refuse a read of ``stored`` that the patient's consent withholds from the principal's hospital."""
    if break_glass is not None or not policy.needs_sharing_check(principal, stored.type, stored.org_id):
        return
    sharing = sharing_of(repo, stored.patient_key)
    if not sharing.paused_for(principal.org_id) and sharing.sensitive_shared:
        return  # nothing this patient withholds from this hospital: no need to ask whether it is sensitive
    sensitive = ConsentStore(repo.conn).resource_is_sensitive(R, stored.pk, sorted(sensitive_items))
    policy.check_shared(policy.withheld(principal, stored.org_id, sharing, sensitive=sensitive, break_glass=None))
