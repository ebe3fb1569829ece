"""A real registry process for the end-to-end tests: started with uvicorn as the README does, stoppable and
restartable on the same database, with a region set up for recognition (hospitals, regions, qualifications)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta, timezone
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
from tests.conftest import ROOT, free_port, start_uvicorn, stop_process

CST = timezone(timedelta(hours=8))


def study_dated(moment: datetime) -> dict[str, str]:
    """StudyDate, StudyTime and TimezoneOffsetFromUTC (DICOM PS3.3 C.12.1) naming exactly ``moment`` in +08:00, so a
    sample file's own time and offset (``MR_small.dcm`` says 18:50:59 -04:00) never move the study into the future
    at some hour of the day."""
    local = moment.astimezone(CST)
    return {
        "StudyDate": local.strftime("%Y%m%d"),
        "StudyTime": local.strftime("%H%M%S"),
        "TimezoneOffsetFromUTC": "+0800",
    }


STUDY_AT = (datetime.now(UTC) - timedelta(days=1)).replace(microsecond=0)
"""When the end-to-end tests' studies were taken: a day before the run, so they are within every validity window
and never after the check, whatever the hour (the registry process runs on the wall clock)."""
STUDY_DATE = study_dated(STUDY_AT)["StudyDate"]


def client_token(base: str, client_id: str, secret: str) -> str:
    """A bearer token from the registry's token endpoint (OAuth 2.0 client credentials, HTTP Basic)."""
    r = httpx.post(
        f"{base}/auth/token", data={"grant_type": "client_credentials"}, auth=(client_id, secret), timeout=10
    )
    r.raise_for_status()
    return str(r.json()["access_token"])


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
            body = {
                "resourceType": "Organization",
                "id": org,
                "name": name,
                "extension": [{"url": REGION_EXT, "valueCode": "beijing"}],
            }
            ctx.ingest.update(admin, audit, "Organization", org, orjson.dumps(body).decode(), None)
            ctx.namespaces.declare(admin, org, [f"https://{org}.example.cn/*", f"http://{org}.example.cn/*"])
            for group in ctx.catalog.groups:
                ctx.administration.add(
                    admin, {"org": org, "group": group, "scope": "beijing", "valid_from": "2020-01-01"}
                )
            client = ctx.principals.add(PrincipalKind.HOSPITAL, f"{org}-adapter", f"{name} adapter", org_id=org)
            self.secrets[f"{org}-adapter"] = client.secret

    def token(self, client_id: str) -> str:
        return client_token(self.base, client_id, self.secrets[client_id])

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
        self.proc = start_uvicorn(self.port, env, self.var / "server.log")

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def close(self) -> None:
        self.stop()
        self.ctx.engine.dispose()


B_MRN = "https://hosp-b.example.cn/fhir/sid/mrn"


def recognition_check(registry: RegistryProcess, national_id: str, codes: list[tuple[str, str]]) -> list[dict]:
    """$recognition-check as hospital B for these (system, code) orders; each order's parts by name."""
    params = {
        "resourceType": "Parameters",
        "parameter": [
            {
                "name": "patientIdentifier",
                "valueIdentifier": {
                    "system": "https://hr-registry.org.cn/fhir/sid/cn-resident-id",
                    "value": national_id,
                },
            },
            # hospital B's own MRN with the ID card read at its desk: the check registers the patient there
            {"name": "patientIdentifier", "valueIdentifier": {"system": B_MRN, "value": "B-9"}},
        ]
        + [
            {
                "name": "order",
                "resource": {
                    "resourceType": "ServiceRequest",
                    "status": "draft",
                    "intent": "order",
                    "subject": {"reference": "Patient/x"},
                    "code": {"coding": [{"system": s, "code": c}]},
                },
            }
            for s, c in codes
        ],
    }
    r = registry.post("/fhir/ServiceRequest/$recognition-check", params)
    assert r.status_code == 200, r.text
    return [{p["name"]: p for p in order["part"]} for order in r.json()["parameter"]]


# ---------------------------------------------------------------------------------------------------- the adapter
NATIONAL_ID = "110105198503120020"  # synthetic (valid check character), the patient of the sample messages


def adapter_config(
    folder: Path,
    registry: RegistryProcess,
    *,
    mllp_port: int | None = None,
    cstore_port: int | None = None,
    qido_rs: str | None = None,
    stable_seconds: float = 1,
) -> Path:
    """Hospital A's adapter configuration, written as a user would write it (YAML, secret from the environment)."""
    data = Path(__file__).resolve().parents[1] / "data" / "adapters"
    lines = [
        "registry:",
        f"  url: {registry.base}",
        "  client_id: hosp-a-adapter",
        "  client_secret: ${HR_E2E_SECRET}",
        "  timeout_seconds: 10",
        "hospital:",
        "  organization: hosp-a",
        "identifiers:",
        "  base: https://hosp-a.example.cn/fhir/sid",
        "codes:",
        f"  map_file: {data / 'hosp-a-codes.csv'}",
        "hl7:",
        "  policy: strict",
    ]
    if mllp_port is not None:
        lines += ["  listen:", "    host: 127.0.0.1", f"    port: {mllp_port}"]
    lines += [
        "dicom:",
        "  ae_title: HR-ADAPTER",
        f"  stable_seconds: {stable_seconds}",
        "  wado_rs: https://pacs.hosp-a.example.cn/dicom-web",
    ]
    if cstore_port is not None:
        lines += ["  listen:", "    host: 127.0.0.1", f"    port: {cstore_port}"]
    if qido_rs is not None:
        lines += ["  pull:", f"    qido_rs: {qido_rs}"]
    lines += ["outbox:", f"  path: {folder / 'outbox.sqlite'}", "  max_backoff_seconds: 2"]
    path = folder / "hosp-a.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def adapter_env(registry: RegistryProcess) -> dict[str, str]:
    return {**os.environ, "HR_E2E_SECRET": registry.secrets["hosp-a-adapter"]}


def hr_adapter(registry: RegistryProcess, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``hr-adapter …`` to completion."""
    return subprocess.run(  # noqa: S603 - fixed argv
        [sys.executable, "-m", "adapters", *args],
        cwd=ROOT,
        env=adapter_env(registry),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class AdapterProcess:
    """``hr-adapter run`` as a separate process (so it can be killed outright)."""

    def __init__(self, registry: RegistryProcess, config: Path, log: Path) -> None:
        self.registry, self.config, self.log = registry, config, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait_for_port: int | None = None) -> None:
        out = self.log.open("ab")
        self.proc = subprocess.Popen(  # noqa: S603 - fixed argv
            [sys.executable, "-m", "adapters", "run", "-c", str(self.config)],
            cwd=ROOT,
            env=adapter_env(self.registry),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        if wait_for_port is not None:
            deadline = time.monotonic() + 30
            import socket

            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"hr-adapter exited:\n{self.log.read_text()[-3000:]}")
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", wait_for_port)) == 0:
                        return
                time.sleep(0.1)
            raise RuntimeError(f"hr-adapter did not listen on {wait_for_port}:\n{self.log.read_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs (the worst case for losing messages)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


def mllp_send(port: int, message: bytes, timeout: float = 30) -> bytes:
    """Send one framed message and return the ACK's content (the LIS side of MLLP)."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"\x0b" + message + b"\x1c\r")
        data = b""
        while not data.endswith(b"\x1c\r"):
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed before the ACK")
            data += chunk
    return data.strip(b"\x0b").removesuffix(b"\x1c\r")


def ack_code(ack: bytes) -> str:
    for segment in ack.decode("utf-8", "replace").split("\r"):
        if segment.startswith("MSA"):
            return segment.split("|")[1]
    raise AssertionError(f"no MSA segment in {ack!r}")


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
