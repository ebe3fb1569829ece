"""CDS Hooks 2.0 services (cds-hooks.hl7.org/2.0): discovery, ``order-select``, ``order-sign``, ``patient-view`` and
feedback. Field names exactly as the specification (CDS Hooks 2.0).

- ``GET /cds-services``: the discovery document (open).
- ``POST /cds-services/{id}``: ``{"cards": [...]}`` — only for a patient in the calling hospital's care context
  (policy.care: its own MRN, with the national identifier to register a new patient), else 403, or by break-glass.
- ``POST /cds-services/{id}/feedback``: only for cards this service issued (``registry.services.feedback``). On an
  order card ``accepted`` → recognized (the order is avoided), ``overridden`` → declined with the
  ``overrideReason.reason`` picked from the card's ``overrideReasons`` (422 without one: the registry's rule where the
  card offers reasons; the specification makes ``overrideReason`` optional). On the patient-view reminder both
  outcomes are kept as sent. A repeated post is not counted twice.

Every card carries a ``uuid`` (the reminder too), so that feedback can name it.

Calls are authenticated with the registry's bearer tokens (the EHR is a registered hospital or clinician client).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from catalog import Coding
from registry.cds.cards import history_card, language, order_card, restriction_card
from registry.endpoint import CurrentPrincipal, LoopPrincipal, audit_context, ctx_of
from registry.errors import BadRequestError, NotFoundError
from registry.fhir.response import JsonResponse
from registry.services.feedback import FeedbackInput
from registry.services.recognition_orders import DraftOrder, PatientQuery

router = APIRouter(prefix="/cds-services", tags=["CDS Hooks"])

USAGE = (
    "Authorization: Bearer token from /auth/token (hospital or clinician client). Answers only for a patient "
    "registered at the calling hospital: prefetch the Patient with your MRN (and the national identifier, to register "
    "a new patient); outside your care context only break-glass (Category: "
    "http://terminology.hl7.org/CodeSystem/v3-ActReason#BTG and X-Break-Glass-Reason)."
)

SERVICES: dict[str, dict[str, Any]] = {
    "hr-order-select": {
        "hook": "order-select",
        "title": "检查检验结果互认：开单提醒",
        "description": "When an order is selected, tells whether the patient already has a recognizable result "
        "(检查检验结果互认) from another hospital, and suggests withdrawing the order.",
        "id": "hr-order-select",
        "prefetch": {"patient": "Patient/{{context.patientId}}"},
        "usageRequirements": USAGE,
    },
    "hr-order-sign": {
        "hook": "order-sign",
        "title": "检查检验结果互认：签署前核对",
        "description": "Before the orders are signed, checks every draft order against the patient's recognizable "
        "results from all hospitals.",
        "id": "hr-order-sign",
        "prefetch": {"patient": "Patient/{{context.patientId}}"},
        "usageRequirements": USAGE,
    },
    "hr-patient-view": {
        "hook": "patient-view",
        "title": "检查检验结果互认：接诊历史提醒",
        "description": "When a patient's record is opened, one card listing every result from other hospitals that "
        "is recognizable now (within a configurable look-back).",
        "id": "hr-patient-view",
        "prefetch": {"patient": "Patient/{{context.patientId}}"},
        "usageRequirements": USAGE,
    },
}


@router.get("", summary="CDS Hooks discovery")
def discovery() -> JSONResponse:
    return JSONResponse({"services": list(SERVICES.values())})


def _service(service_id: str) -> dict[str, Any]:
    service = SERVICES.get(service_id)
    if service is None:
        raise NotFoundError(f"no CDS service {service_id!r}; see GET /cds-services")
    return service


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError as exc:
        raise BadRequestError(f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequestError("the body must be a JSON object")
    return body


def _patient_query(body: dict[str, Any]) -> PatientQuery:
    context = body.get("context") or {}
    query = PatientQuery(patient_id=str(context.get("patientId")) if context.get("patientId") else None)
    patient = (body.get("prefetch") or {}).get("patient")
    if isinstance(patient, dict) and patient.get("resourceType") == "Patient":
        # A Patient read back from this registry carries the national identifier masked (docs/design.md §4): a display
        # form, not an identifier to match on, so it is left out; the patient is then found by its id or MRN.
        query.identifiers = [
            (str(i["system"]), str(i["value"]))
            for i in patient.get("identifier") or []
            if isinstance(i, dict) and i.get("system") and i.get("value") and "*" not in str(i["value"])
        ]
    return query


def _draft_orders(body: dict[str, Any], hook: str) -> list[DraftOrder]:
    context = body.get("context") or {}
    bundle = context.get("draftOrders")
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise BadRequestError("context.draftOrders must be a Bundle of draft orders")
    selections = context.get("selections") if hook == "order-select" else None
    if hook == "order-select" and not isinstance(selections, list):
        raise BadRequestError("order-select needs context.selections")
    orders: list[DraftOrder] = []
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict) or resource.get("resourceType") != "ServiceRequest":
            continue  # medication orders and others are not this service's business
        ref = f"ServiceRequest/{resource['id']}" if resource.get("id") else None
        if selections is not None and ref not in selections:
            continue
        code = resource.get("code") or {}
        codes = tuple(
            Coding(str(c.get("system") or ""), str(c["code"]))
            for c in code.get("coding") or []
            if isinstance(c, dict) and c.get("code")
        )
        orders.append(DraftOrder(ref, codes, code.get("text")))
    return orders


@router.post("/{service_id}", summary="Call a CDS service")
async def call(service_id: str, request: Request, principal: LoopPrincipal) -> JsonResponse:
    ctx = ctx_of(request)
    service = _service(service_id)
    body = await _json(request)
    if body.get("hook") != service["hook"]:
        raise BadRequestError(f"this service answers the {service['hook']} hook, not {body.get('hook')!r}")
    if not body.get("hookInstance") or not isinstance(body.get("context"), dict):
        raise BadRequestError("hookInstance and context are required (CDS Hooks 2.0)")
    audit = audit_context(request, principal, "operation", "CDS Hooks", service_id)
    query = _patient_query(body)
    tz = ctx.catalog.timezone
    base = ctx.settings.public_base_url
    lang = language(request.headers.get("accept-language"))
    if service["hook"] == "patient-view":
        days = ctx.settings.cds_lookback_days
        reminder = await run_in_threadpool(
            ctx.recognition.recognizable_history, principal, audit, query, lookback_days=days, source=service["hook"]
        )
        card = history_card(reminder.results, base, tz, days, card_uuid=reminder.card_uuid, lang=lang)
        if card is not None:
            ctx.metrics.reminders.labels(service["hook"]).inc()
        notice = [restriction_card(base, lang=lang)] if reminder.restricted else []
        return JsonResponse({"cards": ([card] if card else []) + notice})
    orders = _draft_orders(body, service["hook"])
    checked = await run_in_threadpool(
        ctx.recognition.check, principal, audit, query, orders, source=service["hook"],
        hook_instance=str(body["hookInstance"]),
    )  # fmt: skip
    ctx.metrics.checked(service["hook"], [c.decision.status.value for c in checked])
    cards = [
        card
        for c in checked
        if (card := order_card(c, base, tz, lang) or (restriction_card(base, c.item.name_zh if c.item else None, lang)
                                                      if c.restricted else None)) is not None
    ]  # fmt: skip
    return JsonResponse({"cards": cards})


def _feedback_item(item: Any) -> FeedbackInput:
    """One Feedback as CDS Hooks 2.0 §Feedback defines it: ``card``, ``outcome``, optional ``overrideReason``
    (``reason`` Coding, ``userComment``), ``outcomeTimestamp``."""
    if not isinstance(item, dict) or not item.get("card") or item.get("outcome") not in ("accepted", "overridden"):
        raise BadRequestError("each feedback needs card and an outcome of accepted or overridden")
    when = item.get("outcomeTimestamp")
    try:
        outcome_time = datetime.fromisoformat(str(when).replace("Z", "+00:00")) if when else None
    except ValueError:
        raise BadRequestError(f"outcomeTimestamp {when!r} is not ISO 8601") from None
    if item["outcome"] == "accepted":
        return FeedbackInput(str(item["card"]), "accepted", outcome_time=outcome_time)
    override = item.get("overrideReason") or {}
    if not isinstance(override, dict):
        raise BadRequestError("overrideReason must be an object (reason, userComment)")
    reason = override.get("reason") or {}
    if not isinstance(reason, dict):
        raise BadRequestError("overrideReason.reason must be a Coding")
    comment = override.get("userComment")
    return FeedbackInput(
        str(item["card"]), "overridden", str(reason["system"]) if reason.get("system") else None,
        str(reason["code"]) if reason.get("code") else None, str(comment) if comment else None, outcome_time,
    )  # fmt: skip


@router.post("/{service_id}/feedback", summary="Feedback: the clinician's decision on cards")
async def feedback(service_id: str, request: Request, principal: CurrentPrincipal) -> JSONResponse:
    ctx = ctx_of(request)
    service = _service(service_id)
    body = await _json(request)
    items = body.get("feedback")
    if not isinstance(items, list) or not items:
        raise BadRequestError('the body must be {"feedback": [ … ]}')
    given = [_feedback_item(i) for i in items]  # all valid, or none recorded
    audit = audit_context(request, principal, "operation", "CDS Hooks feedback", service_id)
    answered = await run_in_threadpool(ctx.feedback.record, principal, audit, given, hook=service["hook"])
    for a in answered:
        if a.decision is None:
            ctx.metrics.reminder_feedback.labels(a.outcome).inc()
        else:
            ctx.metrics.decided("feedback", a.decision, a.new)
    return JSONResponse(
        {"recorded": [{"card": a.card, "outcome": a.outcome, "decision": a.decision, "new": a.new} for a in answered]}
    )
