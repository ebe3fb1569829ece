"""Security and privacy (docs/design.md §6): bearer tokens, the OAuth 2.0 client-credentials endpoint (RFC 6749 §4.4),
SMART scopes, "a hospital writes only as itself", the clinician's care context, patient principals, the
append-only audit trail (FHIR AuditEvent) and the limits on body size, Bundle entries and request rate."""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import httpx
import jwt
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from fhir.resources.R4B.auditevent import AuditEvent
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from registry.app import create_app
from registry.auth import DEFAULT_SCOPES, PrincipalKind
from registry.context import AppContext
from registry.fhir.models import OperationOutcome
from registry.ratelimit import RateLimiter
from tests.integration.conftest import NATIONAL, Api, make_settings, resident_id, setup_region, unique

PASSPORT = "https://hr-registry.org.cn/fhir/sid/passport"


# ---------------------------------------------------------------------------------------------------- helpers
def _outcome(r: httpx.Response, status: int, code: str) -> OperationOutcome:
    assert r.status_code == status, (r.request.method, str(r.request.url), r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/fhir+json"), r.headers
    oo = OperationOutcome.model_validate(r.json())
    assert oo.issue[0].code == code, r.text
    return oo


def _client(api: Api, kind: PrincipalKind, *, org: str | None = None, key: str | None = None, **kw: Any) -> str:
    """A fresh principal, so its audit trail (``agent=<client id>``) holds only what the test did."""
    cid = unique(kind.value)
    api.ctx.principals.add(kind, cid, f"test {kind.value}", org_id=org, patient_key=key, **kw)
    return cid


def _patient_principal(api: Api, national_id: str, **kw: Any) -> str:
    return _client(api, PrincipalKind.PATIENT, key=api.ctx.identity.master_key(NATIONAL, national_id), **kw)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}


def _claims(api: Api, client_id: str, **over: Any) -> dict[str, Any]:
    now = int(time.time())
    iss = api.ctx.settings.public_base_url
    claims = {
        "iss": iss,
        "aud": iss,
        "sub": client_id,
        "iat": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
        "scope": "system/*.read",
        "kind": "hospital",
        "org": "hosp-a",
    }
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(api: Api, claims: dict[str, Any], key: Ed25519PrivateKey | None = None) -> str:
    return jwt.encode(
        claims, key or api.ctx.tokens.key.private, algorithm="EdDSA", headers={"kid": api.ctx.tokens.key.kid}
    )


def _form_token(api: Api, **form: str) -> httpx.Response:
    return api.client.post("/auth/token", data=form)


def _events(api: Api, **params: str) -> list[dict[str, Any]]:
    """AuditEvents (admin search), each validated as an R4 AuditEvent."""
    r = api.get("/fhir/AuditEvent", params={"_count": "200", **params})
    assert r.status_code == 200, r.text
    out = [e["resource"] for e in r.json().get("entry", [])]
    for event in out:
        AuditEvent.model_validate(event)
    return out


def _summary(events: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [(e["action"], e["outcome"], e["subtype"][0]["code"]) for e in events]


def _rows(ctx: AppContext, value: str, column: str = "request_id") -> list[dict[str, Any]]:
    """Audit rows straight from the table (also those with no principal: 401s)."""
    with ctx.engine.connect() as conn:
        result = conn.execute(text(f"SELECT * FROM audit_event WHERE {column} = :v ORDER BY pk"), {"v": value})
        return [dict(row._mapping) for row in result]


def _rid() -> dict[str, str]:
    return {"X-Request-Id": uuid.uuid4().hex}


def _ids(r: httpx.Response) -> set[str]:
    assert r.status_code == 200, r.text
    return {e["resource"]["id"] for e in r.json().get("entry", []) if e.get("search", {}).get("mode") == "match"}


def _patient_body(org: str, mrn: str, national_id: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [
            {"system": f"http://{org}.example/mrn", "value": mrn},
            {"system": NATIONAL, "value": national_id},
        ],
        "managingOrganization": {"reference": f"Organization/{org}"},
    }


def _report_body(org: str, patient_id: str, *, performer: str | None = None) -> dict[str, Any]:
    return {
        "resourceType": "DiagnosticReport",
        "identifier": [{"system": f"http://{org}.example/report", "value": unique("R")}],
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "performer": [{"reference": f"Organization/{performer or org}"}],
    }


# ---------------------------------------------------------------------------------------------------- 401
FHIR_PATHS = [
    ("GET", "/fhir/Patient"),
    ("GET", "/fhir/DiagnosticReport/x"),
    ("GET", "/fhir/AuditEvent"),
    ("POST", "/fhir/Patient"),
    ("POST", "/fhir"),
    ("DELETE", "/fhir/Patient/x"),
    ("GET", "/fhir/Patient/$ihe-pix"),
]


def test_no_token_is_401_login_with_a_bearer_challenge(api: Api) -> None:
    for method, path in FHIR_PATHS:
        r = api.client.request(method, path, headers={"Content-Type": "application/fhir+json"}, content=b"{}")
        _outcome(r, 401, "login")
        assert r.headers["www-authenticate"].startswith("Bearer "), (path, r.headers)
    r = api.client.get("/fhir/Patient", headers={"Authorization": "Basic YWRtaW46eA=="})
    _outcome(r, 401, "login")
    # nothing sent without a token is stored
    mrn = unique("A")
    r = api.post("/fhir/Patient", _patient_body("hosp-a", mrn, resident_id(101)), who=None)
    _outcome(r, 401, "login")
    assert _ids(api.get("/fhir/Patient", params={"identifier": f"http://hosp-a.example/mrn|{mrn}"})) == set()


def test_no_token_challenge_carries_no_error_code(api: Api) -> None:
    """RFC 6750 §3.1: a request without any credentials SHOULD NOT get an error code in the challenge."""
    r = api.client.get("/fhir/Patient")
    assert r.status_code == 401
    assert "error=" not in r.headers["www-authenticate"], r.headers["www-authenticate"]


def test_bad_tokens_are_401(api: Api) -> None:
    good = _sign(api, _claims(api, "hosp-a-system"))
    assert api.client.get("/fhir/Organization/hosp-a", headers=_bearer(good)).status_code == 200  # the control
    principal = api.ctx.principals.get("hosp-a-system")
    assert principal is not None
    now = datetime.now(UTC)
    header, payload, signature = good.split(".")
    forged = orjson.loads(base64.urlsafe_b64decode(payload + "=="))
    forged.update(kind="admin", scope="system/*.*")
    forged_payload = base64.urlsafe_b64encode(orjson.dumps(forged)).rstrip(b"=").decode()
    unsigned = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    cases = {
        "not a JWT": "not-a-token",
        "three garbage parts": "a.b.c",
        "another key": _sign(api, _claims(api, "hosp-a-system"), Ed25519PrivateKey.generate()),
        "expired": api.ctx.tokens.mint(principal, now=now - timedelta(hours=2), ttl_seconds=60).access_token,
        "issued in the future": api.ctx.tokens.mint(principal, now=now + timedelta(hours=2)).access_token,
        "wrong audience": _sign(api, _claims(api, "hosp-a-system", aud="https://elsewhere.example")),
        "wrong issuer": _sign(api, _claims(api, "hosp-a-system", iss="https://elsewhere.example")),
        "no exp": _sign(api, _claims(api, "hosp-a-system", exp=None)),
        "unknown kind": _sign(api, _claims(api, "hosp-a-system", kind="root")),
        "bad scope": _sign(api, _claims(api, "hosp-a-system", scope="everything")),
        "payload changed after signing": f"{header}.{forged_payload}.{signature}",
        "alg none": f"{unsigned}.{forged_payload}.",
        "HS256, not EdDSA": jwt.encode(_claims(api, "hosp-a-system"), "k" * 32, algorithm="HS256"),
    }
    decoder_words = ("segments", "padding", "Signature verification", "alg", "header", "decode", "Invalid", "JSON")
    for name, token in cases.items():
        r = api.client.get("/fhir/Organization/hosp-a", headers=_bearer(token))
        oo = _outcome(r, 401, "login")
        challenge = r.headers.get("www-authenticate", "")
        assert challenge.startswith("Bearer ") and 'error="invalid_token"' in challenge, (name, challenge)
        assert "Traceback" not in r.text, name
        # the decoder's own message (PyJWT's "Not enough segments", "Invalid header padding"…) is not passed on
        diagnostics = oo.issue[0].diagnostics or ""
        leaked = [w for w in decoder_words if w in diagnostics or w in challenge]
        assert not leaked, (name, diagnostics, challenge)


def test_open_endpoints_need_no_token(api: Api) -> None:
    for path in (
        "/healthz",
        "/fhir/metadata",
        "/fhir/CodeSystem/recognized-items",
        "/fhir/CodeSystem/nonrecognition-reasons",
        "/.well-known/smart-configuration",
        "/.well-known/jwks.json",
    ):
        r = api.client.get(path)
        assert r.status_code == 200, (path, r.text)
    smart = api.client.get("/.well-known/smart-configuration").json()
    assert smart["token_endpoint"] == "http://testserver/auth/token"
    assert smart["grant_types_supported"] == ["client_credentials"]
    assert set(smart["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
    }
    assert {"system/DiagnosticReport.write", "user/*.read", "patient/*.read"} <= set(smart["scopes_supported"])
    keys = api.client.get("/.well-known/jwks.json").json()["keys"]
    assert [(k["kty"], k["crv"], k["alg"]) for k in keys] == [("OKP", "Ed25519", "EdDSA")]
    assert all("d" not in k for k in keys)  # never the private part


# ---------------------------------------------------------------------------------------------------- /auth/token
def test_client_secret_post_gives_a_working_token(api: Api) -> None:
    cid = _client(api, PrincipalKind.HOSPITAL, org="hosp-a", secret="s3cret-post")
    r = _form_token(api, grant_type="client_credentials", client_id=cid, client_secret="s3cret-post")
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["token_type"].lower() == "bearer"
    assert body["expires_in"] == api.ctx.settings.token_ttl_seconds
    assert set(body["scope"].split()) == set(DEFAULT_SCOPES[PrincipalKind.HOSPITAL])
    ok = api.client.get("/fhir/Organization/hosp-a", headers=_bearer(body["access_token"]))
    assert ok.status_code == 200, ok.text


def test_client_secret_basic_gives_a_working_token(api: Api) -> None:
    secret = "pa:ss+wo/rd é%"
    cid = _client(api, PrincipalKind.HOSPITAL, org="hosp-b", secret=secret)
    # RFC 6749 §2.3.1: client id and secret are form-urlencoded, then joined by ':' and base64-encoded
    basic = base64.b64encode(f"{quote_plus(cid)}:{quote_plus(secret)}".encode()).decode()
    r = api.client.post(
        "/auth/token", data={"grant_type": "client_credentials"}, headers={"Authorization": f"Basic {basic}"}
    )
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    assert api.client.get("/fhir/Organization/hosp-b", headers=_bearer(token)).status_code == 200
    plain = _client(api, PrincipalKind.HOSPITAL, org="hosp-b", secret="plain-secret")
    r = api.client.post("/auth/token", data={"grant_type": "client_credentials"}, auth=(plain, "plain-secret"))
    assert r.status_code == 200, r.text


def test_token_endpoint_errors(api: Api) -> None:
    cid = _client(api, PrincipalKind.HOSPITAL, org="hosp-a", secret="right-secret")

    def oauth_error(r: httpx.Response, status: int, error: str) -> None:
        assert r.status_code == status, (error, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/json")
        assert r.json()["error"] == error, r.text
        assert r.headers.get("cache-control") == "no-store"
        assert "access_token" not in r.json()

    request_id = _rid()
    wrong = {"grant_type": "client_credentials", "client_id": cid, "client_secret": "wrong"}
    r = api.client.post("/auth/token", headers=request_id, data=wrong)
    oauth_error(r, 401, "invalid_client")
    assert r.headers["www-authenticate"]
    rows = _rows(api.ctx, request_id["X-Request-Id"])
    assert [(row["status"], row["outcome"]) for row in rows] == [(401, "4")]  # a failed login is audited
    assert all("wrong" not in str(v) for v in rows[0].values())  # … without the secret tried
    r = _form_token(api, grant_type="client_credentials", client_id="nobody-here", client_secret="right-secret")
    oauth_error(r, 401, "invalid_client")
    oauth_error(_form_token(api, grant_type="client_credentials"), 401, "invalid_client")
    r = api.client.post("/auth/token", data={"grant_type": "client_credentials"}, auth=(cid, "wrong"))
    oauth_error(r, 401, "invalid_client")
    assert r.headers["www-authenticate"].lower().startswith("basic")
    for grant in ("password", "authorization_code", "refresh_token"):
        r = _form_token(api, grant_type=grant, client_id=cid, client_secret="right-secret")
        oauth_error(r, 400, "unsupported_grant_type")
    r = api.client.post(
        "/auth/token", json={"grant_type": "client_credentials", "client_id": cid, "client_secret": "right-secret"}
    )
    oauth_error(r, 400, "invalid_request")
    r = api.client.post(
        "/auth/token", data={"grant_type": "client_credentials"}, headers={"Authorization": "Basic !!not-base64!!"}
    )
    assert r.status_code in (400, 401), r.text
    assert "access_token" not in r.json()


def test_token_without_grant_type_is_invalid_request(api: Api) -> None:
    """RFC 6749 §5.2: a missing required parameter is ``invalid_request`` (``unsupported_grant_type`` is for a grant
    type the server does not support)."""
    cid = _client(api, PrincipalKind.HOSPITAL, org="hosp-a", secret="right-secret")
    r = _form_token(api, client_id=cid, client_secret="right-secret")
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_request", r.text


def test_requested_scope_may_narrow_never_widen(api: Api) -> None:
    cid = _client(api, PrincipalKind.HOSPITAL, org="hosp-a", secret="scoped")
    creds = {"grant_type": "client_credentials", "client_id": cid, "client_secret": "scoped"}
    r = _form_token(api, **creds, scope="system/Patient.read")
    assert r.status_code == 200, r.text
    assert r.json()["scope"] == "system/Patient.read"
    token = r.json()["access_token"]
    assert api.client.get("/fhir/Patient", headers=_bearer(token)).status_code == 200
    r = api.client.get("/fhir/DiagnosticReport", headers=_bearer(token))
    _outcome(r, 403, "forbidden")
    for wider in ("system/*.*", "system/Organization.write", "user/*.read", "patient/*.read", "not-a-scope"):
        r = _form_token(api, **creds, scope=wider)
        assert r.status_code == 400, (wider, r.text)
        assert r.json()["error"] == "invalid_scope", (wider, r.text)
    r = _form_token(api, **creds, scope="system/Patient.read system/*.*")
    if r.status_code == 200:  # RFC 6749 §3.3 lets the server grant less than asked, and say so
        assert r.json()["scope"] == "system/Patient.read"
    else:
        assert r.json()["error"] == "invalid_scope"


def test_the_token_carries_the_principal_and_verifies_with_the_jwks(api: Api) -> None:
    cid = _client(api, PrincipalKind.HOSPITAL, org="hosp-b", secret="sig")
    r = _form_token(api, grant_type="client_credentials", client_id=cid, client_secret="sig")
    token = r.json()["access_token"]
    principal = api.ctx.tokens.verify(token)
    assert principal.client_id == cid
    assert principal.kind is PrincipalKind.HOSPITAL
    assert principal.org_id == "hosp-b"
    assert {str(s) for s in principal.scopes} == set(DEFAULT_SCOPES[PrincipalKind.HOSPITAL])

    jwks = api.client.get("/.well-known/jwks.json").json()
    kid = jwt.get_unverified_header(token)["kid"]
    (jwk,) = [k for k in jwks["keys"] if k["kid"] == kid]
    issuer = api.ctx.settings.public_base_url
    claims = jwt.decode(token, jwt.PyJWK(jwk).key, algorithms=["EdDSA"], audience=issuer, issuer=issuer)
    assert claims["sub"] == cid
    assert claims["exp"] - claims["iat"] == r.json()["expires_in"]
    foreign = _sign(api, _claims(api, cid), Ed25519PrivateKey.generate())
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(foreign, jwt.PyJWK(jwk).key, algorithms=["EdDSA"], audience=issuer)

    national_id = resident_id(102)
    pid = _patient_principal(api, national_id, secret="pt")
    token = _form_token(api, grant_type="client_credentials", client_id=pid, client_secret="pt").json()["access_token"]
    patient = api.ctx.tokens.verify(token)
    assert patient.kind is PrincipalKind.PATIENT
    assert patient.patient_key == api.ctx.identity.master_key(NATIONAL, national_id)
    assert [str(s) for s in patient.scopes] == ["patient/*.read"]
    assert national_id not in str(jwt.decode(token, options={"verify_signature": False}))


# ---------------------------------------------------------------------------------------------------- scopes
def test_a_hospital_client_without_report_write_scope_cannot_write_reports(api: Api) -> None:
    cid = _client(api, PrincipalKind.HOSPITAL, org="hosp-a", scopes="system/Patient.write system/*.read")
    r = api.post("/fhir/Patient", _patient_body("hosp-a", unique("A"), resident_id(103)), who=cid)
    assert r.status_code == 201, r.text
    body = _report_body("hosp-a", r.json()["id"])
    _outcome(api.post("/fhir/DiagnosticReport", body, who=cid), 403, "forbidden")
    ident = body["identifier"][0]
    assert (
        _ids(api.get("/fhir/DiagnosticReport", params={"identifier": f"{ident['system']}|{ident['value']}"})) == set()
    )


def test_clinicians_cannot_write(api: Api) -> None:
    p = api.patient("hosp-b", unique("B"), resident_id(104))
    report = api.report("hosp-b", p["id"], unique("R"))
    for who in ("dr-b", _client(api, PrincipalKind.CLINICIAN, org="hosp-b", scopes="user/*.*")):
        _outcome(
            api.post("/fhir/Patient", _patient_body("hosp-b", unique("B"), resident_id(105)), who=who), 403, "forbidden"
        )
        _outcome(api.post("/fhir/DiagnosticReport", _report_body("hosp-b", p["id"]), who=who), 403, "forbidden")
        _outcome(api.put(f"/fhir/Patient/{p['id']}", p, who=who), 403, "forbidden")
        _outcome(
            api.put(
                "/fhir/Organization/hosp-b", {"resourceType": "Organization", "id": "hosp-b", "name": "B 医院"}, who=who
            ),
            403,
            "forbidden",
        )
        _outcome(api.delete(f"/fhir/DiagnosticReport/{report['id']}", who=who), 403, "forbidden")
    assert api.get(f"/fhir/DiagnosticReport/{report['id']}").status_code == 200


def test_a_clinician_cannot_delete_through_a_bundle(api: Api) -> None:
    """The single DELETE refuses clinicians whatever their scopes; a transaction's DELETE entry must too."""
    p = api.patient("hosp-b", unique("B"), resident_id(106))
    report = api.report("hosp-b", p["id"], unique("R"))
    who = _client(api, PrincipalKind.CLINICIAN, org="hosp-b", scopes="user/*.*")
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"request": {"method": "DELETE", "url": f"DiagnosticReport/{report['id']}"}}],
    }
    r = api.post("/fhir", bundle, who=who)
    assert r.status_code == 403, r.text
    assert api.get(f"/fhir/DiagnosticReport/{report['id']}").status_code == 200


def test_patients_cannot_write(api: Api) -> None:
    national_id = resident_id(107)
    p = api.patient("hosp-a", unique("A"), national_id)
    report = api.report("hosp-a", p["id"], unique("R"))
    for who in (_patient_principal(api, national_id), _patient_principal(api, national_id, scopes="patient/*.*")):
        _outcome(api.post("/fhir/DiagnosticReport", _report_body("hosp-a", p["id"]), who=who), 403, "forbidden")
        _outcome(api.put(f"/fhir/Patient/{p['id']}", {**p, "gender": "male"}, who=who), 403, "forbidden")
        _outcome(api.delete(f"/fhir/DiagnosticReport/{report['id']}", who=who), 403, "forbidden")
    assert api.get(f"/fhir/Patient/{p['id']}").json()["meta"]["versionId"] == "1"


# ---------------------------------------------------------------------------------------------------- as itself
def test_a_hospital_writes_only_as_itself(api: Api) -> None:
    pa = api.patient("hosp-a", unique("A"), resident_id(108))
    pb = api.patient("hosp-b", unique("B"), resident_id(109))
    rb = api.report("hosp-b", pb["id"], unique("R"))
    who = _client(api, PrincipalKind.HOSPITAL, org="hosp-a")
    hijack_patient = {**pb, "managingOrganization": {"reference": "Organization/hosp-a"}}
    hijack_report = {**_report_body("hosp-a", pa["id"]), "id": rb["id"]}
    by_identifier = {"identifier": f"{rb['identifier'][0]['system']}|{rb['identifier'][0]['value']}"}
    foreign_report = _report_body("hosp-a", pa["id"], performer="hosp-b")
    foreign_entry = {"resource": foreign_report, "request": {"method": "POST", "url": "DiagnosticReport"}}
    forbidden = [
        api.post("/fhir/DiagnosticReport", _report_body("hosp-a", pa["id"], performer="hosp-b"), who=who),
        api.post("/fhir/DiagnosticReport", _report_body("hosp-a", pb["id"]), who=who),
        api.post("/fhir/Patient", _patient_body("hosp-b", unique("B"), resident_id(110)), who=who),
        api.put("/fhir/Organization/hosp-b", {"resourceType": "Organization", "id": "hosp-b", "name": "被改"}, who=who),
        api.delete(f"/fhir/DiagnosticReport/{rb['id']}", who=who),
        api.delete(f"/fhir/Patient/{pb['id']}", who=who),
        # taking over hosp-b's resources by id or by identifier, while naming itself
        api.put(f"/fhir/Patient/{pb['id']}", hijack_patient, who=who),
        api.put(f"/fhir/DiagnosticReport/{rb['id']}", hijack_report, who=who),
        api.put(
            "/fhir/DiagnosticReport", {**hijack_report, "identifier": rb["identifier"]}, who=who, params=by_identifier
        ),
        api.post("/fhir", {"resourceType": "Bundle", "type": "transaction", "entry": [foreign_entry]}, who=who),
    ]
    for r in forbidden:
        _outcome(r, 403, "forbidden")
    assert api.get(f"/fhir/DiagnosticReport/{rb['id']}").json()["meta"]["versionId"] == "1"
    assert api.get(f"/fhir/Patient/{pb['id']}").json()["meta"]["versionId"] == "1"
    assert api.get("/fhir/Organization/hosp-b").json()["name"] == "B 医院"
    batch = api.post(
        "/fhir",
        {
            "resourceType": "Bundle",
            "type": "batch",
            "entry": [{"request": {"method": "DELETE", "url": f"DiagnosticReport/{rb['id']}"}}],
        },
        who=who,
    )
    assert batch.status_code == 200, batch.text
    assert batch.json()["entry"][0]["response"]["status"].startswith("403")
    # every refusal is in the audit trail of that client, with its action and outcome 4
    events = _events(api, agent=who)
    assert sorted(a for a, _, _ in _summary(events)) == sorted("CCCUDDUUUEE")
    assert {o for _, o, _ in _summary(events)} == {"4"}
    # with the scope to write Organizations, still only its own
    org_admin = _client(api, PrincipalKind.HOSPITAL, org="hosp-a", scopes="system/Organization.write system/*.read")
    r = api.put(
        "/fhir/Organization/hosp-b", {"resourceType": "Organization", "id": "hosp-b", "name": "x"}, who=org_admin
    )
    _outcome(r, 403, "forbidden")
    r = api.put(
        "/fhir/Organization/hosp-a", {"resourceType": "Organization", "id": "hosp-a", "name": "A 医院"}, who=org_admin
    )
    assert r.status_code == 200, r.text


def test_a_hospital_cannot_take_over_a_deleted_resource_of_another(api: Api) -> None:
    """Re-creating a deleted id continues its history; hosp-a must not adopt hosp-b's report (and its history)."""
    pa = api.patient("hosp-a", unique("A"), resident_id(111))
    pb = api.patient("hosp-b", unique("B"), resident_id(112))
    rb = api.report("hosp-b", pb["id"], unique("R"))
    assert api.delete(f"/fhir/DiagnosticReport/{rb['id']}", who="hosp-b-system").status_code == 204
    r = api.put(
        f"/fhir/DiagnosticReport/{rb['id']}", {**_report_body("hosp-a", pa["id"]), "id": rb["id"]}, who="hosp-a-system"
    )
    leaked = api.get(f"/fhir/DiagnosticReport/{rb['id']}/_history/1", who="hosp-a-system")
    assert r.status_code == 403, f"PUT answered {r.status_code}; hosp-a then vread hosp-b's v1: {leaked.status_code}"
    assert leaked.status_code != 200


# ---------------------------------------------------------------------------------------------------- care context
def test_clinicians_read_only_within_their_care_context(api: Api) -> None:
    national_id = resident_id(113)
    pa = api.patient("hosp-a", unique("A"), national_id)
    api.patient("hosp-b", unique("B"), national_id)
    ra = api.report("hosp-a", pa["id"], unique("R"))
    by_person = {"patient.identifier": f"{NATIONAL}|{national_id}"}
    # dr-b: the person has a local identity at hosp-b
    assert api.get(f"/fhir/DiagnosticReport/{ra['id']}", who="dr-b").status_code == 200
    assert ra["id"] in _ids(api.get("/fhir/DiagnosticReport", who="dr-b", params=by_person))
    # dr-c and hosp-c: no local identity at hosp-c
    for who in ("dr-c", "hosp-c-system"):
        _outcome(api.get(f"/fhir/DiagnosticReport/{ra['id']}", who=who), 403, "forbidden")
        _outcome(api.get(f"/fhir/Patient/{pa['id']}", who=who), 403, "forbidden")
        _outcome(api.get(f"/fhir/DiagnosticReport/{ra['id']}/_history/1", who=who), 403, "forbidden")
        _outcome(api.get(f"/fhir/DiagnosticReport/{ra['id']}/_history", who=who), 403, "forbidden")
        assert _ids(api.get("/fhir/DiagnosticReport", who=who, params=by_person)) == set()
        assert _ids(api.get("/fhir/DiagnosticReport", who=who, params={"patient": f"Patient/{pa['id']}"})) == set()
        assert _ids(api.get("/fhir/DiagnosticReport", who=who, params={"_id": ra["id"]})) == set()
        r = api.get("/fhir/Patient/$ihe-pix", who=who, params={"sourceIdentifier": f"{NATIONAL}|{national_id}"})
        assert r.status_code == 403, r.text
    # once hosp-c registers the person, dr-c may read
    pc = api.patient("hosp-c", unique("C"), national_id)
    assert api.get(f"/fhir/DiagnosticReport/{ra['id']}", who="dr-c").status_code == 200
    assert ra["id"] in _ids(api.get("/fhir/DiagnosticReport", who="dr-c", params=by_person))
    # … and no longer once that local identity is deleted
    assert api.delete(f"/fhir/Patient/{pc['id']}", who="hosp-c-system").status_code == 204
    _outcome(api.get(f"/fhir/DiagnosticReport/{ra['id']}", who="dr-c"), 403, "forbidden")
    # each read of the person's records is in their audit trail, with who read it
    events = _events(api, patient=f"Patient/{pa['id']}")
    readers = {
        (e["agent"][0]["who"]["identifier"]["value"], e["action"], e["outcome"])
        for e in events
        if "identifier" in e["agent"][0]["who"]
    }
    assert {("dr-b", "R", "0"), ("dr-b", "E", "0"), ("dr-c", "R", "0"), ("hosp-a-system", "C", "0")} <= readers
    refused = [
        e
        for e in _events(api, agent="dr-c", outcome="4")
        if any(x["what"].get("reference") == f"DiagnosticReport/{ra['id']}" for x in e.get("entity", []))
    ]
    assert refused and {e["action"] for e in refused} == {"R"}


# ---------------------------------------------------------------------------------------------------- patients
def test_a_patient_reads_only_their_own_records(api: Api) -> None:
    national_id, other_id = resident_id(114), resident_id(115)
    pa = api.patient("hosp-a", unique("A"), national_id)
    pb = api.patient("hosp-b", unique("B"), national_id)
    ra = api.report("hosp-a", pa["id"], unique("R"))
    rb = api.report("hosp-b", pb["id"], unique("R"))
    po = api.patient("hosp-a", unique("A"), other_id)
    ro = api.report("hosp-a", po["id"], unique("R"))
    me = _patient_principal(api, national_id)
    for path in (
        f"DiagnosticReport/{ra['id']}",
        f"DiagnosticReport/{rb['id']}",
        f"Patient/{pa['id']}",
        f"Patient/{pb['id']}",
    ):
        assert api.get(f"/fhir/{path}", who=me).status_code == 200, path
    assert _ids(api.get("/fhir/DiagnosticReport", who=me)) == {ra["id"], rb["id"]}
    assert _ids(api.get("/fhir/Patient", who=me)) == {pa["id"], pb["id"]}
    assert _ids(api.get("/fhir/DiagnosticReport", who=me, params={"patient": f"Patient/{po['id']}"})) == set()
    r = api.get("/fhir/DiagnosticReport", who=me, params={"patient.identifier": f"{NATIONAL}|{other_id}"})
    assert _ids(r) == set()
    _outcome(api.get(f"/fhir/DiagnosticReport/{ro['id']}", who=me), 403, "forbidden")
    _outcome(api.get(f"/fhir/Patient/{po['id']}", who=me), 403, "forbidden")
    _outcome(api.get(f"/fhir/DiagnosticReport/{ro['id']}/_history/1", who=me), 403, "forbidden")
    # a patient sees who accessed their records (docs/design.md §6) — theirs only
    own = api.get("/fhir/AuditEvent", who=me, params={"_count": "200"}).json()
    assert own["entry"]
    assert {e["resource"]["entity"][-1]["what"]["identifier"]["value"] for e in own["entry"]} == {
        api.ctx.identity.master_key(NATIONAL, national_id)
    }
    other = api.get("/fhir/AuditEvent", who=me, params={"patient": f"Patient/{po['id']}"}).json()
    assert other.get("entry", []) == []
    assert api.get("/fhir/Organization/hosp-a", who=me).status_code == 200  # the directory is open to all


# ---------------------------------------------------------------------------------------------------- audit
def test_every_interaction_is_audited_with_action_and_outcome(api: Api) -> None:
    who = _client(api, PrincipalKind.HOSPITAL, org="hosp-a")
    body = _patient_body("hosp-a", unique("A"), resident_id(116))
    p = api.post("/fhir/Patient", body, who=who).json()
    assert api.get(f"/fhir/Patient/{p['id']}", who=who).status_code == 200
    assert api.get("/fhir/Patient", who=who, params={"_id": p["id"]}).status_code == 200
    assert api.put(f"/fhir/Patient/{p['id']}", {**p, "gender": "male"}, who=who).status_code == 200
    about_the_patient = {e["id"] for e in _events(api, patient=f"Patient/{p['id']}")}
    assert {e["id"] for e in _events(api, agent=who)} <= about_the_patient
    assert api.delete(f"/fhir/Patient/{p['id']}", who=who).status_code == 204
    pb = api.patient("hosp-b", unique("B"), resident_id(117))
    _outcome(api.get(f"/fhir/Patient/{pb['id']}", who=who), 403, "forbidden")
    _outcome(
        api.post("/fhir/Patient", _patient_body("hosp-b", unique("B"), resident_id(118)), who=who), 403, "forbidden"
    )
    events = _events(api, agent=who)
    assert sorted(_summary(events)) == sorted(
        [
            ("C", "0", "create"),
            ("R", "0", "read"),
            ("E", "0", "search-type"),
            ("U", "0", "update"),
            ("D", "0", "delete"),
            ("R", "4", "read"),
            ("C", "4", "create"),
        ]
    )
    key = api.ctx.identity.master_key(NATIONAL, resident_id(116))
    for e in events:
        assert e["type"]["code"] == "rest"
        assert e["agent"][0]["who"]["identifier"]["value"] == who
        assert e["agent"][0]["requestor"] is True
        assert {"reference": "Organization/hosp-a"} in [a["who"] for a in e["agent"]]
        if e["outcome"] == "0":
            whats = [x["what"] for x in e["entity"]]
            assert {
                "identifier": {"system": "https://hr-registry.org.cn/fhir/sid/master-patient-key", "value": key}
            } in whats, e
        else:
            assert e["outcomeDesc"]
    (read,) = [e for e in events if e["subtype"][0]["code"] == "read" and e["outcome"] == "0"]
    assert read["entity"][0]["what"] == {"reference": f"Patient/{p['id']}"}
    assert _summary(_events(api, agent=who, action="D")) == [("D", "0", "delete")]
    assert {a for a, _, _ in _summary(_events(api, agent=who, outcome="4"))} == {"R", "C"}
    one = api.get(f"/fhir/AuditEvent/{events[0]['id']}")
    assert one.status_code == 200
    AuditEvent.model_validate(one.json())


def test_the_audit_trail_of_a_deleted_patient_stays_searchable(api: Api) -> None:
    """Deleting a Patient must not hide who read and changed it: ``AuditEvent?patient=`` still finds the events."""
    p = api.patient("hosp-a", unique("A"), resident_id(124))
    assert api.get(f"/fhir/Patient/{p['id']}", who="dr-b").status_code in (200, 403)
    before = {e["id"] for e in _events(api, patient=f"Patient/{p['id']}")}
    assert before
    assert api.delete(f"/fhir/Patient/{p['id']}", who="hosp-a-system").status_code == 204
    after = _events(api, patient=f"Patient/{p['id']}")
    assert before <= {e["id"] for e in after}, f"AuditEvent?patient=Patient/{p['id']} found {len(after)} events"
    assert ("D", "0", "delete") in _summary(after)


def test_refusals_401_and_403_are_audited(api: Api) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        rid = _rid()
        assert api.client.get("/fhir/Patient", headers={**headers, **rid}).status_code == 401
        rows = _rows(api.ctx, rid["X-Request-Id"])
        assert [(r["status"], r["outcome"], r["client_id"]) for r in rows] == [(401, "4", None)]
    who = _client(api, PrincipalKind.CLINICIAN, org="hosp-b")
    rid = _rid()
    r = api.post("/fhir/Organization", {"resourceType": "Organization", "name": "x"}, who=who, headers=rid)
    _outcome(r, 403, "forbidden")
    assert [(r["status"], r["outcome"], r["action"]) for r in _rows(api.ctx, rid["X-Request-Id"])] == [(403, "4", "C")]
    assert _summary(_events(api, agent=who)) == [("C", "4", "create")]


def test_only_admins_and_patients_for_themselves_read_the_audit_trail(api: Api) -> None:
    some = _events(api, _count="1")[0]["id"]
    patient = _patient_principal(api, resident_id(119))
    for who in ("hosp-a-system", "dr-b"):
        _outcome(api.get("/fhir/AuditEvent", who=who), 403, "forbidden")
        _outcome(api.get(f"/fhir/AuditEvent/{some}", who=who), 403, "forbidden")
    assert {(o, s) for _, o, s in _summary(_events(api, agent=who))} >= {("4", "search-type"), ("4", "read")}
    # a patient with no records sees an empty trail, and not another person's event
    assert api.get("/fhir/AuditEvent", who=patient).json().get("entry", []) == []
    assert api.get(f"/fhir/AuditEvent/{some}", who=patient).status_code == 404


def test_the_audit_table_is_append_only(api: Api) -> None:
    api.get("/fhir/Organization/hosp-a", who="hosp-a-system")

    def count() -> int:
        with api.ctx.engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM audit_event")).scalar_one())

    before = count()
    for statement in ("UPDATE audit_event SET outcome = '0', client_id = 'nobody'", "DELETE FROM audit_event"):
        with pytest.raises(DBAPIError, match="append-only"), api.ctx.engine.begin() as conn:
            conn.execute(text(statement))
    assert count() == before
    with api.ctx.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM audit_event WHERE client_id = 'nobody'")).scalar_one() == 0


def test_the_audit_trail_never_holds_a_national_identifier(api: Api) -> None:
    national_id = resident_id(120)
    passport = "E12345678"
    who = _client(api, PrincipalKind.HOSPITAL, org="hosp-a")
    body = _patient_body("hosp-a", unique("A"), national_id)
    assert api.post("/fhir/Patient", body, who=who).status_code == 201
    bad_check = national_id[:17] + ("0" if national_id[17] != "0" else "1")
    requests = [
        ("/fhir/DiagnosticReport", {"patient.identifier": f"{NATIONAL}|{national_id}"}),
        ("/fhir/Patient", {"identifier": f"{NATIONAL}|{national_id}"}),
        ("/fhir/Patient", {"identifier": f"{NATIONAL}|{national_id},http://x|1"}),
        ("/fhir/Patient", {"identifier": f"{NATIONAL}|{bad_check}"}),
        ("/fhir/Patient", {"identifier": f"{PASSPORT}|{passport}"}),
        ("/fhir/Observation", {"subject.identifier": f"{PASSPORT}|{passport}"}),
        ("/fhir/Patient/$ihe-pix", {"sourceIdentifier": f"{NATIONAL}|{national_id}"}),
        ("/fhir/Patient/$ihe-pix", {"sourceIdentifier": f"{PASSPORT}|{passport}"}),
    ]
    for path, params in requests:
        r = api.get(path, who=who, params=params)
        assert r.status_code < 500, (path, r.text)
    r = api.client.post(
        "/fhir/Patient/_search",
        data={"identifier": f"{NATIONAL}|{national_id}"},
        headers={"Authorization": f"Bearer {api.tokens[who]}"},
    )
    assert r.status_code == 200, r.text
    rows = _rows(api.ctx, who, column="client_id")
    assert len(rows) == len(requests) + 2
    searched = [row["query"] for row in rows if row["query"]]
    assert len(searched) >= len(requests)
    assert any("***" in q and national_id[-4:] in q for q in searched), searched
    for row in rows:
        flat = " ".join(str(v) for v in row.values())
        for secret in (national_id, bad_check, passport):
            assert secret not in flat, (secret, row)
    events = _events(api, agent=who)
    text_of_events = orjson.dumps(events).decode() + " ".join(
        base64.b64decode(x["query"]).decode() for e in events for x in e.get("entity", []) if "query" in x
    )
    for secret in (national_id, bad_check, passport):
        assert secret not in text_of_events


def test_a_national_identifier_used_as_a_resource_id_is_not_audited_in_clear(api: Api) -> None:
    national_id = resident_id(121)
    who = _client(api, PrincipalKind.HOSPITAL, org="hosp-a")
    assert api.get(f"/fhir/Patient/{national_id}", who=who).status_code == 404
    rows = _rows(api.ctx, who, column="client_id")
    assert len(rows) == 1
    assert national_id not in " ".join(str(v) for v in rows[0].values()), rows[0]


# ---------------------------------------------------------------------------------------------------- limits
@pytest.fixture
def limited(tmp_path: Path) -> Iterator[Api]:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path}/x.db", max_body_bytes=2048, max_bundle_entries=3)
    app = create_app(settings)
    setup_region(app.state.ctx)
    with TestClient(app) as client:
        yield Api(client, app.state.ctx)
    app.state.ctx.engine.dispose()


def test_a_body_over_the_limit_is_413_and_stores_nothing(limited: Api) -> None:
    mrn = unique("A")
    body = {**_patient_body("hosp-a", mrn, resident_id(122)), "name": [{"text": "名" * 1000}]}
    assert len(orjson.dumps(body)) > 2048
    r = limited.post("/fhir/Patient", body, who="hosp-a-system")
    _outcome(r, 413, "too-costly")
    content = orjson.dumps(body)
    chunks = (content[i : i + 512] for i in range(0, len(content), 512))
    r = limited.client.post("/fhir/Patient", content=chunks, headers=limited.headers("hosp-a-system"))
    assert "content-length" not in r.request.headers
    _outcome(r, 413, "too-costly")
    r = limited.post("/fhir/Patient", {**body, "name": [{"text": "名"}]}, who="hosp-a-system")
    assert r.status_code == 201, r.text  # the same resource, small enough
    mrn2 = unique("A")
    big = {**_patient_body("hosp-a", mrn2, resident_id(123)), "name": [{"text": "名" * 1000}]}
    _outcome(limited.post("/fhir/Patient", big, who="hosp-a-system"), 413, "too-costly")
    found = limited.get("/fhir/Patient", params={"identifier": f"http://hosp-a.example/mrn|{mrn2}"})
    assert _ids(found) == set()


def _tiny_bundle(n: int, org: str = "hosp-a", seed: int = 130) -> dict[str, Any]:
    entries = [
        {
            "resource": _patient_body(org, f"M{seed}-{i}", resident_id(seed + i)),
            "request": {"method": "POST", "url": "Patient"},
        }
        for i in range(n)
    ]
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def test_a_bundle_over_the_entry_limit_is_413(limited: Api) -> None:
    for btype in ("transaction", "batch"):
        bundle = {**_tiny_bundle(4), "type": btype}
        assert len(orjson.dumps(bundle)) < 2048
        _outcome(limited.post("/fhir", bundle, who="hosp-a-system"), 413, "too-costly")
        assert _ids(limited.get("/fhir/Patient", params={"identifier": "http://hosp-a.example/mrn|M130-0"})) == set()
    r = limited.post("/fhir", _tiny_bundle(3, seed=140), who="hosp-a-system")
    assert r.status_code == 200, r.text


def test_a_refused_bundle_is_audited(limited: Api) -> None:
    who = _client(limited, PrincipalKind.HOSPITAL, org="hosp-a")
    _outcome(limited.post("/fhir", _tiny_bundle(4, seed=150), who=who), 413, "too-costly")
    assert _summary(_events(limited, agent=who)) == [("E", "4", "transaction")]


def test_the_rate_limit_answers_429_with_retry_after_and_is_audited(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path}/x.db", rate_limit_per_second=1, rate_limit_burst=3)
    app = create_app(settings)
    setup_region(app.state.ctx)
    with TestClient(app) as client:
        api = Api(client, app.state.ctx)
        statuses = [api.get("/fhir/Organization/hosp-a", who="hosp-a-system") for _ in range(4)]
        assert [r.status_code for r in statuses] == [200, 200, 200, 429]
        oo = _outcome(statuses[3], 429, "throttled")
        assert oo.issue[0].diagnostics
        assert int(statuses[3].headers["retry-after"]) >= 1
        # per client: another client is not slowed down by the first
        assert api.get("/fhir/Organization/hosp-a", who="hosp-b-system").status_code == 200
        events = _events(api, agent="hosp-a-system")
        assert sorted(_summary(events)) == sorted([("R", "0", "read")] * 3 + [("E", "4", "operation")])
        assert next(e for e in events if e["outcome"] == "4").get("outcomeDesc")
        time.sleep(1.1)
        assert api.get("/fhir/Organization/hosp-a", who="hosp-a-system").status_code == 200  # the bucket refills
    app.state.ctx.engine.dispose()


def test_made_up_client_ids_at_the_token_endpoint_leave_the_limiter_bounded(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path}/x.db", rate_limit_per_second=1, rate_limit_burst=3,
                             rate_limit_max_keys=20)  # fmt: skip
    app = create_app(settings)
    ctx = app.state.ctx
    setup_region(ctx)
    secret = ctx.principals.rotate_secret("hosp-a-system")
    assert isinstance(ctx.limiter, RateLimiter)  # in-process: no shared store configured
    with TestClient(app) as client:
        for n in range(60):  # a bucket per claimed client id, before it is authenticated (each costs a hash)
            r = client.post("/auth/token", data={"grant_type": "client_credentials", "client_id": f"bogus-{n}",
                                                 "client_secret": "x"})  # fmt: skip
            assert r.status_code == 401, r.text
        assert len(ctx.limiter) <= 20
        form = {"grant_type": "client_credentials", "client_id": "hosp-a-system", "client_secret": secret}
        statuses = [client.post("/auth/token", data=form) for _ in range(4)]
        assert [r.status_code for r in statuses] == [200, 200, 200, 429]
        assert int(statuses[3].headers["retry-after"]) >= 1
        assert len(ctx.limiter) <= 20
    ctx.engine.dispose()


def test_a_form_search_is_audited_with_its_parameters(api: Api) -> None:
    rid = _rid()
    r = api.client.post("/fhir/DiagnosticReport/_search", data={"status": "final", "code": "58410-2"},
                        headers={"Authorization": f"Bearer {api.token_for('admin')}", **rid})  # fmt: skip
    assert r.status_code == 200, r.text
    rows = _rows(api.ctx, rid["X-Request-Id"])  # one per patient the search touched
    assert rows and all(r["query"] and "status=final" in r["query"] and "58410-2" in r["query"] for r in rows)
