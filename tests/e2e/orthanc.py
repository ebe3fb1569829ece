"""A real PACS for the DICOMweb tests: Debian's Orthanc with its DICOMweb plugin, started on loopback with a
temporary configuration (the Orthanc Book). ``./scripts/test`` installs the packages; without them
the tests are skipped with the reason — except under CI, where a missing PACS is a failure."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import free_port

PLUGIN_DIRS = ("/usr/share/orthanc/plugins", "/usr/lib/orthanc")


def find_orthanc() -> tuple[str, Path] | None:
    binary = shutil.which("Orthanc") or ("/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").exists() else None)
    plugin = next((p for d in PLUGIN_DIRS for p in sorted(Path(d).glob("libOrthancDicomWeb.so*"))), None)
    if binary is None or plugin is None:
        return None
    return binary, plugin


@dataclass
class Orthanc:
    base: str  # REST API
    dicom_web: str  # DICOMweb root (QIDO-RS / WADO-RS)
    dicom_port: int
    proc: subprocess.Popen[bytes] | None = None

    def upload(self, data: bytes) -> dict:
        r = httpx.post(f"{self.base}/instances", content=data, timeout=30)
        r.raise_for_status()
        return dict(r.json())

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGCONT)  # a paused Orthanc must run to stop
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def orthanc_or_skip() -> tuple[str, Path]:
    found = find_orthanc()
    if found is None:
        message = "Orthanc with the DICOMweb plugin is not installed (apt-get install orthanc orthanc-dicomweb)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}: CI must have it (./scripts/test installs it)")
        pytest.skip(message)
    return found


def start_orthanc(folder: Path) -> Orthanc:
    """A fresh Orthanc on loopback with its storage in ``folder``; returns once its REST API answers."""
    binary, plugin = orthanc_or_skip()
    http_port, dicom_port = free_port(), free_port()
    config = {
        "Name": "RegistryTestPACS",
        "StorageDirectory": str(folder / "db"),
        "IndexDirectory": str(folder / "db"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": "ORTHANC",
        "DicomCheckModalityHost": True,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [str(plugin)],
        "DicomWeb": {
            "Enable": True,
            "Root": "/dicom-web/",
            "EnableWado": True,
            "WadoRoot": "/wado",
            "Host": f"127.0.0.1:{http_port}",
            "Ssl": False,
        },
    }
    (folder / "config.json").write_bytes(orjson.dumps(config))
    log = (folder / "orthanc.log").open("wb")
    proc = subprocess.Popen([binary, str(folder / "config.json")], stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
    base = f"http://127.0.0.1:{http_port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{base}/system", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"Orthanc did not start:\n{(folder / 'orthanc.log').read_text()[-3000:]}")
        time.sleep(0.2)
    return Orthanc(base, f"{base}/dicom-web", dicom_port, proc)


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    pacs = start_orthanc(tmp_path_factory.mktemp("orthanc"))
    try:
        yield pacs
    finally:
        pacs.stop()
