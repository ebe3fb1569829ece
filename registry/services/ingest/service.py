"""Writing use cases: create, conditional create, update, conditional update, delete, and transaction/batch Bundles
(FHIR R4 §http create/update/delete, §transaction). A write commits whole or not at all.

Every resource written goes through one pipeline: parse → validate (R4B structure + required bindings) → national
identifiers replaced by their masked form in the stored text and by their keyed hash in the index → references
resolved (``urn:uuid`` fullUrls, conditional references ``Patient?identifier=…``, and every reference to a type this
server holds must exist) → the patient it belongs to (the master key of its subject) → who may write it → business
identifiers claimed (unique in the database) → search values extracted → stored as the accepted text with the
server's ``id`` and ``meta``.

A repeated push is harmless: a create whose business identifier already exists with the same content answers the
existing resource (200), an update with unchanged content makes no new version, and a lost race on a unique
identifier is retried and then answered like a repeat — never a duplicate, never a 500.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode

import orjson
from sqlalchemy.exc import IntegrityError, OperationalError

from registry.auth import Principal
from registry.errors import (
    BadRequestError,
    ConflictError,
    NotFoundError,
    RegistryError,
    TooLargeError,
)
from registry.fhir.bundle import Entry, instant, render, weak_etag
from registry.fhir.json_text import DuplicateKeyError, loads_document
from registry.fhir.patch import Patch
from registry.fhir.validation import ID_RE
from registry.services.audit import AuditContext, AuditTrail, audit_row
from registry.services.ingest.engine import WriteEngine
from registry.services.ingest.entries import (
    REASON,
    BundleItem,
    Done,
    at_entry,
    entry_resource_texts,
    outcome_of,
)
from registry.services.ingest.preparation import Preparer
from registry.services.ingest.session import (
    ATTEMPTS,
    SUPPORTED,
    RetryError,
    Session,
    T,
    WriteContext,
    WriteResult,
)
from registry.store.records import DuplicateIdentifierError

if TYPE_CHECKING:  # the reads of GET entries are handed in (registry.services.bundle_reads imports this package)
    from registry.services.bundle_reads import BundleReads

_FORMAT_PARAMS = frozenset({"_format", "_pretty"})


def creation_condition(if_none_exist: str | None, url_params: list[tuple[str, str]]) -> str | None:
    """The condition of a create: the ``If-None-Exist`` header (R4 http.html §3.1.0.8 conditional create), or the
    search parameters in the URL of ``POST [type]?…``, which R4 does not define and which the registry reads as the
    same condition (fhirpy's ``get_or_create`` and Aidbox send it so) rather than create a duplicate; both at once,
    unless they say the same, are 400."""
    used = [(k, v) for k, v in url_params if k not in _FORMAT_PARAMS]
    query = urlencode(used) if used else None
    header = if_none_exist.strip().lstrip("?") if if_none_exist else None
    if query and header and sorted(parse_qsl(header, keep_blank_values=True)) != sorted(used):
        raise BadRequestError("a create carries two different conditions: If-None-Exist and search parameters in the "
                              "URL; send one")  # fmt: skip
    return header or query


class Ingest:
    def __init__(self, ctx: WriteContext) -> None:
        self.ctx = ctx
        self.audit = AuditTrail(ctx.uow)

        # ================================================================== pipeline
        self.engine = WriteEngine(ctx, Preparer(ctx))

    def _run(self, audit: AuditContext, principal: Principal, fn: Callable[[Session], T]) -> T:
        last: Exception | None = None
        repeats: dict[int, str] = {}
        for attempt in range(ATTEMPTS):
            now = self.ctx.clock()
            try:
                with self.ctx.uow.begin(plan_each=True) as repo:
                    s = Session(repo, principal, now, locking=attempt > 0, repeats=repeats)
                    result = fn(s)
                    repo.add_audit(s.audit_rows)
                for told in s.after_commit:
                    told()
                return result
            except RetryError as exc:
                last = exc
                repeats = exc.repeats
            except DuplicateIdentifierError as exc:
                last = exc
            except IntegrityError as exc:  # (type, id) taken by a concurrent create-with-id
                last = exc
            except OperationalError as exc:
                if "deadlock" not in str(exc).lower() and "could not serialize" not in str(exc).lower():
                    raise
                last = exc
            except RegistryError as exc:
                self.audit.record([audit_row(audit, now=now, status=exc.status, detail=exc.diagnostics)])
                exc.audited = True
                raise
        self.audit.record([audit_row(audit, now=self.ctx.clock(), status=409, detail="write contention")])
        error = ConflictError(f"the write kept colliding with concurrent writes; retry it ({type(last).__name__})")
        error.audited = True
        raise error

    # ================================================================== single interactions
    def _single(self, principal: Principal, audit: AuditContext, item: BundleItem) -> WriteResult:
        def run(s: Session) -> WriteResult:
            (done,) = self.engine.apply(s, audit, [item], single=True)
            if done.stored is None:  # only a delete answers without a resource
                raise NotFoundError("nothing was written")
            return WriteResult(201 if done.status_text.startswith("201") else 200, done.stored)

        return self._run(audit, principal, run)

    def create(
        self, principal: Principal, audit: AuditContext, rtype: str, text: str, if_none_exist: str | None
    ) -> WriteResult:
        item = BundleItem(0, "POST", rtype, None, text, if_none_exist.lstrip("?") if if_none_exist else None, None)
        return self._single(principal, audit, item)

    def update(
        self, principal: Principal, audit: AuditContext, rtype: str, rid: str, text: str, if_match: str | None
    ) -> WriteResult:
        if not ID_RE.match(rid):
            raise BadRequestError(f"{rid!r} is not a valid FHIR id")
        return self._single(principal, audit, BundleItem(0, "PUT", f"{rtype}/{rid}", None, text, None, if_match))

    def patch(
        self, principal: Principal, audit: AuditContext, rtype: str, rid: str, patch: Patch, if_match: str | None
    ) -> WriteResult:
        """PATCH (R4 http.html §3.1.0.5): the patched resource goes through the same write path as an update."""
        if not ID_RE.match(rid):
            raise BadRequestError(f"{rid!r} is not a valid FHIR id")
        return self._single(principal, audit, BundleItem(0, "PATCH", f"{rtype}/{rid}", None, None, None, if_match,
                                                         patch))  # fmt: skip

    def conditional_update(
        self, principal: Principal, audit: AuditContext, rtype: str, query: str, text: str
    ) -> WriteResult:
        return self._single(principal, audit, BundleItem(0, "PUT", f"{rtype}?{query}", None, text, None, None))

    def delete(self, principal: Principal, audit: AuditContext, rtype: str, rid: str) -> int | None:
        """Delete; returns the deletion's version, or None when there was nothing live to delete."""
        if rtype not in SUPPORTED:
            raise NotFoundError(f"resource type {rtype!r} is not supported")

        def run(s: Session) -> int | None:
            (done,) = self.engine.apply(s, audit, [BundleItem(0, "DELETE", f"{rtype}/{rid}", None, None, None, None)],
                                  single=True)  # fmt: skip
            return done.stored.version if done.stored is not None else None

        return self._run(audit, principal, run)

    def bundle(
        self,
        principal: Principal,
        audit: AuditContext,
        text: str,
        *,
        representation: bool,
        reads: BundleReads | None = None,
        lenient: bool = True,
    ) -> bytes:
        """A transaction or batch Bundle; ``reads`` answers its GET entries (without it they are refused)."""
        try:
            return self._bundle(principal, audit, text, representation=representation, reads=reads, lenient=lenient)
        except RegistryError as exc:
            if not exc.audited:
                self.audit.record([audit_row(audit, now=self.ctx.clock(), status=exc.status, detail=exc.diagnostics)])
            raise

    def _bundle(
        self,
        principal: Principal,
        audit: AuditContext,
        text: str,
        *,
        representation: bool,
        reads: BundleReads | None,
        lenient: bool,
    ) -> bytes:
        try:
            bundle = loads_document(text)
        except orjson.JSONDecodeError as exc:
            raise BadRequestError(f"the body is not valid JSON: {exc}") from None
        except DuplicateKeyError as exc:
            raise BadRequestError(f"the body is ambiguous JSON: {exc}") from None
        if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
            raise BadRequestError("POST to the base URL takes a Bundle of type transaction or batch")
        btype = bundle.get("type")
        if btype not in ("transaction", "batch"):
            raise BadRequestError(f"Bundle.type must be transaction or batch, got {btype!r}")
        entries = bundle.get("entry") or []
        if not isinstance(entries, list):
            raise BadRequestError("Bundle.entry must be a list")
        if len(entries) > self.ctx.max_bundle_entries:
            raise TooLargeError(
                f"the Bundle has {len(entries)} entries; this server takes at most {self.ctx.max_bundle_entries}"
            )
        spans = entry_resource_texts(text)
        items = [BundleItem.of(i, e, spans.get(i)) for i, e in enumerate(entries)]
        gets = [it for it in items if it.method == "GET"]
        if gets and reads is None:
            raise BadRequestError(f"Bundle.entry[{gets[0].index}]: GET entries are not supported here")
        writes = [it for it in items if it.method != "GET"]
        if btype == "transaction":

            def run(s: Session) -> bytes:
                # R4 http.html §3.1.0.11.2: DELETE, POST, PUT/PATCH, then GET — the reads see this Bundle's writes
                done = self.engine.apply(s, audit, writes) if writes else []
                answered = {r.index: self._entry(r, representation) for r in done}
                for it in gets:
                    assert reads is not None  # noqa: S101 - checked above
                    where = f"Bundle.entry[{it.index}]"
                    try:
                        entry, rows = reads.in_transaction(s.repo, principal, audit, it.url, where, now=s.now,
                                                           lenient=lenient)  # fmt: skip
                    except RegistryError as exc:
                        raise at_entry(exc, where) from None
                    s.audit_rows.extend(rows)
                    answered[it.index] = entry
                return render("transaction-response", [answered[it.index] for it in items], now=s.now)

            return self._run(audit, principal, run)
        out: list[Entry] = []
        for item in items:
            if item.method == "GET":
                assert reads is not None  # noqa: S101 - checked above
                out.append(reads.alone(principal, audit, item.url, f"Bundle.entry[{item.index}]", lenient=lenient))
                continue

            def one(s: Session, it: BundleItem = item) -> list[Done]:
                return self.engine.apply(s, audit, [it])

            try:
                (response,) = self._run(audit, principal, one)
                out.append(self._entry(response, representation))
            except RegistryError as exc:
                status = f"{exc.status} {REASON.get(exc.status, '')}".strip()
                out.append(Entry(None, response={"status": status}, outcome=outcome_of(exc)))
        return render("batch-response", out, now=self.ctx.clock())

    def _entry(self, r: Done, representation: bool) -> Entry:
        if r.stored is None or r.stored.deleted:
            return Entry(None, response={"status": r.status_text})
        st = r.stored
        return Entry(
            f"{self.ctx.base_url}/{st.type}/{st.id}",
            st.body if representation else None,
            response={"status": r.status_text, "location": f"{st.type}/{st.id}/_history/{st.version}",
                      "etag": weak_etag(st.version), "lastModified": instant(st.last_updated)},
        )  # fmt: skip
