"""Signing in and out of each area of the pages, and the home page (the session itself: ``session``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from registry.context import AppContext
from registry.endpoint import audit_context, ctx_of
from registry.errors import NotFoundError
from registry.services import policy
from registry.services.audit import AuditTrail, audit_row
from registry.web.rendering import render, safe_next
from registry.web.session import (
    AREAS,
    ClientCredentialsSignIn,
    IdentityProvider,
    SignInError,
    csrf_ok,
    sign_in,
    sign_out,
)

SIGN_IN_TITLES = {"portal": "sign_in_portal", "clinician": "sign_in_clinician", "stats": "sign_in_stats"}

router = APIRouter(include_in_schema=False)


def _provider(ctx: AppContext) -> IdentityProvider:
    return ClientCredentialsSignIn(ctx.principals)


# ---------------------------------------------------------------------------------------------------- sign-in
@router.get("/{area}/login", response_class=HTMLResponse)
def login_page(area: str, request: Request, next: str | None = None) -> Response:
    if area not in AREAS:
        raise NotFoundError(f"no such page: /{area}/login")
    return render(request, "login.html", area, None, title_key=SIGN_IN_TITLES[area], next=safe_next(area, next))


@router.post("/{area}/login", response_class=HTMLResponse)
def login(
    area: str,
    request: Request,
    account: Annotated[str, Form(max_length=100)],
    secret: Annotated[str, Form(max_length=200)],
    csrf: Annotated[str, Form(max_length=100)] = "",
    next: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    if area not in AREAS:
        raise NotFoundError(f"no such page: /{area}/login")
    ctx = ctx_of(request)
    values = {"title_key": SIGN_IN_TITLES[area], "next": safe_next(area, next), "account": account}
    if not csrf_ok(request, csrf):
        return render(request, "login.html", area, None, status=400, error_key="csrf", **values)
    if ctx.sign_in_limiter.acquire(f"{area}:{account}"):
        return render(request, "login.html", area, None, status=429, error_key="too_many", **values)
    audit = audit_context(request, None, "operation", None, None)
    try:
        principal = _provider(ctx).authenticate(account, secret)
        if not policy.may_use_area(area, principal):
            raise SignInError("wrong_kind")
    except SignInError as exc:
        AuditTrail(ctx.uow).record(
            [
                audit_row(
                    audit, now=ctx.clock(), status=401, detail=f"page sign-in /{area}: {exc.key}", interaction="login"
                )
            ]
        )
        return render(request, "login.html", area, None, status=401, error_key=exc.key, **values)
    audit = audit_context(request, principal, "operation", None, None)
    AuditTrail(ctx.uow).record(
        [audit_row(audit, now=ctx.clock(), status=200, detail=f"page sign-in /{area}", interaction="login")]
    )
    sign_in(request, area, principal, ctx.settings.session_ttl_seconds, now=ctx.principals.stamp(principal.client_id))
    return RedirectResponse(safe_next(area, next), status_code=303)


@router.post("/{area}/logout")
def logout(area: str, request: Request, csrf: Annotated[str, Form(max_length=100)] = "") -> Response:
    if area not in AREAS:
        raise NotFoundError(f"no such page: /{area}/logout")
    if csrf_ok(request, csrf):
        sign_out(request, area)
    return RedirectResponse(f"/{area}/login", status_code=303)


@router.get("/", include_in_schema=False)
def home(request: Request) -> Response:
    return render(request, "home.html", "", None)
