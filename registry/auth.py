"""Principals, SMART-style scopes and signed access tokens (docs/design.md §6).

Tokens are JWTs signed with the registry's Ed25519 key (``EdDSA``), short-lived, and carry the principal: its kind
(hospital system, clinician, patient, admin), its organization, for a patient the master patient key, and its
scopes in SMART on FHIR v1 form (``system/DiagnosticReport.write``, ``user/*.read``, ``patient/*.read``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import jwt
from cachetools import LRUCache

from registry.keys import SigningKey


class PrincipalKind(StrEnum):
    HOSPITAL = "hospital"
    CLINICIAN = "clinician"
    PATIENT = "patient"
    ADMIN = "admin"


SCOPE_CONTEXT = {
    PrincipalKind.HOSPITAL: "system",
    PrincipalKind.ADMIN: "system",
    PrincipalKind.CLINICIAN: "user",
    PrincipalKind.PATIENT: "patient",
}

WRITABLE_BY_HOSPITALS = ("Patient", "Practitioner", "Endpoint", "DiagnosticReport", "Observation", "ImagingStudy",
                         "ServiceRequest", "ConceptMap", "Subscription")  # fmt: skip

DEFAULT_SCOPES: dict[PrincipalKind, tuple[str, ...]] = {
    PrincipalKind.HOSPITAL: (*(f"system/{t}.write" for t in WRITABLE_BY_HOSPITALS), "system/*.read"),
    PrincipalKind.CLINICIAN: ("user/*.read",),
    PrincipalKind.PATIENT: ("patient/*.read",),
    PrincipalKind.ADMIN: ("system/*.*",),
}


LEEWAY_SECONDS = 5
INVALID_TOKEN = "the access token is not valid: not a token this registry issued, or altered since"  # noqa: S105


class AuthError(Exception):
    """A credential or token that is not acceptable."""


@dataclass(frozen=True, slots=True)
class Scope:
    """One SMART v1 scope: ``<context>/<ResourceType|*>.<read|write|*>``."""

    context: str
    resource: str
    permission: str

    @classmethod
    def parse(cls, text: str) -> Scope | None:
        head, _, perm = text.partition(".")
        context, _, resource = head.partition("/")
        if context not in ("system", "user", "patient") or not resource or perm not in ("read", "write", "*"):
            return None
        return cls(context, resource, perm)

    def allows(self, resource_type: str, permission: str) -> bool:
        return self.resource in ("*", resource_type) and self.permission in ("*", permission)

    def __str__(self) -> str:
        return f"{self.context}/{self.resource}.{self.permission}"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling. ``org_id`` is an Organization id (hospitals, clinicians); ``patient_key`` the master key of a
    patient principal."""

    client_id: str
    kind: PrincipalKind
    scopes: tuple[Scope, ...]
    org_id: str | None = None
    patient_key: str | None = None
    name: str | None = None

    @property
    def org_reference(self) -> str | None:
        return f"Organization/{self.org_id}" if self.org_id else None

    def may(self, resource_type: str, permission: str) -> bool:
        """Whether a scope of the principal's own context grants ``permission`` on ``resource_type``."""
        context = SCOPE_CONTEXT[self.kind]
        return any(s.context == context and s.allows(resource_type, permission) for s in self.scopes)


def parse_scopes(text: str | Iterable[str]) -> tuple[Scope, ...]:
    items = text.split() if isinstance(text, str) else list(text)
    out: list[Scope] = []
    for item in items:
        scope = Scope.parse(item)
        if scope is None:
            raise AuthError(f"not a SMART scope: {item!r}")
        out.append(scope)
    return tuple(out)


# ---------------------------------------------------------------------------- client secrets
def new_client_secret() -> str:
    return secrets.token_urlsafe(32)


def hash_secret(secret: str, *, salt: bytes | None = None) -> str:
    """``scrypt$<salt hex>$<hash hex>`` (RFC 7914, N=2^14, r=8, p=1)."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    return f"scrypt${salt.hex()}${digest.hex()}"


def verify_secret(secret: str, stored: str) -> bool:
    try:
        scheme, salt_hex, digest_hex = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    candidate = hash_secret(secret, salt=bytes.fromhex(salt_hex)).split("$")[2]
    return hmac.compare_digest(candidate, digest_hex)


# ---------------------------------------------------------------------------- tokens
@dataclass(frozen=True, slots=True)
class Issued:
    access_token: str
    expires_in: int
    scope: str


@dataclass(frozen=True, slots=True)
class Verified:
    """A token's principal and when it was issued (``iat``, RFC 7519 §4.1.6, whole Unix seconds)."""

    principal: Principal
    issued_at: int


class TokenService:
    """Mints and verifies access tokens with the registry's signing key."""

    def __init__(self, key: SigningKey, issuer: str, ttl_seconds: int, *, remembered: int = 4096) -> None:
        self.key = key
        self.issuer = issuer
        self.ttl_seconds = ttl_seconds
        # The claims of tokens whose signature, issuer and audience checked out, by the token's text: a signature
        # check is a pure function of the text and this service's one key, and a client presents its token on every
        # call. Lifetime is still checked on every call against the caller's clock, and the client behind it by
        # ``Principals.admit``; a text not remembered (or forged) is decoded again.
        self._checked: LRUCache[str, dict[str, Any]] = LRUCache(maxsize=remembered)
        self._lock = threading.Lock()

    def mint(self, principal: Principal, *, now: datetime, ttl_seconds: int | None = None) -> Issued:
        ttl = ttl_seconds or self.ttl_seconds
        scope = " ".join(str(s) for s in principal.scopes)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": principal.client_id,
            "aud": self.issuer,
            "iat": int(now.timestamp()),
            "exp": int((now + timedelta(seconds=ttl)).timestamp()),
            "jti": uuid.uuid4().hex,
            "scope": scope,
            "kind": principal.kind.value,
        }
        if principal.org_id:
            claims["org"] = principal.org_id
        if principal.patient_key:
            claims["pk"] = principal.patient_key
        if principal.name:
            claims["name"] = principal.name
        token = jwt.encode(claims, self.key.private, algorithm="EdDSA", headers={"kid": self.key.kid})
        return Issued(token, ttl, scope)

    def verify(self, token: str, *, now: datetime | None = None) -> Principal:
        """The principal of a token this registry signed, checked against ``now`` (the registry's clock)."""
        return self.verified(token, now=now).principal

    def verified(self, token: str, *, now: datetime | None = None) -> Verified:
        """Signature, issuer, audience and lifetime checked; the stored client is checked by ``Principals.admit``."""
        moment = (now or utcnow()).timestamp()
        with self._lock:
            claims = self._checked.get(token)
        if claims is None:
            claims = self._decoded(token)
            with self._lock:
                self._checked[token] = claims
        if not isinstance(claims["exp"], int | float) or claims["exp"] + LEEWAY_SECONDS < moment:
            raise AuthError("the access token has expired")
        if not isinstance(claims["iat"], int | float) or claims["iat"] > moment + 60:
            raise AuthError("the access token was issued in the future")
        try:
            kind = PrincipalKind(claims["kind"])
            scopes = parse_scopes(claims["scope"])
        except (ValueError, AuthError):
            raise AuthError(INVALID_TOKEN) from None
        principal = Principal(
            client_id=claims["sub"],
            kind=kind,
            scopes=scopes,
            org_id=claims.get("org"),
            patient_key=claims.get("pk"),
            name=claims.get("name"),
        )
        return Verified(principal, int(claims["iat"]))

    def _decoded(self, token: str) -> dict[str, Any]:
        """The claims of a token whose signature, issuer and audience check out (lifetime: by the caller)."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.key.public,
                algorithms=["EdDSA"],
                audience=self.issuer,
                issuer=self.issuer,
                options={"require": ["exp", "iat", "sub", "scope", "kind"], "verify_exp": False, "verify_iat": False},
            )
        except jwt.ExpiredSignatureError:  # not raised (exp is checked on the registry's clock); kept exact
            raise AuthError("the access token has expired") from None
        except jwt.PyJWTError:
            # The decoder's own message (which check failed, padding, segments…) stays out of the answer: RFC 6750
            # §3.1 asks only for invalid_token, and details help a forger more than a client.
            raise AuthError(INVALID_TOKEN) from None
        return claims


def utcnow() -> datetime:
    return datetime.now(UTC)
