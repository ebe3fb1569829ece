"""What every FHIR handler needs: the calling principal (bearer token), rate limits, audit context, ``Prefer``."""

from __future__ import annotations

from email.utils import format_datetime
from typing import Annotated

from fastapi import Depends, Request
from starlette.responses import Response

from registry.auth import AuthError, Principal
from registry.context import AppContext
from registry.errors import RateLimitedError, UnauthorizedError
from registry.fhir.bundle import weak_etag
from registry.fhir.response import fhir_response
from registry.services.audit import AuditContext, AuditTrail, audit_row
from registry.services.redaction import redactor_for
from registry.store.records import Stored


def ctx_of(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", "") or "-")


def audit_context(
    request: Request,
    principal: Principal | None,
    interaction: str,
    resource_type: str | None = None,
    resource_id: str | None = None,
) -> AuditContext:
    ctx = ctx_of(request)
    redactor = redactor_for(ctx.identity)
    query = redactor.query(request.url.query) if request.url.query else None
    return AuditContext(request_id(request), principal, interaction, resource_type, resource_id, query, redactor)


class _NoCredentialsError(AuthError):
    """No token at all: the challenge then carries no error code (RFC 6750 §3.1)."""


def authenticate(request: Request) -> Principal:
    """The principal of a valid bearer token; 401 otherwise, 429 past the client's rate (both audited)."""
    ctx = ctx_of(request)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    try:
        if scheme.lower() != "bearer" or not token.strip():
            raise _NoCredentialsError("a bearer token is required (Authorization: Bearer <token>; see /auth/token)")
        principal = ctx.tokens.verify(token.strip(), now=ctx.clock())
    except AuthError as exc:
        error = UnauthorizedError(str(exc))
        error.challenge_error = not isinstance(exc, _NoCredentialsError)
        ctx_audit = audit_context(request, None, "operation", None, None)
        AuditTrail(ctx.uow).record([audit_row(ctx_audit, now=ctx.clock(), status=401, detail=str(exc))])
        raise error from None
    wait = ctx.limiter.acquire(principal.client_id)
    if wait:
        ctx_audit = audit_context(request, principal, "operation")
        AuditTrail(ctx.uow).record([audit_row(ctx_audit, now=ctx.clock(), status=429, detail="rate limit")])
        raise RateLimitedError(f"too many requests from {principal.client_id}; retry in {wait} s", retry_after=wait)
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(authenticate)]


def prefer(request: Request) -> dict[str, str]:
    """The ``Prefer`` header (RFC 7240) as a dict: ``return`` and ``handling`` are the ones FHIR uses."""
    out: dict[str, str] = {}
    for part in request.headers.get("prefer", "").split(","):
        name, _, value = part.strip().partition("=")
        if name:
            out[name.strip().lower()] = value.strip().strip('"').lower()
    return out


def resource_headers(stored: Stored) -> dict[str, str]:
    return {
        "ETag": weak_etag(stored.version),
        "Last-Modified": format_datetime(stored.last_updated, usegmt=True),
    }


def stored_response(request: Request, stored: Stored, *, status: int = 200, location: str | None = None) -> Response:
    headers = resource_headers(stored)
    if location:
        headers["Location"] = location
        headers["Content-Location"] = location
    mode = prefer(request).get("return", "representation")
    if mode == "minimal":
        return Response(status_code=status, headers=headers)
    if mode == "operationoutcome":
        from registry.fhir.outcome import operation_outcome

        return fhir_response(
            operation_outcome("information", "informational", f"{stored.type}/{stored.id} version {stored.version}"),
            status_code=status,
            headers=headers,
        )
    return fhir_response(stored.body, status_code=status, headers=headers)
