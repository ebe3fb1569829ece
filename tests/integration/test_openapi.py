"""``/openapi.json`` and ``/docs`` as a client sees them, on SQLite and PostgreSQL: Swagger UI from the package (no
CDN), the 405's ``Allow``, and a bounded schemathesis run over the whole schema with an admin token — no server
error, no status the document does not list, no response that breaks its schema. Generic over the schema: a route
added on another branch is exercised without a change here."""

from __future__ import annotations

import hashlib
import re

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from tests.integration.conftest import Api

SWAGGER_UI_BUNDLE_SHA256 = "93b7b0862a80e2786f85b560be7693c2344354ffa7e7e224f850a54349724c31"
"""swagger-ui-dist 5.31.0's swagger-ui-bundle.js as SmartBear publishes it."""


def test_docs_load_swagger_ui_from_the_package(api: Api) -> None:
    page = api.client.get("/docs")
    assert page.status_code == 200
    sources = re.findall(r"""(?:src|href)=["']([^"']+)""", page.text) + re.findall(r"url: '([^']+)'", page.text)
    assert sources and all(s.startswith("/") for s in sources), sources  # nothing from a CDN
    js = api.client.get("/docs/assets/swagger-ui-bundle.js")
    assert js.status_code == 200
    assert hashlib.sha256(js.content).hexdigest() == SWAGGER_UI_BUNDLE_SHA256
    assert api.client.get("/docs/assets/swagger-ui.css").status_code == 200


def test_the_document_has_security_bodies_and_statuses(api: Api) -> None:
    doc = api.client.get("/openapi.json").json()
    assert {"bearer", "oauth2"} <= set(doc["components"]["securitySchemes"])
    create = doc["paths"]["/fhir/{rtype}"]["post"]
    assert "requestBody" in create and {"201", "400", "401", "403", "413", "422"} <= set(create["responses"])
    assert create["security"]
    assert doc["paths"]["/healthz"]["get"]["security"] == []
    csv = doc["paths"]["/stats/api/export.csv"]["get"]["responses"]["200"]["content"]
    assert list(csv) == ["text/csv"]
    assert "requestBody" in doc["paths"]["/auth/token"]["post"]


def test_a_405_names_every_method_of_the_path(api: Api) -> None:
    r = api.client.post("/fhir/Patient/x")
    assert r.status_code == 405
    assert set(r.headers["allow"].split(", ")) == {"GET", "HEAD", "PUT", "PATCH", "DELETE"}
    assert api.client.post("/fhir/metadata").headers["allow"] == "GET, HEAD"


EXAMPLES = 20
"""Examples per operation: with some forty operations a run takes a few seconds per backend."""


def test_the_api_keeps_its_document(api: Api) -> None:
    loaded = schemathesis.openapi.from_asgi("/openapi.json", api.client.app)
    headers = {"Authorization": f"Bearer {api.token_for('admin')}"}
    checks = [not_a_server_error, status_code_conformance, response_schema_conformance]
    failures: list[str] = []
    calls: list[int] = []
    operations = 0
    for found in loaded.get_all_operations():
        operation = found.ok()
        operations += 1

        @given(operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                  database=None)  # fmt: skip
        def run(case: schemathesis.Case) -> None:
            try:
                calls.append(case.call_and_validate(headers=headers, checks=checks).status_code)
            except Exception as exc:  # every failure is collected, the run goes on
                failures.append(f"{case.method.upper()} {case.path}: {str(exc)[:600]}")

        run()
    assert operations >= 30
    assert len(calls) + len(failures) >= operations * 2, (len(calls), len(failures))  # it did call the server
    assert not failures, "\n\n".join(sorted(set(failures))[:20])
