"""Verified tokens are remembered by their text, and nothing else is: a remembered token still expires on the
registry's clock, a token altered by one character is refused after the genuine one was accepted, and a token signed
by another key is refused whatever this service remembers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from registry.auth import AuthError, Principal, PrincipalKind, TokenService, parse_scopes
from registry.keys import SigningKey

NOW = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
ISSUER = "https://registry.example/fhir"


def _service() -> TokenService:
    return TokenService(SigningKey(Ed25519PrivateKey.generate(), "k1"), ISSUER, 300)


def _principal() -> Principal:
    return Principal("hosp-a-lis", PrincipalKind.HOSPITAL, parse_scopes("system/*.read"), org_id="hosp-a")


def test_a_remembered_token_still_expires_on_the_registrys_clock() -> None:
    tokens = _service()
    token = tokens.mint(_principal(), now=NOW).access_token
    assert tokens.verify(token, now=NOW + timedelta(seconds=10)) == _principal()
    assert tokens.verify(token, now=NOW + timedelta(seconds=299)) == _principal()  # remembered
    with pytest.raises(AuthError, match="expired"):
        tokens.verify(token, now=NOW + timedelta(seconds=400))


@pytest.mark.parametrize("where", [10, -5])
def test_an_altered_token_is_refused_after_the_genuine_one_was_accepted(where: int) -> None:
    tokens = _service()
    token = tokens.mint(_principal(), now=NOW).access_token
    tokens.verify(token, now=NOW)
    altered = token[:where] + ("A" if token[where] != "A" else "B") + token[where + 1 :]
    with pytest.raises(AuthError):
        tokens.verify(altered, now=NOW)


def test_another_keys_token_is_refused() -> None:
    ours, theirs = _service(), _service()
    token = theirs.mint(_principal(), now=NOW).access_token
    theirs.verify(token, now=NOW)
    with pytest.raises(AuthError):
        ours.verify(token, now=NOW)


def test_the_memory_is_bounded() -> None:
    tokens = TokenService(SigningKey(Ed25519PrivateKey.generate(), "k1"), ISSUER, 300, remembered=3)
    minted = [tokens.mint(_principal(), now=NOW).access_token for _ in range(10)]
    for token in minted:
        assert tokens.verify(token, now=NOW) == _principal()
    assert len(tokens._checked) == 3
