"""Recognition for simple clients (FHIR operations), statistics and administration endpoints.

``POST /fhir/ServiceRequest/$recognition-check`` — Parameters in:

- ``patientIdentifier`` (valueIdentifier, repeatable: a national ID or an identifier the registry knows) and/or
  ``patient`` (valueReference ``Patient/<id>``);
- ``order`` (resource ServiceRequest, repeatable; ``code`` with local or standard codes, ``id`` to be named back).

Parameters out: one ``recognition`` per order, with parts ``order`` (valueReference), ``item`` (valueCoding of the
recognized-items CodeSystem), ``status`` (valueCode: recognizable, same-hospital-duplicate, expired, no-prior-result,
not-in-catalog, not-final, unqualified-issuer, out-of-scope), ``detail`` (valueString), ``card`` (valueString: the
uuid a decision refers to), ``sharingRestricted`` (valueBoolean) with a ``notice`` when earlier results exist but
the patient paused sharing them with the calling hospital, and each ``candidate`` (parts ``result``, ``report``,
``issuer``, ``effective``, ``validUntil``, ``value``, ``interpretation``, ``hrMark``, ``sameHospital``).

``POST /fhir/ServiceRequest/$recognition-decision`` — Parameters ``card`` (valueString), ``outcome`` (valueCode
recognized | declined), ``reason`` (valueCoding, for declined), ``comment`` (valueString): the decision without CDS
Hooks; out: Parameters ``card``, ``outcome``, ``new`` (valueBoolean: false for a repeat) and ``resultWithdrawn``
(valueBoolean: the card's result was withdrawn, cancelled or deleted since the card was issued — the decision is
recorded, and a recognition of it saves nothing in the statistics).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from catalog import Coding
from catalog.codes import RECOGNIZED_ITEMS
from registry.api.negotiation import require_json
from registry.auth import Principal
from registry.endpoint import CurrentPrincipal, audit_context, ctx_of
from registry.errors import BadRequestError
from registry.fhir.bundle import instant
from registry.fhir.response import fhir_response
from registry.services.audit import AuditTrail
from registry.services.decisions import DecisionInput
from registry.services.policy import RESTRICTED_EN, RESTRICTED_ZH
from registry.services.recognition_orders import CheckedOrder, DraftOrder, PatientQuery
from registry.services.stats import Period, parse_period

T = TypeVar("T")
fhir_router = APIRouter(prefix="/fhir", tags=["Recognition"], dependencies=[Depends(require_json)])
stats_router = APIRouter(prefix="/stats/api", tags=["Statistics"])
admin_router = APIRouter(prefix="/admin", tags=["Administration"])


async def _parameters(request: Request) -> list[dict[str, Any]]:
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise BadRequestError(f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise BadRequestError("the operation takes a Parameters resource")
    params = body.get("parameter") or []
    if not isinstance(params, list):
        raise BadRequestError("Parameters.parameter must be a list")
    return [p for p in params if isinstance(p, dict)]


def _candidate_parts(c: Any) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [
        {"name": "result", "valueReference": {"reference": c.result_ref}},
        {"name": "effective", "valueDateTime": instant(c.effective)},
        {"name": "validUntil", "valueDateTime": instant(c.valid_until)},
        {"name": "sameHospital", "valueBoolean": c.same_hospital},
    ]
    if c.report_ref:
        parts.append({"name": "report", "valueReference": {"reference": c.report_ref}})
    if c.issuer:
        parts.append({"name": "issuer", "valueReference": {"reference": f"Organization/{c.issuer.id}",
                                                           "display": c.issuer.name}})  # fmt: skip
    if c.value_text:
        parts.append({"name": "value", "valueString": c.value_text})
    if c.interpretation:
        parts.append({"name": "interpretation", "valueCode": c.interpretation})
    if c.hr_mark:
        parts.append({"name": "hrMark", "valueString": c.hr_mark})
    return parts


def _result(checked: CheckedOrder) -> dict[str, Any]:
    parts: list[dict[str, Any]] = []
    if checked.order.ref:
        parts.append({"name": "order", "valueReference": {"reference": checked.order.ref}})
    if checked.item is not None:
        parts.append({"name": "item", "valueCoding": {"system": RECOGNIZED_ITEMS, "code": checked.item.id,
                                                      "display": checked.item.name_zh}})  # fmt: skip
    parts.append({"name": "status", "valueCode": checked.decision.status.value})
    if checked.decision.detail:
        parts.append({"name": "detail", "valueString": checked.decision.detail})
    if checked.card_uuid:
        parts.append({"name": "card", "valueString": checked.card_uuid})
    if checked.restricted:  # earlier results withheld because the patient paused sharing (policy.consent)
        parts.append({"name": "sharingRestricted", "valueBoolean": True})
        parts.append({"name": "notice", "valueString": f"{RESTRICTED_ZH} / {RESTRICTED_EN}"})
    parts += [{"name": "candidate", "part": _candidate_parts(c)} for c in checked.candidates]
    return {"name": "recognition", "part": parts}


@fhir_router.post("/ServiceRequest/$recognition-check", summary="Check draft orders against recognizable results")
async def recognition_check(request: Request, principal: CurrentPrincipal) -> Response:
    ctx = ctx_of(request)
    params = await _parameters(request)
    query = PatientQuery()
    orders: list[DraftOrder] = []
    for p in params:
        name = p.get("name")
        if name == "patientIdentifier" and isinstance(p.get("valueIdentifier"), dict):
            ident = p["valueIdentifier"]
            if ident.get("system") and ident.get("value"):
                query.identifiers.append((str(ident["system"]), str(ident["value"])))
        elif name == "patient" and isinstance(p.get("valueReference"), dict):
            ref = str(p["valueReference"].get("reference", ""))
            query.patient_id = ref.removeprefix("Patient/") or None
        elif name == "order" and isinstance(p.get("resource"), dict):
            sr = p["resource"]
            if sr.get("resourceType") != "ServiceRequest":
                raise BadRequestError("order must be a ServiceRequest")
            code = sr.get("code") or {}
            codes = tuple(
                Coding(str(c.get("system") or ""), str(c["code"]))
                for c in code.get("coding") or []
                if isinstance(c, dict) and c.get("code")
            )
            orders.append(DraftOrder(f"ServiceRequest/{sr['id']}" if sr.get("id") else None, codes, code.get("text")))
        else:
            raise BadRequestError(f"unknown or malformed parameter {name!r} (patientIdentifier, patient, order)")
    if not orders:
        raise BadRequestError("at least one order (ServiceRequest) is required")
    if not query.identifiers and not query.patient_id:
        raise BadRequestError("the patient is required: patientIdentifier or patient")
    audit = audit_context(request, principal, "operation", "ServiceRequest")
    checked = await run_in_threadpool(ctx.recognition.check, principal, audit, query, orders, source="operation")
    ctx.metrics.checked("operation", [c.decision.status.value for c in checked])
    return fhir_response({"resourceType": "Parameters", "parameter": [_result(c) for c in checked]})


@fhir_router.post("/ServiceRequest/$recognition-decision", summary="Record a decision on a recognition card")
async def recognition_decision(request: Request, principal: CurrentPrincipal) -> Response:
    ctx = ctx_of(request)
    params = {p.get("name"): p for p in await _parameters(request)}
    card = (params.get("card") or {}).get("valueString")
    outcome = (params.get("outcome") or {}).get("valueCode")
    if not card or not outcome:
        raise BadRequestError("card (valueString) and outcome (valueCode recognized|declined) are required")
    reason = (params.get("reason") or {}).get("valueCoding") or {}
    comment = (params.get("comment") or {}).get("valueString")
    decision = DecisionInput(str(card), str(outcome), reason.get("system"), reason.get("code"), comment)
    audit = audit_context(request, principal, "operation", "ServiceRequest")
    recorded = await run_in_threadpool(ctx.decisions.record, principal, audit, decision, source="operation")
    ctx.metrics.decided("operation", recorded.outcome, recorded.new)
    return fhir_response({"resourceType": "Parameters", "parameter": [
        {"name": "card", "valueString": recorded.card_uuid}, {"name": "outcome", "valueCode": recorded.outcome},
        {"name": "new", "valueBoolean": recorded.new},
        {"name": "resultWithdrawn", "valueBoolean": recorded.result_withdrawn}]})  # fmt: skip


# ------------------------------------------------------------------------------------------ statistics
def _period(request: Request) -> tuple[Period, dict[str, str | None]]:
    q = request.query_params
    known = {"start", "end", "hospital", "issuer", "item", "kind"}
    unknown = set(q) - known
    if unknown:
        raise BadRequestError(f"unknown filter(s) {sorted(unknown)}; filters: {sorted(known)}")
    return parse_period(q.get("start"), q.get("end")), {k: q.get(k) for k in ("hospital", "issuer", "item", "kind")}


def _audited(request: Request, principal: Principal, what: str, fn: Callable[[], T]) -> T:
    """Run a statistics or administration call with one audit row for it, refusals included."""
    ctx = ctx_of(request)
    audit = audit_context(request, principal, "operation", what)
    return AuditTrail(ctx.uow).around(audit, ctx.clock(), fn)


@stats_router.get("/summary", summary="Recognition statistics (JSON)")
def stats_summary(request: Request, principal: CurrentPrincipal) -> JSONResponse:
    period, filters = _period(request)
    statistics = ctx_of(request).statistics
    return JSONResponse(_audited(request, principal, "statistics", lambda: statistics.summary(principal, period,
                                                                                             **filters)))  # fmt: skip


@stats_router.get("/export.csv", summary="Recognition statistics (CSV)")
def stats_export(request: Request, principal: CurrentPrincipal) -> Response:
    period, filters = _period(request)
    statistics = ctx_of(request).statistics
    text = _audited(request, principal, "statistics", lambda: statistics.export_csv(principal, period, **filters))
    return Response(
        "\ufeff" + text,  # a BOM so spreadsheet programs read the Chinese names as UTF-8
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="hr-recognition-statistics.csv"'},
    )


# ------------------------------------------------------------------------------------------ administration
@admin_router.get("/qualifications", summary="Quality-control qualifications")
def qualifications(request: Request, principal: CurrentPrincipal, org: str | None = None) -> JSONResponse:
    admin = ctx_of(request).administration
    found = _audited(request, principal, "qualifications", lambda: admin.qualifications(principal, org))
    return JSONResponse({"qualifications": found})


@admin_router.post("/qualifications", summary="Add a qualification (admins)", status_code=201)
async def add_qualification(request: Request, principal: CurrentPrincipal) -> JSONResponse:
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise BadRequestError(f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequestError("the body must be a JSON object")
    admin = ctx_of(request).administration
    added = _audited(request, principal, "qualifications", lambda: admin.add(principal, body))
    return JSONResponse(added, status_code=201)


@admin_router.delete("/qualifications/{qual_id}", summary="Revoke a qualification (admins)")
def revoke_qualification(qual_id: str, request: Request, principal: CurrentPrincipal) -> JSONResponse:
    admin = ctx_of(request).administration
    _audited(request, principal, "qualifications", lambda: admin.revoke(principal, qual_id))
    return JSONResponse({"revoked": qual_id})


@admin_router.get("/unmapped-codes", summary="Incoming result codes that map to no catalog item")
def unmapped_codes(request: Request, principal: CurrentPrincipal, org: str | None = None) -> JSONResponse:
    admin = ctx_of(request).administration
    return JSONResponse({"unmapped": _audited(request, principal, "unmapped codes",
                                              lambda: admin.unmapped_for(principal, org))})  # fmt: skip
