"""Signing in to the pages, the session that remembers it, and the CSRF token every form carries.

The session lives in a signed cookie (Starlette's ``SessionMiddleware``: HttpOnly, ``SameSite=Lax``, ``Secure`` when
``REGISTRY_COOKIE_SECURE`` is set) and holds only the signed-in client id per area, its expiry, the language and the
CSRF token — never patient data. The principal is looked up again on every request (``Principals.session_principal``,
through the same short per-process cache as bearer tokens), and each area records when it was signed in, so a
disabled or removed client is signed out — and a session from before ``rotate-secret`` or ``disable`` ends — within
``REGISTRY_CLIENT_CACHE_SECONDS`` on every server and at once on the server that made the change. Times come from
the registry's clock (``ctx.clock``), never the machine's directly.

``IdentityProvider`` is the seam for who may sign in: the built-in provider checks the client credentials the CLI
issues (``hr-registry clients add``) or the demo prints; a city identity provider (OIDC authorization-code flow)
would implement the same method from its callback and hand back the same ``Principal``.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import MutableMapping
from datetime import datetime
from typing import Any, Protocol

from starlette.requests import Request

from registry.auth import Principal
from registry.context import AppContext
from registry.errors import UnauthorizedError
from registry.services import policy
from registry.services.principals import Principals

AREAS = policy.AREAS
"""Which kinds of principal may use each area of the pages (decided by the policy)."""


class SignInError(Exception):
    """Why a sign-in failed, as a key of the pages' text (``bad_credentials``, ``wrong_kind``…)."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class IdentityProvider(Protocol):
    def authenticate(self, account: str, secret: str) -> Principal:
        """The principal for these credentials; raises ``SignInError("bad_credentials")`` otherwise."""
        ...


class ClientCredentialsSignIn:
    """Sign-in with the client credentials the registry issues (the same ones ``/auth/token`` takes)."""

    def __init__(self, principals: Principals) -> None:
        self.principals = principals

    def authenticate(self, account: str, secret: str) -> Principal:
        try:
            return self.principals.authenticate(account.strip(), secret.strip())
        except UnauthorizedError:
            raise SignInError("bad_credentials") from None


def _session(request: Request) -> MutableMapping[str, Any]:
    session: MutableMapping[str, Any] = request.session
    return session


def csrf_token(request: Request) -> str:
    """The session's CSRF token (synchronizer token pattern), created on first use."""
    session = _session(request)
    token = session.get("csrf")
    if not isinstance(token, str) or len(token) < 32:
        token = secrets.token_urlsafe(32)
        session["csrf"] = token
    return token


def csrf_ok(request: Request, presented: str | None) -> bool:
    expected = _session(request).get("csrf")
    return isinstance(expected, str) and isinstance(presented, str) and hmac.compare_digest(expected, presented)


def sign_in(request: Request, area: str, principal: Principal, ttl_seconds: int, *, now: datetime) -> None:
    session = _session(request)
    areas = dict(session.get("areas") or {})
    at = int(now.timestamp())  # whole seconds, like a token's iat: compared with the client's tokens_valid_after
    areas[area] = {"cid": principal.client_id, "at": at, "exp": at + ttl_seconds}
    session["areas"] = areas
    session["csrf"] = secrets.token_urlsafe(32)  # a new token after sign-in (no session fixation of the token)


def sign_out(request: Request, area: str) -> None:
    session = _session(request)
    areas = dict(session.get("areas") or {})
    areas.pop(area, None)
    session["areas"] = areas


def signed_in(request: Request, ctx: AppContext, area: str) -> Principal | None:
    """The principal signed in to ``area``, or None (not signed in, expired, disabled, removed, rotated or disabled
    since the sign-in, or the wrong kind)."""
    entry = (_session(request).get("areas") or {}).get(area)
    if not isinstance(entry, dict) or not isinstance(entry.get("cid"), str):
        return None
    at, exp = entry.get("at"), entry.get("exp")
    if not isinstance(at, int) or not isinstance(exp, int) or exp < ctx.clock().timestamp():
        sign_out(request, area)  # expired, or a session from before sign-ins recorded their time
        return None
    principal = ctx.principals.session_principal(entry["cid"], at)
    if principal is None or not policy.may_use_area(area, principal):
        sign_out(request, area)
        return None
    request.state.principal = principal  # as for a token: its writes mark read-your-writes (registry.middleware)
    return principal


def language(request: Request) -> str:
    """``?lang=`` switches the language and the session remembers it; Chinese by default."""
    session = _session(request)
    wanted = request.query_params.get("lang")
    if wanted in ("zh", "en"):
        session["lang"] = wanted
    lang = session.get("lang")
    return lang if lang in ("zh", "en") else "zh"
