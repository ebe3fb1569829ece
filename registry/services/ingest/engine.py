"""The write engine (FHIR R4 §transaction processing order): identities looked up at once, current rows read,
resources prepared (what others refer to first), each write decided, the rows it replaces locked (their
versions checked against what was read), then everything written together and the
recognition index maintained in the same transaction."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from registry.auth import PrincipalKind
from registry.errors import (
    BadRequestError,
    ConflictError,
    NotFoundError,
    PreconditionFailedError,
    RegistryError,
)
from registry.fhir.bundle import instant
from registry.fhir.extract import parse_reference, to_us
from registry.fhir.ids import new_id
from registry.fhir.json_text import JsonShapeError, with_server_members
from registry.fhir.validation import ID_RE
from registry.services import code_maps, policy
from registry.services.audit import AuditContext, audit_row
from registry.services.config_cache import ConfigCache
from registry.services.ingest.entries import (
    BundleItem,
    Done,
    Step,
    at_entry,
    identifier_condition,
)
from registry.services.ingest.patching import patch_step
from registry.services.ingest.preparation import Preparer
from registry.services.ingest.session import (
    PREPARE_ORDER,
    SUPPORTED,
    Pending,
    Prepared,
    RetryError,
    Session,
    WriteContext,
)
from registry.services.result_index import INDEXED
from registry.store.namespaces import NamespaceStore
from registry.store.records import Stored, WritePlan

_INTERACTION = {"POST": "create", "PUT": "update", "DELETE": "delete"}


class WriteEngine:
    """Resolve, prepare and write the entries of one transaction with a handful of SQL statements."""

    def __init__(self, ctx: WriteContext, preparer: Preparer) -> None:
        self.ctx = ctx
        self.preparer = preparer

    def _body(self, p: Prepared, version: int, now: datetime) -> bytes:
        meta = {**p.meta, "versionId": str(version), "lastUpdated": instant(now)}
        try:
            return with_server_members(p.text, p.type, p.id, meta).encode()
        except JsonShapeError as exc:
            raise BadRequestError(f"the body is not a JSON object: {exc}") from None

    def apply(self, s: Session, audit: AuditContext, items: list[BundleItem], *, single: bool = False) -> list[Done]:
        """Resolve, prepare and write entries in one transaction with a handful of SQL statements."""

        def where(step: Step) -> str:
            return "" if single else f"Bundle.entry[{step.index}]"

        def guarded(step: Step, fn: Callable[..., None], *args: Any) -> None:
            try:
                fn(*args)
            except RegistryError as exc:
                raise (exc if single else at_entry(exc, where(step))) from None

        steps = [Step.of(it) for it in items]
        for step in steps:
            if step.method == "PATCH":  # R4 http.html §3.1.0.5: the patched resource is then written as an update
                guarded(step, patch_step, s, step)
            guarded(step, self._parse_step, step, single)

        # 1. identities: one query for every identifier-only condition — request conditions and conditional
        # references (``Patient?identifier=…``) alike; the rest are searched one by one.
        wanted = [key for st in steps for key in st.identifier_conditions()]
        wanted += [
            key
            for st in steps
            for _path, node in st.references
            if "?" in str(node["reference"])
            and (key := identifier_condition(*str(node["reference"]).split("?", 1))) is not None
        ]
        by_identifier = s.repo.by_identifiers(wanted) if wanted else {}
        s.by_identifier.update({key: by_identifier.get(key) for key in wanted})
        for found in by_identifier.values():  # what they name is known now: not read again per entry
            if not found.deleted:
                s.live.setdefault((found.type, found.id), (found.patient_key, found.org_id))
                if found.type == "Patient":
                    s.subjects.setdefault((found.type, found.id), found)
        for step in steps:
            guarded(step, self._resolve_target, s, step, by_identifier)
        for step in steps:
            if step.full_url and step.type and step.id and step.method != "DELETE":
                s.url_map[step.full_url] = f"{step.type}/{step.id}"
            if step.method in ("POST", "PUT") and step.done is None:
                s.pending[(step.type, step.id)] = Pending(step.type, step.id)

        # 2. the current rows of everything updated or deleted — read, not yet locked: most updates a hospital
        # repeats turn out unchanged (the patient of every report), and a lock held to the commit for those would
        # queue every write about that patient behind each other. What is replaced is locked in step 4. A retry
        # (the rows moved under the first attempt) locks as it reads, so writers of one resource take turns.
        targets = [
            (st.type, st.id) for st in steps if (st.method in ("PUT", "DELETE") or st.repeating) and st.done is None
        ]
        current = (s.repo.get_for_write(targets) if s.locking else s.repo.get_any(targets)) if targets else {}

        # 3. prepare, what others refer to first (every stored reference checked in one query up front).
        stored_refs = [
            parsed
            for st in steps
            if st.done is None
            for _path, node in st.references
            if (parsed := parse_reference(str(node["reference"]), self.ctx.base_url)) is not None
            and parsed[0] in SUPPORTED
            and parsed not in s.pending
        ]
        if stored_refs:
            s.live.update(s.repo.live_facts(stored_refs))
        if s.principal.kind is PrincipalKind.HOSPITAL:
            systems = {
                str(i["system"])
                for st in steps
                if st.resource is not None and st.done is None
                for i in st.resource.get("identifier") or []
                if isinstance(i, dict) and isinstance(i.get("system"), str)
            }
            s.owners = NamespaceStore(s.repo.conn).owners(systems) if systems else {}
        for step in sorted(steps, key=lambda st: PREPARE_ORDER.get(st.type, 99)):
            if step.resource is None or step.done is not None:
                continue
            guarded(step, self._prepare_step, s, step)
        for step in steps:  # every result a resource governs is the same patient's and (for hospitals) its own
            if step.prepared is not None and step.prepared.governed:
                guarded(step, self._check_governed, s, step.prepared)
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
        self._check_repeats_named(s, steps)  # before any clash: it may be one only for want of what is learnt
        for step in steps:
            if step.conflict is not None:
                raise (step.conflict if single else at_entry(step.conflict, where(step)))
        changed = [*(e for e, _c in plan.replaces), *plan.deletes]
        if changed:  # locked until the commit; a version that moved since step 2 was decided on stale rows
            locked = s.repo.get_for_write([(e.type, e.id) for e in changed])
            if any((row := locked.get((e.type, e.id))) is None or row.version != e.version for e in changed):
                raise RetryError(s.repeats)
        written = s.repo.apply(plan, now=s.now, now_us=to_us(s.now)) if (plan.creates or plan.replaces or
                                                                          plan.deletes) else {}  # fmt: skip
        if written:
            fresh = {(st.type, st.id) for st in steps if st.minted and st.done is None}
            self._maintain_recognition(s, written, fresh)
            subscriptions = self.ctx.subscriptions
            if subscriptions is not None and subscriptions.after_write(s.repo, s.principal, written, s.now):
                s.after_commit.append(subscriptions.queued)  # FHIR R4 subscription.html: notify what matched
            if self.ctx.notifier is not None:  # after the index: the texts name the items it maps
                self.ctx.notifier.queue(s.repo, written, now=s.now)
        results: list[Done] = []
        for step in steps:
            if step.done is None:
                stored = written[(step.type, step.id)]
                if stored.deleted:
                    step.done = Done(step.index, "204 No Content", stored)
                    interaction, status = "delete", 204
                elif (stored.version == 1 or step.recreated) and not step.patched:
                    step.done = Done(step.index, "201 Created", stored)
                    interaction, status = "create", 201
                else:
                    step.done = Done(step.index, "200 OK", stored)
                    interaction, status = ("patch" if step.patched else "update"), 200
                s.audit_rows.append(audit_row(audit, now=s.now, status=status, patient_key=stored.patient_key,
                                              resource_type=stored.type, resource_id=stored.id,
                                              interaction=interaction))  # fmt: skip
            else:  # answered without writing (a repeat, an unchanged update, nothing to delete): audited all the same
                kept = step.done.stored
                s.audit_rows.append(audit_row(audit, now=s.now, status=int(step.done.status_text[:3]),
                                              patient_key=kept.patient_key if kept else None,
                                              resource_type=step.type, resource_id=step.id or None,
                                              interaction="patch" if step.patched else
                                              _INTERACTION.get(step.method, "update"),
                                              detail="unchanged: nothing written"))  # fmt: skip
            results.append(step.done)
        return results

    def _check_repeats_named(self, s: Session, steps: list[Step]) -> None:
        """A POST found to repeat a stored resource writes nothing; the entries to be written that name it by its
        fullUrl were prepared with the id it would have had. Run the transaction again with what was learnt: they
        then refer to the stored resource."""
        repeated = {
            (st.type, st.id): (st.index, st.done.stored.id)
            for st in steps
            if st.minted and st.done is not None and st.done.stored is not None and st.done.stored.id != st.id
        }
        if not repeated:
            return
        named = {
            repeated[target]
            for st in steps
            if st.done is None and st.prepared is not None
            for _path, node in st.references
            if (target := parse_reference(str(node["reference"]), self.ctx.base_url)) in repeated
        }
        if named:
            raise RetryError({**s.repeats, **dict(named)})

    def _maintain_recognition(
        self, s: Session, written: Mapping[tuple[str, str], Stored], fresh: set[tuple[str, str]]
    ) -> None:
        """Keep the code maps and the result index in step with what this transaction wrote (docs/design.md §4);
        ``fresh``: what it created under ids of this server's making."""
        indexer = self.ctx.indexer
        if indexer is None:
            return
        refs = {key for key in written if key[0] in INDEXED}
        if any(k[0] in ("ConceptMap", "Organization") for k in written):
            ConfigCache.changed(s.repo.conn)  # in this transaction: every process's next order check reloads
        for (rtype, _rid), stored in written.items():
            if rtype == "ConceptMap":
                systems = code_maps.sync(s.repo, stored, indexer.catalog)
                if stored.org_id:
                    refs |= s.repo.results_with_codes(stored.org_id, systems)
        unmapped = indexer.reindex(s.repo, refs, known=written, fresh=fresh)
        if unmapped:
            s.repo.count_unmapped(unmapped, now=s.now)

    def _parse_step(self, step: Step, single: bool) -> None:
        step.type, step.id, step.query = step.item.target()
        if step.type not in SUPPORTED:
            raise NotFoundError(f"resource type {step.type!r} is not supported")
        if step.method == "GET":
            raise BadRequestError("GET entries are not supported in Bundles; read or search directly")
        if step.method in ("POST", "PUT"):
            step.resource = self.preparer.parse(step.item.text or "", step.type, checked=not single or step.patched)
            step.survey = self.preparer.survey(step.resource)
            body_id = step.resource.get("id")
            if step.method == "PUT" and step.id:
                # R4 http.html §3.1.0.4 update: the body SHALL carry an id identical to the URL's; without one, or
                # with another, the server SHALL answer 400.
                if body_id is None:
                    raise BadRequestError(
                        f'an update of {step.type}/{step.id} needs the resource\'s id in the body ("id": '
                        f'"{step.id}"); to create with a server id, POST {step.type}',
                        expression=[f"{step.type}.id"],
                    )
                if body_id != step.id:
                    raise BadRequestError(
                        f"the resource id {body_id!r} does not match {step.type}/{step.id}",
                        expression=[f"{step.type}.id"],
                    )

    def _resolve_target(self, s: Session, step: Step, by_identifier: Mapping[tuple[str, str, str], Stored]) -> None:
        policy.require_scope(s.principal, step.type, "write")
        condition = step.item.if_none_exist if step.method == "POST" else step.query
        if condition is not None:
            simple = identifier_condition(step.type, condition)
            if simple is not None:
                found = by_identifier.get(simple)
                matches = [found.id] if found is not None and policy.visible_to_writer(s.principal, found) else []
            else:
                matches = self.preparer.matches(s, step.type, condition)
            if len(matches) > 1:
                raise PreconditionFailedError(f"the condition {condition!r} matched {len(matches)} resources, not one")
            if step.method == "POST" and matches:
                found_row = s.repo.get(step.type, matches[0])
                if found_row is not None and policy.visible_to_writer(s.principal, found_row):
                    step.id = found_row.id
                    step.done = Done(step.index, "200 OK", found_row)
                    return
            step.condition_missed = not matches
            if step.method == "PUT":
                body_id = step.resource.get("id") if step.resource else None
                if matches and body_id not in (None, matches[0]):
                    raise BadRequestError(f"the resource id {body_id!r} is not the matched {step.type}/{matches[0]}")
                step.id = matches[0] if matches else str(body_id or new_id())
                step.minted = not matches and body_id is None
        if step.method == "POST" and step.index in s.repeats:  # an earlier attempt found it repeats a stored one
            step.id = step.repeating = s.repeats[step.index]
        elif step.method == "POST":
            step.id = new_id()
            step.minted = True
        if not step.id or not ID_RE.match(step.id):
            raise BadRequestError(f"{step.id!r} is not a valid FHIR id")

    def _check_governed(self, s: Session, p: Prepared) -> None:
        targets: list[tuple[str, policy.Target]] = []
        for path, ref in p.governed:
            pending = s.pending.get(ref)
            facts = (pending.patient_key, pending.org_id) if pending is not None else s.live.get(ref)
            if facts is not None:
                targets.append((path, policy.Target(*facts)))
        policy.check_references(s.principal, p.type, p.content.patient_key, p.content.org_id, targets)

    def _prepare_step(self, s: Session, step: Step) -> None:
        assert step.resource is not None  # noqa: S101 - set for POST/PUT by _parse_step
        p = self.preparer.prepare(s, step.item.text or "", step.resource, step.id, step.survey)
        pend = s.pending[(step.type, step.id)]
        pend.patient_key, pend.org_id, pend.identifiers = p.content.patient_key, p.content.org_id, p.content.identifiers
        step.prepared = p

    def _plan(
        self,
        s: Session,
        step: Step,
        existing: Stored | None,
        holders: Mapping[tuple[str, str, str], Stored],
        plan: WritePlan,
    ) -> None:
        principal = s.principal
        if step.method == "DELETE":
            if existing is None or existing.deleted:
                step.done = Done(step.index, "204 No Content", None)
                return
            policy.check_change(principal, existing, deleting=True)
            plan.deletes.append(existing)
            return
        p = step.prepared
        assert p is not None  # noqa: S101 - prepared above for every POST/PUT still to write
        if step.repeating is not None:
            if (existing is not None and not existing.deleted and existing.content_hash == p.content.content_hash
                    and policy.visible_to_writer(principal, existing)):  # fmt: skip
                step.done = Done(step.index, "200 OK", existing)  # the same resource pushed again
                return
            raise RetryError({k: v for k, v in s.repeats.items() if k != step.index})  # it changed: decide afresh
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
            if not policy.visible_to_writer(principal, clash):
                # held by another organization (a shared system such as urn:dicom:uid): say so, name nothing of it
                raise ConflictError(
                    f"{p.type}.identifier {clash_key[0]}|{clash_key[1]} is already held by a resource of another "
                    "organization; a business identifier names one resource"
                )
            if step.condition_missed and step.method == "PUT":
                simple = identifier_condition(step.type, step.query or "")
                if simple is None or simple[1:] == clash_key:
                    # The condition found nothing, but a concurrent writer has since committed the resource it
                    # described: start again, and this time the condition finds it.
                    raise RetryError(s.repeats)
                raise ConflictError(
                    f"{p.type}.identifier {clash_key[0]}|{clash_key[1]} already belongs to {p.type}/{clash.id}, "
                    f"which {simple[1]}|{simple[2]} does not name: a business identifier names one resource"
                )
            if step.method == "POST" and clash.content_hash == p.content.content_hash:
                step.done = Done(step.index, "200 OK", clash)  # the same report pushed again
                return
            system, value = sorted(p.content.identifiers)[0]
            conflict = ConflictError(
                f"{p.type} with identifier {system}|{value} already exists as {p.type}/{clash.id} with different "
                f"content; send a correction as an update (PUT {p.type}?identifier={system}|{value})"
            )
            if step.method != "POST":
                raise conflict
            step.conflict = conflict  # or a repeat naming another repeat by the id that one would have had
            return
        if existing is None:
            p.content.body = self._body(p, 1, s.now)
            plan.creates.append(p.content)
            return
        policy.check_change(principal, existing)  # also for a deleted one: re-creating it would hand over its history
        if existing.deleted:  # re-creating a deleted resource continues its history
            p.content.body = self._body(p, existing.version + 1, s.now)
            plan.replaces.append((existing, p.content))
            step.recreated = True
            return
        if existing.content_hash == p.content.content_hash and existing.patient_key == p.content.patient_key:
            step.done = Done(step.index, "200 OK", existing)  # unchanged: no new version
            return
        p.content.body = self._body(p, existing.version + 1, s.now)
        plan.replaces.append((existing, p.content))
