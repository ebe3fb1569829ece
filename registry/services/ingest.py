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

import hashlib
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

import orjson
from sqlalchemy.exc import IntegrityError, OperationalError

from registry.auth import Principal, PrincipalKind
from registry.errors import (
    BadRequestError,
    ConditionNotFoundError,
    ConflictError,
    ForbiddenError,
    InvalidResourceError,
    NotFoundError,
    PreconditionFailedError,
    ReferenceNotFoundError,
    RegistryError,
    TooLargeError,
    UnprocessableError,
)
from registry.fhir.bundle import Entry, instant, render, weak_etag
from registry.fhir.extract import extract, parse_reference, references, to_us
from registry.fhir.json_text import JsonShapeError, elements, members, replace_all, with_server_members
from registry.fhir.search_params import PATIENT_COMPARTMENT, SEARCH_PARAMS
from registry.fhir.validation import ID_RE, ResourceInvalidError, validate
from registry.services import access, code_maps
from registry.services.audit import AuditContext, AuditTrail, audit_row
from registry.services.config_cache import ConfigCache
from registry.services.identity import MASK, IdentityPolicy, NationalIdError, masked
from registry.services.result_index import INDEXED, ResultIndexer
from registry.services.search_query import SearchParser
from registry.store.repository import (
    DuplicateIdentifierError,
    NewContent,
    Query,
    Repository,
    Stored,
    UnitOfWork,
    WritePlan,
)

SUPPORTED = frozenset(SEARCH_PARAMS)
T = TypeVar("T")
ATTEMPTS = 4
# Resources are prepared so that what others refer to is known first (a report's Patient, Observations, study…).
PREPARE_ORDER = {t: i for i, t in enumerate(("Organization", "Practitioner", "Endpoint", "Patient", "ServiceRequest",
                                             "ImagingStudy", "Observation", "DiagnosticReport"))}  # fmt: skip
EXECUTE_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "GET": 3}


class _RetryError(Exception):
    """A unique-key race was lost: run the whole operation again (it will now see the winner's row)."""


@dataclass(frozen=True, slots=True)
class WriteContext:
    uow: UnitOfWork
    identity: IdentityPolicy
    base_url: str
    local_tz: tzinfo
    clock: Callable[[], datetime]
    max_bundle_entries: int
    indexer: ResultIndexer | None = None
    config_cache: ConfigCache | None = None  # cleared when code maps or organizations change


@dataclass(frozen=True, slots=True)
class WriteResult:
    status: int  # 200 or 201
    stored: Stored

    @property
    def location(self) -> str:
        return f"{self.stored.type}/{self.stored.id}/_history/{self.stored.version}"


@dataclass(slots=True)
class Pending:
    """A resource being written in the current transaction (what later entries may refer to)."""

    type: str
    id: str
    patient_key: str | None = None
    org_id: str | None = None
    identifiers: set[tuple[str, str]] = field(default_factory=set)


@dataclass(slots=True)
class Prepared:
    type: str
    id: str
    text: str
    meta: dict[str, Any]
    content: NewContent


@dataclass(slots=True)
class Session:
    repo: Repository
    principal: Principal
    now: datetime
    pending: dict[tuple[str, str], Pending] = field(default_factory=dict)
    url_map: dict[str, str] = field(default_factory=dict)
    live: dict[tuple[str, str], str | None] = field(default_factory=dict)  # existence checks already answered
    by_identifier: dict[tuple[str, str, str], Stored | None] = field(default_factory=dict)  # batched look-ups
    subjects: dict[tuple[str, str], Stored | None] = field(default_factory=dict)  # stored Patients already read
    audit_rows: list[dict[str, Any]] = field(default_factory=list)


def _content_hash(resource: Mapping[str, Any]) -> str:
    stripped = {k: v for k, v in resource.items() if k != "id"}
    meta = stripped.get("meta")
    if isinstance(meta, Mapping):
        rest = {k: v for k, v in meta.items() if k not in ("versionId", "lastUpdated")}
        if rest:
            stripped["meta"] = rest
        else:
            stripped.pop("meta")
    return hashlib.sha256(orjson.dumps(stripped, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _walk_identifiers(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        if isinstance(node.get("system"), str) and isinstance(node.get("value"), str):
            yield path, node
        for key, value in node.items():
            yield from _walk_identifiers(value, f"{path}.{key}" if path else key)
    elif isinstance(node, list):
        for i, element in enumerate(node):
            yield from _walk_identifiers(element, f"{path}[{i}]")


def _invalid(rtype: str, issues: list[tuple[str, str]]) -> InvalidResourceError:
    summary = "; ".join(f"{where}: {msg}" for where, msg in issues[:5])
    return InvalidResourceError(f"{rtype} is not valid: {summary}", issues=issues)


class Ingest:
    def __init__(self, ctx: WriteContext) -> None:
        self.ctx = ctx
        self.audit = AuditTrail(ctx.uow)

    # ================================================================== pipeline
    def _parse(self, text: str, expected_type: str | None) -> dict[str, Any]:
        try:
            resource = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise BadRequestError(f"the body is not valid JSON: {exc}") from None
        if not isinstance(resource, dict):
            raise BadRequestError("the body must be a JSON object (a FHIR resource)")
        rtype = resource.get("resourceType")
        if expected_type is not None and rtype != expected_type:
            raise BadRequestError(f"resourceType {rtype!r} does not match the URL's {expected_type}")
        if rtype not in SUPPORTED:
            raise NotFoundError(f"resource type {rtype!r} is not supported; supported: {', '.join(sorted(SUPPORTED))}")
        return resource

    def prepare(self, s: Session, text: str, resource: dict[str, Any], rid: str) -> Prepared:
        rtype = str(resource["resourceType"])
        try:
            validate(resource)
        except ResourceInvalidError as exc:
            raise _invalid(rtype, [(i.expression, i.message) for i in exc.issues]) from None

        # -- national identifiers: masked in the stored text, keyed hash in the index (DESIGN.md §4)
        secrets: list[tuple[str, str]] = []
        own_keys: set[str] = set()
        hashed: list[tuple[dict[str, Any], str]] = []
        for path, ident in _walk_identifiers(resource):
            if not self.ctx.identity.is_national(ident["system"]):
                continue
            raw = ident["value"]
            if MASK in raw:
                # A client sending back what it read: the masked form stands for the identifier already on file.
                key = self._key_on_file(s, rtype, rid, raw, f"{rtype}.{path}")
                hashed.append((ident, key))
                if rtype == "Patient" and path.startswith("identifier["):
                    own_keys.add(key)
                continue
            try:
                key = self.ctx.identity.master_key(ident["system"], raw)
            except NationalIdError as exc:
                raise _invalid(rtype, [(f"{rtype}.{path}", str(exc))]) from None
            secrets += [(raw, masked(raw)), (raw.strip().upper(), masked(raw))]
            hashed.append((ident, key))
            if rtype == "Patient" and path.startswith("identifier["):
                own_keys.add(key)
        if secrets:
            text = replace_all(text, sorted(set(secrets), key=lambda p: -len(p[0])))
        for ident, key in hashed:
            if MASK not in ident["value"]:
                ident["value"] = masked(ident["value"])
            ident["_key"] = key  # temporary: read by the index view below, never stored

        # -- references
        text = self._resolve_references(s, rtype, text, resource)

        # -- the patient it belongs to
        patient_key: str | None = None
        subject_org: str | None = None
        if rtype == "Patient":
            if not own_keys:
                systems = ", ".join(self.ctx.identity.systems)
                raise UnprocessableError(
                    f"a Patient must carry a national identifier (Patient.identifier with a system of: {systems}); "
                    "it links the hospital's record to the patient's identity across hospitals",
                    expression=["Patient.identifier"],
                )
            if len(own_keys) > 1:
                raise UnprocessableError("the Patient carries national identifiers of two different people",
                                         expression=["Patient.identifier"])  # fmt: skip
            patient_key = own_keys.pop()
        elif rtype in PATIENT_COMPARTMENT:
            patient_key, subject_org = self._subject(s, rtype, resource)

        # -- who writes it
        issuers = access.issuer_orgs(
            {**resource, "id": rid} if rtype == "Organization" else resource, self.ctx.base_url
        )
        org_id = access.check_write(s.principal, rtype, issuers, subject_org)

        # -- business identifiers, content hash, index values
        identifiers = {
            (str(i["system"]), str(i["value"]))
            for i in resource.get("identifier") or []
            if isinstance(i, dict)
            and i.get("system")
            and i.get("value")
            and not self.ctx.identity.is_national(i["system"])
        }
        index_view = _index_view(resource)
        for ident, _key in hashed:
            ident.pop("_key", None)
        content_hash = _content_hash(resource)
        index = extract(index_view, self.ctx.local_tz, self.ctx.base_url)
        meta_in = resource.get("meta") if isinstance(resource.get("meta"), dict) else {}
        meta = {k: v for k, v in (meta_in or {}).items() if k not in ("versionId", "lastUpdated")}
        content = NewContent(rtype, rid, b"", content_hash, patient_key, org_id, index, identifiers)
        return Prepared(rtype, rid, text, meta, content)

    def _key_on_file(self, s: Session, rtype: str, rid: str, shown: str, where: str) -> str:
        existing = s.repo.get(rtype, rid)
        if existing is None or existing.patient_key is None or shown.encode() not in existing.body:
            raise _invalid(
                rtype,
                [
                    (
                        where,
                        "a masked national identifier can only stand for the one already on file "
                        "for this resource; send the full identifier",
                    )
                ],
            )
        return existing.patient_key

    def _resolve_references(self, s: Session, rtype: str, text: str, resource: dict[str, Any]) -> str:
        replacements: dict[str, str] = {}
        to_check: list[tuple[str, tuple[str, str]]] = []
        for path, node in references(resource):
            ref = str(node["reference"])
            new = ref
            if ref in s.url_map:
                new = s.url_map[ref]
            elif ref.startswith("urn:uuid:") or ref.startswith("urn:oid:"):
                raise UnprocessableError(f"{rtype}.{path}: {ref} is not the fullUrl of any entry in this Bundle",
                                         expression=[f"{rtype}.{path}"])  # fmt: skip
            elif "?" in ref and ref.split("?", 1)[0] in SUPPORTED:
                new = self._conditional_reference(s, rtype, path, ref)
            parsed = parse_reference(new, self.ctx.base_url)
            if parsed is not None and parsed[0] in SUPPORTED:
                new = f"{parsed[0]}/{parsed[1]}"  # store relative references
                if parsed not in s.pending:
                    to_check.append((f"{rtype}.{path}", parsed))
            if new != ref:
                node["reference"] = new
                replacements[ref] = new
        unknown = [target for _, target in to_check if target not in s.live]
        if unknown:
            s.live.update(s.repo.live_patient_keys(unknown))
        if to_check:
            missing = [(where, target) for where, target in to_check if target not in s.live]
            if missing:
                where, (t, i) = missing[0]
                raise ReferenceNotFoundError(
                    f"{where}: reference {t}/{i} does not resolve to a resource on this server",
                    expression=[w for w, _ in missing],
                )
        for old, new in replacements.items():
            literal = orjson.dumps(old).decode()
            if literal in text:
                text = text.replace(literal, orjson.dumps(new).decode())
            else:  # written with unusual escapes: fall back to a re-serialization of this one resource
                return orjson.dumps(resource).decode()
        return text

    def _conditional_reference(self, s: Session, rtype: str, path: str, ref: str) -> str:
        target_type, query = ref.split("?", 1)
        simple = _identifier_condition(target_type, query)
        if simple is not None and simple in s.by_identifier:
            found = s.by_identifier[simple]
            matches = [found.id] if found is not None else []
            pending = [p.id for p in s.pending.values() if p.type == target_type and simple[1:] in p.identifiers]
            matches += [i for i in pending if i not in matches]
        else:
            matches = self._matches(s, target_type, query)
        if len(matches) != 1:
            error = ConditionNotFoundError if not matches else PreconditionFailedError
            raise error(
                f"{rtype}.{path}: conditional reference {target_type}?… matched {len(matches)} resources, not one",
                expression=[f"{rtype}.{path}"],
            )
        return f"{target_type}/{matches[0]}"

    def _matches(self, s: Session, rtype: str, query: str) -> list[str]:
        """Ids matching a conditional query, among stored resources and those pending in this transaction."""
        params = parse_qsl(query, keep_blank_values=True)
        if not params:
            raise BadRequestError(f"a conditional {rtype} query needs at least one parameter")
        parser = SearchParser(self.ctx.identity, self.ctx.local_tz, self.ctx.base_url, now=s.now)
        parsed = parser.parse(rtype, params, lenient=False, default_count=3, max_count=3)
        rows, _ = s.repo.search(Query(rtype, parsed.query.clauses, count=3))
        ids = [r.id for r in rows]
        # Pending resources match an identifier query by their business identifiers.
        wanted = {(v.split("|", 1)[0], v.split("|", 1)[1]) for n, raw in params if n == "identifier"
                  for v in raw.split(",") if "|" in v}  # fmt: skip
        if wanted and len(params) == 1:
            for p in s.pending.values():
                if p.type == rtype and p.identifiers & wanted and p.id not in ids:
                    ids.append(p.id)
        return ids

    def _subject(self, s: Session, rtype: str, resource: Mapping[str, Any]) -> tuple[str, str | None]:
        subject = resource.get("subject")
        ref = subject.get("reference") if isinstance(subject, Mapping) else None
        parsed = parse_reference(ref, self.ctx.base_url) if isinstance(ref, str) else None
        if parsed is None or parsed[0] != "Patient":
            raise UnprocessableError(
                f"{rtype}.subject must reference a Patient known to the registry (Patient/<id>)",
                expression=[f"{rtype}.subject"],
            )
        pending = s.pending.get(parsed)
        if pending is not None and pending.patient_key:
            return pending.patient_key, pending.org_id
        # A Bundle's entries mostly share one subject: read the stored Patient once per transaction (a Patient
        # written earlier in the same transaction is found in ``pending`` above, before this cache).
        if parsed not in s.subjects:
            s.subjects[parsed] = s.repo.get_many([parsed]).get(parsed)
        found = s.subjects[parsed]
        if found is None or found.patient_key is None:
            raise ReferenceNotFoundError(
                f"{rtype}.subject: Patient/{parsed[1]} is not known to the registry", expression=[f"{rtype}.subject"]
            )
        return found.patient_key, found.org_id

    # ================================================================== storing
    def _body(self, p: Prepared, version: int, now: datetime) -> bytes:
        meta = {**p.meta, "versionId": str(version), "lastUpdated": instant(now)}
        try:
            return with_server_members(p.text, p.type, p.id, meta).encode()
        except JsonShapeError as exc:
            raise BadRequestError(f"the body is not a JSON object: {exc}") from None

    # ================================================================== running with retries
    def _run(self, audit: AuditContext, principal: Principal, fn: Callable[[Session], T]) -> T:
        last: Exception | None = None
        for _attempt in range(ATTEMPTS):
            now = self.ctx.clock()
            try:
                with self.ctx.uow.begin() as repo:
                    s = Session(repo, principal, now)
                    result = fn(s)
                    repo.add_audit(s.audit_rows)
                return result
            except (_RetryError, DuplicateIdentifierError) as exc:
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
    def _single(self, principal: Principal, audit: AuditContext, item: _BundleItem) -> WriteResult:
        def run(s: Session) -> WriteResult:
            (done,) = self._apply(s, audit, [item], single=True)
            if done.stored is None:  # only a delete answers without a resource
                raise NotFoundError("nothing was written")
            return WriteResult(201 if done.status_text.startswith("201") else 200, done.stored)

        return self._run(audit, principal, run)

    def create(
        self, principal: Principal, audit: AuditContext, rtype: str, text: str, if_none_exist: str | None
    ) -> WriteResult:
        item = _BundleItem(0, "POST", rtype, None, text, if_none_exist.lstrip("?") if if_none_exist else None, None)
        return self._single(principal, audit, item)

    def update(
        self, principal: Principal, audit: AuditContext, rtype: str, rid: str, text: str, if_match: str | None
    ) -> WriteResult:
        if not ID_RE.match(rid):
            raise BadRequestError(f"{rid!r} is not a valid FHIR id")
        return self._single(principal, audit, _BundleItem(0, "PUT", f"{rtype}/{rid}", None, text, None, if_match))

    def conditional_update(
        self, principal: Principal, audit: AuditContext, rtype: str, query: str, text: str
    ) -> WriteResult:
        return self._single(principal, audit, _BundleItem(0, "PUT", f"{rtype}?{query}", None, text, None, None))

    def delete(self, principal: Principal, audit: AuditContext, rtype: str, rid: str) -> int | None:
        """Delete; returns the deletion's version, or None when there was nothing live to delete."""
        if rtype not in SUPPORTED:
            raise NotFoundError(f"resource type {rtype!r} is not supported")

        def run(s: Session) -> int | None:
            (done,) = self._apply(s, audit, [_BundleItem(0, "DELETE", f"{rtype}/{rid}", None, None, None, None)],
                                  single=True)  # fmt: skip
            return done.stored.version if done.stored is not None else None

        return self._run(audit, principal, run)

    def _check_visible_to_writer(self, s: Session, found: Stored) -> None:
        p = s.principal
        if (
            p.kind is PrincipalKind.HOSPITAL
            and found.org_id not in (None, p.org_id)
            and found.type not in access.DIRECTORY
            and not (found.patient_key and s.repo.has_care_context(p.org_id or "", found.patient_key))
        ):
            raise ForbiddenError(f"{found.type}/{found.id} matches, but belongs to another organization")

    # ================================================================== Bundles
    def bundle(self, principal: Principal, audit: AuditContext, text: str, *, representation: bool) -> bytes:
        try:
            return self._bundle(principal, audit, text, representation=representation)
        except RegistryError as exc:
            if not exc.audited:
                self.audit.record([audit_row(audit, now=self.ctx.clock(), status=exc.status, detail=exc.diagnostics)])
            raise

    def _bundle(self, principal: Principal, audit: AuditContext, text: str, *, representation: bool) -> bytes:
        try:
            bundle = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise BadRequestError(f"the body is not valid JSON: {exc}") from None
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
        spans = _entry_resource_texts(text)
        items = [_BundleItem.of(i, e, spans.get(i)) for i, e in enumerate(entries)]
        if btype == "transaction":

            def run(s: Session) -> bytes:
                responses = self._apply(s, audit, items)
                return render("transaction-response", [self._entry(r, representation) for r in responses], now=s.now)

            return self._run(audit, principal, run)
        out: list[Entry] = []
        for item in items:

            def one(s: Session, it: _BundleItem = item) -> list[_Done]:
                return self._apply(s, audit, [it])

            try:
                (response,) = self._run(audit, principal, one)
                out.append(self._entry(response, representation))
            except RegistryError as exc:
                status = f"{exc.status} {_REASON.get(exc.status, '')}".strip()
                out.append(Entry(None, response={"status": status}, outcome=_outcome(exc)))
        return render("batch-response", out, now=self.ctx.clock())

    def _entry(self, r: _Done, representation: bool) -> Entry:
        if r.stored is None or r.stored.deleted:
            return Entry(None, response={"status": r.status_text})
        st = r.stored
        return Entry(
            f"{self.ctx.base_url}/{st.type}/{st.id}",
            st.body if representation else None,
            response={"status": r.status_text, "location": f"{st.type}/{st.id}/_history/{st.version}",
                      "etag": weak_etag(st.version), "lastModified": instant(st.last_updated)},
        )  # fmt: skip

    # ================================================================== the write engine
    def _apply(self, s: Session, audit: AuditContext, items: list[_BundleItem], *, single: bool = False) -> list[_Done]:
        """Resolve, prepare and write entries in one transaction with a handful of SQL statements."""

        def where(step: _Step) -> str:
            return "" if single else f"Bundle.entry[{step.index}]"

        def guarded(step: _Step, fn: Callable[..., None], *args: Any) -> None:
            try:
                fn(*args)
            except RegistryError as exc:
                raise (exc if single else _at(exc, where(step))) from None

        steps = [_Step.of(it) for it in items]
        for step in steps:
            guarded(step, self._parse_step, step)

        # 1. identities: one query for every identifier-only condition — request conditions and conditional
        # references (``Patient?identifier=…``) alike; the rest are searched one by one.
        wanted = [key for st in steps for key in st.identifier_conditions()]
        wanted += [
            key
            for st in steps
            if st.resource is not None
            for _path, node in references(st.resource)
            if "?" in str(node["reference"])
            and (key := _identifier_condition(*str(node["reference"]).split("?", 1))) is not None
        ]
        by_identifier = s.repo.by_identifiers(wanted) if wanted else {}
        s.by_identifier.update({key: by_identifier.get(key) for key in wanted})
        for step in steps:
            guarded(step, self._resolve_target, s, step, by_identifier)
        for step in steps:
            if step.full_url and step.type and step.id and step.method != "DELETE":
                s.url_map[step.full_url] = f"{step.type}/{step.id}"
            if step.method in ("POST", "PUT") and step.done is None:
                s.pending[(step.type, step.id)] = Pending(step.type, step.id)

        # 2. the current rows of everything updated or deleted, locked for the transaction.
        targets = [(st.type, st.id) for st in steps if st.method in ("PUT", "DELETE") and st.done is None]
        current = s.repo.get_for_write(targets) if targets else {}

        # 3. prepare, what others refer to first (every stored reference checked in one query up front).
        stored_refs = [
            parsed
            for st in steps
            if st.resource is not None and st.done is None
            for _path, node in references(st.resource)
            if (parsed := parse_reference(str(node["reference"]), self.ctx.base_url)) is not None
            and parsed[0] in SUPPORTED
            and parsed not in s.pending
        ]
        if stored_refs:
            s.live.update(s.repo.live_patient_keys(stored_refs))
        for step in sorted(steps, key=lambda st: PREPARE_ORDER.get(st.type, 99)):
            if step.resource is None or step.done is not None:
                continue
            guarded(step, self._prepare_step, s, step)
        claimed: dict[tuple[str, str, str], int] = {}
        for step in steps:
            if step.prepared is None:
                continue
            for system, value in step.prepared.content.identifiers:
                other = claimed.setdefault((step.type, system, value), step.index)
                if other != step.index:
                    raise BadRequestError(
                        f"Bundle.entry[{other}] and Bundle.entry[{step.index}] both carry {step.type} identifier "
                        f"{system}|{value}"
                    )
        holders = s.repo.by_identifiers(list(claimed)) if claimed else {}

        # 4. decide each write, then write them all at once.
        plan = WritePlan()
        for step in steps:
            if step.done is None:
                guarded(step, self._plan, s, step, current.get((step.type, step.id)), holders, plan)
        written = s.repo.apply(plan, now=s.now, now_us=to_us(s.now)) if (plan.creates or plan.replaces or
                                                                          plan.deletes) else {}  # fmt: skip
        if written:
            self._maintain_recognition(s, written)
        results: list[_Done] = []
        for step in steps:
            if step.done is None:
                stored = written[(step.type, step.id)]
                if stored.deleted:
                    step.done = _Done(step.index, "204 No Content", stored)
                    interaction, status = "delete", 204
                elif stored.version == 1 or step.recreated:
                    step.done = _Done(step.index, "201 Created", stored)
                    interaction, status = "create", 201
                else:
                    step.done = _Done(step.index, "200 OK", stored)
                    interaction, status = "update", 200
                s.audit_rows.append(audit_row(audit, now=s.now, status=status, patient_key=stored.patient_key,
                                              resource_type=stored.type, resource_id=stored.id,
                                              interaction=interaction))  # fmt: skip
            results.append(step.done)
        return results

    def _maintain_recognition(self, s: Session, written: Mapping[tuple[str, str], Stored]) -> None:
        """Keep the code maps and the result index in step with what this transaction wrote (DESIGN.md §4)."""
        indexer = self.ctx.indexer
        if indexer is None:
            return
        refs = {key for key in written if key[0] in INDEXED}
        if self.ctx.config_cache is not None and any(k[0] in ("ConceptMap", "Organization") for k in written):
            self.ctx.config_cache.clear()
        for (rtype, _rid), stored in written.items():
            if rtype == "ConceptMap":
                systems = code_maps.sync(s.repo, stored, indexer.catalog)
                if stored.org_id:
                    refs |= s.repo.results_with_codes(stored.org_id, systems)
        unmapped = indexer.reindex(s.repo, refs)
        if unmapped:
            s.repo.count_unmapped(unmapped, now=s.now)

    def _parse_step(self, step: _Step) -> None:
        step.type, step.id, step.query = step.item.target()
        if step.type not in SUPPORTED:
            raise NotFoundError(f"resource type {step.type!r} is not supported")
        if step.method == "GET":
            raise BadRequestError("GET entries are not supported in Bundles; read or search directly")
        if step.method in ("POST", "PUT"):
            step.resource = self._parse(step.item.text or "", step.type)
            body_id = step.resource.get("id")
            if step.method == "PUT" and step.id and body_id not in (None, step.id):
                raise BadRequestError(f"the resource id {body_id!r} does not match {step.type}/{step.id}")

    def _resolve_target(self, s: Session, step: _Step, by_identifier: Mapping[tuple[str, str, str], Stored]) -> None:
        access.require_scope(s.principal, step.type, "write")
        condition = step.item.if_none_exist if step.method == "POST" else step.query
        if condition is not None:
            simple = _identifier_condition(step.type, condition)
            if simple is not None:
                found = by_identifier.get(simple)
                matches = [found.id] if found is not None else []
            else:
                matches = self._matches(s, step.type, condition)
            if len(matches) > 1:
                raise PreconditionFailedError(f"the condition {condition!r} matched {len(matches)} resources, not one")
            if step.method == "POST" and matches:
                found_row = s.repo.get(step.type, matches[0])
                if found_row is not None:
                    self._check_visible_to_writer(s, found_row)
                    step.id = found_row.id
                    step.done = _Done(step.index, "200 OK", found_row)
                    return
            step.condition_missed = not matches
            if step.method == "PUT":
                body_id = step.resource.get("id") if step.resource else None
                if matches and body_id not in (None, matches[0]):
                    raise BadRequestError(f"the resource id {body_id!r} is not the matched {step.type}/{matches[0]}")
                step.id = matches[0] if matches else str(body_id or uuid.uuid4())
        if step.method == "POST":
            step.id = str(uuid.uuid4())
        if not step.id or not ID_RE.match(step.id):
            raise BadRequestError(f"{step.id!r} is not a valid FHIR id")

    def _prepare_step(self, s: Session, step: _Step) -> None:
        assert step.resource is not None  # noqa: S101 - set for POST/PUT by _parse_step
        p = self.prepare(s, step.item.text or "", step.resource, step.id)
        pend = s.pending[(step.type, step.id)]
        pend.patient_key, pend.org_id, pend.identifiers = p.content.patient_key, p.content.org_id, p.content.identifiers
        step.prepared = p

    def _plan(
        self,
        s: Session,
        step: _Step,
        existing: Stored | None,
        holders: Mapping[tuple[str, str, str], Stored],
        plan: WritePlan,
    ) -> None:
        principal = s.principal
        if step.method == "DELETE":
            if existing is None or existing.deleted:
                step.done = _Done(step.index, "204 No Content", None)
                return
            if principal.kind is PrincipalKind.HOSPITAL and existing.org_id != principal.org_id:
                raise ForbiddenError(f"{step.type}/{step.id} belongs to Organization/{existing.org_id}")
            if principal.kind not in (PrincipalKind.HOSPITAL, PrincipalKind.ADMIN):
                raise ForbiddenError(f"{principal.kind.value} principals cannot delete")
            plan.deletes.append(existing)
            return
        p = step.prepared
        assert p is not None  # noqa: S101 - prepared above for every POST/PUT still to write
        if step.item.if_match is not None:
            expected = step.item.if_match.strip().removeprefix("W/").strip('"')
            if existing is None or existing.deleted or str(existing.version) != expected:
                shown = "none" if existing is None or existing.deleted else f'W/"{existing.version}"'
                raise PreconditionFailedError(f"If-Match {step.item.if_match} does not match the current version "
                                              f"({shown})")  # fmt: skip
        clash_key, clash = next(
            (
                ((sy, v), h)
                for sy, v in sorted(p.content.identifiers)
                if (h := holders.get((p.type, sy, v))) and h.id != p.id
            ),
            (None, None),
        )
        if clash is not None and clash_key is not None:
            if step.condition_missed and step.method == "PUT":
                simple = _identifier_condition(step.type, step.query or "")
                if simple is None or simple[1:] == clash_key:
                    # The condition found nothing, but a concurrent writer has since committed the resource it
                    # described: start again, and this time the condition finds it.
                    raise _RetryError
                raise ConflictError(
                    f"{p.type}.identifier {clash_key[0]}|{clash_key[1]} already belongs to {p.type}/{clash.id}, "
                    f"which {simple[1]}|{simple[2]} does not name: a business identifier names one resource"
                )
            if step.method == "POST" and clash.content_hash == p.content.content_hash:
                step.done = _Done(step.index, "200 OK", clash)  # the same report pushed again
                return
            system, value = sorted(p.content.identifiers)[0]
            raise ConflictError(
                f"{p.type} with identifier {system}|{value} already exists as {p.type}/{clash.id} with different "
                f"content; send a correction as an update (PUT {p.type}?identifier={system}|{value})"
            )
        if existing is None:
            p.content.body = self._body(p, 1, s.now)
            plan.creates.append(p.content)
            return
        if principal.kind is PrincipalKind.HOSPITAL and existing.org_id not in (None, principal.org_id):
            # also for a deleted one: re-creating it would hand over its history
            raise ForbiddenError(f"{p.type}/{p.id} belongs to Organization/{existing.org_id}")
        if existing.deleted:  # re-creating a deleted resource continues its history
            p.content.body = self._body(p, existing.version + 1, s.now)
            plan.replaces.append((existing, p.content))
            step.recreated = True
            return
        if existing.content_hash == p.content.content_hash and existing.patient_key == p.content.patient_key:
            step.done = _Done(step.index, "200 OK", existing)  # unchanged: no new version
            return
        p.content.body = self._body(p, existing.version + 1, s.now)
        plan.replaces.append((existing, p.content))


_REASON = {200: "OK", 201: "Created", 204: "No Content", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
           409: "Conflict", 410: "Gone", 412: "Precondition Failed", 413: "Payload Too Large",
           422: "Unprocessable Entity"}  # fmt: skip


def _outcome(exc: RegistryError) -> dict[str, Any]:
    issues = getattr(exc, "issues", None) or [("; ".join(exc.expression), exc.diagnostics)]
    return {
        "resourceType": "OperationOutcome",
        "issue": [
            {"severity": "error", "code": exc.code, "diagnostics": msg, **({"expression": [where]} if where else {})}
            for where, msg in issues
        ],
    }


def _at(exc: RegistryError, where: str) -> RegistryError:
    """The same error, saying which Bundle entry it came from."""
    exc.diagnostics = f"{where}: {exc.diagnostics}"
    exc.expression = [where, *exc.expression]
    if isinstance(exc, InvalidResourceError):
        exc.issues = [(f"{where}.resource.{loc}" if loc else where, msg) for loc, msg in exc.issues]
    exc.args = (exc.diagnostics,)
    return exc


@dataclass(slots=True)
class _Step:
    """One entry on its way through the write engine."""

    item: _BundleItem
    type: str = ""
    id: str = ""
    query: str | None = None
    resource: dict[str, Any] | None = None
    prepared: Prepared | None = None
    done: _Done | None = None
    recreated: bool = False
    condition_missed: bool = False

    @classmethod
    def of(cls, item: _BundleItem) -> _Step:
        return cls(item)

    @property
    def index(self) -> int:
        return self.item.index

    @property
    def method(self) -> str:
        return self.item.method

    @property
    def full_url(self) -> str | None:
        return self.item.full_url

    def identifier_conditions(self) -> list[tuple[str, str, str]]:
        condition = self.item.if_none_exist if self.method == "POST" else self.query
        key = _identifier_condition(self.type, condition) if condition else None
        return [key] if key else []


def _identifier_condition(rtype: str, query: str) -> tuple[str, str, str] | None:
    """``identifier=system|value`` alone (the push clients' condition) → (type, system, value), answered by one
    batched lookup of the unique business identifiers; anything else is a general search."""
    params = parse_qsl(query.lstrip("?"), keep_blank_values=True)
    if len(params) != 1 or params[0][0] != "identifier" or "|" not in params[0][1] or "," in params[0][1]:
        return None
    system, value = params[0][1].split("|", 1)
    return (rtype, system, value) if system and value else None


@dataclass(frozen=True, slots=True)
class _Done:
    index: int
    status_text: str
    stored: Stored | None


@dataclass(frozen=True, slots=True)
class _BundleItem:
    index: int
    method: str
    url: str
    full_url: str | None
    text: str | None
    if_none_exist: str | None
    if_match: str | None

    @classmethod
    def of(cls, index: int, entry: Any, text: str | None) -> _BundleItem:
        where = f"Bundle.entry[{index}]"
        if not isinstance(entry, dict):
            raise BadRequestError(f"{where} must be an object")
        request = entry.get("request")
        if not isinstance(request, dict):
            raise BadRequestError(f"{where}.request is required in a transaction or batch")
        method = str(request.get("method", "")).upper()
        if method not in ("GET", "POST", "PUT", "DELETE"):
            raise BadRequestError(f"{where}.request.method {request.get('method')!r} is not supported "
                                  "(GET, POST, PUT, DELETE)")  # fmt: skip
        url = request.get("url")
        if not isinstance(url, str) or not url:
            raise BadRequestError(f"{where}.request.url is required")
        if method in ("POST", "PUT") and text is None:
            raise BadRequestError(f"{where}.resource is required for {method}")
        full_url = entry.get("fullUrl") if isinstance(entry.get("fullUrl"), str) else None
        return cls(index, method, url, full_url, text, request.get("ifNoneExist"), request.get("ifMatch"))

    def target(self) -> tuple[str, str, str | None]:
        """(type, id, conditional query) from request.url (relative to the base)."""
        parts = urlsplit(self.url)
        path = parts.path.strip("/")
        segments = path.split("/")
        rtype = segments[0]
        rid = segments[1] if len(segments) > 1 else None
        query = parts.query or None
        if self.method == "POST" and (rid is not None or query):
            raise BadRequestError(f"Bundle.entry[{self.index}]: POST url must be the resource type, got {self.url!r}")
        if self.method in ("PUT", "DELETE") and rid is None and query is None:
            raise BadRequestError(f"Bundle.entry[{self.index}]: {self.method} url needs an id or a search query")
        if self.method == "DELETE" and rid is None:
            raise BadRequestError(f"Bundle.entry[{self.index}]: conditional delete is not supported")
        return rtype, rid or "", query


def _entry_resource_texts(text: str) -> dict[int, str]:
    """The exact text of each ``entry[i].resource`` of a Bundle."""
    out: dict[int, str] = {}
    try:
        for key, _m, v_start, _v_end in members(text):
            if key != "entry":
                continue
            for i, (e_start, _e_end) in enumerate(elements(text, v_start)):
                for ekey, _em, r_start, r_end in members(text, e_start):
                    if ekey == "resource":
                        out[i] = text[r_start:r_end]
    except JsonShapeError as exc:
        raise BadRequestError(f"the Bundle is not well-formed: {exc}") from None
    return out


def _index_view(resource: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the resource for indexing: national identifiers carry their keyed hash as the value."""

    def conv(node: Any) -> Any:
        if isinstance(node, dict):
            if "_key" in node:
                return {**{k: v for k, v in node.items() if k != "_key"}, "value": node["_key"]}
            return {k: conv(v) for k, v in node.items()}
        if isinstance(node, list):
            return [conv(x) for x in node]
        return node

    return conv(resource)  # type: ignore[no-any-return]
