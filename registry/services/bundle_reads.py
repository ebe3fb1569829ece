"""GET entries of ``batch`` and ``transaction`` Bundles (FHIR R4 bundle.html §3.1.0.11 / http.html §3.1.0.11 batch and
transaction): a read (``Type/id``), a vread (``Type/id/_history/n``) or a search (``Type?…``), each decided by the
one access policy exactly as the same REST interaction is — the same reads service, the same audit rows — so a
Bundle opens nothing a direct request would not.

In a batch each GET runs on its own (its failure is its entry's response); in a transaction it runs inside the
transaction after the writes (R4 order: DELETE, POST, PUT/PATCH, then GET), sees them, and its failure fails the
whole transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from registry.auth import Principal
from registry.errors import BadRequestError, RegistryError
from registry.fhir.bundle import Entry, instant, weak_etag
from registry.services.audit import AuditContext, rows_for_patients
from registry.services.ingest.entries import REASON, outcome_of
from registry.services.search import Reads, subset_of
from registry.store.repository import Repository


@dataclass(frozen=True, slots=True)
class GetTarget:
    interaction: str  # read | vread | search-type
    type: str
    id: str | None
    version: str | None
    params: list[tuple[str, str]]
    query: str


def get_target(url: str, base_url: str, where: str) -> GetTarget:
    """What a GET entry's ``request.url`` (relative to the base, or absolute under it) asks for."""
    relative = url[len(base_url) :] if url.startswith(base_url) else url
    parts = urlsplit(relative)
    segments = [s for s in parts.path.strip("/").split("/") if s]
    params = parse_qsl(parts.query, keep_blank_values=True)
    if len(segments) == 1:
        return GetTarget("search-type", segments[0], None, None, params, parts.query)
    if len(segments) == 2 and not segments[1].startswith(("_", "$")):
        return GetTarget("read", segments[0], segments[1], None, params, parts.query)
    if len(segments) == 4 and segments[2] == "_history":
        return GetTarget("vread", segments[0], segments[1], segments[3], params, parts.query)
    raise BadRequestError(
        f"{where}.request.url {url!r}: a GET entry is a read (Type/id), a vread (Type/id/_history/n) or a search "
        "(Type?params); other interactions are not supported in Bundles",
        expression=[f"{where}.request.url"],
    )


class BundleReads:
    def __init__(self, reads: Reads) -> None:
        self.reads = reads

    def _audit(self, audit: AuditContext, target: GetTarget) -> AuditContext:
        redactor = audit.redactor
        query = (redactor.query(target.query) if redactor is not None else target.query) if target.query else None
        return replace(audit, interaction=target.interaction, resource_type=target.type, resource_id=target.id,
                       query=query)  # fmt: skip

    def _answer(
        self, repo: Repository, principal: Principal, audit: AuditContext, target: GetTarget, lenient: bool
    ) -> tuple[Entry, list[str | None]]:
        reads = self.reads
        base = reads.ctx.base_url
        if target.interaction == "search-type":
            outcome, keys = reads.search_in(repo, principal, audit, target.type, target.params, lenient=lenient)
            return Entry(None, outcome.body, response={"status": "200 OK"}), keys
        subset = subset_of(target.params)
        if target.interaction == "read":
            stored, keys = reads.read_in(repo, principal, audit, target.type, target.id or "")
            version, last_updated, body = stored.version, stored.last_updated, stored.body
        else:
            found, keys = reads.vread_in(repo, principal, audit, target.type, target.id or "", target.version or "")
            version, last_updated, body = found.version, found.last_updated, found.body or b"{}"
        response = {"status": "200 OK", "etag": weak_etag(version), "lastModified": instant(last_updated)}
        shown = subset.apply(body) if subset is not None else body
        return Entry(f"{base}/{target.type}/{target.id}", shown, response=response), keys

    def in_transaction(
        self, repo: Repository, principal: Principal, audit: AuditContext, url: str, where: str, *, now: datetime,
        lenient: bool,
    ) -> tuple[Entry, list[dict[str, Any]]]:  # fmt: skip
        """A GET entry of a transaction, in its database transaction: the entry and its audit rows."""
        target = get_target(url, self.reads.ctx.base_url, where)
        entry_audit = self._audit(audit, target)
        entry, keys = self._answer(repo, principal, entry_audit, target, lenient)
        return entry, rows_for_patients(entry_audit, now=now, status=200, patient_keys=keys)

    def alone(self, principal: Principal, audit: AuditContext, url: str, where: str, *, lenient: bool) -> Entry:
        """A GET entry of a batch, in a transaction of its own; a refusal or error is the entry's response."""
        try:
            target = get_target(url, self.reads.ctx.base_url, where)
            entry_audit = self._audit(audit, target)
            return self.reads.audited(
                entry_audit, lambda repo: self._answer(repo, principal, entry_audit, target, lenient)
            )
        except RegistryError as exc:
            status = f"{exc.status} {REASON.get(exc.status, '')}".strip()
            return Entry(None, response={"status": status}, outcome=outcome_of(exc))
