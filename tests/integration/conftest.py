"""The registry under test, on SQLite always and on PostgreSQL when reachable (CI has it: there a missing PostgreSQL
fails the run instead of skipping).

``REGISTRY_TEST_POSTGRES_URL`` points at a server where the tests may create databases (default: the local
PostgreSQL with trust auth). Each test module gets a fresh database per backend, created by the migrations.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from registry.app import create_app
from registry.auth import PrincipalKind
from registry.context import AppContext
from registry.settings import Settings

PG_ADMIN_URL = os.environ.get("REGISTRY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
NATIONAL = "https://hr-registry.org.cn/fhir/sid/cn-resident-id"
FHIR_JSON = "application/fhir+json"


def postgres_available() -> str | None:
    """None when usable, else why not."""
    try:
        engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("select 1"))
        engine.dispose()
    except Exception as exc:
        return f"PostgreSQL not reachable at {PG_ADMIN_URL}: {type(exc).__name__}"
    return None


def _backends() -> list[Any]:
    reason = postgres_available()
    if reason and os.environ.get("CI") == "true":
        raise RuntimeError(f"CI must run the PostgreSQL tests: {reason}")
    pg = pytest.param("postgresql", marks=pytest.mark.skipif(reason is not None, reason=reason or ""))
    return ["sqlite", pg]


BACKENDS = _backends()


@dataclass
class Database:
    backend: str
    url: str
    drop: Any


@pytest.fixture(scope="module", params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    backend = request.param
    if backend == "sqlite":
        path = tmp_path_factory.mktemp("db") / "registry.sqlite3"
        yield Database(backend, f"sqlite:///{path}", None)
        return
    name = f"hr_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    yield Database(backend, f"{base}/{name}", None)
    with admin.connect() as conn:
        conn.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


def make_settings(var: Path, url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "var_dir": var,
        "database_url": url,
        "public_base_url": "http://testserver",
        "rate_limit_per_second": 0,
        "identity_secret": "test-identity-secret",
    }
    values.update(overrides)
    return Settings(**values)


def resident_id(seed: int) -> str:
    """A synthetic resident ID number with a valid GB 11643 check digit."""
    from registry.services.identity import resident_id_check_char

    body = f"110101{1950 + seed % 50:04d}{(seed % 12) + 1:02d}{(seed % 28) + 1:02d}{seed % 1000:03d}"
    return body + resident_id_check_char(body)


_DISTRICTS = ("110101", "110102", "110105", "110106", "110107", "110108", "110109", "110111", "110112", "110113",
              "110114", "110115", "110116", "110117", "110118", "110119")  # fmt: skip


def new_resident_id() -> str:
    """A synthetic resident ID no other patient of the run is likely to have: district, birth date and sequence drawn
    apart from a random number (2.7 × 10^8 numbers; ``resident_id`` of a random seed gives 21,000, so patients of
    tests sharing one database met now and then, and a test found another's results)."""
    from registry.services.identity import resident_id_check_char

    r = uuid.uuid4().int
    district, r = _DISTRICTS[r % len(_DISTRICTS)], r // len(_DISTRICTS)
    year, r = 1950 + r % 50, r // 50
    month, r = r % 12 + 1, r // 12
    day, r = r % 28 + 1, r // 28
    body = f"{district}{year:04d}{month:02d}{day:02d}{r % 1000:03d}"
    return body + resident_id_check_char(body)


class Api:
    """A test client with a token per principal of a small region: admin, hospitals A and B, a clinician at B."""

    def __init__(self, client: TestClient, ctx: AppContext) -> None:
        self.client = client
        self.ctx = ctx
        self.tokens: dict[str, str] = {}

    def token_for(self, client_id: str) -> str:
        principal = self.ctx.principals.get(client_id)
        assert principal is not None, client_id
        return self.ctx.principals.token(principal, ttl_seconds=90 * 86_400).access_token  # survives moved clocks

    def headers(self, who: str | None, **extra: str) -> dict[str, str]:
        h = {"Content-Type": FHIR_JSON, **extra}
        if who is not None:
            if who not in self.tokens:
                self.tokens[who] = self.token_for(who)
            h["Authorization"] = f"Bearer {self.tokens[who]}"
        return h

    def get(self, path: str, who: str | None = "admin", **kw: Any) -> httpx.Response:
        headers = self.headers(who, **kw.pop("headers", {}))
        return self.client.get(path, headers=headers, **kw)

    def post(self, path: str, body: Any, who: str | None = "admin", **kw: Any) -> httpx.Response:
        content = body if isinstance(body, (bytes, str)) else orjson.dumps(body)
        headers = self.headers(who, **kw.pop("headers", {}))
        return self.client.post(path, content=content, headers=headers, **kw)

    def put(self, path: str, body: Any, who: str | None = "admin", **kw: Any) -> httpx.Response:
        content = body if isinstance(body, (bytes, str)) else orjson.dumps(body)
        headers = self.headers(who, **kw.pop("headers", {}))
        return self.client.put(path, content=content, headers=headers, **kw)

    def delete(self, path: str, who: str | None = "admin", **kw: Any) -> httpx.Response:
        return self.client.delete(path, headers=self.headers(who, **kw.pop("headers", {})), **kw)

    # ------------------------------------------------------------------ fixtures of the region
    def patient(self, org: str, mrn: str, national_id: str | None, **extra: Any) -> dict[str, Any]:
        identifiers = [{"system": f"http://{org}.example/mrn", "value": mrn}]
        if national_id:
            identifiers.append({"system": NATIONAL, "value": national_id})
        resource = {
            "resourceType": "Patient",
            "identifier": identifiers,
            "name": [{"family": "测", "given": ["试"], "text": "测试"}],
            "gender": "female",
            "birthDate": "1980-05-06",
            "managingOrganization": {"reference": f"Organization/{org}"},
            **extra,
        }
        r = self.post("/fhir/Patient", resource, who=f"{org}-system")
        assert r.status_code == 201, r.text
        return dict(r.json())

    def report(self, org: str, patient_id: str, number: str, **extra: Any) -> dict[str, Any]:
        resource = {
            "resourceType": "DiagnosticReport",
            "identifier": [{"system": f"http://{org}.example/report", "value": number}],
            "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]},
            "subject": {"reference": f"Patient/{patient_id}"},
            "effectiveDateTime": "2025-03-01T08:00:00+08:00",
            "issued": "2025-03-01T10:00:00+08:00",
            "performer": [{"reference": f"Organization/{org}"}],
            **extra,
        }
        r = self.post("/fhir/DiagnosticReport", resource, who=f"{org}-system")
        assert r.status_code == 201, r.text
        return dict(r.json())


def namespaces_of(org: str) -> list[str]:
    """The identifier systems a test hospital owns: everything under its example base URLs."""
    return [f"http://{org}.example/*", f"http://{org}.example.cn/*", f"https://{org}.example.cn/*"]


def setup_region(ctx: AppContext) -> None:
    admin = ctx.principals.add(PrincipalKind.ADMIN, "admin", "Admin").principal
    from registry.services.audit import AuditContext

    audit = AuditContext("setup", admin, "update")
    for org, name in (("hosp-a", "A 医院"), ("hosp-b", "B 医院"), ("hosp-c", "C 医院")):
        body = orjson.dumps({"resourceType": "Organization", "id": org, "name": name}).decode()
        ctx.ingest.update(admin, audit, "Organization", org, body, None)
        ctx.namespaces.declare(admin, org, namespaces_of(org))
        ctx.principals.add(PrincipalKind.HOSPITAL, f"{org}-system", f"{name} system", org_id=org)
    ctx.principals.add(PrincipalKind.CLINICIAN, "dr-b", "医生 B", org_id="hosp-b")
    ctx.principals.add(PrincipalKind.CLINICIAN, "dr-c", "医生 C", org_id="hosp-c")


@pytest.fixture(scope="module")
def api(database: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    settings = make_settings(tmp_path_factory.mktemp("var"), database.url)
    app = create_app(settings)
    ctx: AppContext = app.state.ctx
    setup_region(ctx)
    with TestClient(app) as client:
        yield Api(client, ctx)
    ctx.engine.dispose()


def unique(prefix: str = "x") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@contextmanager
def served_registry(
    database: Database, var: Path, prepare: Callable[[AppContext], None] | None = None
) -> Iterator[tuple[str, AppContext]]:
    """A real uvicorn serving the registry on ``database``, with the test region (and what ``prepare`` adds) set up
    through a context of its own first; yields the base URL and that context. The server's log must hold no
    traceback when it stops."""
    from registry.app import build_context
    from tests.conftest import free_port, start_uvicorn, stop_process

    base = f"http://127.0.0.1:{free_port()}"
    settings = make_settings(var, database.url, public_base_url=base)
    ctx = build_context(settings)  # migrates, creates the keys the server will read
    setup_region(ctx)
    if prepare is not None:
        prepare(ctx)
    env = {
        **os.environ,
        "REGISTRY_VAR_DIR": str(var),
        "REGISTRY_DATABASE_URL": database.url,
        "REGISTRY_PUBLIC_BASE_URL": base,
        "REGISTRY_IDENTITY_SECRET": settings.identity_secret or "",
        "REGISTRY_RATE_LIMIT_PER_SECOND": "0",
    }
    log_path = var / "server.log"
    proc = start_uvicorn(int(base.rsplit(":", 1)[1]), env, log_path, timeout=30)
    try:
        yield base, ctx
    finally:
        stop_process(proc, 10)
        ctx.engine.dispose()
    assert "Traceback" not in log_path.read_text(), log_path.read_text()
