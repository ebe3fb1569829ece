"""OAuth 2.0 client credentials (RFC 6749 §4.4) at ``POST /auth/token``, the SMART configuration and the public
signing key (``/.well-known/jwks.json``).

- Client authentication: the client secret (``client_secret_post``, ``client_secret_basic``; SMART
  client-confidential-symmetric) or a signed assertion (``private_key_jwt``, RFC 7523 §2.2; SMART
  client-confidential-asymmetric, as SMART Backend Services use it) — exactly one method per request (RFC 6749
  §2.3). A token obtained with an assertion lives at most 300 s (SMART Backend Services: ``expires_in`` "SHOULD NOT
  exceed 300").
- Discovery (SMART App Launch 2.2 §Conformance): the document is served at ``[FHIR base]/.well-known/smart-
  configuration`` — ``/fhir/.well-known/…`` — and, as before, at the root; as JSON whatever the ``Accept``, with
  absolute URLs. It lists what is offered: the token endpoint, the ``client_credentials`` grant, the three client
  authentication methods with the assertion's signing algorithms, the scopes and the capabilities. ``issuer`` is
  omitted (no ``sso-openid-connect``), and so are ``authorization_endpoint`` and ``code_challenge_methods_supported``,
  which belong to the authorization-code grant (SMART App Launch) the registry does not offer.

Token errors use the OAuth format (``{"error": "invalid_client", …}``, RFC 6749 §5.2), not OperationOutcome.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import unquote_plus

import jwt
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from registry.auth import DEFAULT_SCOPES, PrincipalKind
from registry.endpoint import audit_context, ctx_of
from registry.errors import BadRequestError, UnauthorizedError
from registry.ratelimit import acquire_in_loop
from registry.services.audit import AuditTrail, audit_row
from registry.services.client_keys import ASSERTION_TYPE, MAX_LIFETIME_SECONDS, SIGNING_ALGS

router = APIRouter(tags=["Authorization"])

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    headers = dict(_NO_STORE)
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="hr-registry"'
    return JSONResponse({"error": error, "error_description": description}, status_code=status, headers=headers)


def token_url(base_url: str) -> str:
    return f"{base_url}/auth/token"


def _claimed_issuer(assertion: str) -> str:
    """The ``iss`` an assertion claims, before it is verified: only the rate limiter's key."""
    try:
        iss = jwt.decode(assertion, options={"verify_signature": False}).get("iss")
    except jwt.PyJWTError:
        return "?"
    return iss[:100] if isinstance(iss, str) else "?"


def _client_auth(request: Request, form: Any) -> tuple[str | None, str | None, str | None] | JSONResponse:
    """(client_id, secret, assertion) from the form and the Basic header, or the OAuth error to answer."""
    client_id, secret = form.get("client_id"), form.get("client_secret")
    assertion_type, assertion = form.get("client_assertion_type"), form.get("client_assertion")
    basic = request.headers.get("authorization", "")
    if basic.lower().startswith("basic "):
        if isinstance(secret, str) or isinstance(assertion, str):
            return _oauth_error(400, "invalid_request", "use one client authentication method (RFC 6749 §2.3)")
        try:
            user, _, password = base64.b64decode(basic[6:].strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return _oauth_error(400, "invalid_request", "malformed Basic credentials")
        client_id, secret = unquote_plus(user), unquote_plus(password)
    if isinstance(assertion, str) or assertion_type is not None:
        if assertion_type != ASSERTION_TYPE or not isinstance(assertion, str) or not assertion:
            return _oauth_error(400, "invalid_request", f"client_assertion_type must be {ASSERTION_TYPE}, with a "
                                "client_assertion")  # fmt: skip
        if isinstance(secret, str):
            return _oauth_error(400, "invalid_request", "use one client authentication method (RFC 6749 §2.3)")
        return (client_id if isinstance(client_id, str) and client_id else None), None, assertion
    if not isinstance(client_id, str) or not isinstance(secret, str) or not client_id or not secret:
        return _oauth_error(401, "invalid_client", "client_id and client_secret (or a client_assertion) are required")
    return client_id, secret, None


@router.post("/auth/token", summary="OAuth 2.0 client credentials grant")
async def token(request: Request) -> JSONResponse:
    ctx = ctx_of(request)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return _oauth_error(400, "invalid_request", "send application/x-www-form-urlencoded parameters")
    form = await request.form()
    grant_type = form.get("grant_type")
    if not grant_type:
        return _oauth_error(400, "invalid_request", "grant_type is required (client_credentials)")
    if grant_type != "client_credentials":
        return _oauth_error(400, "unsupported_grant_type", "only grant_type=client_credentials is supported")
    found = _client_auth(request, form)
    if isinstance(found, JSONResponse):
        return found
    client_id, secret, assertion = found
    limit_key = client_id or _claimed_issuer(assertion or "")
    wait = await acquire_in_loop(ctx.limiter, f"token:{limit_key}")
    if wait:
        return JSONResponse({"error": "slow_down", "error_description": f"retry in {wait} s"}, status_code=429,
                            headers={**_NO_STORE, "Retry-After": str(wait)})  # fmt: skip
    audit = audit_context(request, None, "operation")
    ttl: int | None = None
    try:
        if assertion is not None:
            url = token_url(ctx.settings.public_base_url)
            principal = await run_in_threadpool(
                ctx.principals.authenticate_assertion, assertion, token_url=url, client_id=client_id
            )
            ttl = min(ctx.settings.token_ttl_seconds, MAX_LIFETIME_SECONDS)
        else:
            principal = await run_in_threadpool(ctx.principals.authenticate, client_id or "", secret or "")
        scope = form.get("scope")
        requested = scope if isinstance(scope, str) else None
        issued = await run_in_threadpool(ctx.principals.token, principal, requested=requested, ttl_seconds=ttl)
    except UnauthorizedError as exc:
        who = client_id or "a client assertion"
        AuditTrail(ctx.uow).record([audit_row(audit, now=ctx.clock(), status=401, detail=f"token for {who}: "
                                              f"{exc.diagnostics}")])  # fmt: skip
        return _oauth_error(401, "invalid_client", exc.diagnostics)
    except BadRequestError as exc:
        return _oauth_error(400, "invalid_scope", exc.diagnostics)
    return JSONResponse(
        {"access_token": issued.access_token, "token_type": "Bearer", "expires_in": issued.expires_in,
         "scope": issued.scope},
        headers=_NO_STORE,
    )  # fmt: skip


def smart_configuration_document(base: str) -> dict[str, Any]:
    """What SMART App Launch 2.2 §Conformance requires for the grant and client types offered (see the module)."""
    scopes = sorted({s for kind in PrincipalKind for s in DEFAULT_SCOPES[kind]})
    return {
        "token_endpoint": token_url(base),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": list(SIGNING_ALGS),
        "scopes_supported": scopes,
        "capabilities": ["client-confidential-symmetric", "client-confidential-asymmetric", "permission-v1"],
        "jwks_uri": f"{base}/.well-known/jwks.json",
    }


@router.get("/.well-known/smart-configuration", summary="SMART configuration (also at the FHIR base)")
@router.get("/fhir/.well-known/smart-configuration", summary="SMART configuration at the FHIR base")
def smart_configuration(request: Request) -> JSONResponse:
    """JSON regardless of ``Accept`` (SMART App Launch 2.2 §Conformance)."""
    return JSONResponse(smart_configuration_document(ctx_of(request).settings.public_base_url))


@router.get("/.well-known/jwks.json", summary="Public keys that verify the registry's tokens")
def jwks(request: Request) -> JSONResponse:
    return JSONResponse({"keys": [ctx_of(request).tokens.key.jwk()]})
