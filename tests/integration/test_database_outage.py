"""A database outage and its recovery, on a PostgreSQL cluster this test creates, stops and starts itself (initdb in
a temporary directory, ``pg_ctl`` on a free port, run as the ``postgres`` user; never the shared server).

While it is down every request that needs the database answers 503 with ``Retry-After`` and an OperationOutcome
(issue ``transient``), liveness (``/livez``, ``/healthz``) stays 200 and readiness (``/readyz``) is 503; a push made
during the outage leaves nothing half-written, and the same push succeeds once the database is back."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from registry.app import create_app
from registry.context import AppContext
from scripts.pg_cluster import PgCluster, available
from tests.integration.conftest import NATIONAL, make_settings, resident_id, setup_region

# without the server binaries the test is skipped with the reason, except under CI (there the cluster must start)
pytestmark = pytest.mark.skipif(available() is not None and not os.environ.get("CI"), reason=str(available()))


class Cluster(PgCluster):
    def __init__(self) -> None:
        super().__init__(prefix="hr-outage-")


@pytest.fixture(scope="module")
def outage(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, TestClient, AppContext]]:
    cluster = Cluster()
    try:
        cluster.init()
        settings = make_settings(tmp_path_factory.mktemp("var"), cluster.url)
        app = create_app(settings)
        ctx: AppContext = app.state.ctx
        setup_region(ctx)
        with TestClient(app) as client:
            yield cluster, client, ctx
        ctx.engine.dispose()
    finally:
        cluster.remove()


def _headers(ctx: AppContext, client_id: str) -> dict[str, str]:
    principal = ctx.principals.get(client_id)
    assert principal is not None
    return {"Authorization": f"Bearer {ctx.principals.token(principal).access_token}",
            "Content-Type": "application/fhir+json"}  # fmt: skip


def _push(mrn: str, nid: str, number: str) -> bytes:
    base = "http://hosp-a.example"
    patient = {"resourceType": "Patient", "identifier": [{"system": f"{base}/mrn", "value": mrn},
                                                         {"system": NATIONAL, "value": nid}],
               "managingOrganization": {"reference": "Organization/hosp-a"}}  # fmt: skip
    report = {"resourceType": "DiagnosticReport", "identifier": [{"system": f"{base}/report", "value": number}],
              "status": "final", "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]},
              "subject": {"reference": "urn:uuid:a0000000-0000-4000-8000-000000000001"},
              "effectiveDateTime": "2025-03-01T08:00:00+08:00",
              "performer": [{"reference": "Organization/hosp-a"}]}  # fmt: skip
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:a0000000-0000-4000-8000-000000000001", "resource": patient,
         "request": {"method": "PUT", "url": f"Patient?identifier={base}/mrn|{mrn}"}},
        {"resource": report,
         "request": {"method": "PUT", "url": f"DiagnosticReport?identifier={base}/report|{number}"}},
    ]}  # fmt: skip
    return orjson.dumps(bundle)


def _unavailable(r: httpx.Response) -> None:
    assert r.status_code == 503, (r.request.method, r.request.url.path, r.status_code, r.text[:300])
    assert int(r.headers["retry-after"]) >= 1
    body = r.json()
    assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["code"] == "transient", body


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_an_outage_is_503_everywhere_the_database_is_needed_and_a_push_succeeds_after_it(
    outage: tuple[Cluster, TestClient, AppContext], mode: str
) -> None:
    """``fast`` shuts down cleanly; ``immediate`` drops every connection as a crash would. Tokens are checked against
    the client cache, so the requests reach the services before they need the database."""
    cluster, client, ctx = outage
    hosp = _headers(ctx, "hosp-a-system")
    admin = _headers(ctx, "admin")
    seed = 9000 if mode == "fast" else 9100
    number = f"R-{mode}"
    assert client.post("/fhir", content=_push(f"M-{seed}", resident_id(seed), f"R-0-{mode}"),
                       headers=hosp).status_code == 200  # fmt: skip
    assert client.get("/readyz").status_code == 200
    reports = {"s": "http://hosp-a.example/report", "v": number}

    cluster.stop(mode)
    try:
        push = _push(f"M-{seed + 1}", resident_id(seed + 1), number)
        for _ in range(2):  # the first request meets the pool's dead connections, the next a refused connect
            _unavailable(client.post("/fhir", content=push, headers=hosp))
        _unavailable(client.get(f"/fhir/Patient?identifier=http://hosp-a.example/mrn|M-{seed}", headers=hosp))
        _unavailable(client.get("/fhir/Organization/hosp-a", headers=admin))
        _unavailable(client.post("/fhir/Organization", content=b'{"resourceType": "Organization", "name": "x"}',
                                 headers=admin))  # fmt: skip
        _unavailable(client.get("/fhir/AuditEvent", headers=admin))
        _unavailable(client.get("/stats/api/summary", headers=admin))
        token = client.post("/auth/token", data={"grant_type": "client_credentials", "client_id": "hosp-a-system",
                                                 "client_secret": "whatever"})  # fmt: skip
        assert token.status_code == 503 and int(token.headers["retry-after"]) >= 1
        for path in ("/livez", "/healthz", "/fhir/metadata"):
            assert client.get(path).status_code == 200, path
        started = time.monotonic()
        ready = client.get("/readyz")
        assert ready.status_code == 503 and int(ready.headers["retry-after"]) >= 1
        assert time.monotonic() - started < ctx.settings.readiness_timeout_seconds + 2
    finally:
        cluster.start()

    deadline = time.monotonic() + 30
    while client.get("/readyz").status_code != 200:
        assert time.monotonic() < deadline, "not ready after the restart"
        time.sleep(0.2)
    # nothing of the push made during the outage was written
    with ctx.engine.connect() as conn:
        held = conn.execute(text("SELECT count(*) FROM resource_identifier WHERE system = :s AND value = :v"),
                            reports).scalar_one()  # fmt: skip
    assert held == 0
    r = client.post("/fhir", content=push, headers=hosp)
    assert r.status_code == 200, r.text[:300]
    statuses = [e["response"]["status"] for e in r.json()["entry"]]
    assert all(s.startswith("201") for s in statuses), statuses
    again = client.post("/fhir", content=push, headers=hosp)  # and it is one push: a repeat creates nothing
    assert [e["response"]["status"][:3] for e in again.json()["entry"]] == ["200", "200"]
    with ctx.engine.connect() as conn:
        held = conn.execute(text("SELECT count(*) FROM resource_identifier WHERE system = :s AND value = :v"),
                            reports).scalar_one()  # fmt: skip
    assert held == 1


def test_a_pooled_connection_idle_past_the_threshold_is_pinged_and_replaced_after_a_restart(
    outage: tuple[Cluster, TestClient, AppContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Connections are pinged on checkout only after sitting idle (registry.store.db): one the restarted server
    dropped is then found dead before a statement is sent, and replaced, so the caller sees no error."""
    from registry.store import db

    cluster, _client, ctx = outage
    with ctx.engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar_one() == 1
    cluster.stop("immediate")
    cluster.start()
    monkeypatch.setattr(db, "IDLE_PING_SECONDS", 0.0)  # every pooled connection counts as idle
    for _ in range(3):
        with ctx.engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
