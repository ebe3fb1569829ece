"""The portal's notification settings (``/portal/notifications``): SMS and app push on or off, the language of the
texts, and the list of what was sent (docs/notifications.md). The patient's own, through the one policy."""

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
    audit = audit_context(request, principal, "search-type", "Communication")
    settings = ctx.notifications.settings(principal, audit)
    sent = ctx.notifications.sent(principal)
    return render(request, "portal_notifications.html", "portal", principal, status=status, settings=settings,
                  sent=sent, saved=saved, error_key=error_key)  # fmt: skip


@router.get("/portal/notifications", response_class=HTMLResponse)
def portal_notifications(request: Request) -> Response:
    return _page(request)


@router.post("/portal/notifications", response_class=HTMLResponse)
def portal_notifications_save(
    request: Request,
    csrf: Annotated[str, Form(max_length=100)] = "",
    sms: Annotated[str, Form(max_length=10)] = "",
    push: Annotated[str, Form(max_length=10)] = "",
    language: Annotated[str, Form(max_length=10)] = "zh",
) -> Response:
    ctx = ctx_of(request)
    principal = signed_in(request, ctx, "portal")
    if principal is None:
        return to_sign_in(request, "portal")
    if not csrf_ok(request, csrf):
        return _page(request, 400, error_key="csrf")
    audit = audit_context(request, principal, "update", "Communication")
    try:
        ctx.notifications.choose(principal, audit, sms=sms == "on", push=push == "on", language=language)
    except BadRequestError:
        return _page(request, 400, error_key="notify_bad_language")
    return _page(request, saved=True)
