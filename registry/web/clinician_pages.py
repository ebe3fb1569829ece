"""The clinician's order screen (``/clinician``) and the report a card links to."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from catalog import REASONS
from registry.auth import Principal
from registry.endpoint import audit_context, ctx_of
from registry.errors import ForbiddenError, NotFoundError
from registry.services.policy.purpose import MAX_REASON, BreakGlass
from registry.services.portal import ReportView
from registry.web.rendering import render, to_sign_in
from registry.web.session import (
    csrf_ok,
    language,
    signed_in,
)

router = APIRouter(include_in_schema=False)


@router.get("/clinician", response_class=HTMLResponse)
def clinician(request: Request) -> Response:
    ctx = ctx_of(request)
    principal = signed_in(request, ctx, "clinician")
    if principal is None:
        return to_sign_in(request, "clinician")
    en = language(request) == "en"
    reasons = [
        {"code": r.code, "display": r.display_en if en else r.display_zh, "counts": r.counts_as_nonrecognition,
         "comment": r.requires_comment}
        for r in REASONS
    ]  # fmt: skip
    return render(request, "clinician.html", "clinician", principal, reasons=reasons)


@router.post("/clinician/token")
def clinician_token(request: Request) -> Response:
    """A short-lived bearer token for the order screen's script (like an EHR launch hands one to an embedded app);
    needs the signed-in session and its CSRF token in ``X-CSRF-Token``."""
    ctx = ctx_of(request)
    principal = signed_in(request, ctx, "clinician")
    if principal is None:
        return JSONResponse({"error": "session_expired"}, status_code=401)
    if not csrf_ok(request, request.headers.get("x-csrf-token")):
        return JSONResponse({"error": "csrf"}, status_code=403)
    issued = ctx.principals.token(principal)
    return JSONResponse(
        {"access_token": issued.access_token, "expires_in": issued.expires_in, "org": principal.org_id},
        headers={"Cache-Control": "no-store"},
    )


Shown = Callable[[Request, Principal, ReportView, BreakGlass | None], Response]


def open_result(request: Request, rtype: str, rid: str, break_glass: BreakGlass | None, shown: Shown) -> Response:
    """A result as the clinician may read it (care context of their hospital, or by break-glass; audited), answered
    by ``shown``; outside the care context the break-glass form, which posts back to the same path."""
    ctx = ctx_of(request)
    principal = signed_in(request, ctx, "clinician")
    if principal is None:
        return to_sign_in(request, "clinician")
    audit = replace(audit_context(request, principal, "search-type", rtype), break_glass=break_glass)
    try:
        report = ctx.portal.result(principal, audit, rtype, rid)
    except (NotFoundError, ForbiddenError):
        # the same answer whether the record does not exist or is outside the care context (it tells nothing)
        return render(request, "report_refused.html", "clinician", principal, status=404, action=request.url.path)
    return shown(request, principal, report, break_glass)


def break_glass_form(request: Request, reason: str, csrf: str) -> BreakGlass | Response:
    """The break-glass a clinician's form asks for, or the page that says what is missing."""
    ctx = ctx_of(request)
    principal = signed_in(request, ctx, "clinician")
    if principal is None:
        return to_sign_in(request, "clinician")
    if not csrf_ok(request, csrf) or not reason.strip():
        return render(request, "report_refused.html", "clinician", principal, status=400, action=request.url.path,
                      error_key="csrf" if reason.strip() else "break_glass_reason")  # fmt: skip
    return BreakGlass(reason.strip())


def _report_page(
    request: Request, principal: Principal, report: ReportView, break_glass: BreakGlass | None
) -> Response:
    return render(request, "report.html", "clinician", principal, report=report, back="/clinician",
                  break_glass=break_glass)  # fmt: skip


def _report(request: Request, rtype: str, rid: str, break_glass: BreakGlass | None) -> Response:
    return open_result(request, rtype, rid, break_glass, _report_page)


@router.get("/clinician/reports/{rtype}/{rid}", response_class=HTMLResponse)
def clinician_report(rtype: str, rid: str, request: Request) -> Response:
    """The report a card links to, read as the clinician (care context of their hospital, audited)."""
    return _report(request, rtype, rid, None)


@router.post("/clinician/reports/{rtype}/{rid}", response_class=HTMLResponse)
def clinician_report_break_glass(
    rtype: str,
    rid: str,
    request: Request,
    reason: Annotated[str, Form(max_length=MAX_REASON)] = "",
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """The same report opened by break-glass: an explicit reason, audited with purpose of use BTG (policy.purpose)."""
    asked = break_glass_form(request, reason, csrf)
    return asked if isinstance(asked, Response) else _report(request, rtype, rid, asked)
