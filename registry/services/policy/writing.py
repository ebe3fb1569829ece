"""Who may write what (docs/design.md §6 ownership): a hospital writes only as its own Organization, only about its own
patients, only identifiers in the namespaces it owns, and only references to its own results of the same patient.

- **Issuer.** Decided once, the same way for every resource type (:func:`decide_issuer`): the Organization the
  resource names as its performer or manager (:data:`ISSUER_PATHS`: ``performer``, ``managingOrganization``…), else
  the writing organization — so a report whose ``performer`` is a Practitioner (R4 allows Practitioner,
  PractitionerRole, Organization, CareTeam) is the writing hospital's. A hospital naming *another* Organization there
  writes as someone else: 403. The resource then belongs to its issuer (``org_id``); only it may change or delete it.
- **Subject.** A patient-scoped resource is about a Patient the writing hospital manages.
- **Identifier namespaces.** Every ``identifier`` a hospital writes is in a system its Organization owns
  (``hr-registry namespaces add``); another organization's system is refused naming its owner, an undeclared one is
  refused saying how to declare it. Systems nobody owns follow their own rules: national identifiers (the master
  patient key, docs/design.md §4) and the shared systems (``urn:dicom:uid``: a StudyInstanceUID is unique world-wide and
  its ImagingStudy belongs to the hospital that first sent it).
- **References on write.** ``DiagnosticReport.result`` / ``imagingStudy`` and ``Observation.hasMember`` /
  ``derivedFrom`` point only at results of the same patient issued by the writing hospital (an admin may reference
  another issuer's results, never another patient's). So no report can withdraw, mark or correct a result it does
  not own.

- **Consent.** A patient's sharing consent is written by the patient through the portal only (policy.consent):
  no hospital and no admin writes it over the REST API.

Admins may write everything else.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from registry.auth import Principal, PrincipalKind
from registry.errors import BusinessRuleError, ForbiddenError
from registry.fhir.extract import parse_reference, values_at
from registry.fhir.search_params import PATIENT_COMPARTMENT
from registry.services.policy.consent import CONSENT_TYPES, CONSENT_WRITER
from registry.services.policy.reading import PATIENT_SCOPED, require_scope
from registry.store.records import Stored

ISSUER_PATHS: dict[str, tuple[str, ...]] = {
    "Patient": ("managingOrganization",),
    "DiagnosticReport": ("performer",),
    "Observation": ("performer",),
    "ImagingStudy": ("identifier.assigner", "series.performer.actor"),
    "ServiceRequest": ("requester", "performer"),
    "Endpoint": ("managingOrganization",),
}
"""Where each type names the organization that issued it (the hospital that may write it)."""

GOVERNED_REFERENCES: dict[str, tuple[str, ...]] = {
    "DiagnosticReport": ("result", "imagingStudy"),
    "Observation": ("hasMember", "derivedFrom"),
}
"""References by which a resource governs results (their mark, withdrawal, correction): same patient, same issuer."""

NAMESPACED = PATIENT_SCOPED
"""Types whose business identifiers must be in the writer's namespaces."""


@dataclass(frozen=True, slots=True)
class Target:
    """What the write knows of a referenced result: its patient and its issuer."""

    patient_key: str | None
    org_id: str | None


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


def _writer(principal: Principal) -> str:
    if principal.kind is not PrincipalKind.HOSPITAL or not principal.org_id:
        raise ForbiddenError(f"{principal.kind.value} principals cannot write")
    return principal.org_id


def decide_issuer(
    principal: Principal, resource: Mapping[str, Any], subject_org: str | None, base_url: str | None = None
) -> str | None:
    """The organization a written resource belongs to — its issuer — for every resource type alike: the first
    Organization it names in :data:`ISSUER_PATHS`, else the writing organization (none for an admin). Refuses (403) a
    hospital writing as another organization: naming another Organization as the issuer, another hospital's
    Organization resource, or about a Patient another hospital manages (``subject_org``)."""
    resource_type = str(resource.get("resourceType"))
    if resource_type in CONSENT_TYPES:
        raise ForbiddenError(CONSENT_WRITER)
    require_scope(principal, resource_type, "write")
    named = issuer_orgs(resource, base_url)
    if principal.kind is PrincipalKind.ADMIN:
        return named[0] if named else None
    own = _writer(principal)
    if resource_type == "Organization":
        if named != [own]:
            raise ForbiddenError(f"a hospital may only update its own Organization/{own}")
        return own
    foreign = [o for o in named if o != own]
    if foreign:
        raise ForbiddenError(
            f"Organization/{foreign[0]} is named as the issuer, but this client writes as Organization/{own}"
        )
    if resource_type in PATIENT_COMPARTMENT and subject_org is not None and subject_org != own:
        raise ForbiddenError("the subject Patient is not one of your hospital's patients (managed by another)")
    return own


def check_namespaces(
    principal: Principal,
    resource_type: str,
    identifiers: Iterable[tuple[str, str, str]],
    owners: Mapping[str, str],
    shared: frozenset[str],
) -> None:
    """Every business identifier ``(path, system, value)`` a hospital writes is in a namespace its Organization owns."""
    if principal.kind is PrincipalKind.ADMIN or resource_type not in NAMESPACED:
        return
    own = _writer(principal)
    for path, system, _value in identifiers:
        if system in shared:
            continue
        owner = owners.get(system)
        if owner == own:
            continue
        if owner is not None:
            raise ForbiddenError(
                f"{resource_type}.{path}: identifier system {system} is the namespace of Organization/{owner}; "
                f"a hospital writes identifiers only in its own namespaces",
                expression=[f"{resource_type}.{path}"],
            )
        raise ForbiddenError(
            f"{resource_type}.{path}: identifier system {system} is not declared as a namespace of "
            f"Organization/{own}; the registry operator declares it with "
            f"`hr-registry namespaces add --org {own} '{system}'` (or a prefix such as 'http://…/*')",
            expression=[f"{resource_type}.{path}"],
        )


def check_references(
    principal: Principal,
    resource_type: str,
    patient_key: str | None,
    org_id: str | None,
    targets: Iterable[tuple[str, Target]],
) -> None:
    """Governing references (:data:`GOVERNED_REFERENCES`) point at results of the same patient (else 422
    ``business-rule``) and — unless an admin writes — of the same issuer (else 403: governing another's results)."""
    for path, target in targets:
        where = f"{resource_type}.{path}"
        if target.patient_key != patient_key:  # a content rule (422), whoever writes: a report is about one patient
            raise BusinessRuleError(
                f"{where} refers to a result of another patient; a report lists only results about its own subject",
                expression=[where],
            )
        if principal.kind is not PrincipalKind.ADMIN and target.org_id != org_id:
            raise ForbiddenError(
                f"{where} refers to a result issued by another organization; a report lists only its own "
                "hospital's results",
                expression=[where],
            )


def check_change(principal: Principal, existing: Stored, *, deleting: bool = False) -> None:
    """Only the owner (or an admin) changes or deletes a stored resource — a deleted one too: re-creating it would hand
    over its history. A patient's Consent is changed by the patient, through the portal, only."""
    if existing.type in CONSENT_TYPES:
        raise ForbiddenError(CONSENT_WRITER)
    if principal.kind is PrincipalKind.ADMIN:
        return
    if deleting and principal.kind is not PrincipalKind.HOSPITAL:
        raise ForbiddenError(f"{principal.kind.value} principals cannot delete")
    own = _writer(principal)
    if existing.org_id != own if deleting else existing.org_id not in (None, own):
        raise ForbiddenError(f"{existing.type}/{existing.id} belongs to another organization")


def visible_to_writer(principal: Principal, found: Stored) -> bool:
    """Whether a conditional match (``If-None-Exist``, ``PUT Type?…``, ``Patient?identifier=…`` references) may
    resolve to ``found`` for this writer: a hospital's conditions see only its own patient-scoped resources, so a
    condition never tells it what another hospital holds."""
    if principal.kind is not PrincipalKind.HOSPITAL:
        return True
    return found.type not in PATIENT_SCOPED or found.org_id in (None, principal.org_id)
