"""The order check (docs/design.md §5): for a patient's draft orders, which prior results are recognizable — read from
the result index and decided by the pure rule ``catalog.recognize``.

Every check is logged (``order_check``: orders checked, recognizable found), every piece of advice gets a card with a
uuid (``recognition_card``) that the clinician's decision refers to, and the read of the patient's results is
audited. The check answers only about a patient in the calling hospital's care context (a local identity there, or
one the check registers from the hospital's own MRN and the full national ID), or by break-glass — decided by the
policy (``services.policy.care``); the audit trail shows every check to the patient. Results the patient's sharing
consent withholds from the calling hospital (``services.policy.consent``) are left out before the rule sees them; an
order whose earlier results were withheld because sharing is paused is marked ``restricted`` (the notice
"患者已限制共享"), and counted.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import orjson

from catalog import (
    Catalog,
    Coding,
    Order,
    OrgFacts,
    Status,
    recognize,
)
from catalog.codes import RECOGNIZED_ITEMS
from registry.auth import Principal, PrincipalKind, parse_scopes
from registry.errors import RegistryError
from registry.fhir.extract import to_us
from registry.fhir.ids import new_id
from registry.services import policy
from registry.services.audit import AuditContext, AuditTrail, audit_row, rows_for_patients
from registry.services.config_cache import ConfigCache
from registry.services.identity import IdentityPolicy
from registry.services.ingest import Ingest
from registry.services.recognition_orders import (
    CheckedOrder,
    DraftOrder,
    PatientQuery,
    Reminder,
    candidates_of,
    log_rows,
)
from registry.services.recognizability import panel_prior, qualification_facts
from registry.services.result_index import ResultIndexer
from registry.services.sharing import sharing_of
from registry.store.check_reads import CheckAsk, CheckReads
from registry.store.consent import ConsentStore
from registry.store.namespaces import NamespaceStore
from registry.store.recognition import RecognitionStore
from registry.store.replica import ReplicaReads, readers
from registry.store.repository import Repository, UnitOfWork

PASSED = (Status.RECOGNIZABLE, Status.SAME_HOSPITAL_DUPLICATE)


class RecognitionService:
    def __init__(
        self,
        uow: UnitOfWork,
        catalog: Catalog,
        identity: IdentityPolicy,
        indexer: ResultIndexer,
        clock: Callable[[], datetime],
        cache: ConfigCache | None = None,
        ingest: Ingest | None = None,
        replica: ReplicaReads | None = None,
    ) -> None:
        self.ingest = ingest
        self.replica = replica
        self.cache = cache or ConfigCache(ttl_seconds=0)
        self.uow = uow
        self.catalog = catalog
        self.identity = identity
        self.indexer = indexer
        self.clock = clock
        self.audit = AuditTrail(uow)
        self.max_window = timedelta(days=max(i.validity.days for i in catalog.items) + 1)
        self.sensitive = frozenset(i.id for i in catalog.items if i.sensitive)
        self._sensitive_items = tuple(sorted(self.sensitive))

    # ------------------------------------------------------------------ who is the patient
    def subject(self, principal: Principal, audit: AuditContext, query: PatientQuery) -> policy.CheckSubject:
        """Whom the check is about, decided by the policy's care-context rule (policy.care); a Patient the check
        registers (the hospital's own MRN with the full national ID) is written first, audited as such."""
        with self.uow.begin(audit_only=True) as repo:
            found = self._subject(repo, principal, audit, query, self.cache.generation(repo.conn))
        if found.registration is not None:
            self._register(principal, audit, found.registration)
        return found

    def _subject(
        self,
        repo: Repository,
        principal: Principal,
        audit: AuditContext,
        query: PatientQuery,
        generation: int,
        ahead: CheckReads | None = None,
    ) -> policy.CheckSubject:
        systems = tuple(sorted({s for s, _v in query.identifiers}))
        owners = self.cache.get(generation, ("owners", systems), lambda: NamespaceStore(repo.conn).owners(systems))
        in_care = {(ahead.org_id, ahead.patient_key): ahead.in_care} if ahead and ahead.org_id and \
            ahead.in_care is not None else None  # fmt: skip
        return policy.check_subject(
            principal, repo, self.identity, owners, query.identifiers, query.patient_id, audit.break_glass, in_care
        )

    def _ask(
        self, principal: Principal, query: PatientQuery, orders: Sequence[DraftOrder], now: datetime
    ) -> CheckAsk | None:
        """What the check reads ahead (one round trip), when the request names its patient by a national
        identifier: the generation, the care context, the sharing projection and the index rows for the items the
        orders resolve to with the code map last loaded (used only if the generation read confirms the same
        items)."""
        key = policy.presented_national_key(self.identity, query.identifiers)
        if key is None:
            return None
        ordering = principal.org_id or ""
        guess = self.cache.latest(("code-map", ordering)) if ordering else None
        wanted = tuple(sorted(self._wanted(orders, guess[1] if guess is not None else None)))
        org = principal.org_id if principal.kind is not PrincipalKind.ADMIN else None
        return CheckAsk(key, org, wanted, to_us(now - self.max_window), self._sensitive_items)

    def _on_standby(self, principal: Principal, ask: CheckAsk) -> CheckReads | None:
        """The reads on the standby (``registry.store.replica``) when it has replayed the last write of the client,
        its hospital and the patient; else None (the caller reads on the primary)."""
        if self.replica is None:
            return None
        found = self.replica.together(readers(principal.client_id, principal.org_id, ask.patient_key), ask.queries())
        return ask.answered(found) if found is not None else None

    def _wanted(self, orders: Sequence[DraftOrder], code_map: Any) -> set[str]:
        """The catalog items the orders resolve to, and the panels containing them."""
        wanted = {i.id for o in orders if (i := self.catalog.resolve(o.codes, code_map)) is not None}
        return wanted | {p for i in list(wanted) for p in self.catalog.panels_containing(i)}

    def _register(self, principal: Principal, audit: AuditContext, reg: policy.Registration) -> None:
        registrar = Principal(principal.client_id, PrincipalKind.HOSPITAL, parse_scopes("system/Patient.write"),
                              reg.org_id, name=principal.name)  # fmt: skip
        patient = {
            "resourceType": "Patient",
            "identifier": [
                {"system": reg.mrn_system, "value": reg.mrn_value},
                {"system": reg.national_system, "value": reg.national_value},
            ],
            "managingOrganization": {"reference": f"Organization/{reg.org_id}"},
        }
        note = "Patient registered by the order check: the hospital's MRN presented with the national identifier"
        writing = AuditContext(audit.request_id, audit.principal, "update", "Patient", note=note)
        condition = urlencode({"identifier": f"{reg.mrn_system}|{reg.mrn_value}"})
        if self.ingest is None:
            return  # a service built without the write path (tests of the rule): nothing to register with
        self.ingest.conditional_update(registrar, writing, "Patient", condition, orjson.dumps(patient).decode())
        if self.replica is not None:  # the hospital's next check sees the patient in its care, on any node
            self.replica.mark(readers(principal.client_id, principal.org_id))

    # ------------------------------------------------------------------ the check
    def check(
        self,
        principal: Principal,
        audit: AuditContext,
        patient: PatientQuery,
        orders: Sequence[DraftOrder],
        *,
        source: str,
        hook_instance: str | None = None,
    ) -> list[CheckedOrder]:
        now = self.clock()
        try:
            # One transaction for the usual case — who the patient is, their results, the check log, cards and
            # audit, committed before the answer; a patient the check must register first is written in its own
            # (the ingest's) transaction, and the check then runs in a second.
            ask = self._ask(principal, patient, orders, now)
            ahead = self._on_standby(principal, ask) if ask is not None else None
            with self.uow.begin() as repo:
                if ahead is None and ask is not None:
                    ahead = ask.read(repo.conn)
                generation = ahead.generation if ahead is not None else self.cache.generation(repo.conn)
                found = self._subject(repo, principal, audit, patient, generation, ahead)
                if found.registration is None:
                    return self._checked(repo, generation, principal, audit, found, orders, now, source,
                                         hook_instance, ahead)  # fmt: skip
                registration = found.registration
            self._register(principal, audit, registration)
            with self.uow.begin() as repo:
                return self._checked(repo, self.cache.generation(repo.conn), principal, audit, found, orders, now,
                                     source, hook_instance)  # fmt: skip
        except RegistryError as exc:
            self.audit.record([audit_row(audit, now=now, status=exc.status, detail=exc.diagnostics)])
            raise

    def _checked(
        self,
        repo: Repository,
        generation: int,
        principal: Principal,
        audit: AuditContext,
        found: policy.CheckSubject,
        orders: Sequence[DraftOrder],
        now: datetime,
        source: str,
        hook_instance: str | None,
        ahead: CheckReads | None = None,
    ) -> list[CheckedOrder]:
        key = found.patient_key
        checked = self._check(repo, principal, key, orders, now, found.break_glass, generation, ahead)
        checks, cards = log_rows(principal, key, checked, now, source, hook_instance)
        audited = rows_for_patients(audit, now=now, status=200, patient_keys=[key],
                                    detail=f"order check ({found.grounds})")  # fmt: skip
        RecognitionStore(repo.conn).add_check_log(checks, cards, audited)
        return checked

    def _check(
        self,
        repo: Repository,
        principal: Principal,
        key: str,
        orders: Sequence[DraftOrder],
        now: datetime,
        break_glass: policy.BreakGlass | None,
        generation: int | None = None,
        ahead: CheckReads | None = None,
    ) -> list[CheckedOrder]:
        store = RecognitionStore(repo.conn)
        generation = self.cache.generation(repo.conn) if generation is None else generation
        ordering = principal.org_id or ""
        code_map = (
            self.cache.get(
                generation, ("code-map", ordering), lambda: self.indexer.code_maps(repo, [ordering]).get(ordering)
            )
            if ordering
            else None
        )
        items = [self.catalog.resolve(o.codes, code_map) for o in orders]
        wanted = tuple(sorted(self._wanted(orders, code_map)))
        since = to_us(now - self.max_window)
        if ahead is not None and ahead.patient_key != key:
            ahead = None  # read ahead for the national identifier's person; the check is about another
        same = ahead if ahead is not None and (ahead.items, ahead.since_us) == (wanted, since) else None
        found = same.results if same is not None else store.results_for(key, wanted, since)
        rows, paused = self._shared(repo, principal, key, found, break_glass, ahead)
        org_ids = frozenset({r.org_id for r in rows if r.org_id} | {ordering})
        orgs = self.cache.get(generation, ("orgs", org_ids), lambda: store.organizations(org_ids))
        issuers = frozenset(r.org_id for r in rows if r.org_id)
        quals = self.cache.get(generation, ("qualifications", issuers), lambda: qualification_facts(store, issuers))
        facts = {oid: OrgFacts(oid, org.regions) for oid, org in orgs.items()}
        members = self._members(store, key, rows, same.members if same is not None else None)
        priors = [panel_prior(self.catalog, r, facts, members) for r in rows]
        by_ref = {f"{r.res_type}/{r.res_id}": r for r in rows}
        ordering_facts = facts.get(ordering, OrgFacts(ordering))
        out: list[CheckedOrder] = []
        for order, item in zip(orders, items, strict=True):
            codes = (Coding(RECOGNIZED_ITEMS, item.id),) if item is not None else order.codes
            decision = recognize(
                Order(codes, key, ordering_facts, None, order.ref), priors, self.catalog, quals, now=now
            )
            candidates = candidates_of(self.catalog, decision, by_ref, orgs, members)
            card = new_id() if decision.status in PASSED else None
            related = {item.id, *self.catalog.panels_containing(item.id)} if item is not None else set()
            out.append(CheckedOrder(order, decision, candidates, card, new_id() if card else None,
                                    restricted=card is None and bool(related & paused)))  # fmt: skip
        return out

    def _shared(
        self,
        repo: Repository,
        principal: Principal,
        key: str,
        rows: Sequence[Any],
        break_glass: policy.BreakGlass | None,
        known: CheckReads | None = None,
    ) -> tuple[list[Any], set[str]]:
        """The rows the patient's consent shares with the calling hospital (policy.consent), and the items of those
        withheld because sharing is paused (announced; sensitive ones without consent are not)."""
        if break_glass is not None or not any(
            policy.needs_sharing_check(principal, r.res_type, r.org_id) for r in rows
        ):
            return list(rows), set()
        sharing = (policy.Sharing.of(known.sharing.paused, known.sharing.sensitive_shared) if known
                   else sharing_of(repo, key))  # fmt: skip
        reports = sorted({r.report_id for r in rows if r.report_id})
        sensitive_reports = (
            set() if sharing.sensitive_shared
            else known.sensitive_reports & set(reports) if known
            else ConsentStore(repo.conn).sensitive_reports(key, reports, self._sensitive_items)
        )  # fmt: skip
        kept: list[Any] = []
        paused: set[str] = set()
        for r in rows:
            sensitive = r.item_id in self.sensitive or r.report_id in sensitive_reports
            why = policy.withheld(principal, r.org_id, sharing, sensitive=sensitive, break_glass=None)
            if why is policy.Withheld.NO:
                kept.append(r)
            elif why is policy.Withheld.PAUSED:
                paused.add(r.item_id)
        return kept, paused

    @staticmethod
    def _members(
        store: RecognitionStore, key: str, rows: Sequence[Any], known: Sequence[Any] | None = None
    ) -> dict[str, list[Any]]:
        """The Observation rows of each DiagnosticReport among ``rows``: a panel's values, shown on the card, and
        what the panel actually contains (rule 2). ``known``: the members of a superset of those reports, read
        ahead."""
        reports = sorted({r.report_id for r in rows if r.res_type == "DiagnosticReport" and r.report_id})
        members: dict[str, list[Any]] = {}
        wanted = set(reports)
        found = [m for m in known if m.report_id in wanted] if known is not None else store.report_members(key, reports)
        for m in found:
            members.setdefault(m.report_id, []).append(m)
        return members

    # ------------------------------------------------------------------ patient-view (接诊历史提醒)
    def recognizable_history(
        self,
        principal: Principal,
        audit: AuditContext,
        patient: PatientQuery,
        *,
        lookback_days: int,
        source: str = "patient-view",
    ) -> Reminder:
        """Every result from other hospitals that is recognizable now, within the look-back, one per item; the
        reminder card gets a uuid, kept with whom it was issued to (``reminder_card``) so that feedback can name it
        (CDS Hooks 2.0 §Card ``uuid``, §Feedback)."""
        now = self.clock()
        try:
            found = self.subject(principal, audit, patient)
            key = found.patient_key
            with self.uow.begin() as repo:
                store = RecognitionStore(repo.conn)
                since = to_us(now - timedelta(days=lookback_days))
                item_ids = sorted({r.item_id for r in store.results_of_patient(key, since)})
                orders = [DraftOrder(None, (Coding(RECOGNIZED_ITEMS, i),)) for i in item_ids]
                every = self._check(repo, principal, key, orders, now, found.break_glass)
                checked = [
                    c
                    for c in every
                    if c.decision.status is Status.RECOGNIZABLE
                    and c.candidates
                    and c.candidates[0].effective >= now - timedelta(days=lookback_days)
                ]
                card = new_id() if checked else None
                if card is not None:
                    store.add_reminder({"uuid": card, "issued": now, "source": source,
                                        "client_id": principal.client_id, "ordering_org": principal.org_id,
                                        "patient_key": key, "results": len(checked)})  # fmt: skip
                repo.add_audit(rows_for_patients(audit, now=now, status=200, patient_keys=[key],
                                                 detail=f"patient-view reminder ({found.grounds})"))  # fmt: skip
            return Reminder(card, checked, restricted=any(c.restricted for c in every))
        except RegistryError as exc:
            self.audit.record([audit_row(audit, now=now, status=exc.status, detail=exc.diagnostics)])
            raise
