"""Managing principals and issuing tokens: hospital systems, clinicians, patients, admins (docs/design.md §6).

Client credentials (RFC 6749 §4.4) give hospital systems short-lived tokens; the CLI adds principals and can mint a
token directly for demos and tests.

Clients can be disabled, enabled, removed and have their secret rotated ("a disabled client's tokens stop
working"). Every bearer token and page session is checked against the stored client (``admit``,
``session_principal``): the client must exist and be enabled, the token must be issued after the client's
``tokens_valid_after`` (set by ``rotate_secret`` and ``disable``), and the token's kind, organization and patient
must equal the stored ones and its scopes be covered by the stored scopes. The stored client is read through a
short per-process cache (``ClientCache``), forgotten at once when a change goes through this object.

A client authenticates at the token endpoint with its secret (``client_secret_post`` / ``_basic``) or, once it has
registered a public JWK Set (``set_jwks``), with a signed assertion (``private_key_jwt``, ``registry.services
.client_keys``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine

from registry.auth import (
    DEFAULT_SCOPES,
    AuthError,
    Issued,
    Principal,
    PrincipalKind,
    Scope,
    TokenService,
    Verified,
    hash_secret,
    new_client_secret,
    parse_scopes,
    verify_secret,
)
from registry.errors import BadRequestError, ConflictError, NotFoundError, UnauthorizedError
from registry.services.client_cache import ClientCache
from registry.services.client_keys import ClientAssertions, public_jwks
from registry.store.clients import ClientStore

CONTEXT_SCOPES = frozenset({"openid", "profile", "fhirUser", "launch", "launch/patient", "launch/encounter",
                            "offline_access", "online_access"})  # fmt: skip
"""SMART App Launch scopes that ask for launch context or identity, not access: the client-credentials grant has
neither, so they are not granted (and not an error)."""

CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,99}$")


@dataclass(frozen=True, slots=True)
class NewClient:
    client_id: str
    secret: str
    principal: Principal


@dataclass(frozen=True, slots=True)
class StoredClient:
    """What a token is checked against: the client as stored, whether it is disabled, and the Unix second up to
    which its tokens and sessions are refused (None: no such instant, a client from before revocation existed)."""

    principal: Principal
    disabled: bool
    tokens_valid_after: int | None

    def revoked(self, issued_at: int) -> bool:
        return self.tokens_valid_after is not None and issued_at <= self.tokens_valid_after


def _principal(row: Any) -> Principal:
    return Principal(
        client_id=row.client_id,
        kind=PrincipalKind(row.kind),
        scopes=parse_scopes(row.scopes),
        org_id=row.org_id,
        patient_key=row.patient_key,
        name=row.name,
    )


class Principals:
    def __init__(
        self,
        engine: Engine,
        tokens: TokenService,
        clock: Callable[[], datetime],
        *,
        cache_seconds: float = 0.0,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.tokens = tokens
        self.clock = clock
        self.cache: ClientCache[StoredClient | None] = ClientCache(cache_seconds, timer)
        self.assertions = ClientAssertions(engine, clock)

    def add(
        self,
        kind: PrincipalKind,
        client_id: str,
        name: str,
        *,
        org_id: str | None = None,
        patient_key: str | None = None,
        scopes: str | None = None,
        secret: str | None = None,
    ) -> NewClient:
        if not CLIENT_ID_RE.match(client_id):
            raise BadRequestError("client id: 2–100 letters, digits, '.', '_' or '-'")
        if kind in (PrincipalKind.HOSPITAL, PrincipalKind.CLINICIAN) and not org_id:
            raise BadRequestError(f"a {kind.value} needs its organization")
        if kind is PrincipalKind.PATIENT and not patient_key:
            raise BadRequestError("a patient principal needs the patient's national identifier")
        try:
            parsed = parse_scopes(scopes or DEFAULT_SCOPES[kind])
        except AuthError as exc:
            raise BadRequestError(str(exc)) from None
        secret = secret or new_client_secret()
        now = self.clock()
        with self.engine.begin() as conn:
            store = ClientStore(conn)
            if store.get(client_id) is not None:
                raise ConflictError(f"client {client_id!r} already exists")
            # Tokens of a removed client of the same id (issued before this second) never serve the new one.
            store.add(client_id=client_id, kind=kind.value, name=name, secret_hash=hash_secret(secret),
                      scopes=" ".join(str(s) for s in parsed), org_id=org_id, patient_key=patient_key,
                      now=now, tokens_valid_after=_second(now) - 1)  # fmt: skip
        self.cache.forget(client_id)
        return NewClient(client_id, secret, Principal(client_id, kind, parsed, org_id, patient_key, name))

    def get(self, client_id: str) -> Principal | None:
        with self.engine.connect() as conn:
            row = ClientStore(conn).get(client_id)
        return _principal(row) if row is not None and not row.disabled else None

    def authenticate(self, client_id: str, secret: str) -> Principal:
        with self.engine.connect() as conn:
            row = ClientStore(conn).get(client_id)
        # Verify even for an unknown client so timing does not tell which client ids exist.
        stored = row.secret_hash if row is not None else hash_secret("not-a-client")
        ok = verify_secret(secret, stored)
        if row is None or not ok or row.disabled:
            raise UnauthorizedError("invalid client credentials")
        return _principal(row)

    def authenticate_assertion(self, assertion: str, *, token_url: str, client_id: str | None = None) -> Principal:
        """The client a ``private_key_jwt`` assertion authenticates (RFC 7523 §3; SMART client-confidential-
        asymmetric); ``UnauthorizedError`` otherwise."""
        return _principal(self.assertions.verify(assertion, token_url=token_url, client_id=client_id))

    def set_jwks(self, client_id: str, text: str | None) -> str | None:
        """Register the client's public keys (a JWK Set, one JWK or a PEM public key), or remove them (None); returns
        the JWK Set as stored. Assertions signed with a key no longer registered are refused at once."""
        stored = public_jwks(text) if text is not None else None
        with self.engine.begin() as conn:
            found = ClientStore(conn).set_jwks(client_id, stored)
        self._changed(client_id, found)
        return stored

    def token(self, principal: Principal, *, requested: str | None = None, ttl_seconds: int | None = None) -> Issued:
        """A token for ``principal``; ``requested`` scopes may narrow, never widen, what the client holds. SMART's
        launch and identity scopes (``launch/patient``, ``openid``…) name no access here and are left out of the grant
        (RFC 6749 §3.3: the server may grant less than asked, and says so in ``scope``)."""
        requested = " ".join(s for s in (requested or "").split() if s not in CONTEXT_SCOPES)
        if requested:
            try:
                wanted = parse_scopes(requested)
            except AuthError as exc:
                raise BadRequestError(f"invalid_scope: {exc}") from None
            granted = tuple(w for w in wanted if any(str(w) == str(h) or _covers(h, w) for h in principal.scopes))
            if not granted:
                raise BadRequestError("invalid_scope: none of the requested scopes is granted to this client")
            principal = Principal(principal.client_id, principal.kind, granted, principal.org_id,
                                  principal.patient_key, principal.name)  # fmt: skip
        return self.tokens.mint(principal, now=self.stamp(principal.client_id), ttl_seconds=ttl_seconds)

    def stamp(self, client_id: str) -> datetime:
        """When a token or page session of this client is issued: now — or, in the very second of a rotation or
        disabling (``iat`` has whole seconds, RFC 7519 §2), the next second, so a new token is not refused with
        the old ones. Read from the database, not the cache: the change may have come from another process."""
        now = self.clock()
        stored = self._load(client_id)
        if stored is not None and stored.tokens_valid_after == _second(now):
            return datetime.fromtimestamp(stored.tokens_valid_after + 1, UTC)
        return now

    # ------------------------------------------------------------------------ revocation
    def rotate_secret(self, client_id: str) -> str:
        """A new secret, returned once; the old one stops working at once, and so do tokens and page sessions
        issued up to this second."""
        secret = new_client_secret()
        with self.engine.begin() as conn:
            found = ClientStore(conn).set_secret(client_id, hash_secret(secret), tokens_valid_after=self._now_second())
        self._changed(client_id, found)
        return secret

    def disable(self, client_id: str) -> None:
        """No new tokens or sign-ins, and the client's tokens and sessions so far stay refused after ``enable``."""
        with self.engine.begin() as conn:
            found = ClientStore(conn).set_disabled(client_id, True, tokens_valid_after=self._now_second())
        self._changed(client_id, found)

    def enable(self, client_id: str) -> None:
        with self.engine.begin() as conn:
            found = ClientStore(conn).set_disabled(client_id, False)
        self._changed(client_id, found)

    def remove(self, client_id: str) -> None:
        """Delete the client; the audit trail keeps naming it (audit rows hold client ids as text)."""
        with self.engine.begin() as conn:
            found = ClientStore(conn).remove(client_id)
        self._changed(client_id, found)

    def current(self, client_id: str) -> StoredClient | None:
        """The stored client (None: no such client), read through the per-process cache."""
        return self.cache.get(client_id, lambda: self._load(client_id))

    def remembered(self, client_id: str) -> bool:
        """Whether :meth:`admit` can decide on this client from memory, without the database."""
        return self.cache.holds(client_id)

    def admit(self, token: Verified) -> Principal:
        """The token's principal if its client still stands behind it; ``AuthError`` otherwise (RFC 6750 §3.1
        ``invalid_token``: "revoked … or invalid for other reasons")."""
        claimed = token.principal
        stored = self.current(claimed.client_id)
        if stored is None:
            raise AuthError("the access token's client no longer exists")
        if stored.disabled:
            raise AuthError("the access token's client is disabled")
        if stored.revoked(token.issued_at):
            raise AuthError("the access token was revoked: its client's secret was rotated or the client disabled")
        held = stored.principal
        for what, ok in (
            ("kind", claimed.kind is held.kind),
            ("organization", claimed.org_id == held.org_id),
            ("patient", claimed.patient_key == held.patient_key),
            ("scopes", all(any(_covers(h, w) for h in held.scopes) for w in claimed.scopes)),
        ):
            if not ok:
                raise AuthError(f"the access token no longer matches its client: the {what} changed")
        return claimed

    def session_principal(self, client_id: str, signed_in_at: int) -> Principal | None:
        """The stored principal of a page session signed in at ``signed_in_at`` (Unix seconds), or None when the
        client is gone, disabled, or was rotated or disabled since."""
        try:
            stored = self.current(client_id)
        except AuthError:  # stored scopes that no longer parse
            return None
        if stored is None or stored.disabled or stored.revoked(signed_in_at):
            return None
        return stored.principal

    def _load(self, client_id: str) -> StoredClient | None:
        with self.engine.connect() as conn:
            row = ClientStore(conn).get(client_id)
        if row is None:
            return None
        return StoredClient(_principal(row), bool(row.disabled), row.tokens_valid_after)

    def _now_second(self) -> int:
        return _second(self.clock())

    def _changed(self, client_id: str, found: bool) -> None:
        self.cache.forget(client_id)
        if not found:
            raise NotFoundError(f"no client {client_id!r}")

    def list(self) -> list[Any]:
        with self.engine.connect() as conn:
            return list(ClientStore(conn).all())

    def state(self, key: str) -> str | None:
        with self.engine.connect() as conn:
            return ClientStore(conn).state(key)

    def set_state(self, key: str, value: str) -> None:
        with self.engine.begin() as conn:
            ClientStore(conn).set_state(key, value)


def _second(moment: datetime) -> int:
    """Whole Unix seconds, the unit of a token's ``iat`` (RFC 7519 §2 NumericDate)."""
    return int(moment.timestamp())


def _covers(held: Scope, wanted: Scope) -> bool:
    return (
        held.context == wanted.context
        and held.resource in ("*", wanted.resource)
        and held.permission in ("*", wanted.permission)
    )
