"""Secrets kept under ``var/keys/``: the token signing key (Ed25519) and the patient-identity HMAC key.

Each is created on first start with mode 0600 (atomically, so two workers starting together agree on one key) and
read on every later start. Production may supply the identity secret through ``REGISTRY_IDENTITY_SECRET``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from registry.settings import Settings

SIGNING_KEY_FILE = "signing-ed25519.pem"
IDENTITY_KEY_FILE = "identity-hmac.key"


def _create_exclusive(path: Path, data: bytes) -> bool:
    """Write ``data`` to a new file readable only by the owner; False when another process created it first."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return True


def _read_or_create(path: Path, make: bytes) -> bytes:
    if not path.exists():
        _create_exclusive(path, make)
    return path.read_bytes()


@dataclass(frozen=True, slots=True)
class SigningKey:
    private: Ed25519PrivateKey
    kid: str

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    def jwk(self) -> dict[str, str]:
        """The public key as a JWK (RFC 8037, OKP / Ed25519)."""
        raw = self.public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": self.kid, "alg": "EdDSA", "use": "sig"}


def load_signing_key(settings: Settings) -> SigningKey:
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    data = _read_or_create(settings.keys_dir / SIGNING_KEY_FILE, pem)
    private = serialization.load_pem_private_key(data, password=None)
    if not isinstance(private, Ed25519PrivateKey):
        raise ValueError(f"{settings.keys_dir / SIGNING_KEY_FILE} is not an Ed25519 private key")
    raw = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return SigningKey(private, hashlib.sha256(raw).hexdigest()[:16])


def load_identity_secret(settings: Settings) -> bytes:
    if settings.identity_secret:
        return settings.identity_secret.encode()
    return _read_or_create(settings.keys_dir / IDENTITY_KEY_FILE, secrets.token_hex(32).encode()).strip()
