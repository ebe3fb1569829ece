"""CORS for browser apps (Fetch standard, CORS protocol), on SQLite and PostgreSQL: with ``REGISTRY_CORS_ORIGINS``
an allowed origin's requests are answered with ``Access-Control-Allow-Origin`` and the FHIR response headers
exposed; a preflight is answered on every route without a token (the access policy never sees it, and it leaves no
audit row); a disallowed origin, method or header gets no CORS header at all. Without the setting there is no CORS,
and an ``OPTIONS`` request is a 405 like before."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from sqlalchemy import text

from registry.app import create_app
from registry.context import AppContext
from registry.route_table import served_routes
from registry.settings import Settings
from tests.integration.conftest import Api, Database, make_settings, setup_region

APP = "https://app.example.cn"
EVIL = "https://evil.example"
FHIR_HEADERS = "authorization, content-type, prefer, if-match, if-none-exist, if-none-match"


@pytest.fixture(scope="module")
def cors(database: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    settings = make_settings(tmp_path_factory.mktemp("var"), database.url, cors_origins=[APP, "http://localhost:3000"])
    app = create_app(settings)
    ctx: AppContext = app.state.ctx
    setup_region(ctx)
    with TestClient(app) as client:
        yield Api(client, ctx)
    ctx.engine.dispose()


@pytest.fixture(scope="module")
def plain(cors: Api, database: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The same database served without CORS (the default)."""
    app = create_app(make_settings(tmp_path_factory.mktemp("var"), database.url))
    with TestClient(app) as client:
        yield client
    app.state.ctx.engine.dispose()


def _preflight(
    client: TestClient, path: str, origin: str, method: str, headers: str | None = FHIR_HEADERS
) -> httpx.Response:
    sent = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        sent["Access-Control-Request-Headers"] = headers
    return client.options(path, headers=sent)


def _audit_rows(api: Api) -> int:
    with api.ctx.engine.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM audit_event")).scalar_one())


def test_an_allowed_origin_is_answered_with_the_fhir_headers_exposed(cors: Api) -> None:
    body = {"resourceType": "Organization", "name": "跨源"}
    created = cors.post("/fhir/Organization", body, headers={"Origin": APP})
    assert created.status_code == 201, created.text
    read = cors.get(created.headers["location"].removeprefix("http://testserver"), headers={"Origin": APP})
    assert read.status_code == 200
    for r in (created, read):
        assert r.headers["access-control-allow-origin"] == APP
        exposed = {h.strip().lower() for h in r.headers["access-control-expose-headers"].split(",")}
        assert {"location", "etag", "content-location", "last-modified"} <= exposed
        assert "origin" in r.headers["vary"].lower()
        assert "access-control-allow-credentials" not in r.headers  # tokens, never cookies
    refused = cors.get("/fhir/Patient", who=None, headers={"Origin": APP})  # the app can read the 401's challenge
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == APP
    assert "www-authenticate" in refused.headers["access-control-expose-headers"].lower()


def test_a_disallowed_origin_gets_no_cors_header(cors: Api) -> None:
    for origin in (EVIL, "https://app.example.cn.evil.example", "http://app.example.cn"):
        r = cors.get("/fhir/Organization/hosp-a", headers={"Origin": origin})
        assert r.status_code == 200  # the server answers; the browser keeps the answer from the page
        assert not [h for h in r.headers if h.startswith("access-control-")], (origin, r.headers)
        assert "origin" in r.headers["vary"].lower()


def test_a_preflight_is_answered_on_every_route_without_a_token(cors: Api) -> None:
    before = _audit_rows(cors)
    routes = [(m, p) for m, p in served_routes(cors.client.app) if m != "MOUNT"]
    assert len(routes) > 50
    for method, template in routes:
        path = re.sub(r"\{[^}]+\}", "x1", template)
        r = _preflight(cors.client, path, APP, method)
        assert r.status_code == 200, (method, template, r.status_code, r.text)
        headers = r.headers
        assert headers["access-control-allow-origin"] == APP
        assert method in [m.strip() for m in headers["access-control-allow-methods"].split(",")]
        allowed = {h.strip().lower() for h in headers["access-control-allow-headers"].split(",")}
        assert set(FHIR_HEADERS.split(", ")) <= allowed
        assert int(headers["access-control-max-age"]) > 0
    assert _audit_rows(cors) == before  # nothing reached a handler or the token check


def test_refused_preflights_carry_no_cors_header(cors: Api) -> None:
    cases = {
        "origin": _preflight(cors.client, "/fhir/Patient", EVIL, "GET"),
        "method": _preflight(cors.client, "/fhir/Patient", APP, "TRACE"),
        "headers": _preflight(cors.client, "/fhir/Patient", APP, "GET", "authorization, x-secret-sauce"),
    }
    for what, r in cases.items():
        assert r.status_code == 403, (what, r.text)
        assert not [h for h in r.headers if h.startswith("access-control-")], (what, r.headers)
        outcome = r.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert outcome["issue"][0]["diagnostics"] == f"CORS preflight refused: {what} not allowed"


def test_the_capability_statement_says_whether_cors_is_on(cors: Api, plain: TestClient) -> None:
    assert cors.get("/fhir/metadata", who=None).json()["rest"][0]["security"]["cors"] is True
    assert plain.get("/fhir/metadata").json()["rest"][0]["security"]["cors"] is False


def test_without_the_setting_there_is_no_cors(plain: TestClient) -> None:
    r = plain.get("/fhir/metadata", headers={"Origin": APP})
    assert r.status_code == 200
    assert not [h for h in r.headers if h.startswith("access-control-")]
    preflight = _preflight(plain, "/fhir/Patient", APP, "GET")
    assert preflight.status_code == 405
    assert preflight.json()["resourceType"] == "OperationOutcome"
    assert "GET" in preflight.headers["allow"]
    assert not [h for h in preflight.headers if h.startswith("access-control-")]


def test_origins_come_comma_separated_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGISTRY_CORS_ORIGINS", f" {APP}/ , http://localhost:3000")
    assert Settings.from_env().cors_origins == [APP, "http://localhost:3000"]
    monkeypatch.setenv("REGISTRY_CORS_ORIGINS", "")
    assert Settings.from_env().cors_origins == []
    monkeypatch.delenv("REGISTRY_CORS_ORIGINS")
    assert Settings.from_env().cors_origins == []
    for bad in ("app.example.cn", "ftp://app.example.cn", "https://app.example.cn/smart"):
        monkeypatch.setenv("REGISTRY_CORS_ORIGINS", bad)
        with pytest.raises(ValidationError):
            Settings.from_env()
