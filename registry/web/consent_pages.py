"""The patient's sharing consent page (``/portal/consent``): the current setting per hospital, pause and resume
(one hospital or all), and the separate consent for sensitive items — POST forms with the session's CSRF token.
The service decides and records (services.consent, policy.consent); this parses and renders."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response

from registry.endpoint import audit_context, ctx_of
from registry.errors import BadRequestError
from registry.web.rendering import render, to_sign_in
from registry.web.session import csrf_ok, signed_in

router = APIRouter(include_in_schema=False)


def _page(request: Request, status: int = 200, *, saved: bool = False, error_key: str | None = None) -> Response:
    ctx = ctx_of(request)
    principal = signed_in(request, ctx, "portal")
    if principal is None:
        return to_sign_in(request, "portal")
    view = ctx.consent.view(principal, audit_context(request, principal, "search-type", "Consent"))
    return render(request, "portal_consent.html", "portal", principal, status=status, view=view, saved=saved,
                  error_key=error_key)  # fmt: skip


@router.get("/portal/consent", response_class=HTMLResponse)
def consent(request: Request) -> Response:
    return _page(request)


@router.post("/portal/consent", response_class=HTMLResponse)
def change_consent(
    request: Request,
    action: Annotated[str, Form(max_length=40)] = "",
    org: Annotated[str, Form(max_length=64)] = "",
    csrf: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    """One change, as the signed-in patient: ``action`` pause | resume (``org``: one hospital, empty: all) |
    share-sensitive | keep-sensitive."""
    ctx = ctx_of(request)
    principal = signed_in(request, ctx, "portal")
    if principal is None:
        return to_sign_in(request, "portal")
    if not csrf_ok(request, csrf):
        return _page(request, 403, error_key="csrf")
    audit = audit_context(request, principal, "update", "Consent")
    try:
        ctx.consent.change(principal, audit, action, org or None)
    except BadRequestError:
        return _page(request, 400, error_key="bad_request")
    return _page(request, saved=True)
