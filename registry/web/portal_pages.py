"""The patient portal (``/portal``): every report from every hospital, one report, a trend, who viewed my records."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from registry.auth import Principal
from registry.endpoint import audit_context, ctx_of
from registry.errors import NotFoundError
from registry.services.portal import ReportView, SentNotification
from registry.services.portal.views import ABNORMAL
from registry.web import charts, display
from registry.web.i18n import describe_access
from registry.web.rendering import error_page, render, to_sign_in
from registry.web.session import (
    language,
    signed_in,
)

router = APIRouter(include_in_schema=False)


def records_of(request: Request, principal: Principal) -> str:
    """Whose records the portal shows — the patient's name as the hospitals registered it, which the header shows
    instead of the account's label (an account named "演示患者" above a card for 张三 reads as two people)."""
    ctx = ctx_of(request)
    try:
        card = ctx.portal.patient(principal, audit_context(request, principal, "search-type", "Patient"))
    except NotFoundError:
        return ""
    return card.name


def _options(reports: list[ReportView]) -> tuple[list[tuple[str, str]], list[tuple[str, Any]]]:
    hospitals = sorted({(r.org_id or "", r.org_name) for r in reports}, key=lambda h: h[1])
    items = {r.item.id: r.item for r in reports if r.item is not None}
    return hospitals, sorted(items.items(), key=lambda kv: kv[0])


@router.get("/portal", response_class=HTMLResponse)
def portal(request: Request, hospital: str = "", kind: str = "", item: str = "") -> Response:
    ctx = ctx_of(request)
    principal = signed_in(request, ctx, "portal")
    if principal is None:
        return to_sign_in(request, "portal")
    audit = audit_context(request, principal, "search-type", "DiagnosticReport")
    every = ctx.portal.reports(principal, audit)
    card = ctx.portal.patient(principal, audit_context(request, principal, "search-type", "Patient"))
    shown = [
        r
        for r in every
        if (not hospital or r.org_id == hospital)
        and (not kind or r.kind.value == kind)
        and (not item or (r.item is not None and r.item.id == item))
    ]
    hospitals, items = _options(every)
    return render(
        request,
        "portal_reports.html",
        "portal",
        principal,
        card=card,
        records_of=card.name,
        reports=shown,
        total=len(every),
        hospitals=hospitals,
        items=items,
        trend_items=ctx.portal.lab_items(every),
        hospital_count=len({r.org_id for r in every}),
        filters={"hospital": hospital, "kind": kind, "item": item},
    )


@router.get("/portal/reports/{rid}", response_class=HTMLResponse)
def portal_report(rid: str, request: Request) -> Response:
    return open_own_report(request, rid, _report_page)


def _report_page(request: Request, principal: Principal, report: ReportView) -> Response:
    return render(request, "report.html", "portal", principal, report=report, back="/portal",
                  records_of=records_of(request, principal))  # fmt: skip


def open_own_report(request: Request, rid: str, show: Callable[[Request, Principal, ReportView], Response]) -> Response:
    """One of the signed-in patient's own reports, shown by ``show`` (its page, its images); the sign-in page
    without a session, 404 for a report that is not theirs (as for one that does not exist)."""
    ctx = ctx_of(request)
    principal = signed_in(request, ctx, "portal")
    if principal is None:
        return to_sign_in(request, "portal")
    audit = audit_context(request, principal, "search-type", "DiagnosticReport")
    try:
        report = ctx.portal.report(principal, audit, rid)
    except NotFoundError:
        return error_page(request, "portal", principal, 404, "not_found")
    return show(request, principal, report)


@router.get("/portal/trends/{item_id}", response_class=HTMLResponse)
def portal_trend(item_id: str, request: Request) -> Response:
    ctx = ctx_of(request)
    principal = signed_in(request, ctx, "portal")
    if principal is None:
        return to_sign_in(request, "portal")
    audit = audit_context(request, principal, "search-type", "Observation")
    try:
        trend = ctx.portal.trend(principal, audit, item_id)
    except NotFoundError:
        return error_page(request, "portal", principal, 404, "not_found")
    lang = language(request)
    shown_unit = display.unit_text(trend.unit, lang)
    chart = charts.trend_chart(
        [
            (
                p.when,
                p.value,
                p.org_name,
                f"{p.when.astimezone(ctx.local_tz):%Y-%m-%d} {p.org_name}: {p.text} {shown_unit}".rstrip()
                + (f" ({display.flags_text(p.flags, lang)})" if set(p.flags) - {"N"} else ""),
                bool(set(p.flags) & ABNORMAL),
            )
            for p in trend.points
        ],
        trend.low,
        trend.high,
    )
    return render(request, "portal_trend.html", "portal", principal, trend=trend, chart=chart,
                  records_of=records_of(request, principal))  # fmt: skip


@router.get("/portal/access", response_class=HTMLResponse)
def portal_access(request: Request) -> Response:
    ctx = ctx_of(request)
    principal = signed_in(request, ctx, "portal")
    if principal is None:
        return to_sign_in(request, "portal")
    lang = language(request)
    return render(
        request,
        "portal_access.html",
        "portal",
        principal,
        rows=ctx.portal.access_log(principal, audit=audit_context(request, principal, "search-type", "AuditEvent")),
        notifications=[
            SentNotification(m.sent or m.created, m.channel, m.text, m.status)
            for m in ctx.notifications.sent(principal)
        ],
        records_of=records_of(request, principal),
        describe=lambda row: describe_access(
            row.interaction, row.resource_type, lang, row.purpose, resource_id=row.resource_id, detail=row.detail
        ),
    )
