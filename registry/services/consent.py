"""The patient's sharing consent (docs/design.md §6 consent; policy.consent decides who sees what): the patient pauses
and resumes sharing with hospitals other than the issuer — one hospital or all — and gives or withdraws the separate
consent for sensitive items. Each change is a new version of an R4 ``Consent`` (its history is the record), the
projection the policy reads (``share_restriction``, ``sensitive_share``) in the same transaction, and an AuditEvent.

Two Consent resources per patient, each with its own history:

- **sharing** — ``policyRule`` v3-ActCode ``OPTOUT`` (results are shared across the region unless the patient
  objects); root ``provision`` ``permit`` with one nested ``deny`` per hospital paused (``actor``: role
  v3-ParticipationType ``IRCP`` information recipient, the Organization), or one nested ``deny`` without an actor when
  sharing is paused with every hospital other than the issuer. ``status`` ``active`` while anything is paused,
  ``inactive`` once all is resumed;
- **sensitive items** — ``policyRule`` v3-ActCode ``OPTIN`` (shared only with the patient's separate consent, PIPL
  Art. 29); root ``provision`` ``permit`` with ``securityLabel`` v3-Confidentiality ``R`` (restricted) and ``code``
  listing the catalog's sensitive items (recognized-items codes). ``active`` while given, ``inactive`` once withdrawn;
  none at all (the default) means not shared.

Both: ``scope`` consentscope ``patient-privacy``, ``category`` LOINC 59284-0 (patient consent), ``patient`` a
Patient of the person, ``dateTime`` of the change, ``performer`` the patient.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

import orjson

from catalog import Catalog
from catalog.codes import RECOGNIZED_ITEMS
from registry.auth import Principal
from registry.errors import BadRequestError, RegistryError
from registry.fhir.bundle import instant
from registry.fhir.extract import extract, to_us
from registry.services import policy
from registry.services.audit import AuditContext, AuditTrail, audit_row, rows_for_patients
from registry.services.sharing import sharing_of
from registry.store.consent import ConsentStore
from registry.store.query import PatientKeyClause, Query
from registry.store.recognition import RecognitionStore
from registry.store.records import NewContent, Stored, WritePlan
from registry.store.repository import Repository, UnitOfWork

ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
LOINC = "http://loinc.org"
SHARING, SENSITIVE = "OPTOUT", "OPTIN"


@dataclass(frozen=True, slots=True)
class HospitalSetting:
    org_id: str
    name: str
    paused: bool  # paused with this hospital on its own (a pause of all hospitals is ``ConsentView.paused_all``)


@dataclass(frozen=True, slots=True)
class ConsentView:
    """What the patient's consent page shows."""

    sharing: policy.Sharing
    hospitals: list[HospitalSetting]
    sharing_consent: str | None  # Consent/<id>, when one was ever recorded
    sensitive_consent: str | None


class ConsentService:
    def __init__(
        self, uow: UnitOfWork, catalog: Catalog, clock: Callable[[], datetime], local_tz: tzinfo, base_url: str
    ) -> None:
        self.uow = uow
        self.catalog = catalog
        self.clock = clock
        self.local_tz = local_tz
        self.base_url = base_url
        self.audit = AuditTrail(uow)
        self.sensitive_items = sorted(i.id for i in catalog.items if i.sensitive)

    # ------------------------------------------------------------------ reading the setting
    def view(self, principal: Principal, audit: AuditContext) -> ConsentView:
        """The patient's own setting (a read of their Consent, audited like one)."""
        now = self.clock()
        try:
            key = policy.check_consent_writer(principal)
        except RegistryError as exc:
            self.audit.record([audit_row(audit, now=now, status=exc.status, detail=exc.diagnostics)])
            raise
        with self.uow.begin(audit_only=True) as repo:
            repo.add_audit(rows_for_patients(audit, now=now, status=200, patient_keys=[key]))
            sharing = sharing_of(repo, key)
            consents = self._consents(repo, key)
            orgs = {p.org_id for p in repo.patients_by_key([key]) if p.org_id} | sharing.paused_orgs
            names = RecognitionStore(repo.conn).organizations(orgs)
        hospitals = [HospitalSetting(o, names[o].name if o in names else o, o in sharing.paused_orgs)
                     for o in sorted(orgs, key=lambda o: (names[o].name if o in names else o))]  # fmt: skip
        return ConsentView(
            sharing,
            hospitals,
            f"Consent/{consents[SHARING].id}" if SHARING in consents else None,
            f"Consent/{consents[SENSITIVE].id}" if SENSITIVE in consents else None,
        )

    # ------------------------------------------------------------------ changing it
    def change(self, principal: Principal, audit: AuditContext, action: str, org_id: str | None = None) -> bool:
        """``pause`` / ``resume`` (``org_id``: one hospital; None: every hospital other than the issuer),
        ``share-sensitive`` / ``keep-sensitive``. Returns whether anything changed (a repeat writes nothing)."""
        now = self.clock()
        try:
            key = policy.check_consent_writer(principal)
            with self.uow.begin() as repo:
                if org_id is not None:
                    found = repo.get("Organization", org_id)
                    if found is None or found.deleted:
                        raise BadRequestError(f"no hospital {org_id[:64]!r} is known to the registry")
                patient = next(iter(repo.patients_by_key([key])), None)
                if patient is not None:  # one change of a patient's consent at a time (its Patient row, locked)
                    repo.get("Patient", patient.id, for_update=True)
                before = sharing_of(repo, key)
                after = _changed(before, action, org_id)
                if after == before:
                    repo.add_audit(rows_for_patients(audit, now=now, status=200, patient_keys=[key],
                                                     detail=f"consent: {action} (unchanged)"))  # fmt: skip
                    return False
                consents = self._consents(repo, key)
                written: list[Stored] = []
                if after.paused != before.paused:
                    written.append(self._write(repo, consents.get(SHARING), self._sharing(after, patient), key, now))
                if after.sensitive_shared != before.sensitive_shared:
                    body = self._sensitive(after.sensitive_shared, patient)
                    written.append(self._write(repo, consents.get(SENSITIVE), body, key, now))
                ids = {c.id for c in (*consents.values(), *written)}
                ConsentStore(repo.conn).replace(key, after.paused, after.sensitive_shared,
                                                next(iter(sorted(ids))), now=now)  # fmt: skip
                detail = f"consent: {action}" + (f" Organization/{org_id}" if org_id else "")
                for stored in written:
                    row = AuditContext(audit.request_id, principal, "update" if stored.version > 1 else "create",
                                       "Consent", stored.id, redactor=audit.redactor)  # fmt: skip
                    repo.add_audit(rows_for_patients(row, now=now, status=200 if stored.version > 1 else 201,
                                                     patient_keys=[key], detail=detail))  # fmt: skip
            return True
        except RegistryError as exc:
            self.audit.record([audit_row(audit, now=now, status=exc.status, detail=exc.diagnostics)])
            raise

    def _consents(self, repo: Repository, key: str) -> dict[str, Stored]:
        rows, _ = repo.search(Query("Consent", (PatientKeyClause((key,)),), count=10))
        out: dict[str, Stored] = {}
        for r in rows:
            rule = (orjson.loads(r.body).get("policyRule") or {}).get("coding") or [{}]
            out.setdefault(str(rule[0].get("code")), r)
        return out

    def _base(self, status: str, rule: str, patient: Stored | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "resourceType": "Consent",
            "status": status,
            "scope": {"coding": [{"system": CONSENT_SCOPE, "code": "patient-privacy", "display": "Privacy Consent"}]},
            "category": [{"coding": [{"system": LOINC, "code": "59284-0", "display": "Patient Consent"}]}],
            "dateTime": instant(self.clock()),
            "policyRule": {"coding": [{"system": ACT_CODE, "code": rule}]},
        }
        if patient is not None:
            body["patient"] = {"reference": f"Patient/{patient.id}"}
            body["performer"] = [{"reference": f"Patient/{patient.id}"}]
        return body

    def _sharing(self, sharing: policy.Sharing, patient: Stored | None) -> dict[str, Any]:
        body = self._base("active" if sharing.paused else "inactive", SHARING, patient)
        denies: list[dict[str, Any]] = []
        if sharing.paused_all:
            denies.append({"type": "deny"})  # no actor: every recipient other than the issuer
        for org in sorted(sharing.paused_orgs):
            denies.append({"type": "deny", "actor": [{
                "role": {"coding": [{"system": PARTICIPATION, "code": "IRCP", "display": "information recipient"}]},
                "reference": {"reference": f"Organization/{org}"}}]})  # fmt: skip
        body["provision"] = {"type": "permit", **({"provision": denies} if denies else {})}
        return body

    def _sensitive(self, shared: bool, patient: Stored | None) -> dict[str, Any]:
        body = self._base("active" if shared else "inactive", SENSITIVE, patient)
        body["provision"] = {
            "type": "permit",
            "securityLabel": [{"system": CONFIDENTIALITY, "code": "R", "display": "restricted"}],
            "code": [{"coding": [{"system": RECOGNIZED_ITEMS, "code": i}]} for i in self.sensitive_items],
        }
        return body

    def _write(
        self, repo: Repository, existing: Stored | None, body: dict[str, Any], key: str, now: datetime
    ) -> Stored:
        rid = existing.id if existing is not None else uuid.uuid4().hex
        version = existing.version + 1 if existing is not None else 1
        resource = {**body, "id": rid, "meta": {"versionId": str(version), "lastUpdated": instant(now)}}
        text = orjson.dumps(resource)
        digest = hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()
        content = NewContent("Consent", rid, text, digest, key, None, extract(resource, self.local_tz, self.base_url))
        plan = WritePlan(creates=[content]) if existing is None else WritePlan(replaces=[(existing, content)])
        return repo.apply(plan, now=now, now_us=to_us(now))[("Consent", rid)]


def _changed(before: policy.Sharing, action: str, org_id: str | None) -> policy.Sharing:
    if action == "pause":
        if org_id is None:
            return policy.Sharing(True, before.paused_orgs, before.sensitive_shared)
        return policy.Sharing(before.paused_all, before.paused_orgs | {org_id}, before.sensitive_shared)
    if action == "resume":
        if org_id is None:  # resume with every hospital: each pause lifted
            return policy.Sharing(False, frozenset(), before.sensitive_shared)
        return policy.Sharing(before.paused_all, before.paused_orgs - {org_id}, before.sensitive_shared)
    if action in ("share-sensitive", "keep-sensitive"):
        return policy.Sharing(before.paused_all, before.paused_orgs, action == "share-sensitive")
    raise BadRequestError(f"unknown consent action {action[:40]!r} (pause, resume, share-sensitive, keep-sensitive)")
