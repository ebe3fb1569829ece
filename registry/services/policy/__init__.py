"""The one access policy (docs/design.md §6): who may read or write what, on every surface — FHIR REST, CDS Hooks,
operations, pages, statistics, administration. Route handlers and services ask it; none decides on its own.

- **admin**: reads and writes everything (may reference another issuer's results, never another patient's); the
  order check for anyone; the region's statistics; the whole audit trail.
- **hospital system**: reads the directory and the patients of its care context (a local identity: a Patient it
  manages); writes as its own Organization, about its own patients, identifiers only in its own namespaces, references
  only to its own results of the same patient; the order check for patients with a local identity there (or
  registered by the check: its own MRN with the full national ID), else only by break-glass; its own statistics.
- **clinician**: reads as their hospital (care context, or break-glass with a reason); the order check as their
  hospital; no writes, no statistics.
- **patient**: reads their own records and who viewed them, and records their own sharing consent (pause or resume
  sharing with other hospitals, the separate consent for sensitive items); nothing else.
- **consent**: within a care context, another issuer's results are withheld from a hospital the patient paused
  sharing with, and sensitive items without the patient's separate consent — except by break-glass (:mod:`.consent`).
- **no token, a disabled or removed client**: the open routes only (:mod:`.routes`).

Modules: :mod:`.routes` (who may call each route at all), :mod:`.reading`, :mod:`.writing`, :mod:`.care`,
:mod:`.surfaces`, :mod:`.purpose` (break-glass), :mod:`.subscribing` (who may subscribe, what is delivered),
:mod:`.consent` (the patient's sharing consent).
"""

from registry.services.policy.care import CheckSubject, Registration, check_subject, presented_national_key
from registry.services.policy.consent import (
    CONSENT_TYPES,
    NOT_SHARED,
    RESTRICTED_EN,
    RESTRICTED_ZH,
    Sharing,
    Withheld,
    check_consent_writer,
    check_shared,
    needs_sharing_check,
    sharing_filter,
    withheld,
)
from registry.services.policy.purpose import BreakGlass, break_glass_of
from registry.services.policy.reading import (
    DIRECTORY,
    OUTSIDE_CARE,
    OWNED,
    PATIENT_SCOPED,
    check_break_glass_result,
    check_read,
    needs_care_context,
    needs_care_context_check,
    read_filter,
    require_scope,
)
from registry.services.policy.routes import AREAS, ROUTES, Gate, Route, route_for
from registry.services.policy.subscribing import (
    SUBSCRIBERS,
    check_named_patients,
    check_subscriber,
    may_receive,
)
from registry.services.policy.surfaces import (
    audit_reader_key,
    check_decision,
    may_use_area,
    notification_owner,
    own_organization,
    require_admin,
)
from registry.services.policy.writing import (
    GOVERNED_REFERENCES,
    ISSUER_PATHS,
    Target,
    check_change,
    check_namespaces,
    check_references,
    decide_issuer,
    issuer_orgs,
    visible_to_writer,
)

__all__ = [
    "AREAS",
    "CONSENT_TYPES",
    "DIRECTORY",
    "GOVERNED_REFERENCES",
    "ISSUER_PATHS",
    "NOT_SHARED",
    "OUTSIDE_CARE",
    "OWNED",
    "PATIENT_SCOPED",
    "RESTRICTED_EN",
    "RESTRICTED_ZH",
    "ROUTES",
    "SUBSCRIBERS",
    "BreakGlass",
    "CheckSubject",
    "Gate",
    "Registration",
    "Route",
    "Sharing",
    "Target",
    "Withheld",
    "audit_reader_key",
    "break_glass_of",
    "check_break_glass_result",
    "check_change",
    "check_consent_writer",
    "check_decision",
    "check_named_patients",
    "check_namespaces",
    "check_read",
    "check_references",
    "check_shared",
    "check_subject",
    "check_subscriber",
    "decide_issuer",
    "issuer_orgs",
    "may_receive",
    "may_use_area",
    "needs_care_context",
    "needs_care_context_check",
    "needs_sharing_check",
    "notification_owner",
    "own_organization",
    "presented_national_key",
    "read_filter",
    "require_admin",
    "require_scope",
    "route_for",
    "sharing_filter",
    "visible_to_writer",
    "withheld",
]
