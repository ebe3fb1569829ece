"""Against a real server process (uvicorn) on SQLite and PostgreSQL: 20 concurrent clients pushing the same report
yield exactly one resource, and a real FHIR client library (fhirpy) creates, searches and reads."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import orjson
import pytest

from registry.auth import PrincipalKind
from registry.context import AppContext
from tests.integration.conftest import NATIONAL, Database, resident_id, served_registry, unique

CLIENTS = 20


class Live:
    def __init__(self, base: str, ctx: AppContext) -> None:
        self.base = base
        self.ctx = ctx

    def token(self, client_id: str) -> str:
        principal = self.ctx.principals.get(client_id)
        assert principal is not None
        return self.ctx.principals.token(principal).access_token

    def headers(self, client_id: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(client_id)}", "Content-Type": "application/fhir+json"}


@pytest.fixture(scope="module")
def live(database: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with served_registry(database, tmp_path_factory.mktemp("live-var")) as (base, ctx):
        yield Live(base, ctx)


def _bundle(mrn: str, nid: str, number: str) -> dict[str, Any]:
    base = "http://hosp-a.example"
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:a0000000-0000-4000-8000-000000000001",
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": f"{base}/mrn", "value": mrn}, {"system": NATIONAL, "value": nid}],
                    "managingOrganization": {"reference": "Organization/hosp-a"},
                },
                "request": {"method": "PUT", "url": f"Patient?identifier={base}/mrn|{mrn}"},
            },
            {
                "fullUrl": "urn:uuid:a0000000-0000-4000-8000-000000000002",
                "resource": {
                    "resourceType": "Observation",
                    "identifier": [{"system": f"{base}/obs", "value": number}],
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "718-7"}]},
                    "subject": {"reference": "urn:uuid:a0000000-0000-4000-8000-000000000001"},
                    "valueQuantity": {"value": 131, "unit": "g/L"},
                    "performer": [{"reference": "Organization/hosp-a"}],
                },
                "request": {"method": "PUT", "url": f"Observation?identifier={base}/obs|{number}"},
            },
            {
                "fullUrl": "urn:uuid:a0000000-0000-4000-8000-000000000003",
                "resource": {
                    "resourceType": "DiagnosticReport",
                    "identifier": [{"system": f"{base}/report", "value": number}],
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]},
                    "subject": {"reference": "urn:uuid:a0000000-0000-4000-8000-000000000001"},
                    "performer": [{"reference": "Organization/hosp-a"}],
                    "result": [{"reference": "urn:uuid:a0000000-0000-4000-8000-000000000002"}],
                },
                "request": {"method": "PUT", "url": f"DiagnosticReport?identifier={base}/report|{number}"},
            },
        ],
    }


def _concurrently(fn: Any) -> list[httpx.Response]:
    barrier = threading.Barrier(CLIENTS)

    def one(_: int) -> httpx.Response:
        with httpx.Client(timeout=60) as client:
            barrier.wait()
            return fn(client)  # type: ignore[no-any-return]

    with ThreadPoolExecutor(CLIENTS) as pool:
        return list(pool.map(one, range(CLIENTS)))


def _count(live: Live, rtype: str, query: str) -> int:
    r = httpx.get(f"{live.base}/fhir/{rtype}?{query}&_summary=count", headers=live.headers("admin"))
    return int(r.json()["total"])


def test_twenty_concurrent_pushes_of_one_report_make_one_resource(live: Live) -> None:
    mrn, number = unique("A"), unique("R")
    body = orjson.dumps(_bundle(mrn, resident_id(401), number))
    headers = live.headers("hosp-a-system")
    responses = _concurrently(lambda c: c.post(f"{live.base}/fhir", content=body, headers=headers))
    assert [r.status_code for r in responses] == [200] * CLIENTS, [r.text for r in responses if r.status_code != 200]
    locations = {r.json()["entry"][2]["response"]["location"].split("/_history")[0] for r in responses}
    assert len(locations) == 1
    assert _count(live, "DiagnosticReport", f"identifier=http://hosp-a.example/report|{number}") == 1
    assert _count(live, "Observation", f"identifier=http://hosp-a.example/obs|{number}") == 1
    assert _count(live, "Patient", f"identifier=http://hosp-a.example/mrn|{mrn}") == 1
    history = httpx.get(f"{live.base}/fhir/{locations.pop()}/_history", headers=live.headers("admin")).json()
    assert history["total"] == 1  # the repeats made no new versions


def test_twenty_concurrent_plain_creates_make_one_resource(live: Live) -> None:
    mrn = unique("A")
    bundle = _bundle(mrn, resident_id(402), unique("R"))
    httpx.post(f"{live.base}/fhir", content=orjson.dumps(bundle), headers=live.headers("hosp-a-system"))
    patient = httpx.get(
        f"{live.base}/fhir/Patient?identifier=http://hosp-a.example/mrn|{mrn}", headers=live.headers("admin")
    ).json()["entry"][0]["resource"]
    number = unique("R")
    report = {
        "resourceType": "DiagnosticReport",
        "identifier": [{"system": "http://hosp-a.example/report", "value": number}],
        "status": "final",
        "code": {"text": "血常规"},
        "subject": {"reference": f"Patient/{patient['id']}"},
        "performer": [{"reference": "Organization/hosp-a"}],
    }
    headers = live.headers("hosp-a-system")
    body = orjson.dumps(report)
    responses = _concurrently(lambda c: c.post(f"{live.base}/fhir/DiagnosticReport", content=body, headers=headers))
    codes = sorted(r.status_code for r in responses)
    assert codes.count(201) == 1, codes
    assert codes.count(200) == CLIENTS - 1, codes  # the losers are answered with the winner's resource
    assert len({r.json()["id"] for r in responses}) == 1
    assert _count(live, "DiagnosticReport", f"identifier=http://hosp-a.example/report|{number}") == 1


def test_twenty_concurrent_conditional_creates_make_one_resource(live: Live) -> None:
    ident = unique("C")
    body = orjson.dumps(
        {
            "resourceType": "Organization",
            "name": "并发",
            "identifier": [{"system": "https://hr-registry.org.cn/fhir/sid/org-code", "value": ident}],
        }
    )
    headers = {
        **live.headers("admin"),
        "If-None-Exist": f"identifier=https://hr-registry.org.cn/fhir/sid/org-code|{ident}",
    }
    responses = _concurrently(lambda c: c.post(f"{live.base}/fhir/Organization", content=body, headers=headers))
    assert sorted(r.status_code for r in responses) == [200] * (CLIENTS - 1) + [201]
    assert _count(live, "Organization", f"identifier=https://hr-registry.org.cn/fhir/sid/org-code|{ident}") == 1


def test_concurrent_updates_of_one_resource_keep_every_version(live: Live) -> None:
    org = httpx.post(
        f"{live.base}/fhir/Organization",
        content=orjson.dumps({"resourceType": "Organization", "name": "v0"}),
        headers=live.headers("admin"),
    ).json()
    headers = live.headers("admin")

    def update(c: httpx.Client) -> httpx.Response:
        name = unique("v")
        return c.put(
            f"{live.base}/fhir/Organization/{org['id']}",
            headers=headers,
            content=orjson.dumps({"resourceType": "Organization", "id": org["id"], "name": name}),
        )

    responses = _concurrently(update)
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    versions = sorted(int(r.json()["meta"]["versionId"]) for r in responses)
    assert versions == list(range(2, CLIENTS + 2))  # no lost update: every write got its own version
    history = httpx.get(f"{live.base}/fhir/Organization/{org['id']}/_history?_count=100", headers=headers).json()
    assert history["total"] == CLIENTS + 1


def test_fhirpy_client_creates_searches_and_reads(live: Live) -> None:
    from fhirpy import SyncFHIRClient

    client = SyncFHIRClient(
        f"{live.base}/fhir",
        authorization=f"Bearer {live.token('hosp-b-system')}",
        extra_headers={"Content-Type": "application/fhir+json"},
    )
    mrn = unique("B")
    nid = resident_id(403)
    patient = client.resource(
        "Patient",
        identifier=[{"system": "http://hosp-b.example/mrn", "value": mrn}, {"system": NATIONAL, "value": nid}],
        name=[{"family": "互", "given": ["认"]}],
        managingOrganization={"reference": "Organization/hosp-b"},
    )
    patient.save()
    assert patient.id
    found = client.resources("Patient").search(identifier=f"http://hosp-b.example/mrn|{mrn}").fetch()
    assert [p.id for p in found] == [patient.id]
    fetched = client.reference("Patient", patient.id).to_resource()
    assert fetched["name"][0]["family"] == "互"
    assert nid not in str(fetched.serialize())
    report = client.resource(
        "DiagnosticReport",
        identifier=[{"system": "http://hosp-b.example/report", "value": unique("R")}],
        status="final",
        code={"coding": [{"system": "http://loinc.org", "code": "58410-2"}]},
        subject={"reference": f"Patient/{patient.id}"},
        performer=[{"reference": "Organization/hosp-b"}],
    )
    report.save()
    reports = client.resources("DiagnosticReport").search(**{"patient.identifier": f"{NATIONAL}|{nid}"}).fetch_all()
    assert [r.id for r in reports] == [report.id]


def test_a_wrong_token_is_refused_by_the_live_server(live: Live) -> None:
    r = httpx.get(f"{live.base}/fhir/Patient", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer")
    principal = live.ctx.principals.get("dr-b")
    assert principal is not None and principal.kind is PrincipalKind.CLINICIAN


def test_fhirclient_sets_up_smart_backend_services_from_the_capability_statement(live: Live) -> None:
    """fhirclient (the SMART Python client) reads the CapabilityStatement's ``oauth-uris`` token URL and, given a
    client assertion, authenticates with ``private_key_jwt`` (SMART Backend Services) and reads with its token."""
    import uuid

    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec
    from fhirclient import client as smart
    from fhirclient.auth import FHIROAuth2Auth

    key = ec.generate_private_key(ec.SECP384R1())
    public = orjson.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    cid = unique("fhirclient")
    live.ctx.principals.add(PrincipalKind.HOSPITAL, cid, "backend via fhirclient", org_id="hosp-a")
    live.ctx.principals.set_jwks(cid, orjson.dumps({"keys": [{**public, "kid": "fc-1"}]}).decode())
    token_url = f"{live.base}/auth/token"
    claims = {"iss": cid, "sub": cid, "aud": token_url, "exp": int(time.time()) + 240, "jti": uuid.uuid4().hex}
    assertion = jwt.encode(claims, key, algorithm="ES384", headers={"kid": "fc-1", "typ": "JWT"})
    client = smart.FHIRClient(
        settings={"app_id": cid, "api_base": f"{live.base}/fhir", "jwt_token": assertion, "scope": "system/*.read"}
    )
    client.prepare()
    assert isinstance(client.server.auth, FHIROAuth2Auth)  # before: no authentication was set up at all
    assert client.server.auth._token_uri == token_url
    client.authorize()  # client_credentials with the assertion (and fhirclient's launch/patient, not granted)
    assert client.server.auth.access_token
    organization = client.server.request_json("Organization/hosp-a")
    assert organization["id"] == "hosp-a"
