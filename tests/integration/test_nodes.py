"""Two registry nodes behind one balancer, on SQLite and PostgreSQL: two apps (each with the memory of a process of
its own — caches, limiters) on one database, one var directory (the region's signing key and identity secret) and one
Redis. What a client gets must not depend on the node that answers: its rate is counted across nodes, a page session
signed in on one node is valid on the other, a token and a paging cursor too, and a sign-in's attempts are counted
across nodes. The Redis is the machine's (127.0.0.1:6379, as in CI); each test's keys are its own (a fresh identity
secret gives them a fresh prefix), so nothing needs flushing.

A node whose Redis is unreachable still answers and counts on its own (``registry.shared_ratelimit``)."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from registry.app import create_app
from registry.auth import PrincipalKind
from registry.errors import ConflictError
from registry.shared_ratelimit import SharedRateLimiter
from tests.integration.conftest import Api, Database, make_settings, new_resident_id, setup_region, unique
from tests.integration.test_pages import csrf_of, sign_in

REDIS = "redis://127.0.0.1:6379/0"


def _redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture(autouse=True)
def redis_present() -> None:
    """Redis on 127.0.0.1:6379: skipped with the reason where absent — under CI a failure."""
    if not _redis_up():
        if os.environ.get("CI") == "true":
            pytest.fail("needs Redis on 127.0.0.1:6379: CI must have it")
        pytest.skip("needs Redis on 127.0.0.1:6379 (CI has it)")


class Nodes:
    def __init__(self, a: Api, b: Api) -> None:
        self.a, self.b = a, b


def _nodes(database: Database, var: Path, stack: ExitStack, **overrides: Any) -> Nodes:
    secret = f"nodes-{uuid.uuid4().hex}"  # this test's keys in Redis are its own
    apis = []
    for _ in range(2):
        settings = make_settings(var, database.url, identity_secret=secret, **overrides)
        app = create_app(settings)
        client = stack.enter_context(TestClient(app, follow_redirects=False))
        stack.callback(app.state.ctx.engine.dispose)
        apis.append(Api(client, app.state.ctx))
    with suppress(ConflictError):  # the module's database has the region already
        setup_region(apis[0].ctx)
    return Nodes(*apis)


@pytest.fixture
def nodes(database: Database, tmp_path: Path) -> Iterator[Nodes]:
    with ExitStack() as stack:
        yield _nodes(database, tmp_path, stack, shared_state_url=REDIS)


@pytest.fixture
def strict_nodes(database: Database, tmp_path: Path) -> Iterator[Nodes]:
    with ExitStack() as stack:
        yield _nodes(database, tmp_path, stack, rate_limit_per_second=1, rate_limit_burst=3,
                     shared_state_url=REDIS)  # fmt: skip


def test_a_clients_rate_is_counted_across_nodes(strict_nodes: Nodes) -> None:
    nodes = strict_nodes
    assert isinstance(nodes.a.ctx.limiter, SharedRateLimiter) and nodes.a.ctx.limiter.reachable()
    path = "/fhir/Organization/hosp-a"
    statuses = [node.get(path, who="hosp-a-system").status_code for node in (nodes.a, nodes.b, nodes.a, nodes.b)]
    assert statuses == [200, 200, 200, 429]  # a burst of 3 in all, not 3 per node
    refused = nodes.b.get(path, who="hosp-a-system")
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
    assert nodes.b.get(path, who="hosp-b-system").status_code == 200  # per client: another is not slowed down


def test_without_a_shared_store_each_node_counts_on_its_own(database: Database, tmp_path: Path) -> None:
    """The contrast that shows the shared store is what makes the test above hold."""
    with ExitStack() as stack:
        nodes = _nodes(database, tmp_path, stack, rate_limit_per_second=1, rate_limit_burst=3)
        path = "/fhir/Organization/hosp-a"
        statuses = [node.get(path, who="hosp-a-system").status_code for node in (nodes.a, nodes.b) * 3]
        assert statuses == [200] * 6


def test_a_node_whose_store_is_unreachable_counts_on_its_own(database: Database, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # nothing listens there once the socket is closed
    with ExitStack() as stack:
        nodes = _nodes(database, tmp_path, stack, rate_limit_per_second=1, rate_limit_burst=3,
                       shared_state_url=f"redis://127.0.0.1:{closed}/0")  # fmt: skip
        path = "/fhir/Organization/hosp-a"
        statuses = [nodes.a.get(path, who="hosp-a-system").status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]  # served, and still limited, by the node itself


def test_a_token_a_session_and_a_paging_cursor_are_valid_on_either_node(nodes: Nodes) -> None:
    # a token issued by node A is accepted by node B (the region's one signing key)
    token = nodes.a.token_for("hosp-a-system")
    r = nodes.b.client.get("/fhir/Organization/hosp-a", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    # a patient signs in on node A; node B serves the portal with that cookie
    nid = new_resident_id()
    patient = nodes.a.patient("hosp-a", unique("A"), nid)
    for n in range(3):
        nodes.a.report("hosp-a", patient["id"], unique("R"), conclusion=f"结论-{n}")
    key = nodes.a.ctx.identity.master_key("https://hr-registry.org.cn/fhir/sid/cn-resident-id", nid)
    account = unique("patient")
    secret = nodes.a.ctx.principals.add(PrincipalKind.PATIENT, account, "患者", patient_key=key).secret
    assert sign_in(nodes.a.client, "portal", account, secret).status_code == 303
    cookie = nodes.a.client.cookies.get("hr_session")
    assert cookie
    page = nodes.b.client.get("/portal", cookies={"hr_session": cookie})
    assert page.status_code == 200 and "结论-0" in page.text
    # a page of a search made on node A, its next page fetched from node B
    first = nodes.a.get(f"/fhir/DiagnosticReport?subject=Patient/{patient['id']}&_count=2", who="hosp-a-system")
    assert first.status_code == 200
    following = [link["url"] for link in first.json()["link"] if link["relation"] == "next"]
    assert following, first.json()["link"]
    path = following[0].split("/fhir/", 1)[1]
    second = nodes.b.get(f"/fhir/{path}", who="hosp-a-system")
    assert second.status_code == 200, second.text
    ids = {e["resource"]["id"] for e in first.json()["entry"]} | {e["resource"]["id"] for e in second.json()["entry"]}
    assert len(ids) == 3


def test_sign_in_attempts_are_counted_across_nodes(nodes: Nodes) -> None:
    account = unique("nobody")
    statuses = []
    for n in range(12):  # 10 attempts at once per account, then one every 5 s — across nodes
        client = (nodes.a, nodes.b)[n % 2].client
        page = client.get("/portal/login")
        r = client.post("/portal/login", data={"account": account, "secret": "wrong", "csrf": csrf_of(page.text)})
        statuses.append(r.status_code)
    assert statuses[:10] == [401] * 10, statuses
    assert statuses[10:] == [429, 429], statuses
