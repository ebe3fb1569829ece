"""SMART discovery and client authentication as clients expect them (SMART App Launch 2.2 §Conformance,
§Client Authentication: Asymmetric, §Backend Services; RFC 7523), on SQLite and PostgreSQL: the configuration at the
FHIR base without a token, the CapabilityStatement's security (``restful-security-service`` and ``oauth-uris``), and
``private_key_jwt`` client assertions — registration of the client's keys (also by the CLI), and every way an
assertion must be refused, replays included."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from typer.testing import CliRunner

from registry.auth import PrincipalKind
from registry.errors import BadRequestError
from registry.services.client_keys import ASSERTION_TYPE, thumbprint
from tests.integration.conftest import Api, unique

TOKEN_URL = "http://testserver/auth/token"
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"


# ---------------------------------------------------------------------------------------------------- discovery
@pytest.mark.parametrize("path", ["/fhir/.well-known/smart-configuration", "/.well-known/smart-configuration"])
@pytest.mark.parametrize("accept", [None, "application/fhir+json", "application/fhir+xml", "text/html"])
def test_the_smart_configuration_answers_at_the_fhir_base_without_a_token(
    api: Api, path: str, accept: str | None
) -> None:
    r = api.client.get(path, headers={"Accept": accept} if accept else {})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")  # "regardless of Accept"
    smart = r.json()
    # REQUIRED for what is offered (the client-credentials grant)
    assert smart["token_endpoint"] == TOKEN_URL
    assert smart["grant_types_supported"] == ["client_credentials"]
    assert {"client-confidential-symmetric", "client-confidential-asymmetric"} <= set(smart["capabilities"])
    assert set(smart["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
    }
    assert set(smart["token_endpoint_auth_signing_alg_values_supported"]) & {"RS384", "ES384"}
    assert "system/*.read" in smart["scopes_supported"]
    # omitted unless sso-openid-connect / the authorization-code grant is offered
    assert "issuer" not in smart and "authorization_endpoint" not in smart
    assert all(v.startswith("http://testserver/") for k, v in smart.items() if k.endswith(("_endpoint", "_uri")))


def test_the_capability_statement_names_smart_and_the_token_url(api: Api) -> None:
    """What SMART 1 clients read (fhir-kit-client ``smartAuthMetadata``, fhirclient ``from_capability_security``)."""
    from fhirclient.models.capabilitystatement import CapabilityStatement

    body = api.client.get("/fhir/metadata").json()
    security = body["rest"][0]["security"]
    codings = [c for s in security["service"] for c in s["coding"]]
    assert {"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR"} in [
        {"system": c["system"], "code": c["code"]} for c in codings
    ]
    (uris,) = [e for e in security["extension"] if e["url"] == OAUTH_URIS]
    assert {e["url"]: e["valueUri"] for e in uris["extension"]} == {"token": TOKEN_URL}
    # fhirclient's own R4 model reads it, and finds the token URL where its auth set-up looks
    parsed = CapabilityStatement(body)
    sec = parsed.rest[0].security
    (ext,) = [e for e in sec.extension if e.url == OAUTH_URIS]
    assert [(e.url, e.valueUri) for e in ext.extension] == [("token", TOKEN_URL)]


# ---------------------------------------------------------------------------------------------------- private_key_jwt
def _ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


def _rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _public_jwk(key: Any, kid: str) -> dict[str, Any]:
    algorithm = (
        jwt.algorithms.ECAlgorithm if isinstance(key, ec.EllipticCurvePrivateKey) else jwt.algorithms.RSAAlgorithm
    )
    jwk = json.loads(algorithm.to_jwk(key.public_key()))
    return {**jwk, "kid": kid}


def _assertion(
    key: Any, client_id: str, kid: str, *, alg: str | None = None, headers: dict[str, Any] | None = None, **claims: Any
) -> str:
    now = int(time.time())
    body = {"iss": client_id, "sub": client_id, "aud": TOKEN_URL, "exp": now + 240, "jti": uuid.uuid4().hex}
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    alg = alg or ("ES384" if isinstance(key, ec.EllipticCurvePrivateKey) else "RS384")
    return jwt.encode(body, key, algorithm=alg, headers={"kid": kid, "typ": "JWT", **(headers or {})})


def _token(api: Api, assertion: str, **form: str) -> httpx.Response:
    data = {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}
    return api.client.post("/auth/token", data={**data, **form})


@pytest.fixture
def backend(api: Api) -> dict[str, Any]:
    """A hospital system with an EC P-384 and an RSA key registered (SMART Backend Services)."""
    cid = unique("backend")
    api.ctx.principals.add(PrincipalKind.HOSPITAL, cid, "backend service", org_id="hosp-a")
    ec_key, rsa_key = _ec_key(), _rsa_key()
    jwks = {"keys": [_public_jwk(ec_key, "ec-1"), _public_jwk(rsa_key, "rsa-1")]}
    api.ctx.principals.set_jwks(cid, json.dumps(jwks))
    return {"id": cid, "ec": ec_key, "rsa": rsa_key}


@pytest.mark.parametrize(("key", "kid"), [("ec", "ec-1"), ("rsa", "rsa-1")])
def test_a_signed_assertion_gives_a_short_token_that_works(
    api: Api, backend: dict[str, Any], key: str, kid: str
) -> None:
    r = _token(api, _assertion(backend[key], backend["id"], kid), scope="system/*.read")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["token_type"] == "Bearer" and body["scope"] == "system/*.read"
    assert body["expires_in"] <= 300  # SMART Backend Services: SHOULD NOT exceed 300
    ok = api.client.get("/fhir/Organization/hosp-a", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert ok.status_code == 200, ok.text
    # the client_id parameter may be sent too, and must then name the same client
    assert _token(api, _assertion(backend[key], backend["id"], kid), client_id=backend["id"]).status_code == 200


def test_refused_assertions_are_invalid_client(api: Api, backend: dict[str, Any]) -> None:
    cid, key = backend["id"], backend["ec"]
    now = int(time.time())
    replayed = _assertion(key, cid, "ec-1")
    assert _token(api, replayed).status_code == 200
    other = _ec_key()
    cases = {
        "replayed jti": replayed,
        "wrong audience": _assertion(key, cid, "ec-1", aud="http://testserver/fhir"),
        "iss is not sub": _assertion(key, cid, "ec-1", sub="someone-else"),
        "expired": _assertion(key, cid, "ec-1", exp=now - 60),
        "exp more than 5 minutes ahead": _assertion(key, cid, "ec-1", exp=now + 3600),
        "no jti": _assertion(key, cid, "ec-1", jti=None),
        "no exp": _assertion(key, cid, "ec-1", exp=None),
        "unknown kid": _assertion(key, cid, "nope"),
        "signed by another key": _assertion(other, cid, "ec-1"),
        "kid of the RSA key, signed EC": _assertion(key, cid, "rsa-1"),
        "ES256 is not offered": jwt.encode(
            {"iss": cid, "sub": cid, "aud": TOKEN_URL, "exp": now + 60, "jti": "x"},
            ec.generate_private_key(ec.SECP256R1()), algorithm="ES256", headers={"kid": "ec-1"},
        ),
        "HS256": jwt.encode({"iss": cid, "sub": cid, "aud": TOKEN_URL, "exp": now + 60, "jti": "y"}, "k" * 32,
                            algorithm="HS256", headers={"kid": "ec-1"}),
        "jku": _assertion(key, cid, "ec-1", headers={"jku": "https://evil.example/jwks.json"}),
        "unknown client": _assertion(key, "nobody-at-all", "ec-1"),
        "not a JWT": "not.a.jwt",
    }  # fmt: skip
    for name, assertion in cases.items():
        r = _token(api, assertion)
        assert r.status_code == 401, (name, r.status_code, r.text)
        assert r.json()["error"] == "invalid_client", (name, r.text)
        assert "access_token" not in r.json()
    r = _token(api, _assertion(key, cid, "ec-1"), client_id="hosp-a-system")
    assert r.status_code == 401, r.text  # client_id and iss differ
    # one authentication method per request (RFC 6749 §2.3)
    r = _token(api, _assertion(key, cid, "ec-1"), client_id=cid, client_secret="x")
    assert (r.status_code, r.json()["error"]) == (400, "invalid_request")
    r = api.client.post("/auth/token", data={"grant_type": "client_credentials", "client_assertion": "x.y.z"})
    assert (r.status_code, r.json()["error"]) == (400, "invalid_request")  # no client_assertion_type


def test_a_disabled_client_or_removed_keys_get_no_token(api: Api, backend: dict[str, Any]) -> None:
    cid = backend["id"]
    api.ctx.principals.set_jwks(cid, None)
    assert _token(api, _assertion(backend["ec"], cid, "ec-1")).status_code == 401
    api.ctx.principals.set_jwks(cid, json.dumps(_public_jwk(backend["ec"], "ec-1")))  # one JWK, not a set
    assert _token(api, _assertion(backend["ec"], cid, "ec-1")).status_code == 200
    api.ctx.principals.disable(cid)
    assert _token(api, _assertion(backend["ec"], cid, "ec-1")).status_code == 401


def test_smart_launch_scopes_are_left_out_of_the_grant(api: Api, backend: dict[str, Any]) -> None:
    """fhirclient asks for ``launch/patient`` with the scopes it is given: granted less, and told so (RFC 6749 §3.3)."""
    r = _token(api, _assertion(backend["ec"], backend["id"], "ec-1"), scope="launch/patient openid system/*.read")
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == "system/*.read"


@pytest.mark.parametrize(
    ("what", "jwks"),
    [
        ("a private key", {"keys": [{**_public_jwk(_ec_key(), "k"), "d": "AAAA"}]}),
        ("a symmetric key", {"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "k"}]}),
        ("no kid", {"keys": [{k: v for k, v in _public_jwk(_ec_key(), "k").items() if k != "kid"}]}),
        ("P-256", {"keys": [_public_jwk(ec.generate_private_key(ec.SECP256R1()), "k")]}),
        ("RSA 1024", {"keys": [_public_jwk(rsa.generate_private_key(public_exponent=65537, key_size=1024), "k")]}),  # noqa: S505
        ("two keys, one kid", {"keys": [_public_jwk(_ec_key(), "k"), _public_jwk(_ec_key(), "k")]}),
        ("alg of another kty", {"keys": [{**_public_jwk(_ec_key(), "k"), "alg": "RS384"}]}),
        ("no keys", {"keys": []}),
    ],
)
def test_unusable_keys_are_refused_at_registration(api: Api, what: str, jwks: dict[str, Any]) -> None:
    with pytest.raises(BadRequestError):
        api.ctx.principals.set_jwks("hosp-a-system", json.dumps(jwks))


def test_a_pem_public_key_is_registered_with_its_thumbprint_as_kid(api: Api) -> None:
    key = _ec_key()
    pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    cid = unique("pem")
    api.ctx.principals.add(PrincipalKind.HOSPITAL, cid, "pem client", org_id="hosp-b")
    stored = json.loads(api.ctx.principals.set_jwks(cid, pem.decode()) or "{}")
    (jwk,) = stored["keys"]
    assert jwk["kid"] == thumbprint(jwk) and "d" not in jwk
    assert _token(api, _assertion(key, cid, jwk["kid"])).status_code == 200
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())  # fmt: skip
    with pytest.raises(BadRequestError):
        api.ctx.principals.set_jwks(cid, private.decode())
    ed = ed25519.Ed25519PrivateKey.generate().public_key()
    with pytest.raises(BadRequestError):
        api.ctx.principals.set_jwks(
            cid, ed.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
        )


def test_the_cli_registers_keys(api: Api, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``hr-registry clients add-hospital … --jwks FILE`` and ``clients set-key CLIENT FILE | --remove``."""
    from registry.cli import app, base

    monkeypatch.setattr(base, "_context", lambda settings=None: api.ctx)
    runner = CliRunner()
    key = _rsa_key()
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [_public_jwk(key, "rsa-cli")]}))
    org = unique("hosp")
    r = runner.invoke(app, ["clients", "add-hospital", org, "--name", "CLI 医院", "--jwks", str(path)])
    assert r.exit_code == 0, r.output
    assert "rsa-cli" in r.output
    cid = f"{org}-system"
    assert _token(api, _assertion(key, cid, "rsa-cli")).status_code == 200
    other = _ec_key()
    path.write_text(json.dumps({"keys": [_public_jwk(other, "ec-cli")]}))
    r = runner.invoke(app, ["clients", "set-key", cid, str(path)])
    assert r.exit_code == 0, r.output
    assert _token(api, _assertion(key, cid, "rsa-cli")).status_code == 401  # the old key is gone
    assert _token(api, _assertion(other, cid, "ec-cli")).status_code == 200
    r = runner.invoke(app, ["clients", "set-key", cid, "--remove"])
    assert r.exit_code == 0, r.output
    assert _token(api, _assertion(other, cid, "ec-cli")).status_code == 401
    path.write_text('{"keys": [{"kty": "oct", "k": "eA", "kid": "x"}]}')
    r = runner.invoke(app, ["clients", "set-key", cid, str(path)])
    assert r.exit_code == 1 and "asymmetric" in r.output
    r = runner.invoke(app, ["clients", "set-key", "no-such-client", "--remove"])
    assert r.exit_code == 1
