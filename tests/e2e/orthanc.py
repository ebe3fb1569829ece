"""A real PACS for the DICOMweb tests: Debian's Orthanc with its DICOMweb plugin, started on loopback with a
temporary configuration (the Orthanc Book). ``./scripts/test`` installs the packages; without them
the tests are skipped with the reason — except under CI, where a missing PACS is a failure."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from registry.services.demo.orthanc_process import OrthancProcess, free_port, missing


class Orthanc(OrthancProcess):
    """The tests' PACS: also a DICOM listener (C-STORE from the adapter) and the WADO-URI root."""

    def __init__(self, folder: Path) -> None:
        self.dicom_port = free_port()
        settings = {"DicomServerEnabled": True, "DicomPort": self.dicom_port, "DicomAet": "ORTHANC",
                    "DicomCheckModalityHost": True, "DicomWeb": {"EnableWado": True, "WadoRoot": "/wado"}}  # fmt: skip
        super().__init__(folder, free_port(), name="RegistryTestPACS", settings=settings)

    @property
    def base(self) -> str:  # the REST API
        return self.rest

    def upload(self, data: bytes) -> dict:
        r = httpx.post(f"{self.base}/instances", content=data, timeout=30)
        r.raise_for_status()
        return dict(r.json())


def orthanc_or_skip() -> None:
    message = missing()
    if message is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{message}: CI must have it (./scripts/test installs it)")
        pytest.skip(message)


def start_orthanc(folder: Path) -> Orthanc:
    """A fresh Orthanc on loopback with its storage in ``folder``; returns once its REST API answers."""
    orthanc_or_skip()
    pacs = Orthanc(folder)
    pacs.start()
    return pacs


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    pacs = start_orthanc(tmp_path_factory.mktemp("orthanc"))
    try:
        yield pacs
    finally:
        pacs.stop()
