"""Debian's Orthanc with its DICOMweb plugin, run on loopback: finding the binary and the plugin, the configuration
every use shares (this machine only, no authentication, DICOMweb at ``/dicom-web/`` writing loopback URLs), starting
it and waiting until its REST API answers, stopping it. The demo's local PACS (:mod:`.local_pacs`), the tests' PACS
and the imaging benchmark each start theirs through this.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

PLUGIN_DIRS = ("/usr/share/orthanc/plugins", "/usr/lib/orthanc")
BINARIES = ("Orthanc", "/usr/sbin/Orthanc")


def orthanc_binary() -> str | None:
    return next((found for b in BINARIES if (found := shutil.which(b))), None)


def dicomweb_plugin() -> Path | None:
    return next((p for d in PLUGIN_DIRS for p in sorted(Path(d).glob("libOrthancDicomWeb.so*"))), None)


def missing() -> str | None:
    """Why an Orthanc with DICOMweb cannot run here, or None."""
    if orthanc_binary() is None:
        return "Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)"
    if dicomweb_plugin() is None:
        return "Orthanc's DICOMweb plugin is not installed (apt-get install orthanc-dicomweb)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OrthancProcess:
    """One Orthanc, its configuration, storage and log in ``folder``, its REST API on ``port``."""

    def __init__(self, folder: Path, port: int, *, name: str, settings: Mapping[str, Any] | None = None) -> None:
        self.folder = folder
        self.port = port
        self.rest = f"http://127.0.0.1:{port}"
        self.dicom_web = f"{self.rest}/dicom-web"
        self.name = name
        self.settings = dict(settings or {})
        self.proc: subprocess.Popen[bytes] | None = None

    def configuration(self, plugin: Path) -> dict[str, Any]:
        """Orthanc's configuration: the shared part, then ``settings`` (``DicomWeb`` merged key by key)."""
        settings = dict(self.settings)
        dicomweb = {"Enable": True, "Root": "/dicom-web/", "EnableWado": False, "Host": f"127.0.0.1:{self.port}",
                    "Ssl": False, **settings.pop("DicomWeb", {})}  # fmt: skip
        return {
            "Name": self.name,
            "StorageDirectory": str(self.folder / "db"),
            "IndexDirectory": str(self.folder / "db"),
            "HttpPort": self.port,
            "DicomServerEnabled": False,
            "RemoteAccessAllowed": False,  # this machine only
            "AuthenticationEnabled": False,
            "Plugins": [str(plugin)],
            **settings,
            "DicomWeb": dicomweb,
        }

    def start(self, timeout: float = 30, preexec_fn: Callable[[], None] | None = None) -> None:
        """Start Orthanc; return once its REST API answers (else stop it and raise, with its log's end)."""
        binary, plugin = orthanc_binary(), dicomweb_plugin()
        if binary is None or plugin is None:
            raise RuntimeError(missing())
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        config = self.folder / "config.json"
        config.write_text(json.dumps(self.configuration(plugin), indent=2))
        with (self.folder / "orthanc.log").open("ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603 - a fixed argv
                [binary, str(config)], stdout=log, stderr=subprocess.STDOUT, preexec_fn=preexec_fn
            )
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.rest}/system", timeout=1).status_code == 200:
                    return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = (self.folder / "orthanc.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"Orthanc did not start on port {self.port}:\n{tail}")
            time.sleep(0.1)

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
