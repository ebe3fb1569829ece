"""A throw-away Orthanc of its own (Debian ``orthanc`` + ``orthanc-dicomweb``) on a free loopback port, its storage in
a temporary directory — for the benchmarks, like ``scripts/pg_cluster.py`` for PostgreSQL (the tests start theirs
through ``tests/e2e/orthanc.py``).

    with OrthancPacs.running() as pacs:   # pacs.rest, pacs.dicom_web, pacs.pid
        ...
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

PLUGIN_DIRS = ("/usr/share/orthanc/plugins", "/usr/lib/orthanc")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def available() -> str | None:
    """Why an Orthanc cannot be started here, or None."""
    if shutil.which("Orthanc") is None and not Path("/usr/sbin/Orthanc").exists():
        return "Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)"
    if not any(sorted(Path(d).glob("libOrthancDicomWeb.so*")) for d in PLUGIN_DIRS):
        return "the Orthanc DICOMweb plugin is not installed (apt-get install orthanc-dicomweb)"
    return None


class OrthancPacs:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = _free_port()
        self.rest = f"http://127.0.0.1:{self.port}"
        self.dicom_web = f"{self.rest}/dicom-web"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("Orthanc is not running")
        return self.proc.pid

    def start(self) -> None:
        binary = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
        plugin = next(p for d in PLUGIN_DIRS for p in sorted(Path(d).glob("libOrthancDicomWeb.so*")))
        config = {
            "Name": "BenchPACS", "StorageDirectory": str(self.folder / "db"), "IndexDirectory": str(self.folder / "db"),
            "HttpPort": self.port, "DicomServerEnabled": False, "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False, "Plugins": [str(plugin)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "Host": f"127.0.0.1:{self.port}", "Ssl": False},
        }  # fmt: skip
        (self.folder / "config.json").write_text(json.dumps(config))
        log = (self.folder / "orthanc.log").open("wb")
        self.proc = subprocess.Popen([binary, str(self.folder / "config.json")], stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.rest}/system", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.2)
            if self.proc.poll() is not None:
                break
        self.stop()
        raise RuntimeError(f"Orthanc did not start:\n{(self.folder / 'orthanc.log').read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def upload(self, client: httpx.Client, data: bytes) -> None:
        r = client.post(f"{self.rest}/instances", content=data, timeout=60)
        r.raise_for_status()

    @classmethod
    @contextmanager
    def running(cls) -> Iterator[OrthancPacs]:
        folder = Path(tempfile.mkdtemp(prefix="hr-orthanc-"))
        pacs = cls(folder)
        try:
            pacs.start()
            yield pacs
        finally:
            pacs.stop()
            shutil.rmtree(folder, ignore_errors=True)
