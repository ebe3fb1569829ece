"""Managing principals and issuing tokens: hospital systems, clinicians, patients, admins (DESIGN.md §6).

Client credentials (RFC 6749 §4.4) give hospital systems short-lived tokens; the CLI adds principals and can mint a
token directly for demos and tests.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
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
    hash_secret,
    new_client_secret,
    parse_scopes,
    verify_secret,
)
from registry.errors import BadRequestError, ConflictError, UnauthorizedError
from registry.store.clients import ClientStore

CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,99}$")


@dataclass(frozen=True, slots=True)
class NewClient:
    client_id: str
    secret: str
    principal: Principal


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
    def __init__(self, engine: Engine, tokens: TokenService, clock: Callable[[], datetime]) -> None:
        self.engine = engine
        self.tokens = tokens
        self.clock = clock

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
        with self.engine.begin() as conn:
            store = ClientStore(conn)
            if store.get(client_id) is not None:
                raise ConflictError(f"client {client_id!r} already exists")
            store.add(client_id=client_id, kind=kind.value, name=name, secret_hash=hash_secret(secret),
                      scopes=" ".join(str(s) for s in parsed), org_id=org_id, patient_key=patient_key,
                      now=self.clock())  # fmt: skip
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

    def token(self, principal: Principal, *, requested: str | None = None, ttl_seconds: int | None = None) -> Issued:
        """A token for ``principal``; ``requested`` scopes may narrow, never widen, what the client holds."""
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
        return self.tokens.mint(principal, now=self.clock(), ttl_seconds=ttl_seconds)

    def reset_secret(self, client_id: str) -> str:
        secret = new_client_secret()
        with self.engine.begin() as conn:
            ClientStore(conn).set_secret(client_id, hash_secret(secret))
        return secret

    def list(self) -> list[Any]:
        with self.engine.connect() as conn:
            return list(ClientStore(conn).all())

    def state(self, key: str) -> str | None:
        with self.engine.connect() as conn:
            return ClientStore(conn).state(key)

    def set_state(self, key: str, value: str) -> None:
        with self.engine.begin() as conn:
            ClientStore(conn).set_state(key, value)


def _covers(held: Scope, wanted: Scope) -> bool:
    return (
        held.context == wanted.context
        and held.resource in ("*", wanted.resource)
        and held.permission in ("*", wanted.permission)
    )
