"""Preparing one resource for writing (FHIR R4 §http create/update): parse, validate (R4B structure + required
bindings), national identifiers masked in the stored text and hashed for the index, references resolved, the patient
it belongs to, who may write it, its business identifiers and search values."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

import orjson

from registry.auth import PrincipalKind
from registry.errors import (
    BadRequestError,
    ConditionNotFoundError,
    InvalidResourceError,
    NotFoundError,
    PreconditionFailedError,
    ReferenceNotFoundError,
    UnprocessableError,
)
from registry.fhir.content_hash import content_hash
from registry.fhir.extract import DateFormatError, extract, parse_reference
from registry.fhir.json_text import DuplicateKeyError, loads_document
from registry.fhir.search_params import PATIENT_COMPARTMENT
from registry.fhir.survey import Survey, survey
from registry.fhir.validation import ResourceInvalidError, validate
from registry.services import policy
from registry.services.identity import MASK, NationalIdError
from registry.services.ingest.entries import (
    identifier_condition,
)
from registry.services.ingest.masking import NationalIdMask
from registry.services.ingest.session import (
    SUPPORTED,
    Prepared,
    Session,
    WriteContext,
)
from registry.services.search_query import SearchParser
from registry.store.query import OrgClause, Query
from registry.store.records import NewContent


def _invalid(rtype: str, issues: list[tuple[str, str]]) -> InvalidResourceError:
    summary = "; ".join(f"{where}: {msg}" for where, msg in issues[:5])
    return InvalidResourceError(f"{rtype} is not valid: {summary}", issues=issues)


def _unheld(rtype: str, where: list[str], value: str) -> UnprocessableError:
    """Valid FHIR the registry cannot hold as an instant (FHIR R4 http §3.1.0.4.1: 422 for a server's rule)."""
    return UnprocessableError(
        f"{where[0]}: {value!r} lies outside the instants this registry holds (0001-01-02 to 9999-12-30, UTC)",
        expression=where[:20],
    )


class Preparer:
    """Parse → validate → mask → resolve references → patient → writer → identifiers and index values."""

    def __init__(self, ctx: WriteContext) -> None:
        self.ctx = ctx

    def parse(self, text: str, expected_type: str | None, *, checked: bool = False) -> dict[str, Any]:
        """The resource of a body; ``checked`` when it is a Bundle entry whose whole Bundle was parsed strictly."""
        try:
            resource = orjson.loads(text) if checked else loads_document(text)
        except orjson.JSONDecodeError as exc:
            raise BadRequestError(f"the body is not valid JSON: {exc}") from None
        except DuplicateKeyError as exc:
            raise BadRequestError(f"the body is ambiguous JSON: {exc}") from None
        if not isinstance(resource, dict):
            raise BadRequestError("the body must be a JSON object (a FHIR resource)")
        rtype = resource.get("resourceType")
        if expected_type is not None and rtype != expected_type:
            raise BadRequestError(f"resourceType {rtype!r} does not match the URL's {expected_type}")
        if rtype not in SUPPORTED:
            raise NotFoundError(f"resource type {rtype!r} is not supported; supported: {', '.join(sorted(SUPPORTED))}")
        return resource

    def survey(self, resource: dict[str, Any]) -> Survey:
        """The one walk over a parsed resource that :meth:`prepare` and the engine read (references, identifiers)."""
        return survey(resource, self.ctx.local_tz)

    def prepare(
        self, s: Session, text: str, resource: dict[str, Any], rid: str, found: Survey | None = None
    ) -> Prepared:
        """``found``: :meth:`survey` of ``resource`` as parsed (made here when the caller has none)."""
        rtype = str(resource["resourceType"])
        try:
            validate(resource)
        except ResourceInvalidError as exc:
            raise _invalid(rtype, [(i.expression, i.message) for i in exc.issues]) from None
        found = found if found is not None else self.survey(resource)
        unheld = found.unheld
        if unheld:
            raise _unheld(rtype, [f"{rtype}.{path}" for path, _ in unheld], unheld[0][1])
        if rtype == "Subscription" and self.ctx.subscriptions is not None:
            # the server's status (R4 subscription.html §2.46.5: requested → active as it accepts it)
            text, resource = self.ctx.subscriptions.accept(s.repo, s.principal, text, resource, s.now)

        # -- national identifiers: masked in the stored text, keyed hash in the index (docs/design.md §4)
        clear: list[str] = []
        own_keys: set[str] = set()
        hashed: list[tuple[dict[str, Any], str]] = []
        for path, ident in found.identifiers:
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
            clear.append(raw)
            hashed.append((ident, key))
            if rtype == "Patient" and path.startswith("identifier["):
                own_keys.add(key)
        mask = NationalIdMask(clear)
        refused = mask.refusals(rtype, rid, resource, self.ctx.identity)
        if refused:
            raise _invalid(rtype, refused)

        # -- references; then every spelling of the national identifiers masked, in the text and the document
        text = mask.text(self._resolve_references(s, rtype, text, resource, found.references))
        mask.document(resource)
        for ident, key in hashed:
            ident["_key"] = key  # temporary: read by the index view below, never stored

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
        org_id = policy.decide_issuer(
            s.principal,
            {**resource, "id": rid} if rtype == "Organization" else resource,
            subject_org,
            self.ctx.base_url,
        )
        policy.check_namespaces(
            s.principal,
            rtype,
            [
                (f"identifier[{n}]", str(i["system"]), str(i["value"]))
                for n, i in enumerate(resource.get("identifier") or [])
                if isinstance(i, dict) and i.get("system") and not self.ctx.identity.is_national(i["system"])
            ],
            s.owners,
            self.ctx.shared_systems,
        )
        governed = [
            (path, parsed)
            for path, node in found.references
            if path in policy.GOVERNED_REFERENCES.get(rtype, ())
            and (parsed := parse_reference(str(node["reference"]), self.ctx.base_url)) is not None
        ]

        # -- business identifiers, content hash, index values
        identifiers = {
            (str(i["system"]), str(i["value"]))
            for i in resource.get("identifier") or []
            if isinstance(i, dict)
            and i.get("system")
            and i.get("value")
            and not self.ctx.identity.is_national(i["system"])
        }
        index_view = _index_view(resource) if hashed else resource  # extract only reads
        for ident, _key in hashed:
            ident.pop("_key", None)
        digest = content_hash(resource)
        try:
            index = extract(index_view, self.ctx.local_tz, self.ctx.base_url)
        except DateFormatError as exc:  # a date without a time beyond the held range (validation passed the rest)
            raise UnprocessableError(f"{rtype}: {exc}", expression=[rtype]) from None
        meta_in = resource.get("meta") if isinstance(resource.get("meta"), dict) else {}
        meta = {k: v for k, v in (meta_in or {}).items() if k not in ("versionId", "lastUpdated")}
        content = NewContent(rtype, rid, b"", digest, patient_key, org_id, index, identifiers)
        return Prepared(rtype, rid, text, meta, content, governed)

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

    def _resolve_references(
        self, s: Session, rtype: str, text: str, resource: dict[str, Any], refs: list[tuple[str, dict[str, Any]]]
    ) -> str:
        replacements: dict[str, str] = {}
        to_check: list[tuple[str, tuple[str, str]]] = []
        for path, node in refs:
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
            s.live.update(s.repo.live_facts(unknown))
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
        simple = identifier_condition(target_type, query)
        if simple is not None and simple in s.by_identifier:
            found = s.by_identifier[simple]
            matches = [found.id] if found is not None and policy.visible_to_writer(s.principal, found) else []
            # an entry of this Bundle carrying the identifier the found one holds is a repeat of it or a conflict
            pending = [] if matches else [p.id for p in s.pending.values()
                                          if p.type == target_type and simple[1:] in p.identifiers]  # fmt: skip
            matches += [i for i in pending if i not in matches]
        else:
            matches = self.matches(s, target_type, query)
        if len(matches) != 1:
            error = ConditionNotFoundError if not matches else PreconditionFailedError
            raise error(
                f"{rtype}.{path}: conditional reference {target_type}?… matched {len(matches)} resources, not one",
                expression=[f"{rtype}.{path}"],
            )
        return f"{target_type}/{matches[0]}"

    def matches(self, s: Session, rtype: str, query: str) -> list[str]:
        """Ids matching a conditional query, among stored resources and those pending in this transaction."""
        params = parse_qsl(query, keep_blank_values=True)
        if not params:
            raise BadRequestError(f"a conditional {rtype} query needs at least one parameter")
        parser = SearchParser(self.ctx.identity, self.ctx.local_tz, self.ctx.base_url, now=s.now)
        parsed = parser.parse(rtype, params, lenient=False, default_count=3, max_count=3)
        clauses = parsed.query.clauses
        if s.principal.kind is PrincipalKind.HOSPITAL and s.principal.org_id and rtype in policy.PATIENT_SCOPED:
            clauses = (*clauses, OrgClause(s.principal.org_id))  # a condition sees only the writer's own resources
        rows, _ = s.repo.search(Query(rtype, clauses, count=3))
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
