"""The demo's local PACS: Debian's Orthanc with its DICOMweb plugin on loopback, its storage under ``var/``, holding
the demo region's images (:mod:`.images`) — ``./scripts/serve`` runs it beside the registry (``hr-registry demo
pacs``) as it runs the local notification gateway, and points the demo hospitals' Endpoints at it through
``REGISTRY_DICOMWEB_ENDPOINTS`` (the gateway's PACS list).

Orthanc accepts connections from this machine only (``RemoteAccessAllowed`` false), has no DICOM listener, and is
stopped with the command. Uploading is idempotent: the studies already stored (listed in ``demo-images.json`` beside
the storage and present in Orthanc) are skipped, so only the first start uploads.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from registry.services.demo.images import DemoStudy, instances
from registry.services.demo.orthanc_process import OrthancProcess, free_port, missing

__all__ = ["LocalPacs", "Uploaded", "free_port", "missing", "port_free", "write_endpoints"]

IMAGES_VERSION = 1
"""Raised when the demo's images change, so a PACS stored by an older release is filled again."""


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: Orthanc gets SIGTERM when the command that started it dies, even by SIGKILL (prctl PR_SET_PDEATHSIG)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)


@dataclass
class Uploaded:
    studies: int  # sent now
    instances: int
    kept: int  # already there
    seconds: float


class LocalPacs(OrthancProcess):
    def __init__(self, folder: Path, port: int) -> None:
        # the demo's names are Chinese: UTF-8 (Orthanc's default is Latin-1)
        settings = {"OverwriteInstances": True, "SaveJobs": False, "DefaultEncoding": "Utf8"}
        super().__init__(folder, port, name="HR Registry demo PACS", settings=settings)

    def endpoints(self, hospitals: Iterable[str]) -> dict[str, dict[str, Any]]:
        """``REGISTRY_DICOMWEB_ENDPOINTS`` for the demo: each hospital's Endpoint (``{id}-wado``) → this PACS."""
        return {f"{h}-wado": {"organization": h, "base": self.dicom_web, "timeout": 15} for h in hospitals}

    def start(self, timeout: float = 30, preexec_fn: Callable[[], None] | None = None) -> None:
        super().start(timeout, preexec_fn or _die_with_parent)  # only prctl in the child: no lock is taken there

    # ------------------------------------------------------------------------------------------------ the images
    def _held(self, client: httpx.Client) -> set[str]:
        """The Study Instance UIDs Orthanc holds."""
        r = client.post(f"{self.rest}/tools/find", json={"Level": "Study", "Query": {}, "Expand": True})
        r.raise_for_status()
        return {str(s.get("MainDicomTags", {}).get("StudyInstanceUID")) for s in r.json()}

    def _marker(self) -> set[str]:
        path = self.folder / "demo-images.json"
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            return set()
        return set(doc.get("studies") or []) if doc.get("version") == IMAGES_VERSION else set()

    def _mark(self, done: set[str]) -> None:
        path = self.folder / "demo-images.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"version": IMAGES_VERSION, "studies": sorted(done)}))
        os.replace(tmp, path)

    def upload(self, studies: Iterable[DemoStudy], progress: Callable[[int, int], None] | None = None) -> Uploaded:
        """Store every study Orthanc does not hold yet (whole studies: one cut short is sent again)."""
        began = time.monotonic()
        wanted = list(studies)
        with httpx.Client(timeout=60) as client:
            done = self._marker() & self._held(client)
            todo = [s for s in wanted if s.uid not in done]
            sent = 0

            def send(item: tuple[str, bytes]) -> None:
                r = client.post(f"{self.rest}/instances", content=item[1])
                r.raise_for_status()

            with ThreadPoolExecutor(max_workers=4) as pool:  # Orthanc stores several at once
                for n, study in enumerate(todo, start=1):
                    for _ in pool.map(send, instances(study)):
                        sent += 1
                    done.add(study.uid)
                    if n % 10 == 0 or n == len(todo):
                        self._mark(done)
                        if progress is not None:
                            progress(n, len(todo))
        return Uploaded(len(todo), sent, len(wanted) - len(todo), time.monotonic() - began)


def write_endpoints(path: Path, endpoints: Mapping[str, Any]) -> None:
    """The gateway's PACS list as a file only this user reads (``REGISTRY_DICOMWEB_ENDPOINTS`` may name it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(endpoints, indent=2))
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
