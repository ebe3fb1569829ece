"""A live registry (uvicorn, as the README runs it) on SQLite and PostgreSQL for the third-party FHIR clients, with
the small region of the integration tests and two backend clients of hospital B: one with a client secret, one with
a registered EC P-384 key (SMART Backend Services, ``private_key_jwt``).

The Node scripts in ``js/`` use fhir-kit-client, pinned in ``js/package-lock.json`` and installed by
``./scripts/test`` with ``npm ci`` (``scripts/lib/system-deps.sh``); without node or the package their tests are
skipped with the reason, and under ``CI=true`` they fail instead.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from registry.auth import PrincipalKind
from registry.context import AppContext
from tests.integration.conftest import (  # noqa: F401 - `database`: the backends, as for the integration tests
    NATIONAL,
    Database,
    database,
    resident_id,
    served_registry,
    unique,
)

JS = Path(__file__).parent / "js"
FHIR_KIT = JS / "node_modules" / "fhir-kit-client" / "package.json"
SECRET_CLIENT = "interop-secret"
KEY_CLIENT = "interop-key"
KID = "interop-ec-1"
ORG = "hosp-b"
MRN = "http://hosp-b.example/mrn"


class Live:
    """The running server and what the tests need to talk to it."""

    def __init__(self, base: str, ctx: AppContext, secret: str, key: ec.EllipticCurvePrivateKey) -> None:
        self.base = base
        self.fhir = f"{base}/fhir"
        self.token_url = f"{base}/auth/token"
        self.ctx = ctx
        self.secret = secret
        self.key = key
        self._seeds = itertools.count(1)

    def token(self, client_id: str = "hosp-b-system") -> str:
        principal = self.ctx.principals.get(client_id)
        assert principal is not None
        return self.ctx.principals.token(principal).access_token

    def headers(self, client_id: str = "hosp-b-system", **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(client_id)}", "Content-Type": "application/fhir+json", **extra}

    def assertion(self, client_id: str = KEY_CLIENT) -> str:
        """A fresh client assertion (RFC 7523) signed with the client's registered key."""
        claims = {"iss": client_id, "sub": client_id, "aud": self.token_url, "exp": int(time.time()) + 240,
                  "jti": uuid.uuid4().hex}  # fmt: skip
        return jwt.encode(claims, self.key, algorithm="ES384", headers={"kid": KID, "typ": "JWT"})

    def private_key_pem(self) -> str:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()

    def national_id(self) -> str:
        """A resident ID number no other test of the module uses (resident_id is unique below 1000 seeds)."""
        return resident_id(next(self._seeds))

    def patient_body(self, mrn: str | None = None) -> dict[str, Any]:
        return {
            "resourceType": "Patient",
            "identifier": [
                {"system": MRN, "value": mrn or unique("B")},
                {"system": NATIONAL, "value": self.national_id()},
            ],
            "name": [{"family": "互", "given": ["认"]}],
            "gender": "female",
            "birthDate": "1980-05-06",
            "managingOrganization": {"reference": f"Organization/{ORG}"},
        }

    def report_body(self, patient_id: str, number: str | None = None) -> dict[str, Any]:
        return {
            "resourceType": "DiagnosticReport",
            "identifier": [{"system": "http://hosp-b.example/report", "value": number or unique("R")}],
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]},
            "subject": {"reference": f"Patient/{patient_id}"},
            "effectiveDateTime": "2025-03-01T08:00:00+08:00",
            "performer": [{"reference": f"Organization/{ORG}"}],
        }

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        """Written with a plain HTTP call (set-up, not the client under test)."""
        r = httpx.post(f"{self.fhir}/{body['resourceType']}", content=orjson.dumps(body), headers=self.headers())
        assert r.status_code == 201, r.text
        return dict(r.json())

    def count(self, rtype: str, query: str) -> int:
        r = httpx.get(f"{self.fhir}/{rtype}?{query}&_summary=count", headers=self.headers("admin"))
        assert r.status_code == 200, r.text
        return int(r.json()["total"])


@pytest.fixture(scope="module")
def live(database: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:  # noqa: F811
    key = ec.generate_private_key(ec.SECP384R1())
    secrets: list[str] = []

    def clients(ctx: AppContext) -> None:
        made = ctx.principals.add(PrincipalKind.HOSPITAL, SECRET_CLIENT, "interop: client secret", org_id=ORG)
        secrets.append(made.secret)
        public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
        ctx.principals.add(PrincipalKind.HOSPITAL, KEY_CLIENT, "interop: private_key_jwt", org_id=ORG)
        ctx.principals.set_jwks(KEY_CLIENT, json.dumps({"keys": [{**public, "kid": KID}]}))

    with served_registry(database, tmp_path_factory.mktemp("interop-var"), clients) as (base, ctx):
        yield Live(base, ctx, secrets[0], key)


# ---------------------------------------------------------------------------------------------------- Node
def _node_missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed (CI has it); the fhir-kit-client scenarios need it"
    if not FHIR_KIT.exists():
        return f"fhir-kit-client is not installed at {FHIR_KIT.parent} (./scripts/test runs npm ci in tests/interop/js)"
    return None


@pytest.fixture(scope="session")
def node() -> None:
    missing = _node_missing()
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"{missing}: CI must have it")
        pytest.skip(missing)


def run_node(script: str, **payload: Any) -> dict[str, Any]:
    """Run ``js/<script>`` with the payload as its one argument (JSON); its stdout is one JSON value."""
    done = subprocess.run(  # noqa: S603 - fixed argv
        ["node", str(JS / script), json.dumps(payload)],  # noqa: S607 - node from PATH, like npm
        cwd=JS, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.stdout.strip(), f"{script} printed nothing (exit {done.returncode}): {done.stderr[-2000:]}"
    result: dict[str, Any] = json.loads(done.stdout)
    return result
