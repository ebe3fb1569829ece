"""Reads and searches from a streaming standby with read-your-writes (registry.store.replica), on a primary and a
standby of the test's own (``pg_basebackup -R``; never the shared server), two registry nodes sharing the machine's
Redis for the write marks.

- A hospital that pushes through one node and reads at once through the other sees its push, even while the standby
  has stopped replaying (the read then goes to the primary); a client that wrote nothing reads the standby, a moment
  behind — the proof that reads do go there; what that standby refuses or does not find (a share resumed, a
  resource made a moment ago) or a read its replay cancelled is read again on the primary.
- The read's audit row is on the primary.
- A standby that is down costs nothing but its use: reads go to the primary.
- The order check's look-ups go to the standby too, and its check log to the primary; a hospital's own push (by
  any of its clients), a patient the check registered and the patient's consent change are seen by the next check
  at once, even while the standby has stopped replaying. An order check keeps no mark of its own.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, suppress
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from registry.app import create_app
from registry.auth import PrincipalKind
from registry.errors import ConflictError
from scripts.pg_cluster import PgCluster, available
from tests.integration.conftest import Api, make_settings, new_resident_id, unique
from tests.integration.recognition_region import new_person, set_up_recognition
from tests.integration.test_consent import CBC_ORDER, Portal, _found, _report_id
from tests.integration.test_nodes import REDIS, redis_present  # noqa: F401 - the fixture
from tests.integration.test_pages import csrf_of, sign_in
from tests.integration.test_recognition import T0, Clock, card_for, push_cbc, sign

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
        first = create_app(make_settings(var, primary.url, identity_secret=secret), clock=Clock(T0))  # migrates it
        with suppress(ConflictError):
            set_up_recognition(first.state.ctx)
        first.state.ctx.engine.dispose()
        standby = primary.standby(prefix="hr-pg-standby-")
        stack.callback(standby.remove)
        apis = []
        for _ in range(2):
            settings = make_settings(var, primary.url, identity_secret=secret, database_replica_url=standby.url,
                                     shared_state_url=REDIS)  # fmt: skip
            app = create_app(settings, clock=Clock(T0))
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
    nid = new_resident_id()
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
        # a client that wrote nothing reads the standby, which does not have the report yet: its not-found is
        # read again on the primary, which has it
        other = pair.b.get(f"/fhir/DiagnosticReport/{report['id']}", who="admin")
        assert other.status_code == 200, other.text
        assert _served(pair.b) == {**after, "primary": after["primary"] + 1}
        # and its search, which the standby answers without it (a search may lag; a read never refuses)
        listed = pair.b.get(f"/fhir/DiagnosticReport?subject=Patient/{patient['id']}", who="admin")
        assert listed.json().get("entry", []) == []
        assert _served(pair.b) == {"standby": after["standby"] + 1, "primary": after["primary"] + 1}
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
    nid = new_resident_id()
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
    nid = new_resident_id()
    patient = pair.a.patient("hosp-a", unique("A"), nid)
    report = pair.a.report("hosp-a", patient["id"], unique("R"), conclusion="结论")
    pair.standby.stop("immediate")
    try:
        for who in ("hosp-a-system", "admin"):
            read = pair.b.get(f"/fhir/DiagnosticReport/{report['id']}", who=who)
            assert read.status_code == 200, read.text
    finally:
        pair.standby.start()
        _standby_used_again(pair)


def _standby_used_again(pair: Pair) -> None:
    """Wait until both nodes read from the standby again (a node leaves a failed standby alone for a few seconds)."""
    for api in (pair.a, pair.b):
        for _ in range(150):
            before = _served(api)["standby"]
            api.get("/fhir/Organization/hosp-a", who="admin")
            if _served(api)["standby"] > before:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("a node did not use the restarted standby within 15 s")


def test_a_page_sessions_write_marks_its_patient_too(pair: Pair) -> None:
    """A patient's write through the pages (a signed-in session, no token) keeps the patient's mark, as a token's
    write does, so the pages' next reads see it."""
    nid = new_resident_id()
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


def _replayed(pair: Pair) -> None:
    """Wait until the standby has replayed everything the primary has written so far."""
    engine = create_engine(pair.primary.url)
    with engine.connect() as conn:
        lsn = conn.execute(text("SELECT pg_current_wal_lsn()::text")).scalar_one()
    engine.dispose()
    standby = create_engine(pair.standby.url)
    try:
        for _ in range(500):
            with standby.connect() as conn:
                if conn.execute(text("SELECT pg_last_wal_replay_lsn() >= CAST(:l AS pg_lsn)"), {"l": lsn}).scalar():
                    return
            time.sleep(0.01)
        raise AssertionError("the standby did not replay the primary's writes within 5 s")
    finally:
        standby.dispose()


def _counted(api: Api) -> dict[str, int]:
    """``hr_replica_reads_total`` by where the reads ran, from ``GET /metrics``."""
    text_ = api.get("/metrics", who="admin").text
    found = re.findall(r'^hr_replica_reads_total\{on="(\w+)"\} ([0-9.]+)$', text_, re.M)
    return {"standby": 0, "primary": 0, **{on: int(float(n)) for on, n in found}}


def _checks_logged(pair: Pair, client: str) -> int:
    engine = create_engine(pair.primary.url)
    with engine.connect() as conn:
        found = conn.execute(text("SELECT count(*) FROM order_check WHERE client_id = :c"), {"c": client}).scalar_one()
    engine.dispose()
    return int(found)


def test_the_order_checks_look_ups_are_answered_by_the_standby_and_its_log_written_to_the_primary(pair: Pair) -> None:
    person = new_person(pair.a)
    push_cbc(pair.a, "hosp-a", f"Patient/{person['a']['id']}", unique("R"))
    _replayed(pair)
    before, logged = _served(pair.b), _checks_logged(pair, "dr-hosp-b")
    marks = pair.b.ctx.replica.marks if pair.b.ctx.replica else None
    assert marks is not None
    mark = marks.last("dr-hosp-b")
    card = card_for(sign(pair.b, "dr-hosp-b", person["nid"], CBC_ORDER), "o-cbc")
    assert card is not None and "| 血红蛋白 | 131 g/L |" in card["detail"]
    assert _served(pair.b)["standby"] == before["standby"] + 1
    assert _counted(pair.b) == _served(pair.b)  # and counted for the operators (registry.metrics)
    assert _checks_logged(pair, "dr-hosp-b") == logged + 1
    assert marks.last("dr-hosp-b") == mark  # the check wrote only its log: no mark, the next check may go there too


def test_a_hospitals_own_push_is_seen_by_its_next_check_at_once_while_the_standby_lags(pair: Pair) -> None:
    person = new_person(pair.a)
    pair.a.patient("hosp-c", unique("C"), person["nid"])
    _replayed(pair)
    pair.replay(False)
    try:
        # B pushes through its system client (node a) and its clinician checks at once (node b): the primary answers
        push_cbc(pair.a, "hosp-b", f"Patient/{person['b']['id']}", unique("R"))
        before = _served(pair.b)
        card = card_for(sign(pair.b, "dr-hosp-b", person["nid"], CBC_ORDER), "o-cbc")
        assert card is not None and "本院" in card["summary"]
        assert _served(pair.b)["primary"] == before["primary"] + 1
        # C wrote nothing: its check reads the standby, which has not replayed B's push
        before = _served(pair.b)
        assert card_for(sign(pair.b, "dr-hosp-c", person["nid"], CBC_ORDER), "o-cbc") is None
        assert _served(pair.b)["standby"] == before["standby"] + 1
    finally:
        pair.replay(True)


def test_a_patients_consent_change_is_honoured_by_every_hospitals_next_check_at_once(pair: Pair) -> None:
    person = new_person(pair.a)
    push_cbc(pair.a, "hosp-a", f"Patient/{person['a']['id']}", unique("R"))
    portal = Portal(pair.a, person["nid"])
    _replayed(pair)
    assert card_for(sign(pair.b, "dr-hosp-b", person["nid"], CBC_ORDER), "o-cbc") is not None
    pair.replay(False)
    try:
        portal.change("pause", "hosp-b")  # through node a; the standby has not replayed it
        before = _served(pair.b)
        response = sign(pair.b, "dr-hosp-b", person["nid"], CBC_ORDER)
        assert card_for(response, "o-cbc") is None
        assert _served(pair.b)["primary"] == before["primary"] + 1
    finally:
        pair.replay(True)


def test_a_patients_consent_change_is_honoured_by_every_hospitals_next_search_and_read_at_once(pair: Pair) -> None:
    """A search or read the standby answered about a patient whose last write (the consent change) it has not
    replayed is answered again by the primary: the paused results never reach the hospital."""
    person = new_person(pair.a)
    report = _report_id(push_cbc(pair.a, "hosp-a", f"Patient/{person['a']['id']}", unique("R")))
    portal = Portal(pair.a, person["nid"])
    query = f"DiagnosticReport?patient={person['a']['id']}"
    _replayed(pair)
    before = _served(pair.b)
    assert _found(pair.b, "dr-hosp-b", query) == {report}
    assert _served(pair.b)["standby"] == before["standby"] + 1
    pair.replay(False)
    try:
        portal.change("pause", "hosp-b")  # through node a; the standby has not replayed it
        before = _served(pair.b)
        assert _found(pair.b, "dr-hosp-b", query) == set()
        refused = pair.b.get(f"/fhir/DiagnosticReport/{report}", who="dr-hosp-b")
        assert refused.status_code == 403, refused.text
        assert _served(pair.b) == {**before, "primary": before["primary"] + 2}
    finally:
        pair.replay(True)


def test_a_read_the_lagging_standby_refuses_is_answered_by_the_primary(pair: Pair) -> None:
    """The patient resumes sharing with B; the standby, which has not replayed it, would refuse B's read of the
    report: the primary answers it."""
    person = new_person(pair.a)
    report = _report_id(push_cbc(pair.a, "hosp-a", f"Patient/{person['a']['id']}", unique("R")))
    portal = Portal(pair.a, person["nid"])
    portal.change("pause", "hosp-b")
    _replayed(pair)
    before = _served(pair.b)
    refused = pair.b.get(f"/fhir/DiagnosticReport/{report}", who="dr-hosp-b")
    assert refused.status_code == 403, refused.text
    assert _served(pair.b) == {**before, "primary": before["primary"] + 1}  # read on both: they agree
    pair.replay(False)
    try:
        portal.change("resume", "hosp-b")
        before = _served(pair.b)
        shown = pair.b.get(f"/fhir/DiagnosticReport/{report}", who="dr-hosp-b")
        assert shown.status_code == 200, shown.text
        assert _served(pair.b) == {**before, "primary": before["primary"] + 1}
    finally:
        pair.replay(True)


def test_a_read_cancelled_by_the_standbys_replay_is_read_again_on_the_primary(pair: Pair) -> None:
    """A hot standby cancels a query that holds back its replay (SQLSTATE 40001, "conflict with recovery"): the
    read runs again on the primary; another database error is not retried."""
    replica = pair.b.ctx.replica
    assert replica is not None
    _replayed(pair)

    def read(repo: Any, errcode: str) -> tuple[str, list[str | None]]:
        if repo.conn.execute(text("SELECT pg_is_in_recovery()")).scalar_one():
            repo.conn.execute(text(f"DO $$ BEGIN RAISE EXCEPTION 'cancelled' USING ERRCODE = '{errcode}'; END $$"))
        return "primary", []

    before = dict(replica.served)
    assert replica.read([], lambda repo: read(repo, "40001")) == ("primary", [])
    assert replica.served == {**before, "primary": before["primary"] + 1}
    with pytest.raises(DBAPIError):
        replica.read([], lambda repo: read(repo, "XX000"))


def test_a_patient_registered_by_a_check_is_in_the_hospitals_care_at_its_next_check(pair: Pair) -> None:
    nid = new_resident_id()
    a = pair.a.patient("hosp-a", unique("A"), nid)
    push_cbc(pair.a, "hosp-a", f"Patient/{a['id']}", unique("R"))
    _replayed(pair)
    pair.replay(False)
    try:
        mrn = {"system": "http://hosp-b.example/mrn", "value": unique("B")}
        prefetch = {"patient": {"resourceType": "Patient", "id": "ehr-1", "identifier": [
            mrn, {"system": "https://hr-registry.org.cn/fhir/sid/cn-resident-id", "value": nid}]}}  # fmt: skip
        # the first check registers the patient at B (on the primary) and keeps B's mark
        assert card_for(sign(pair.b, "dr-hosp-b", nid, CBC_ORDER, prefetch=prefetch), "o-cbc") is not None
        # the second finds B's patient at once: the primary answers, the standby would not know it
        before = _served(pair.b)
        assert card_for(sign(pair.b, "dr-hosp-b", nid, CBC_ORDER, prefetch=prefetch), "o-cbc") is not None
        assert _served(pair.b) == {**before, "primary": before["primary"] + 1}
    finally:
        pair.replay(True)
    found = pair.a.get(f"/fhir/Patient?identifier={mrn['system']}|{mrn['value']}", who="hosp-b-system").json()
    assert len(found.get("entry", [])) == 1  # registered once


def test_with_the_standby_down_order_checks_go_to_the_primary(pair: Pair) -> None:
    person = new_person(pair.a)
    push_cbc(pair.a, "hosp-a", f"Patient/{person['a']['id']}", unique("R"))
    pair.standby.stop("immediate")
    try:
        assert card_for(sign(pair.b, "dr-hosp-b", person["nid"], CBC_ORDER), "o-cbc") is not None
    finally:
        pair.standby.start()
        _standby_used_again(pair)
