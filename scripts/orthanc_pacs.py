"""A throw-away Orthanc of its own (Debian ``orthanc`` + ``orthanc-dicomweb``) on a free loopback port, its storage in
a temporary directory — for the benchmarks, like ``scripts/pg_cluster.py`` for PostgreSQL (the process itself:
``registry.services.demo.orthanc_process``, shared with the demo's local PACS and the tests').

    with OrthancPacs.running() as pacs:   # pacs.rest, pacs.dicom_web, pacs.pid
        ...
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from registry.services.demo.orthanc_process import OrthancProcess, free_port, missing


def available() -> str | None:
    """Why an Orthanc cannot be started here, or None."""
    return missing()


class OrthancPacs(OrthancProcess):
    def __init__(self, folder: Path) -> None:
        super().__init__(folder, free_port(), name="BenchPACS")

    @property
    def pid(self) -> int:
        if self.proc is None:
            raise RuntimeError("Orthanc is not running")
        return self.proc.pid

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
