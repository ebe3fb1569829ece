"""Clients that authenticate with a key instead of a secret: SMART App Launch 2.2 "Client Authentication:
Asymmetric" (``client-confidential-asymmetric``), the ``private_key_jwt`` method of RFC 7523 §2.2 as SMART Backend
Services use it.

- **Registration** (``public_jwks``): a client registers a JWK Set (RFC 7517 §5) or one public key in PEM. Each key is
  "bare" and asymmetric: RSA with ``n`` and ``e`` (at least 2048 bits) or EC P-384 with ``x`` and ``y``; each has a
  ``kid`` unique in the set (a PEM key gets its RFC 7638 thumbprint). A private key, a symmetric key or another
  curve is refused. Registering a JWK Set *URL* (``jku``) is not supported: the registry fetches nothing.
- **The token request** (``ClientAssertions.verify``): ``client_assertion_type=urn:ietf:params:oauth:client-assertion-
  type:jwt-bearer`` and a ``client_assertion`` signed ``RS384`` or ``ES384`` (header ``kid``; ``typ`` ``JWT`` when
  sent; no ``jku``) whose claims are ``iss`` = ``sub`` = the client id, ``aud`` = the token URL, ``exp`` not past and
  at most five minutes ahead, and a ``jti`` never seen for that client while the assertion could still be presented
  (kept in ``client_assertion`` until it expires: every server process refuses a replay). The key is the single key
  of the client's set with that ``kid`` and the algorithm's ``kty``; anything else is ``invalid_client``.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from sqlalchemy import Engine

from registry.errors import BadRequestError, UnauthorizedError
from registry.store.clients import ClientStore

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
SIGNING_ALGS = ("RS384", "ES384")
KEY_TYPE = {"RS384": "RSA", "ES384": "EC"}
MAX_LIFETIME_SECONDS = 300  # "exp … SHALL be no more than five minutes in the future"
LEEWAY_SECONDS = 5
MAX_KEYS = 10
_PUBLIC = {"RSA": ("kty", "kid", "n", "e", "alg", "use"), "EC": ("kty", "kid", "crv", "x", "y", "alg", "use")}
_PRIVATE = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
_REQUIRED = {"RSA": ("n", "e"), "EC": ("crv", "x", "y")}


# ---------------------------------------------------------------------------------------------------- registration
def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256 over the required members in lexicographic order)."""
    members = {k: jwk[k] for k in sorted(("kty", *_REQUIRED[jwk["kty"]]))}
    return _b64(hashlib.sha256(json.dumps(members, separators=(",", ":")).encode()).digest())


def _pem_jwk(text: str) -> dict[str, Any]:
    if "PRIVATE KEY" in text:
        raise BadRequestError("that is a private key: register the client's public key only")
    try:
        key = serialization.load_pem_public_key(text.encode())
    except ValueError:
        raise BadRequestError("not a PEM public key") from None
    jwk: dict[str, Any]
    if isinstance(key, rsa.RSAPublicKey):
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key))
    elif isinstance(key, ec.EllipticCurvePublicKey):
        jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key))
    else:
        raise BadRequestError("the key must be RSA (RS384) or EC P-384 (ES384)")
    jwk = {k: v for k, v in jwk.items() if k in _PUBLIC[jwk["kty"]]}
    jwk["kid"] = thumbprint(jwk)
    return jwk


def _checked(jwk: Any, n: int) -> dict[str, Any]:
    where = f"key {n + 1}"
    if not isinstance(jwk, dict):
        raise BadRequestError(f"{where} is not a JSON object")
    kty = jwk.get("kty")
    if kty not in _PUBLIC:
        raise BadRequestError(f"{where}: kty must be RSA or EC (an asymmetric key), not {kty!r}")
    if any(m in jwk for m in _PRIVATE):
        raise BadRequestError(f"{where} holds private key material: register the public key only")
    missing = [m for m in ("kid", *_REQUIRED[kty]) if not isinstance(jwk.get(m), str) or not jwk[m]]
    if missing:
        raise BadRequestError(f"{where} lacks {', '.join(missing)} (SMART: each JWK has kty and kid)")
    if kty == "EC" and jwk["crv"] != "P-384":
        raise BadRequestError(f"{where}: an EC key must be on P-384 (ES384), not {jwk['crv']}")
    alg = jwk.get("alg")
    if alg is not None and alg not in SIGNING_ALGS:
        raise BadRequestError(f"{where}: alg {alg!r} is not supported ({' or '.join(SIGNING_ALGS)})")
    if alg is not None and KEY_TYPE[alg] != kty:
        raise BadRequestError(f"{where}: alg {alg} needs a {KEY_TYPE[alg]} key")
    if jwk.get("use", "sig") != "sig":
        raise BadRequestError(f"{where}: use must be sig")
    public = {k: jwk[k] for k in _PUBLIC[kty] if k in jwk}
    try:
        key = jwt.PyJWK(public, algorithm="RS384" if kty == "RSA" else "ES384").key
    except jwt.PyJWTError:
        raise BadRequestError(f"{where} is not a valid {kty} public key") from None
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < 2048:
        raise BadRequestError(f"{where}: an RSA key needs at least 2048 bits, not {key.key_size}")
    return public


def public_jwks(text: str) -> str:
    """The JWK Set to store for a client, from a JWK Set, one JWK, or a PEM public key (canonical JSON)."""
    stripped = text.strip()
    if stripped.startswith("-----BEGIN"):
        keys = [_pem_jwk(stripped)]
    else:
        try:
            doc = json.loads(stripped)
        except ValueError:
            raise BadRequestError("not a JWK Set (JSON) nor a PEM public key") from None
        found = doc.get("keys") if isinstance(doc, dict) and "keys" in doc else [doc]
        if not isinstance(found, list) or not found:
            raise BadRequestError("the JWK Set has no keys")
        if len(found) > MAX_KEYS:
            raise BadRequestError(f"at most {MAX_KEYS} keys per client")
        keys = [_checked(k, n) for n, k in enumerate(found)]
    kids = [k["kid"] for k in keys]
    if len(set(kids)) != len(kids):
        raise BadRequestError("each kid must be unique within the client's JWK Set")
    return json.dumps({"keys": keys}, separators=(",", ":"), sort_keys=True)


# ---------------------------------------------------------------------------------------------------- token request
def _refuse(why: str) -> UnauthorizedError:
    return UnauthorizedError(f"invalid client assertion: {why}")


def _candidate(jwks_text: str | None, kid: str, alg: str) -> Any:
    """The single registered key with this kid and the algorithm's key type (SMART "Signature Verification" step 3)."""
    keys = json.loads(jwks_text)["keys"] if jwks_text else []
    found = [k for k in keys if k.get("kid") == kid and k.get("kty") == KEY_TYPE[alg]]
    if len(found) != 1:
        raise _refuse("no registered key of this client matches its kid and alg")
    return jwt.PyJWK(found[0], algorithm=alg).key


class ClientAssertions:
    """Verifies ``private_key_jwt`` client assertions against the stored clients; see the module docstring."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime]) -> None:
        self.engine = engine
        self.clock = clock

    def verify(self, assertion: str, *, token_url: str, client_id: str | None = None) -> Any:
        """The stored client row the assertion authenticates; ``UnauthorizedError`` (→ ``invalid_client``) if not."""
        try:
            header = jwt.get_unverified_header(assertion)
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise _refuse("not a signed JWT") from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in SIGNING_ALGS:
            raise _refuse(f"it must be signed with {' or '.join(SIGNING_ALGS)}")
        if "jku" in header:
            raise _refuse("jku is not supported: the client's JWK Set is registered with the registry")
        if str(header.get("typ", "JWT")).upper() != "JWT":
            raise _refuse("typ must be JWT")
        if not isinstance(kid, str) or not kid:
            raise _refuse("the header needs the kid of the signing key")
        issuer = unverified.get("iss")
        if not isinstance(issuer, str) or not issuer:
            raise _refuse("iss must be the client id")
        if client_id is not None and client_id != issuer:
            raise _refuse("client_id and the assertion's iss differ")
        now = self.clock().timestamp()
        with self.engine.begin() as conn:
            store = ClientStore(conn)
            row = store.get(issuer)
            if row is None or row.disabled:
                raise UnauthorizedError("invalid client credentials")
            key = _candidate(row.jwks, kid, alg)
            try:
                claims = jwt.decode(
                    assertion, key, algorithms=[alg], audience=token_url, issuer=issuer,
                    options={"require": ["iss", "sub", "aud", "exp", "jti"], "verify_exp": False,
                             "verify_iat": False, "verify_nbf": False},
                )  # fmt: skip
            except jwt.InvalidAudienceError:
                raise _refuse(f"aud must be the token URL {token_url}") from None
            except jwt.PyJWTError:
                raise _refuse("the signature or the claims (iss, sub, aud, exp, jti) do not verify") from None
            self._check_claims(claims, issuer, now)
            expires_us = int((float(claims["exp"]) + LEEWAY_SECONDS) * 1_000_000)
            if not store.use_assertion(issuer, claims["jti"], expires_us=expires_us, now_us=int(now * 1_000_000)):
                raise _refuse("this assertion (its jti) was already used")
        return row

    @staticmethod
    def _check_claims(claims: dict[str, Any], issuer: str, now: float) -> None:
        if claims.get("sub") != issuer:
            raise _refuse("sub must equal iss (the client id)")
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            raise _refuse("exp must be a NumericDate")
        if exp + LEEWAY_SECONDS < now:
            raise _refuse("it has expired")
        if exp > now + MAX_LIFETIME_SECONDS + LEEWAY_SECONDS:
            raise _refuse("exp may be at most five minutes in the future")
        nbf = claims.get("nbf")
        if isinstance(nbf, int | float) and nbf > now + LEEWAY_SECONDS:
            raise _refuse("it is not valid yet (nbf)")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not 0 < len(jti) <= 255:
            raise _refuse("jti must be a string of at most 255 characters")
