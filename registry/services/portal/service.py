"""What the web pages show, read through the same audited, access-checked searches as the FHIR API.

A patient sees only their own records (the read filter of a patient principal); a clinician sees a report only within
the care context of their hospital. Every page view is therefore in the audit trail, and the patient's "who viewed my
records" page is built from it. Values come back as plain view objects; no page queries the database itself.

How long a report stays recognizable ("互认有效期至") is decided from its result-index rows by ``catalog.assess`` —
the judgement the order check applies (``registry.services.recognizability``): a report without the HR mark, not
final, expired, or from an issuer without the qualification shows none.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, tzinfo
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import orjson

from catalog import Catalog, Item, Kind
from registry.auth import Principal, PrincipalKind
from registry.errors import NotFoundError
from registry.fhir.extract import parse_reference
from registry.services.audit import AuditContext, audit_row
from registry.services.config_cache import ConfigCache
from registry.services.portal.resource_views import ResourceViews
from registry.services.portal.views import (
    MAX_PAGES,
    PAGE,
    AccessView,
    Found,
    PatientCard,
    ReportView,
    Trend,
    TrendPoint,
)
from registry.services.recognizability import Recognizability, qualification_facts, recognizability
from registry.services.result_index import ResultIndexer
from registry.services.search import Reads
from registry.store.recognition import Org, RecognitionStore
from registry.store.records import AuditFilter
from registry.store.repository import UnitOfWork


class Portal(ResourceViews):
    def __init__(
        self,
        reads: Reads,
        uow: UnitOfWork,
        catalog: Catalog,
        indexer: ResultIndexer,
        cache: ConfigCache,
        local_tz: tzinfo,
        clock: Callable[[], datetime],
    ) -> None:
        self.reads = reads
        self.uow = uow
        self.catalog = catalog
        self.indexer = indexer
        self.cache = cache
        self.tz = local_tz
        self.clock = clock

    # ------------------------------------------------------------------------------------------------ plumbing
    def _search(
        self,
        principal: Principal,
        audit: AuditContext,
        rtype: str,
        params: list[tuple[str, str]],
        *,
        all_pages: bool = True,
        expect_match: str | None = None,
    ) -> Found:
        out = Found()
        for _ in range(MAX_PAGES):
            doc = orjson.loads(self.reads.search(principal, audit, rtype, params, expect_match=expect_match).body)
            for entry in doc.get("entry") or []:
                resource = entry.get("resource") or {}
                mode = (entry.get("search") or {}).get("mode")
                if mode == "match":
                    out.matches.append(resource)
                elif mode == "include":
                    out.included[(str(resource.get("resourceType")), str(resource.get("id")))] = resource
            nxt = next((lk["url"] for lk in doc.get("link") or [] if lk.get("relation") == "next"), None)
            if not all_pages or nxt is None:
                break
            cursor = dict(parse_qsl(urlsplit(nxt).query)).get("_cursor")
            params = [p for p in params if p[0] != "_cursor"] + [("_cursor", cursor or "")]
        return out

    def _context(self, org_ids: Iterable[str]) -> tuple[dict[str, Org], dict[str, Any]]:
        ids = tuple(sorted({o for o in org_ids if o}))
        with self.uow.begin(audit_only=True) as repo:
            generation = self.cache.generation(repo.conn)
            orgs = self.cache.get(
                generation, ("portal-orgs", ids), lambda: RecognitionStore(repo.conn).organizations(ids)
            )
            maps = self.cache.get(generation, ("portal-maps", ids), lambda: self.indexer.code_maps(repo, ids))
        return orgs, maps

    def _recognizability(self, refs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Recognizability]:
        """How long each result stays recognizable by other hospitals, judged as the order check judges it (from
        its result-index rows, by ``catalog.assess``)."""
        now = self.clock()
        with self.uow.begin(audit_only=True) as repo:
            store = RecognitionStore(repo.conn)
            generation = self.cache.generation(repo.conn)
            rows = store.rows_of_results(refs)
            issuers = frozenset(r.org_id for r in rows if r.org_id)
            quals = self.cache.get(generation, ("qualifications", issuers), lambda: qualification_facts(store, issuers))
        return recognizability(refs, rows, self.catalog, quals, self.tz, now=now)

    def _reports(self, bundle: Found, source: str = "DiagnosticReport") -> list[ReportView]:
        """Report views of the bundle's matches; ``source`` is the type they were read as (a result without a report
        is shown as a one-result report)."""
        org_ids = {o for r in bundle.matches if (o := self._org_of(r))}
        org_ids |= {o for r in bundle.included.values() if (o := self._org_of(r))}
        orgs, maps = self._context(org_ids)
        standing = self._recognizability([(source, str(r.get("id"))) for r in bundle.matches])
        out: list[ReportView] = []
        for r in bundle.matches:
            org = self._org_of(r)
            item = self.indexer.item_for(r, maps.get(org or ""))
            observations = []
            for ref in r.get("result") or []:
                parsed = parse_reference(ref.get("reference", ""), None) if isinstance(ref, Mapping) else None
                obs = bundle.included.get(parsed) if parsed else None
                if obs is not None:
                    observations.append(self._observation(obs, maps, self._org_of(obs) or org))
            study = None
            for ref in r.get("imagingStudy") or []:
                parsed = parse_reference(ref.get("reference", ""), None) if isinstance(ref, Mapping) else None
                s = bundle.included.get(parsed) if parsed else None
                if s is not None:
                    study = self._study(s)
                    if item is None:
                        item = self.indexer.item_for(s, maps.get(org or ""))
                    break
            categories = {c.get("code") for cat in r.get("category") or [] for c in cat.get("coding") or []}
            kind = item.kind if item else (Kind.IMAGING if study or "RAD" in categories else Kind.LAB)
            effective = self._when(r.get("effectiveDateTime") or (r.get("effectivePeriod") or {}).get("start"))
            effective = effective or self._when(r.get("issued"))
            judged = standing[(source, str(r.get("id")))]
            out.append(
                ReportView(
                    type="DiagnosticReport",
                    id=str(r.get("id")),
                    title=self._title(r, item),
                    item=item,
                    kind=kind,
                    org_id=org,
                    org_name=orgs[org].name if org in orgs else (org or "—"),
                    effective=effective,
                    issued=self._when(r.get("issued")),
                    status=str(r.get("status") or ""),
                    hr_mark=judged.hr_mark,
                    valid_until=judged.valid_until,
                    observations=tuple(observations),
                    conclusion=str(r.get("conclusion") or ""),
                    study=study,
                    valid_through=judged.valid_through,
                    expired=judged.expired,
                )
            )
        return out

    # ------------------------------------------------------------------------------------------------ API
    INCLUDES: Sequence[tuple[str, str]] = (
        ("_include", "DiagnosticReport:result"),
        ("_include", "DiagnosticReport:imaging-study"),
    )

    def reports(self, principal: Principal, audit: AuditContext) -> list[ReportView]:
        """Every report the principal may see (a patient: all of their own), newest first."""
        params = [("_sort", "-date"), ("_count", str(PAGE)), *self.INCLUDES]
        return self._reports(self._search(principal, audit, "DiagnosticReport", params))

    def report(self, principal: Principal, audit: AuditContext, rid: str) -> ReportView:
        """One report with its results and study; NotFoundError when it does not exist or is not visible."""
        bundle = self._search(
            principal, audit, "DiagnosticReport", [("_id", rid), *self.INCLUDES], all_pages=False,
            expect_match=f"DiagnosticReport/{rid} is not known, or not yours to see",
        )  # fmt: skip
        views = self._reports(bundle)
        if not views:
            raise NotFoundError(f"DiagnosticReport/{rid} is not known")
        return views[0]

    def result(self, principal: Principal, audit: AuditContext, rtype: str, rid: str) -> ReportView:
        """A result that came without a report — an Observation, or an ImagingStudy received over DICOM before (or
        without) its RIS report — shown as a one-result report. Cards link here when there is no DiagnosticReport."""
        if rtype == "DiagnosticReport":
            return self.report(principal, audit, rid)
        if rtype not in ("Observation", "ImagingStudy"):
            raise NotFoundError(f"{rtype} is not a result type")
        missing = f"{rtype}/{rid} is not known, or not yours to see"
        found = self._search(principal, audit, rtype, [("_id", rid)], all_pages=False, expect_match=missing).matches
        if not found:
            raise NotFoundError(f"{rtype}/{rid} is not known")
        res = found[0]
        status = str(res.get("status") or "")
        pseudo: dict[str, Any] = {
            "resourceType": "DiagnosticReport",
            "id": rid,
            # ImagingStudy.status 'available' is a finished study (FHIR R4 ImagingStudyStatus)
            "status": "final" if status == "available" else status,
            "meta": res.get("meta") or {},
            "performer": res.get("performer") or [],
            "identifier": res.get("identifier") or [],
            "code": res.get("code") or next(iter(res.get("procedureCode") or []), None) or {},
            "effectiveDateTime": res.get("effectiveDateTime") or res.get("started"),
            "issued": res.get("issued"),
            "description": res.get("description"),
        }
        if rtype == "Observation":
            pseudo["result"] = [{"reference": f"Observation/{rid}"}]
        else:
            pseudo["imagingStudy"] = [{"reference": f"ImagingStudy/{rid}"}]
            pseudo["category"] = [{"coding": [{"code": "RAD"}]}]
            if not pseudo["performer"]:
                actors = [p.get("actor") for se in res.get("series") or [] for p in se.get("performer") or []]
                pseudo["performer"] = [a for a in actors if isinstance(a, Mapping)][:1]
        bundle = Found([pseudo], {(rtype, rid): res})
        return replace(self._reports(bundle, rtype)[0], type=rtype)

    def trend(self, principal: Principal, audit: AuditContext, item_id: str) -> Trend:
        """The values of one lab item over time, across hospitals, in its most common unit."""
        item = self.catalog.get(item_id)
        if item is None or item.kind is not Kind.LAB:
            raise NotFoundError(f"{item_id} is not a lab item of the catalog")
        bundle = self._search(principal, audit, "Observation", [("_sort", "date"), ("_count", str(PAGE))])
        orgs, maps = self._context({o for r in bundle.matches if (o := self._org_of(r))})
        views = [self._observation(o, maps, self._org_of(o)) for o in bundle.matches]
        mine = [
            v
            for v in views
            if v.item is not None
            and v.item.id == item.id
            and v.numeric is not None
            and v.effective is not None
            and v.status not in ("entered-in-error", "cancelled")
        ]
        units = Counter(v.ucum or v.unit for v in mine)
        unit = str(units.most_common(1)[0][0] if units else (item.lab.unit if item.lab else ""))
        kept = [v for v in mine if (v.ucum or v.unit) == unit]
        points = tuple(
            TrendPoint(
                when,
                value,
                v.value,  # the pages add the unit (the trend's), as people write it
                orgs[v.org_id].name if v.org_id in orgs else (v.org_id or "—"),
                v.flags,
                v.id,
            )
            for v in kept
            if (when := v.effective) is not None and (value := v.numeric) is not None
        )
        points = tuple(sorted(points, key=lambda p: p.when))
        latest = next((v for v in reversed(kept) if v.low is not None or v.high is not None), None)
        return Trend(
            item, unit, points, latest.low if latest else None, latest.high if latest else None, len(mine) - len(kept)
        )

    def lab_items(self, reports: Iterable[ReportView]) -> list[Item]:
        """The lab items with at least two numeric values among these reports (worth a trend chart)."""
        counts: Counter[str] = Counter()
        for r in reports:
            for o in r.observations:
                if o.item is not None and o.item.kind is Kind.LAB and o.numeric is not None:
                    counts[o.item.id] += 1
        return [i for i_id, n in counts.most_common() if n >= 2 and (i := self.catalog.get(i_id)) is not None]

    def patient(self, principal: Principal, audit: AuditContext) -> PatientCard:
        if principal.kind is not PrincipalKind.PATIENT:
            raise NotFoundError("only a patient has a patient card")
        bundle = self._search(principal, audit, "Patient", [("_count", "20")], all_pages=False)
        orgs, _ = self._context({o for p in bundle.matches if (o := self._managing(p))})
        name = gender = birth = national = ""
        mrns: list[tuple[str, str]] = []
        for p in bundle.matches:
            for n in p.get("name") or []:
                if not name and isinstance(n, Mapping):
                    name = str(n.get("text") or (str(n.get("family") or "") + "".join(n.get("given") or [])))
            gender = gender or str(p.get("gender") or "")
            birth = birth or str(p.get("birthDate") or "")
            org = self._managing(p)
            for ident in p.get("identifier") or []:
                value = str(ident.get("value") or "")
                if "*" in value and not national:
                    national = value  # stored masked (docs/design.md §4)
                elif "*" not in value and org:
                    mrns.append((orgs[org].name if org in orgs else org, value))
        return PatientCard(name, national, gender, birth, tuple(mrns))

    def access_log(self, principal: Principal, limit: int = 200, audit: AuditContext | None = None) -> list[AccessView]:
        """Who read this patient's records: other principals' successful reads, newest first (the look itself is
        audited when ``audit`` is given)."""
        if principal.patient_key is None:
            return []
        with self.uow.begin(audit_only=True) as repo:
            if audit is not None:
                repo.add_audit([audit_row(audit, now=self.clock(), status=200, patient_key=principal.patient_key)])
            # other principals' successful reads and searches (the patient's own browsing would crowd them out)
            wanted = AuditFilter(
                count=limit,
                patient_keys=(principal.patient_key,),
                actions=("R", "E"),
                outcomes=("0",),
                exclude_client_ids=(principal.client_id,),
            )
            rows = repo.audit_events(wanted)
            org_ids = tuple(sorted({r.org_id for r in rows if r.org_id}))
            orgs = RecognitionStore(repo.conn).organizations(org_ids)
        out: list[AccessView] = []
        for r in rows:
            when = datetime.fromtimestamp(r.recorded_us / 1_000_000, self.tz)
            what = f"{r.interaction} {r.resource_type or ''}".strip()
            org_name = orgs[r.org_id].name if r.org_id in orgs else (r.org_id or "")
            out.append(
                AccessView(
                    when,
                    r.principal_name or r.client_id or "?",
                    r.principal_kind or "",
                    org_name,
                    what,
                    r.outcome,
                    r.interaction or "",
                    r.resource_type or "",
                    r.purpose,
                    r.purpose_reason,
                    r.resource_id or "",
                    r.detail or "",
                )
            )
        return out
