"""What every FHIR handler needs: the calling principal (bearer token), rate limits, audit context, ``Prefer``."""

from __future__ import annotations

from email.utils import format_datetime
from typing import Annotated, NoReturn

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from registry.auth import AuthError, Principal
from registry.context import AppContext
from registry.errors import ForbiddenError, RateLimitedError, UnauthorizedError
from registry.fhir.bundle import weak_etag
from registry.fhir.response import fhir_response
from registry.ratelimit import acquire_in_loop
from registry.services import policy
from registry.services.audit import AuditContext, AuditTrail, audit_row
from registry.services.policy.purpose import REASON_HEADER, BreakGlass
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
    *,
    query: str | None = None,
) -> AuditContext:
    """What the audit rows of this request say; ``query``: the parameters, when not (only) the URL's."""
    ctx = ctx_of(request)
    redactor = redactor_for(ctx.identity)
    raw = query if query is not None else request.url.query
    query = redactor.query(raw) if raw else None
    return AuditContext(
        request_id(request),
        principal,
        interaction,
        resource_type,
        resource_id,
        query,
        break_glass=break_glass_of_request(request),
        redactor=redactor,
    )


def break_glass_of_request(request: Request) -> BreakGlass | None:
    """The break-glass the request asks for (``Category`` label + ``X-Break-Glass-Reason``), see policy.purpose."""
    if not hasattr(request.state, "break_glass"):
        request.state.break_glass = policy.break_glass_of(
            request.headers.get("category"), request.headers.get(REASON_HEADER)
        )
    found: BreakGlass | None = request.state.break_glass
    return found


def route_rule(request: Request) -> policy.Route | None:
    route = request.scope.get("route")
    path = getattr(route, "path", None)
    return policy.route_for(request.method, path) if isinstance(path, str) else None


class _NoCredentialsError(AuthError):
    """No token at all: the challenge then carries no error code (RFC 6750 §3.1)."""


def authenticate(request: Request) -> Principal:
    """The principal of a valid bearer token whose client still stands behind it (enabled, not rotated since, same
    kind, organization and patient, scopes still held: ``Principals.admit``); 401 otherwise with
    ``error="invalid_token"`` (RFC 6750 §3.1), 429 past the client's rate (both audited)."""
    ctx = ctx_of(request)
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    holder: Principal | None = None
    try:
        if scheme.lower() != "bearer" or not token.strip():
            raise _NoCredentialsError("a bearer token is required (Authorization: Bearer <token>; see /auth/token)")
        verified = ctx.tokens.verified(token.strip(), now=ctx.clock())
        holder = verified.principal  # signed by this registry: the audit row may name who presented it
        principal = ctx.principals.admit(verified)
    except AuthError as exc:
        error = UnauthorizedError(str(exc))
        error.challenge_error = not isinstance(exc, _NoCredentialsError)
        ctx_audit = audit_context(request, holder, "operation", None, None)
        AuditTrail(ctx.uow).record([audit_row(ctx_audit, now=ctx.clock(), status=401, detail=str(exc))])
        raise error from None
    rule = route_rule(request)
    if rule is None or rule.gate is not policy.Gate.TOKEN or principal.kind not in rule.kinds:
        what = rule.what if rule is not None else "this route"
        diagnostics = f"{principal.kind.value} principals may not use {what}"
        params = request.path_params
        resource_type = params.get("rtype") or ("AuditEvent" if "/AuditEvent" in request.url.path else None)
        ctx_audit = audit_context(
            request, principal, rule.interaction if rule else "operation", resource_type, params.get("rid")
        )
        AuditTrail(ctx.uow).record([audit_row(ctx_audit, now=ctx.clock(), status=403, detail=diagnostics)])
        refusal = ForbiddenError(diagnostics)
        refusal.audited = True
        raise refusal
    wait = ctx.limiter.acquire(principal.client_id)
    if wait:
        _rate_limited(request, principal, wait)
    request.state.principal = principal
    return principal


def _rate_limited(request: Request, principal: Principal, wait: int) -> NoReturn:
    ctx = ctx_of(request)
    ctx_audit = audit_context(request, principal, "operation")
    AuditTrail(ctx.uow).record([audit_row(ctx_audit, now=ctx.clock(), status=429, detail="rate limit")])
    raise RateLimitedError(f"too many requests from {principal.client_id}; retry in {wait} s", retry_after=wait)


def _remembered_principal(request: Request) -> Principal | None:
    """The principal of the request's token when deciding on it needs no database (else None)."""
    ctx = ctx_of(request)
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    rule = route_rule(request)
    if scheme.lower() != "bearer" or not token.strip() or rule is None or rule.gate is not policy.Gate.TOKEN:
        return None
    try:
        verified = ctx.tokens.verified(token.strip(), now=ctx.clock())
        if verified.principal.kind not in rule.kinds or not ctx.principals.remembered(verified.principal.client_id):
            return None
        return ctx.principals.admit(verified)
    except AuthError:
        return None


async def authenticate_in_loop(request: Request) -> Principal:
    """:func:`authenticate` for async handlers that serve many small requests (the DICOMweb gateway's frames): when
    the token verifies, its client's row is in this process's memory and the route admits its kind — nothing to read
    or write — the principal is admitted on the event loop; anything else (a refusal to audit, a client row to
    load) goes to :func:`authenticate` in a worker thread, as a sync dependency would."""
    principal = _remembered_principal(request)
    if principal is None:
        return await run_in_threadpool(authenticate, request)
    wait = await acquire_in_loop(ctx_of(request).limiter, principal.client_id)
    if wait:
        await run_in_threadpool(_rate_limited, request, principal, wait)
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(authenticate)]
# for async handlers of many small calls (DICOMweb frames, CDS Hooks): no thread hop when the client is in memory
LoopPrincipal = Annotated[Principal, Depends(authenticate_in_loop)]


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
