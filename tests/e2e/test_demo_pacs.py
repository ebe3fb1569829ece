"""The demo's local PACS (registry.services.demo.local_pacs) with a real Orthanc: it stores the demo studies under
their own UIDs (Chinese names kept), renders every modality's sample, fills only what it lacks on a second start,
and stops with its owner."""

from __future__ import annotations

from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path

import httpx
from PIL import Image

from registry.catalog_file import load_catalog
from registry.services.demo import demo_studies
from registry.services.demo.local_pacs import LocalPacs, free_port
from registry.settings import Settings
from tests.e2e.orthanc import orthanc_or_skip

NOW = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)


def test_the_local_pacs_holds_the_demo_studies_under_their_own_uids(tmp_path: Path) -> None:
    orthanc_or_skip()
    studies = demo_studies(load_catalog(Settings().catalog_path), NOW, patients=12)
    picked = [next(s for s in studies if s.series[0].modality == m) for m in ("CT", "MR", "US", "DX")]
    pacs = LocalPacs(tmp_path / "orthanc", free_port())
    pacs.start()
    try:
        done = pacs.upload(picked)
        assert (done.studies, done.kept, done.instances) == (4, 0, sum(s.instances for s in picked))
        for study in picked:
            series = httpx.get(f"{pacs.dicom_web}/studies/{study.uid}/series", timeout=10).json()
            held = {s["0020000E"]["Value"][0]: s["00201209"]["Value"][0] for s in series}
            assert held == {x.uid: x.instances for x in study.series}
            assert series[0]["00100010"]["Value"][0]["Alphabetic"] == study.patient_name  # UTF-8 kept
            first = study.series[0]
            frames = 30 if first.modality == "US" else 1
            r = httpx.get(
                f"{pacs.dicom_web}/studies/{study.uid}/series/{first.uid}/instances/{first.uid}.1/frames/{frames}/rendered",
                headers={"Accept": "image/jpeg"},
                timeout=10,
            )
            assert r.status_code == 200, (first.modality, r.text[:200])
            image = Image.open(BytesIO(r.content)).convert("L")
            assert len(image.getcolors(256) or []) > 32, first.modality  # a picture, not a blank
        # a second start sends nothing it has; a study it lacks is sent
        again = pacs.upload([*picked, studies[0]] if studies[0] not in picked else picked)
        assert again.kept == 4 and again.studies == (0 if studies[0] in picked else 1)
    finally:
        pacs.stop()
    assert pacs.proc is not None and pacs.proc.poll() is not None
    assert not list((tmp_path / "orthanc").glob("*.tmp"))
