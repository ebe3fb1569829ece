"""Reads and searches from a streaming standby with read-your-writes (registry.store.replica), on a primary and a
standby of the test's own (``pg_basebackup -R``; never the shared server), two registry nodes sharing the machine's
Redis for the write marks.

- A hospital that pushes through one node and reads at once through the other sees its push, even while the standby
  has stopped replaying (the read then goes to the primary); a client that wrote nothing reads the standby, a moment
  behind — the proof that reads do go there.
- The read's audit row is on the primary.
- A standby that is down costs nothing but its use: reads go to the primary.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import ExitStack, suppress

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from registry.app import create_app
from registry.auth import PrincipalKind
from registry.errors import ConflictError
from scripts.pg_cluster import PgCluster, available
from tests.integration.conftest import Api, make_settings, resident_id, setup_region, unique
from tests.integration.test_nodes import REDIS, redis_present  # noqa: F401 - the fixture
from tests.integration.test_pages import csrf_of, sign_in

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(available() is not None, reason=f"needs PostgreSQL server binaries: {available()}"),
    pytest.mark.usefixtures("redis_present"),
]


class Pair:
    def __init__(self, primary: PgCluster, standby: PgCluster, a: Api, b: Api) -> None:
        self.primary, self.standby, self.a, self.b = primary, standby, a, b

    def replay(self, on: bool) -> None:
        engine = create_engine(self.standby.url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_wal_replay_resume()" if on else "SELECT pg_wal_replay_pause()"))
        engine.dispose()


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    var = tmp_path_factory.mktemp("var")
    with ExitStack() as stack:
        primary = stack.enter_context(PgCluster.running(prefix="hr-pg-primary-"))
        secret = f"replica-{uuid.uuid4().hex}"
        first = create_app(make_settings(var, primary.url, identity_secret=secret))  # migrates the primary
        with suppress(ConflictError):
            setup_region(first.state.ctx)
        first.state.ctx.engine.dispose()
        standby = primary.standby(prefix="hr-pg-standby-")
        stack.callback(standby.remove)
        apis = []
        for _ in range(2):
            settings = make_settings(var, primary.url, identity_secret=secret, database_replica_url=standby.url,
                                     shared_state_url=REDIS)  # fmt: skip
            app = create_app(settings)
            client = stack.enter_context(TestClient(app))
            stack.callback(app.state.ctx.engine.dispose)
            assert app.state.ctx.replica is not None
            stack.callback(app.state.ctx.replica.standby.dispose)
            apis.append(Api(client, app.state.ctx))
        yield Pair(primary, standby, *apis)


def _served(api: Api) -> dict[str, int]:
    replica = api.ctx.replica
    assert replica is not None
    return dict(replica.served)


def test_a_push_is_read_back_at_once_through_the_other_node_even_while_the_standby_lags(pair: Pair) -> None:
    nid = resident_id(int(unique("")[1:8], 16) % 10_000)
    patient = pair.a.patient("hosp-a", unique("A"), nid)
    pair.replay(False)
    try:
        report = pair.a.report("hosp-a", patient["id"], unique("R"), conclusion="结论")
        before = _served(pair.b)
        # the writer, through the other node: the standby has not replayed the push, so the primary answers
        read = pair.b.get(f"/fhir/DiagnosticReport/{report['id']}", who="hosp-a-system")
        assert read.status_code == 200, read.text
        found = pair.b.get(f"/fhir/DiagnosticReport?subject=Patient/{patient['id']}", who="hosp-a-system")
        assert [e["resource"]["id"] for e in found.json().get("entry", [])] == [report["id"]]
        after = _served(pair.b)
        assert after["primary"] - before["primary"] == 2 and after["standby"] == before["standby"]
        # a client that wrote nothing reads the standby, which does not have the report yet
        other = pair.b.get(f"/fhir/DiagnosticReport/{report['id']}", who="admin")
        assert other.status_code == 404
        assert _served(pair.b)["standby"] == after["standby"] + 1
    finally:
        pair.replay(True)
    # once replayed, the writer's reads go to the standby too
    for _ in range(100):
        before = _served(pair.b)
        read = pair.b.get(f"/fhir/DiagnosticReport/{report['id']}", who="hosp-a-system")
        if _served(pair.b)["standby"] > before["standby"]:
            break
    assert read.status_code == 200
    assert _served(pair.b)["standby"] > before["standby"]


def test_a_read_on_the_standby_is_audited_on_the_primary(pair: Pair) -> None:
    nid = resident_id(int(unique("")[1:8], 16) % 10_000)
    patient = pair.a.patient("hosp-a", unique("A"), nid)
    report = pair.a.report("hosp-a", patient["id"], unique("R"), conclusion="结论")
    path = f"/fhir/DiagnosticReport/{report['id']}"
    for _ in range(200):  # admin wrote nothing: its reads go to the standby; wait until it has replayed the push
        if pair.b.get(path, who="admin").status_code == 200:
            break
    engine = create_engine(pair.primary.url)
    query = text("SELECT count(*) FROM audit_event WHERE resource_id = :rid AND client_id = 'admin' AND status = 200")
    with engine.connect() as conn:
        before = conn.execute(query, {"rid": report["id"]}).scalar_one()
    served = _served(pair.b)["standby"]
    assert pair.b.get(path, who="admin").status_code == 200
    assert _served(pair.b)["standby"] == served + 1
    with engine.connect() as conn:
        assert conn.execute(query, {"rid": report["id"]}).scalar_one() == before + 1
    engine.dispose()
    # a search with its includes and paging, on the standby too
    served = _served(pair.b)["standby"]
    found = pair.b.get(f"/fhir/DiagnosticReport?subject=Patient/{patient['id']}&_include=DiagnosticReport:subject"
                       "&_count=1", who="admin")  # fmt: skip
    assert found.status_code == 200, found.text
    kinds = sorted(e["resource"]["resourceType"] for e in found.json()["entry"])
    assert kinds == ["DiagnosticReport", "Patient"]
    assert _served(pair.b)["standby"] == served + 1


def test_with_the_standby_down_reads_go_to_the_primary(pair: Pair) -> None:
    nid = resident_id(int(unique("")[1:8], 16) % 10_000)
    patient = pair.a.patient("hosp-a", unique("A"), nid)
    report = pair.a.report("hosp-a", patient["id"], unique("R"), conclusion="结论")
    pair.standby.stop("immediate")
    try:
        for who in ("hosp-a-system", "admin"):
            read = pair.b.get(f"/fhir/DiagnosticReport/{report['id']}", who=who)
            assert read.status_code == 200, read.text
    finally:
        pair.standby.start()


def test_a_page_sessions_write_marks_its_patient_too(pair: Pair) -> None:
    """A patient's write through the pages (a signed-in session, no token) keeps the patient's mark, as a token's
    write does, so the pages' next reads see it."""
    nid = resident_id(int(unique("")[1:8], 16) % 10_000)
    pair.a.patient("hosp-a", unique("A"), nid)
    key = pair.a.ctx.identity.master_key("https://hr-registry.org.cn/fhir/sid/cn-resident-id", nid)
    account = unique("patient")
    secret = pair.a.ctx.principals.add(PrincipalKind.PATIENT, account, "患者", patient_key=key).secret
    replica = pair.a.ctx.replica
    assert replica is not None
    with TestClient(pair.a.client.app, follow_redirects=False) as browser:
        assert sign_in(browser, "portal", account, secret).status_code == 303
        assert replica.marks.last(account) is None
        page = browser.get("/portal/notifications")
        saved = browser.post("/portal/notifications", data={"sms": "on", "language": "zh", "csrf": csrf_of(page.text)})
        assert saved.status_code == 200, saved.text
        assert replica.marks.last(account) is not None
