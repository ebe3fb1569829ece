"""Reading use cases: read, vread, instance history and search (FHIR R4 §http read/vread/history/search).

Each checks the principal's scope, care context and the patient's sharing consent (services.policy) and records audit
rows — one per patient touched — whatever the outcome.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import TypeVar
from urllib.parse import urlencode

import orjson

from registry.auth import Principal
from registry.errors import BadRequestError, GoneError, NotFoundError, RegistryError
from registry.fhir.bundle import Entry, instant, render
from registry.fhir.integers import MAX_INTEGER, whole_number
from registry.fhir.search_params import SEARCH_PARAMS
from registry.fhir.subsetting import Subset, SubsetError
from registry.services import policy
from registry.services.audit import AuditContext, AuditTrail, audit_row, rows_for_patients
from registry.services.identity import IdentityPolicy
from registry.services.policy import BreakGlass
from registry.services.search_includes import includes, revincludes
from registry.services.search_query import ParsedSearch, SearchLimits, SearchParser
from registry.services.sharing import check_shared_read
from registry.store.query import DateValue, Query
from registry.store.records import Stored, StoredVersion
from registry.store.replica import ReplicaReads, readers
from registry.store.repository import Repository, UnitOfWork

SUPPORTED_TYPES = frozenset(SEARCH_PARAMS)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ReadContext:
    uow: UnitOfWork
    identity: IdentityPolicy
    base_url: str  # FHIR base, e.g. http://127.0.0.1:8000/fhir
    local_tz: tzinfo
    default_page_size: int
    max_page_size: int
    clock: Callable[[], datetime]
    cursor_key: bytes = b""
    limits: SearchLimits = field(default_factory=SearchLimits)
    sensitive_items: frozenset[str] = frozenset()  # catalog items shared only with separate consent (policy.consent)
    replica: ReplicaReads | None = None  # reads from a standby (registry.store.replica); None: all on the primary
    audit: AuditTrail = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "audit", AuditTrail(self.uow))


def require_type(rtype: str) -> None:
    if rtype not in SUPPORTED_TYPES:
        raise NotFoundError(
            f"resource type {rtype!r} is not supported; supported: {', '.join(sorted(SUPPORTED_TYPES))}"
        )


@dataclass(frozen=True, slots=True)
class SearchOutcome:
    body: bytes
    matches: int


class Reads:
    def __init__(self, ctx: ReadContext) -> None:
        self.ctx = ctx

    # ------------------------------------------------------------------ helpers
    def audited(self, audit: AuditContext, fn: Callable[[Repository], tuple[T, list[str | None]]]) -> T:
        return self._audited(audit, fn)

    def _audited(self, audit: AuditContext, fn: Callable[[Repository], tuple[T, list[str | None]]]) -> T:
        """Run a read in one transaction with its audit rows; a refusal or error is audited on its own."""
        now = self.ctx.clock()
        try:
            if self.ctx.replica is not None:  # on the standby when it has the readers' writes; audit on the primary
                principal = audit.principal
                marks = readers(principal.client_id, principal.org_id) if principal else []
                result, patient_keys = self.ctx.replica.read(marks, fn)
                self.ctx.audit.record(rows_for_patients(audit, now=now, status=200, patient_keys=list(patient_keys)))
                return result
            with self.ctx.uow.begin(audit_only=True) as repo:
                result, patient_keys = fn(repo)
                repo.add_audit(rows_for_patients(audit, now=now, status=200, patient_keys=patient_keys))
            return result
        except RegistryError as exc:
            self.ctx.audit.record([audit_row(audit, now=now, status=exc.status, detail=exc.diagnostics)])
            raise

    def _visible(
        self, repo: Repository, principal: Principal, stored: Stored, break_glass: BreakGlass | None = None
    ) -> None:
        care = (
            repo.has_care_context(principal.org_id or "", stored.patient_key or "")
            if policy.needs_care_context_check(principal, stored)
            else None
        )
        policy.check_read(principal, stored, care, break_glass=break_glass)
        check_shared_read(repo, principal, stored, self.ctx.sensitive_items, break_glass)

    # ------------------------------------------------------------------ read / vread / history
    def read(self, principal: Principal, audit: AuditContext, rtype: str, rid: str) -> Stored:
        return self._audited(audit, lambda repo: self.read_in(repo, principal, audit, rtype, rid))

    def read_in(
        self, repo: Repository, principal: Principal, audit: AuditContext, rtype: str, rid: str
    ) -> tuple[Stored, list[str | None]]:
        """A read inside a transaction the caller holds (a transaction Bundle's GET): the resource and the patients
        it touched, for the caller's audit rows."""
        require_type(rtype)
        policy.require_scope(principal, rtype, "read")
        stored = repo.get(rtype, rid)
        if stored is None:
            raise NotFoundError(f"{rtype}/{rid} is not known")
        self._visible(repo, principal, stored, audit.break_glass)
        if stored.deleted:
            raise GoneError(f"{rtype}/{rid} was deleted (version {stored.version})")
        return stored, [stored.patient_key]

    def vread(self, principal: Principal, audit: AuditContext, rtype: str, rid: str, version: str) -> StoredVersion:
        return self._audited(audit, lambda repo: self.vread_in(repo, principal, audit, rtype, rid, version))

    def vread_in(
        self, repo: Repository, principal: Principal, audit: AuditContext, rtype: str, rid: str, version: str
    ) -> tuple[StoredVersion, list[str | None]]:
        require_type(rtype)
        number = whole_number(version)  # version ids are whole numbers here: any other is not a version
        if number is None or number > MAX_INTEGER:
            raise NotFoundError(f"{rtype}/{rid}/_history/{version[:40]} is not a version of this server")
        policy.require_scope(principal, rtype, "read")
        current = repo.get(rtype, rid)
        if current is None:
            raise NotFoundError(f"{rtype}/{rid} is not known")
        self._visible(repo, principal, current, audit.break_glass)
        found = repo.version(rtype, rid, number)
        if found is None:
            raise NotFoundError(f"{rtype}/{rid} has no version {number}")
        if found.deleted:
            raise GoneError(f"version {number} of {rtype}/{rid} is a deletion")
        return found, [current.patient_key]

    def history(
        self, principal: Principal, audit: AuditContext, rtype: str, rid: str, params: Sequence[tuple[str, str]]
    ) -> bytes:
        require_type(rtype)
        count = self.ctx.default_page_size
        below: int | None = None
        for name, value in params:
            number = whole_number(value)
            if name in ("_count", "_before_version") and number is None:
                raise BadRequestError(f"{name} must be a whole number (at most 18 digits)")
            if name == "_count" and number is not None:
                count = max(1, min(number, self.ctx.max_page_size))
            elif name == "_before_version" and number is not None:
                below = min(number, MAX_INTEGER + 1)  # every version is below a larger number
            elif name not in ("_format", "_pretty"):
                raise BadRequestError(f"history parameter {name!r} is not supported (supported: _count)")

        def run(repo: Repository) -> tuple[bytes, list[str | None]]:
            policy.require_scope(principal, rtype, "read")
            current = repo.get(rtype, rid)
            if current is None:
                raise NotFoundError(f"{rtype}/{rid} is not known")
            self._visible(repo, principal, current, audit.break_glass)
            versions = repo.history(rtype, rid, count=count + 1, below=below)
            page = versions[:count]
            entries = [self._history_entry(v) for v in page]
            links = [("self", f"{self.ctx.base_url}/{rtype}/{rid}/_history?_count={count}")]
            if len(versions) > count:
                links.append(
                    ("next", f"{self.ctx.base_url}/{rtype}/{rid}/_history?_count={count}"
                             f"&_before_version={page[-1].version}")
                )  # fmt: skip
            body = render("history", entries, now=self.ctx.clock(), total=repo.history_total(rtype, rid), links=links)
            return body, [current.patient_key]

        return self._audited(audit, run)

    def _history_entry(self, v: StoredVersion) -> Entry:
        url = f"{self.ctx.base_url}/{v.type}/{v.id}"
        method = {"POST": "POST", "PUT": "PUT", "DELETE": "DELETE"}[v.method]
        status = {"POST": "201 Created", "PUT": "200 OK", "DELETE": "204 No Content"}[v.method]
        request_url = v.type if method == "POST" else f"{v.type}/{v.id}"
        return Entry(
            full_url=url,
            body=v.body,
            request={"method": method, "url": request_url},
            response={"status": status, "etag": f'W/"{v.version}"', "lastModified": instant(v.last_updated)},
        )

    # ------------------------------------------------------------------ search
    def _parser(self) -> SearchParser:
        return SearchParser(
            self.ctx.identity,
            self.ctx.local_tz,
            self.ctx.base_url,
            now=self.ctx.clock(),
            cursor_key=self.ctx.cursor_key,
            limits=self.ctx.limits,
        )

    def date_values(self, name: str, raw: str) -> tuple[DateValue, ...]:
        """Date search values (prefix and range) in this server's grammar, for searches outside the resource index."""
        return self._parser().date_values(name, raw)

    def parse(self, rtype: str, params: Sequence[tuple[str, str]], *, lenient: bool) -> ParsedSearch:
        parser = self._parser()
        return parser.parse(
            rtype, params, lenient=lenient, default_count=self.ctx.default_page_size, max_count=self.ctx.max_page_size
        )

    def search(
        self,
        principal: Principal,
        audit: AuditContext,
        rtype: str,
        params: Sequence[tuple[str, str]],
        *,
        lenient: bool = False,
        expect_match: str | None = None,
    ) -> SearchOutcome:
        """``expect_match``: a search standing for a read (a page opening one record): no match is then a 404 audited
        as a refusal, with this text."""
        require_type(rtype)
        return self._audited(
            audit,
            lambda repo: self.search_in(
                repo, principal, audit, rtype, params, lenient=lenient, expect_match=expect_match
            ),
        )

    def search_in(
        self,
        repo: Repository,
        principal: Principal,
        audit: AuditContext,
        rtype: str,
        params: Sequence[tuple[str, str]],
        *,
        lenient: bool = False,
        expect_match: str | None = None,
    ) -> tuple[SearchOutcome, list[str | None]]:
        """A search inside a transaction the caller holds; the outcome and the patients it touched."""
        require_type(rtype)
        policy.require_scope(principal, rtype, "read")
        parsed = self.parse(rtype, params, lenient=lenient)
        limit = policy.read_filter(principal, rtype, break_glass=audit.break_glass, params=params)
        shared = policy.sharing_filter(principal, rtype, self.ctx.sensitive_items, break_glass=audit.break_glass)
        query = parsed.query
        limits = tuple(c for c in (limit, shared) if c is not None)
        if limits:
            query = Query(query.type, (*query.clauses, *limits), query.sort, query.count, query.cursor, query.snapshot)
        if query.snapshot is None:
            query = Query(query.type, query.clauses, query.sort, query.count, query.cursor, repo.max_pk())
        outcome, keys = self._execute(repo, principal, rtype, parsed, query, audit.break_glass)
        if expect_match is not None and outcome.matches == 0:
            raise NotFoundError(expect_match)
        if audit.break_glass is not None and limit is None and policy.needs_care_context(principal, rtype):
            policy.check_break_glass_result(keys)
        return outcome, keys

    def _execute(
        self,
        repo: Repository,
        principal: Principal,
        rtype: str,
        parsed: ParsedSearch,
        query: Query,
        break_glass: BreakGlass | None = None,
    ) -> tuple[SearchOutcome, list[str | None]]:
        now = self.ctx.clock()
        self_url = (
            f"{self.ctx.base_url}/{rtype}?{urlencode(parsed.self_params)}"
            if parsed.self_params
            else (f"{self.ctx.base_url}/{rtype}")
        )
        if parsed.summary_count:
            count = repo.count(query)
            return SearchOutcome(render("searchset", [], now=now, total=count, links=[("self", self_url)]), count), []
        rows, last = repo.search(query)
        shown = parsed.subset.apply if parsed.subset is not None else _whole
        entries = [Entry(f"{self.ctx.base_url}/{s.type}/{s.id}", shown(s.body), "match") for s in rows]
        included = includes(repo, principal, rows, parsed.includes, self._visible, break_glass)
        seen = {(s.type, s.id) for s in (*rows, *included)}
        revincluded, cut = revincludes(repo, principal, rows, parsed.revincludes, seen, self._visible,
                                       cap=self.ctx.max_page_size, sensitive=self.ctx.sensitive_items,
                                       break_glass=break_glass)  # fmt: skip
        included += revincluded
        entries += [Entry(f"{self.ctx.base_url}/{s.type}/{s.id}", shown(s.body), "include") for s in included]
        if cut:
            note = f"_revinclude: more resources refer to this page than the {cut} returned; page with a smaller _count"
            entries.append(Entry(None, _outcome_bytes("warning", "too-costly", note), "outcome"))
        if parsed.ignored:
            warning = _outcome_bytes("warning", "not-supported", "ignored: " + "; ".join(parsed.ignored))
            entries.append(Entry(None, warning, "outcome"))
        links = [("self", self_url)]
        if last:
            sep = "&" if "?" in self_url else "?"
            cursor = self._parser().make_cursor(rtype, query.sort, last, query.snapshot or 0)
            links.append(("next", f"{self_url}{sep}_cursor={cursor}"))
        total = repo.count(query) if parsed.total else None
        body = render("searchset", entries, now=now, total=total, links=links)
        return SearchOutcome(body, len(rows)), [s.patient_key for s in (*rows, *included)]


def _whole(body: bytes) -> bytes:
    return body


def subset_of(params: Sequence[tuple[str, str]]) -> Subset | None:
    """``_summary`` / ``_elements`` of a read or vread (R4 search.html §3.1.1.5.8–9 apply to reads too);
    ``_summary=count`` belongs to searches."""
    summary = [v for k, v in params if k == "_summary"]
    if len(summary) > 1:
        raise BadRequestError("_summary is given more than once")
    if summary and summary[0] == "count":
        raise BadRequestError("_summary=count is for searches; a read returns one resource")
    try:
        return Subset.of(summary[0] if summary else None, [v for k, v in params if k == "_elements"])
    except SubsetError as exc:
        raise BadRequestError(str(exc)) from None


def _outcome_bytes(severity: str, code: str, text: str) -> bytes:
    return orjson.dumps(
        {"resourceType": "OperationOutcome", "issue": [{"severity": severity, "code": code, "diagnostics": text}]}
    )
