"""A real registry process for the end-to-end tests: started with uvicorn as the README does, stoppable and
restartable on the same database, with a region set up for recognition (hospitals, regions, qualifications)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson

from registry.app import build_context
from registry.auth import PrincipalKind
from registry.context import AppContext
from registry.services.audit import AuditContext
from registry.services.demo import REGION_EXT
from registry.settings import Settings
from tests.conftest import ROOT, free_port


class RegistryProcess:
    def __init__(self, var: Path, database_url: str | None = None) -> None:
        self.var = var
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.database_url = database_url or f"sqlite:///{var / 'registry.sqlite'}"
        self.settings = Settings(
            var_dir=var,
            database_url=self.database_url,
            public_base_url=self.base,
            identity_secret="e2e-identity-secret",
            rate_limit_per_second=0,
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.ctx: AppContext = build_context(self.settings)  # migrates; creates the keys the server reads
        self.secrets: dict[str, str] = {}

    # ------------------------------------------------------------------------------------------------ region
    def setup_region(self) -> None:
        ctx = self.ctx
        admin = ctx.principals.add(PrincipalKind.ADMIN, "e2e-admin", "Admin").principal
        audit = AuditContext("setup", admin, "update")
        for org, name in (("hosp-a", "A 医院"), ("hosp-b", "B 医院")):
            body = {"resourceType": "Organization", "id": org, "name": name,
                    "extension": [{"url": REGION_EXT, "valueCode": "beijing"}]}
            ctx.ingest.update(admin, audit, "Organization", org, orjson.dumps(body).decode(), None)
            for group in ctx.catalog.groups:
                ctx.administration.add(admin, {"org": org, "group": group, "scope": "beijing",
                                               "valid_from": "2020-01-01"})
            client = ctx.principals.add(PrincipalKind.HOSPITAL, f"{org}-adapter", f"{name} adapter", org_id=org)
            self.secrets[f"{org}-adapter"] = client.secret

    def token(self, client_id: str) -> str:
        r = httpx.post(f"{self.base}/auth/token", data={"grant_type": "client_credentials"},
                       auth=(client_id, self.secrets[client_id]), timeout=10)
        r.raise_for_status()
        return str(r.json()["access_token"])

    def get(self, path: str, client_id: str = "hosp-b-adapter", **params: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token(client_id)}"}
        return httpx.get(f"{self.base}{path}", params=params, headers=headers, timeout=30)

    def post(self, path: str, body: Any, client_id: str = "hosp-b-adapter") -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token(client_id)}", "Content-Type": "application/fhir+json"}
        return httpx.post(f"{self.base}{path}", content=orjson.dumps(body), headers=headers, timeout=30)

    # ------------------------------------------------------------------------------------------------ process
    def start(self) -> None:
        env = {
            **os.environ,
            "REGISTRY_VAR_DIR": str(self.var),
            "REGISTRY_DATABASE_URL": self.database_url,
            "REGISTRY_PUBLIC_BASE_URL": self.base,
            "REGISTRY_IDENTITY_SECRET": "e2e-identity-secret",
            "REGISTRY_RATE_LIMIT_PER_SECOND": "0",
        }
        log = (self.var / "server.log").open("ab")
        self.proc = subprocess.Popen(  # noqa: S603 - fixed argv
            [sys.executable, "-m", "uvicorn", "registry.app:create_app", "--factory", "--host", "127.0.0.1",
             "--port", str(self.port), "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"registry did not start:\n{(self.var / 'server.log').read_text()[-3000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def close(self) -> None:
        self.stop()
        self.ctx.engine.dispose()


def recognition_check(registry: RegistryProcess, national_id: str, codes: list[tuple[str, str]]) -> list[dict]:
    """$recognition-check as hospital B for these (system, code) orders; each order's parts by name."""
    params = {
        "resourceType": "Parameters",
        "parameter": [{"name": "patientIdentifier", "valueIdentifier": {
            "system": "https://hr-registry.org.cn/fhir/sid/cn-resident-id", "value": national_id}}]
        + [{"name": "order", "resource": {"resourceType": "ServiceRequest", "status": "draft", "intent": "order",
                                          "subject": {"reference": "Patient/x"},
                                          "code": {"coding": [{"system": s, "code": c}]}}} for s, c in codes],
    }
    r = registry.post("/fhir/ServiceRequest/$recognition-check", params)
    assert r.status_code == 200, r.text
    return [{p["name"]: p for p in order["part"]} for order in r.json()["parameter"]]
