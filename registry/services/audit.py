"""Audit trail (docs/design.md §4, §6): every read, search and write — who, which patient, what, when, outcome.

Rows are append-only (the database refuses UPDATE/DELETE) and are published as FHIR R4 AuditEvent resources
(type ``rest``, subtype the RESTful interaction, DICOM action codes C/R/U/D/E, outcome 0/4/8/12). National
identifiers are masked in every column before anything is stored — query strings parameter by parameter, resource ids
and error details in any spelling (registry/services/redaction.py).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import urlencode

import orjson

from registry.auth import Principal
from registry.errors import BadRequestError, NotFoundError, RegistryError
from registry.fhir.bundle import Entry, instant, render
from registry.fhir.extract import to_us
from registry.fhir.integers import whole_number
from registry.services.identity import IdentityPolicy
from registry.services.policy import audit_reader_key
from registry.services.policy.purpose import ACT_REASON, BreakGlass
from registry.services.redaction import Redactor, redactor_for
from registry.services.search_query import SearchLimits
from registry.store.query import DateValue
from registry.store.records import AgentMatch, AuditFilter
from registry.store.repository import UnitOfWork

T = TypeVar("T")
HR = "https://hr-registry.org.cn/fhir"
CLIENT_ID_SYSTEM = f"{HR}/sid/client-id"
PATIENT_KEY_SYSTEM = f"{HR}/sid/master-patient-key"
SEARCH_PARAMETERS = ("date", "agent", "patient", "action", "outcome", "entity-type")
"""What ``GET /fhir/AuditEvent`` searches by (and the CapabilityStatement declares), besides ``_count``."""

ACTIONS = {
    "read": "R", "vread": "R", "history-instance": "R", "search-type": "E", "search-system": "E",
    "create": "C", "update": "U", "patch": "U", "delete": "D", "transaction": "E", "batch": "E", "operation": "E",
}  # fmt: skip

_PLAIN = redactor_for(IdentityPolicy({}, b""))  # rows written outside a request (CLI, demo): ID shapes only


def outcome_code(status: int) -> str:
    """AuditEvent.outcome: 0 success, 4 minor failure (client error), 8 serious failure (server error)."""
    if status < 400:
        return "0"
    return "4" if status < 500 else "8"


@dataclass(frozen=True, slots=True)
class AuditContext:
    """What the HTTP layer knows about a request, for the audit rows it leads to."""

    request_id: str
    principal: Principal | None
    interaction: str
    resource_type: str | None = None
    resource_id: str | None = None
    query: str | None = None
    break_glass: BreakGlass | None = None  # the request's explicit policy override (purpose of use BTG)
    note: str | None = None  # why, when the interaction alone does not say (e.g. a Patient registered by the check)
    redactor: Redactor | None = None  # the app's, knowing its national-identifier systems (docs/design.md §4)


def audit_row(
    ctx: AuditContext,
    *,
    now: datetime,
    status: int,
    patient_key: str | None = None,
    resource_type: str | None = None,
    resource_id: str | None = None,
    detail: str | None = None,
    interaction: str | None = None,
) -> dict[str, Any]:
    p = ctx.principal
    inter = interaction or ctx.interaction
    mask = (ctx.redactor or _PLAIN).text
    return {
        "recorded": now,
        "recorded_us": to_us(now),
        "request_id": ctx.request_id,
        "action": ACTIONS.get(inter, "E"),
        "interaction": inter,
        "outcome": outcome_code(status),
        "status": status,
        "client_id": p.client_id if p else None,
        "principal_kind": p.kind.value if p else None,
        "principal_name": p.name if p else None,
        "org_id": p.org_id if p else None,
        "resource_type": (resource_type or ctx.resource_type or "")[:40] or None,  # clipped to the columns: a
        "resource_id": mask(rid)[:64] if (rid := resource_id or ctx.resource_id) else None,  # path may be any length
        "patient_key": patient_key,
        "query": (ctx.query or None) and ctx.query[:2000],
        "detail": mask(detail or ctx.note or "")[:2000] or None,
        "purpose": ctx.break_glass.code if ctx.break_glass else None,
        "purpose_reason": mask(ctx.break_glass.reason)[:500] if ctx.break_glass else None,
    }


def rows_for_patients(
    ctx: AuditContext, *, now: datetime, status: int, patient_keys: Iterable[str | None], detail: str | None = None
) -> list[dict[str, Any]]:
    """One row per patient touched (so each patient can see who viewed their records), at least one row."""
    keys = list(dict.fromkeys(k for k in patient_keys if k))
    if not keys:
        return [audit_row(ctx, now=now, status=status, detail=detail)]
    return [audit_row(ctx, now=now, status=status, patient_key=k, detail=detail) for k in keys]


class AuditTrail:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    def around(self, ctx: AuditContext, now: datetime, fn: Callable[[], T]) -> T:
        """Run ``fn`` and record one row for it: its success, or its refusal or failure (with the reason)."""
        try:
            result = fn()
        except RegistryError as exc:
            self.record([audit_row(ctx, now=now, status=exc.status, detail=exc.diagnostics)])
            raise
        self.record([audit_row(ctx, now=now, status=200)])
        return result

    def record(self, rows: Sequence[dict[str, Any]]) -> None:
        """Commit audit rows on their own (reads and refused requests); writes add theirs in their transaction."""
        if rows:
            with self.uow.begin(audit_only=True) as repo:
                repo.add_audit(rows)


def to_fhir(row: Any) -> dict[str, Any]:
    """One audit row as an R4 AuditEvent."""
    agent: dict[str, Any] = {"requestor": True}
    if row.client_id:
        agent["who"] = {"identifier": {"system": CLIENT_ID_SYSTEM, "value": row.client_id}}
        if row.principal_name:
            agent["who"]["display"] = row.principal_name
        agent["type"] = {"text": row.principal_kind}
    else:
        agent["who"] = {"display": "anonymous"}
    agents = [agent]
    if row.org_id:
        agents.append({"who": {"reference": f"Organization/{row.org_id}"}, "requestor": False,
                       "type": {"text": "organization of the requestor"}})  # fmt: skip
    entities: list[dict[str, Any]] = []
    if row.resource_type:
        what: dict[str, Any] = (
            {"reference": f"{row.resource_type}/{row.resource_id}"}
            if row.resource_id
            else {"display": row.resource_type}
        )
        entity: dict[str, Any] = {
            "what": what,
            "type": {"system": "http://hl7.org/fhir/resource-types", "code": row.resource_type},
        }
        if row.query:
            entity["query"] = base64.b64encode(row.query.encode()).decode()
        entities.append(entity)
    if row.patient_key:
        entities.append(
            {
                "what": {"identifier": {"system": PATIENT_KEY_SYSTEM, "value": row.patient_key}},
                "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1",
                         "display": "Person"},
                "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1",
                         "display": "Patient"},
            }
        )  # fmt: skip
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(row.pk),
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest",
                 "display": "RESTful Operation"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": row.interaction}],
        "action": row.action,
        "recorded": instant(row.recorded),
        "outcome": row.outcome,
        "agent": agents,
        "source": {"observer": {"display": "HR Registry"}, "type": [{"system":
                   "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4",
                   "display": "Application Server"}]},
    }  # fmt: skip
    if row.detail:
        event["outcomeDesc"] = row.detail
    # break-glass: purposeOfEvent and the requestor's purposeOfUse (R4 AuditEvent.purposeOfEvent; v3 ActReason BTG)
    if row.purpose:
        purpose = {"coding": [{"system": ACT_REASON, "code": row.purpose, "display": "break the glass"}]}
        if row.purpose_reason:
            purpose["text"] = row.purpose_reason
        event["purposeOfEvent"] = [purpose]
        agents[0]["purposeOfUse"] = [purpose]
    if entities:
        event["entity"] = entities
    return event


# ---------------------------------------------------------------------------- reading the trail (admins)
def agent_match(values: Sequence[str], *, by_identifier: bool) -> AgentMatch:
    """R4's ``agent`` (AuditEvent-agent: a reference on ``AuditEvent.agent.who``), comma = OR. An event's agents are
    the requesting client, named by identifier (``CLIENT_ID_SYSTEM|<client id>``), and its organization
    (``Organization/<id>``). So ``agent=Organization/<id>`` (relative or absolute) matches the organization;
    ``agent:identifier=[system|]<client id>`` the client (R4 search.html, reference parameters: the ``:identifier``
    modifier, token semantics — another system matches nothing); and a bare ``agent=<client id>``, the registry's
    shorthand, the client too: no agent is a resource with that id, so R4's reading of it would match nothing."""
    clients: list[str] = []
    orgs: list[str] = []
    for value in values:
        if by_identifier:
            system, bar, code = value.rpartition("|")
            if not bar or system == CLIENT_ID_SYSTEM:
                clients.append(code)
        elif "/" not in value:
            clients.append(value)
        else:
            parts = value.split("/")  # Type/id, or [base]/Type/id; another type is no agent of an event
            if len(parts) >= 2 and parts[-2] == "Organization" and parts[-1]:
                orgs.append(parts[-1])
    return AgentMatch(tuple(clients), tuple(orgs))


def search_audit_events(
    uow: UnitOfWork,
    principal: Principal,
    ctx: AuditContext,
    params: Sequence[tuple[str, str]],
    *,
    base_url: str,
    now: datetime,
    parse_dates: Callable[[str, str], Sequence[DateValue]],
    max_count: int,
    limits: SearchLimits | None = None,
) -> bytes:
    """``GET /fhir/AuditEvent``: admins see everything; a patient sees who accessed their own records (docs/design.md
    §6); others are refused. Parameters: ``date`` (prefixes), ``agent`` (see :func:`agent_match`), ``patient``
    (``Patient/<id>``), ``action``, ``outcome``, ``entity-type``, ``_count``; newest first."""

    try:
        (limits or SearchLimits()).check(params)
        own_key = audit_reader_key(principal)
        count, before = 50, None
        f: dict[str, Any] = {}
        dates: list[DateValue] = []
        patient_ids: list[str] = []
        for name, value in params:
            values = tuple(value.split(","))
            if name == "_count":
                wanted = whole_number(value)
                if wanted is None:
                    raise BadRequestError("_count must be a whole number (at most 18 digits)")
                count = max(1, min(wanted, max_count))
            elif name == "_before":
                before = whole_number(value)
                if before is None:
                    raise BadRequestError("_before must be an AuditEvent id")
            elif name == "date":
                dates += list(parse_dates(name, value))
            elif name in ("agent", "agent:identifier"):
                f.setdefault("agents", []).append(agent_match(values, by_identifier=name != "agent"))
            elif name == "action":
                f["actions"] = values
            elif name == "outcome":
                f["outcomes"] = values
            elif name == "entity-type":
                f["resource_types"] = values
            elif name == "patient":
                patient_ids += [v.removeprefix("Patient/") for v in values]
            elif name not in ("_format", "_pretty"):
                raise BadRequestError(
                    f"unknown AuditEvent search parameter {name!r}; supported: {', '.join(SEARCH_PARAMETERS)}, _count"
                )
        f["agents"] = tuple(f.get("agents", ()))
        with uow.begin(audit_only=True) as repo:
            if patient_ids:
                # deleted Patients included: deleting a record must not hide who saw it
                found = [repo.get("Patient", pid) for pid in patient_ids]
                f["patient_keys"] = tuple({s.patient_key for s in found if s is not None and s.patient_key})
            if own_key is not None:
                keys = f.get("patient_keys")
                f["patient_keys"] = (own_key,) if keys is None or own_key in keys else ()
            rows = repo.audit_events(AuditFilter(count=count + 1, dates=tuple(dates), before_pk=before, **f))
            repo.add_audit([audit_row(ctx, now=now, status=200)])
    except RegistryError as exc:
        AuditTrail(uow).record([audit_row(ctx, now=now, status=exc.status, detail=exc.diagnostics)])
        raise
    page = rows[:count]
    entries = [Entry(f"{base_url}/AuditEvent/{r.pk}", orjson.dumps(to_fhir(r)), "match") for r in page]
    query = urlencode([(k, v) for k, v in params if k != "_before"])
    links = [("self", f"{base_url}/AuditEvent" + (f"?{query}" if query else ""))]
    if len(rows) > count and page:
        sep = "&" if query else ""
        links.append(("next", f"{base_url}/AuditEvent?{query}{sep}_before={page[-1].pk}"))
    return render("searchset", entries, now=now, links=links)


def read_audit_event(
    uow: UnitOfWork, principal: Principal, ctx: AuditContext, event_id: str, *, now: datetime
) -> bytes:

    try:
        own_key = audit_reader_key(principal)
        pk = whole_number(event_id)
        if pk is None:
            raise NotFoundError(f"AuditEvent/{event_id[:40]} is not known")
        with uow.begin(audit_only=True) as repo:
            rows = repo.audit_events(
                AuditFilter(count=1, pk=pk, patient_keys=(own_key,) if own_key is not None else None)
            )
            if not rows:
                raise NotFoundError(f"AuditEvent/{event_id} is not known")
            repo.add_audit([audit_row(ctx, now=now, status=200)])
    except RegistryError as exc:
        AuditTrail(uow).record([audit_row(ctx, now=now, status=exc.status, detail=exc.diagnostics)])
        raise
    return orjson.dumps(to_fhir(rows[0]))
