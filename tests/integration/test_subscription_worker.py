"""The Subscription delivery worker run by hand on a stepped clock (the app's own worker off), on SQLite and
PostgreSQL, against a real HTTP receiver: exponential backoff, then a dead letter and the Subscription ``error``."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi.testclient import TestClient

from registry.app import create_app
from registry.context import AppContext
from registry.services.subscriptions import DeliveryWorker
from tests.integration.conftest import Api, Database, make_settings, resident_id, setup_region
from tests.integration.test_subscriptions import Receiver


def test_the_worker_backs_off_exponentially_on_the_clock_it_is_given(
    database: Database, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The worker run by hand on a stepped clock (the app's own worker off): a failed notification is due again after
    2 s, then 4 s; the row becomes a dead letter at the third failure and the Subscription ``error``."""
    now = [datetime(2026, 3, 1, 8, 0, tzinfo=UTC)]
    settings = make_settings(tmp_path_factory.mktemp("var"), database.url, subscription_allow_http_loopback=True,
                             subscription_delivery=False, subscription_max_attempts=3)  # fmt: skip
    app = create_app(settings, clock=lambda: now[0])
    ctx: AppContext = app.state.ctx
    receiver = Receiver(fail=1000).start()
    try:
        with TestClient(app) as client, httpx.Client() as http:
            setup_region(ctx)
            api = Api(client, ctx)
            patient = api.patient("hosp-a", f"W-{time.time_ns()}", resident_id(311))
            body = {"resourceType": "Subscription", "status": "requested", "reason": "x",
                    "criteria": f"DiagnosticReport?patient=Patient/{patient['id']}",
                    "channel": {"type": "rest-hook", "endpoint": receiver.url}}  # fmt: skip
            r = api.post("/fhir/Subscription", body, who="hosp-a-system")
            assert r.status_code == 201, r.text
            sid = r.json()["id"]
            api.report("hosp-a", patient["id"], f"W-{time.time_ns()}")
            worker = DeliveryWorker(ctx.uow, http, lambda: now[0], ctx.delivery, local_tz=ctx.local_tz,
                                    base_url=settings.fhir_base_url)  # fmt: skip
            for wait, expected in ((0.0, 1), (1.9, 0), (0.1, 1), (3.9, 0), (0.1, 1), (60.0, 0)):
                now[0] += timedelta(seconds=wait)
                assert worker.run_once() == expected, (wait, expected)
            assert [x.answered for x in receiver.requests] == [503, 503, 503]
            got = api.get(f"/fhir/Subscription/{sid}", who="hosp-a-system").json()
            assert got["status"] == "error" and "failed 3 times" in got["error"]
            assert got["meta"]["versionId"] == "2"  # the server's status change is a version of its own
    finally:
        receiver.stop()
        ctx.engine.dispose()
