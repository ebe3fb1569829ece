"""Bounded cost (docs/design.md §6): a request's database statement that runs past REGISTRY_STATEMENT_TIMEOUT_SECONDS is
cancelled and answered 503 with Retry-After and issue ``timeout``; the requests around it are served as usual.

PostgreSQL: a search waits for a lock another session holds (statement_timeout counts the wait), deterministic.
SQLite: a costly search, and the clock the progress handler reads stepping a second at each look, so the search is
past its deadline at the handler's first check whatever the machine's speed (a real clock made it depend on load)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from registry.app import create_app
from registry.store import db as db_module
from tests.integration.conftest import Api, Database, make_settings, resident_id, setup_region


@pytest.fixture(scope="module")
def slow_api(database: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    timeout = 0.5 if database.backend == "postgresql" else 0.05
    settings = make_settings(tmp_path_factory.mktemp("var"), database.url, statement_timeout_seconds=timeout,
                             search_max_length=200_000)  # fmt: skip
    app = create_app(settings)
    setup_region(app.state.ctx)
    with TestClient(app) as client:
        yield Api(client, app.state.ctx)
    app.state.ctx.engine.dispose()


def _assert_timed_out(r: object) -> None:
    status = getattr(r, "status_code", None)
    assert status == 503, getattr(r, "text", "")[:300]
    assert int(r.headers["retry-after"]) >= 1  # type: ignore[attr-defined]
    body = r.json()  # type: ignore[attr-defined]
    assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["code"] == "timeout"


class _SteppingClock:
    """``time`` as the progress handler sees it: each reading a second after the one before."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def monotonic(self) -> float:
        self.now += 1.0
        return self.now


def test_a_statement_past_the_timeout_is_503_and_the_next_request_is_served(
    slow_api: Api, database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    if database.backend == "postgresql":
        holder = create_engine(database.url)
        held, release = threading.Event(), threading.Event()

        def hold_the_lock() -> None:
            with holder.begin() as conn:
                conn.execute(text("LOCK TABLE resource IN ACCESS EXCLUSIVE MODE"))
                held.set()
                release.wait(30)

        worker = threading.Thread(target=hold_the_lock)
        worker.start()
        assert held.wait(10)
        try:
            _assert_timed_out(slow_api.get("/fhir/Patient?name=x"))
        finally:
            release.set()
            worker.join(10)
            holder.dispose()
    else:
        for n in range(60):
            slow_api.patient("hosp-a", f"T-{n}", resident_id(8100 + n), name=[{"family": f"姓{n}", "given": [f"名{n}"],
                                                                                "text": f"姓名{n}号"}])  # fmt: skip
        values = ",".join(f"zz{n:03d}" for n in range(100))
        query = "&".join(f"name:contains={values}" for _ in range(40))
        with monkeypatch.context() as patched:
            patched.setattr(db_module, "time", _SteppingClock())
            _assert_timed_out(slow_api.get(f"/fhir/Patient?{query}"))
    # the registry goes on: the next requests are served within the timeout
    assert slow_api.get("/fhir/Organization/hosp-a").status_code == 200
    assert slow_api.get("/fhir/Patient?name=x").status_code == 200


def test_everyday_requests_are_served_under_the_timeout(slow_api: Api) -> None:
    for _ in range(5):
        assert slow_api.get("/fhir/Patient?name=测&_count=5").status_code == 200
        assert slow_api.get("/fhir/metadata").status_code == 200
