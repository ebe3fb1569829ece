"""Who may read or write what (DESIGN.md §6).

- **admins**: everything, including AuditEvent.
- **hospital systems**: write only as their own Organization (the issuer named in the resource must be theirs, and a
  patient-scoped resource must be about a Patient they manage); read patients in their care context.
- **clinicians**: read only, and only patients in the care context of their hospital — patients who have a local
  identity (a Patient managed by that hospital). Every read is audited.
- **patients**: read only their own records (same master patient key).

Directory resources (Organization, Practitioner, Endpoint) are readable by every authenticated principal.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from registry.auth import Principal, PrincipalKind
from registry.errors import ForbiddenError
from registry.fhir.extract import parse_reference, values_at
from registry.fhir.search_params import PATIENT_COMPARTMENT
from registry.store.query import CareContextClause, Clause, PatientKeyClause
from registry.store.records import Stored

DIRECTORY = frozenset({"Organization", "Practitioner", "Endpoint", "ConceptMap"})
PATIENT_SCOPED = PATIENT_COMPARTMENT | {"Patient"}

ISSUER_PATHS: dict[str, tuple[str, ...]] = {
    "Patient": ("managingOrganization",),
    "DiagnosticReport": ("performer",),
    "Observation": ("performer",),
    "ImagingStudy": ("identifier.assigner", "series.performer.actor"),
    "ServiceRequest": ("requester", "performer"),
    "Endpoint": ("managingOrganization",),
}
"""Where each type names the organization that issued it (the hospital that may write it)."""

ISSUER_REQUIRED = frozenset({"Patient", "DiagnosticReport"})
"""Types whose issuer a hospital must name; for the others it defaults to the writing hospital."""


def issuer_orgs(resource: Mapping[str, Any], base_url: str | None = None) -> list[str]:
    """Organization ids named as the issuer of ``resource``, in document order."""
    rtype = str(resource.get("resourceType"))
    if rtype == "Organization":
        return [str(resource["id"])] if resource.get("id") else []
    if rtype == "ConceptMap":
        from registry.services.code_maps import organization_of

        owner = organization_of(resource)
        return [owner] if owner else []
    out: list[str] = []
    for path in ISSUER_PATHS.get(rtype, ()):
        for value in values_at(resource, path):
            if isinstance(value, Mapping) and isinstance(value.get("reference"), str):
                parsed = parse_reference(value["reference"], base_url)
                if parsed and parsed[0] == "Organization" and parsed[1] not in out:
                    out.append(parsed[1])
    return out


def require_scope(principal: Principal, resource_type: str, permission: str) -> None:
    if not principal.may(resource_type, permission):
        raise ForbiddenError(
            f"{principal.kind.value} {principal.client_id} has no scope to {permission} {resource_type}"
        )


def read_filter(principal: Principal, resource_type: str) -> Clause | None:
    """The clause that limits a search to what the principal may see (None: no limit)."""
    if principal.kind is PrincipalKind.ADMIN or resource_type in DIRECTORY:
        return None
    if resource_type not in PATIENT_SCOPED:
        raise ForbiddenError(f"{resource_type} is not readable by {principal.kind.value} principals")
    if principal.kind is PrincipalKind.PATIENT:
        if not principal.patient_key:
            raise ForbiddenError("this patient principal is not linked to a patient")
        return PatientKeyClause((principal.patient_key,))
    if not principal.org_id:
        raise ForbiddenError(f"{principal.kind.value} {principal.client_id} belongs to no organization")
    return CareContextClause(principal.org_id)


def check_read(principal: Principal, stored: Stored, has_care_context: bool | None) -> None:
    """Whether ``principal`` may read this stored resource; ``has_care_context`` is asked only when it matters."""
    if principal.kind is PrincipalKind.ADMIN or stored.type in DIRECTORY:
        return
    if stored.type not in PATIENT_SCOPED:
        raise ForbiddenError(f"{stored.type} is not readable by {principal.kind.value} principals")
    if principal.kind is PrincipalKind.PATIENT:
        if stored.patient_key is None or stored.patient_key != principal.patient_key:
            raise ForbiddenError("a patient may read only their own records")
        return
    if stored.org_id is not None and stored.org_id == principal.org_id:
        return
    if not has_care_context:
        raise ForbiddenError(
            f"{stored.type}/{stored.id} belongs to a patient outside the care context of Organization/"
            f"{principal.org_id} (no local identity there)"
        )


def needs_care_context_check(principal: Principal, stored: Stored) -> bool:
    return (
        principal.kind in (PrincipalKind.HOSPITAL, PrincipalKind.CLINICIAN)
        and stored.type in PATIENT_SCOPED
        and stored.org_id != principal.org_id
        and stored.patient_key is not None
    )


def check_write(principal: Principal, resource_type: str, issuers: list[str], subject_org: str | None) -> str | None:
    """Enforce "a hospital writes only as itself"; return the organization the written resource belongs to."""
    require_scope(principal, resource_type, "write")
    if principal.kind is PrincipalKind.ADMIN:
        return issuers[0] if issuers else None
    if principal.kind is not PrincipalKind.HOSPITAL or not principal.org_id:
        raise ForbiddenError(f"{principal.kind.value} principals cannot write")
    own = principal.org_id
    if resource_type == "Organization":
        if issuers != [own]:
            raise ForbiddenError(f"a hospital may only update its own Organization/{own}")
        return own
    foreign = [o for o in issuers if o != own]
    if foreign:
        raise ForbiddenError(
            f"Organization/{foreign[0]} is named as the issuer, but this client writes as Organization/{own}"
        )
    if not issuers and resource_type in ISSUER_REQUIRED:
        path = ISSUER_PATHS[resource_type][0]
        raise ForbiddenError(f"{resource_type}.{path} must name your Organization/{own}")
    if resource_type in PATIENT_COMPARTMENT and subject_org is not None and subject_org != own:
        raise ForbiddenError(f"the subject Patient is managed by Organization/{subject_org}, not by this client")
    return own
