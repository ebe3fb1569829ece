"""OAuth 2.0 client credentials (RFC 6749 §4.4) at ``POST /auth/token``, the SMART configuration
(``/.well-known/smart-configuration``) and the public signing key (``/.well-known/jwks.json``).

Token errors use the OAuth format (``{"error": "invalid_client", …}``, RFC 6749 §5.2), not OperationOutcome.
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import unquote_plus

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from registry.auth import DEFAULT_SCOPES, PrincipalKind
from registry.endpoint import audit_context, ctx_of
from registry.errors import BadRequestError, UnauthorizedError
from registry.services.audit import AuditTrail, audit_row

router = APIRouter(tags=["Authorization"])

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _oauth_error(status: int, error: str, description: str) -> JSONResponse:
    headers = dict(_NO_STORE)
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="hr-registry"'
    return JSONResponse({"error": error, "error_description": description}, status_code=status, headers=headers)


@router.post("/auth/token", summary="OAuth 2.0 client credentials grant")
async def token(request: Request) -> JSONResponse:
    ctx = ctx_of(request)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        return _oauth_error(400, "invalid_request", "send application/x-www-form-urlencoded parameters")
    form = await request.form()
    client_id, secret = form.get("client_id"), form.get("client_secret")
    basic = request.headers.get("authorization", "")
    if basic.lower().startswith("basic "):
        try:
            user, _, password = base64.b64decode(basic[6:].strip()).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return _oauth_error(400, "invalid_request", "malformed Basic credentials")
        client_id, secret = unquote_plus(user), unquote_plus(password)
    grant_type = form.get("grant_type")
    if not grant_type:
        return _oauth_error(400, "invalid_request", "grant_type is required (client_credentials)")
    if grant_type != "client_credentials":
        return _oauth_error(400, "unsupported_grant_type", "only grant_type=client_credentials is supported")
    if not isinstance(client_id, str) or not isinstance(secret, str) or not client_id or not secret:
        return _oauth_error(401, "invalid_client", "client_id and client_secret are required")
    wait = ctx.limiter.acquire(f"token:{client_id}")
    if wait:
        return JSONResponse({"error": "slow_down", "error_description": f"retry in {wait} s"}, status_code=429,
                            headers={**_NO_STORE, "Retry-After": str(wait)})  # fmt: skip
    audit = audit_context(request, None, "operation")
    try:
        principal = await run_in_threadpool(ctx.principals.authenticate, client_id, secret)
        scope = form.get("scope")
        requested = scope if isinstance(scope, str) else None
        issued = await run_in_threadpool(ctx.principals.token, principal, requested=requested)  # reads the client
    except UnauthorizedError as exc:
        AuditTrail(ctx.uow).record([audit_row(audit, now=ctx.clock(), status=401, detail=f"token for {client_id}: "
                                              f"{exc.diagnostics}")])  # fmt: skip
        return _oauth_error(401, "invalid_client", exc.diagnostics)
    except BadRequestError as exc:
        return _oauth_error(400, "invalid_scope", exc.diagnostics)
    return JSONResponse(
        {"access_token": issued.access_token, "token_type": "Bearer", "expires_in": issued.expires_in,
         "scope": issued.scope},
        headers=_NO_STORE,
    )  # fmt: skip


@router.get("/.well-known/smart-configuration", summary="SMART App Launch configuration")
def smart_configuration(request: Request) -> JSONResponse:
    ctx = ctx_of(request)
    base = ctx.settings.public_base_url
    scopes = sorted({s for kind in PrincipalKind for s in DEFAULT_SCOPES[kind]})
    return JSONResponse(
        {
            "issuer": base,
            "jwks_uri": f"{base}/.well-known/jwks.json",
            "token_endpoint": f"{base}/auth/token",
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "grant_types_supported": ["client_credentials"],
            "scopes_supported": scopes,
            "capabilities": ["client-confidential-symmetric", "permission-v1"],
            "code_challenge_methods_supported": [],
        }
    )


@router.get("/.well-known/jwks.json", summary="Public keys that verify the registry's tokens")
def jwks(request: Request) -> JSONResponse:
    return JSONResponse({"keys": [ctx_of(request).tokens.key.jwk()]})
