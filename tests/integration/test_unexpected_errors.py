"""An unexpected error (500) on a real server: the answer says ``Connection: close`` (RFC 9112 §9.6), the client's
next request on the same client succeeds, and the error is logged once — by the registry, masked, with its traceback;
uvicorn logs nothing of it. The server is uvicorn serving the app in this process, so a service can be made to fail."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from registry.app import create_app
from registry.context import AppContext
from tests.conftest import free_port
from tests.integration.conftest import Database, make_settings, setup_region


class Served:
    def __init__(self, app: FastAPI, base: str) -> None:
        self.app = app
        self.base = base
        self.ctx: AppContext = app.state.ctx

    def headers(self, client_id: str = "admin") -> dict[str, str]:
        principal = self.ctx.principals.get(client_id)
        assert principal is not None
        return {"Authorization": f"Bearer {self.ctx.principals.token(principal).access_token}"}


def serve_in_thread(app: FastAPI, port: int) -> tuple[uvicorn.Server, threading.Thread]:
    """uvicorn (httptools, as the README runs it) serving ``app`` on ``port`` from a thread of this process."""
    # log_config/log_level None: uvicorn leaves this process's logging alone (other tests capture its loggers)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, http="httptools", lifespan="off", log_config=None,
                            log_level=None, access_log=False)  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    return server, thread


@pytest.fixture(scope="module")
def served(database: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    app = create_app(make_settings(tmp_path_factory.mktemp("var"), database.url, public_base_url=base))
    setup_region(app.state.ctx)
    server, thread = serve_in_thread(app, port)
    try:
        yield Served(app, base)
    finally:
        server.should_exit = True
        thread.join(15)
        app.state.ctx.engine.dispose()


def _fail(*_args: Any, **_kwargs: Any) -> Any:
    raise RuntimeError("a bug the registry did not foresee")


@pytest.mark.parametrize("path", ["/fhir/Patient/some-id", "/fhir/Patient?name=x"])
def test_a_500_closes_the_connection_and_the_next_request_succeeds(
    served: Served, path: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(served.ctx.reads, "read", _fail)
    monkeypatch.setattr(served.ctx.reads, "search", _fail)
    headers = {**served.headers(), "X-Request-Id": "boom-1"}
    caplog.set_level(logging.INFO)
    with httpx.Client(base_url=served.base, timeout=10) as client:
        assert client.get("/healthz").status_code == 200  # the connection is open and kept alive
        r = client.get(path, headers=headers)
        assert r.status_code == 500
        assert r.headers["connection"] == "close"
        body = r.json()
        assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["code"] == "exception"
        assert "a bug" not in r.text  # nothing of the error reaches the client
        monkeypatch.undo()
        again = client.get(path, headers=served.headers())  # the same client, its next request
        assert again.status_code in (200, 404), again.text
        assert client.get("/healthz").status_code == 200
    errors = [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert len(errors) == 1, [rec.getMessage()[:200] for rec in errors]
    assert errors[0].name == "registry" and "boom-1" in errors[0].getMessage()
    assert "Traceback" in errors[0].getMessage() and "RuntimeError" in errors[0].getMessage()


def test_a_500_on_a_request_with_a_body_closes_the_connection(
    served: Served, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(served.ctx.ingest, "create", _fail)
    body = b'{"resourceType": "Organization", "name": "x"}'
    caplog.set_level(logging.INFO)
    with httpx.Client(base_url=served.base, timeout=10) as client:
        headers = {**served.headers(), "Content-Type": "application/fhir+json"}
        r = client.post("/fhir/Organization", content=body, headers=headers)
        assert r.status_code == 500 and r.headers["connection"] == "close"
        monkeypatch.undo()
        assert client.get("/fhir/metadata").status_code == 200
    assert len([rec for rec in caplog.records if rec.levelno >= logging.ERROR]) == 1
