"""The DICOMweb pull against a QIDO-RS answerer that pages (``limit``/``offset``) as PS3.18 §10.6 describes: every
study is listed without a date filter, a watermark of study-level digests fetches only what is new or changed, a study
whose fetch fails is tried again next time, and a study that cannot be mapped is held (and leaves the quarantine when
the PACS corrects it)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from adapters.codes import Coder
from adapters.config import AdapterConfig
from adapters.dicom.intake import DicomIntake
from adapters.dicom.pull import PacsPull
from adapters.push.outbox import Outbox

from .conftest import hosp_a_config
from .dicom_samples import sample

STUDY_LEVEL = ("StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber", "PatientID", "PatientName")


class FakePacs:
    """QIDO-RS over a few datasets: /studies, /studies/{uid}/series, /studies/{uid}/instances, paged."""

    def __init__(self) -> None:
        self.instances: list[Dataset] = []
        self.queries: list[httpx.URL] = []
        self.broken: set[str] = set()

    def add(self, **changes: Any) -> Dataset:
        ds = sample("CT_small.dcm", SOPInstanceUID=generate_uid(), **changes)
        self.instances.append(ds)
        return ds

    def _rows(self, datasets: list[Dataset], keywords: tuple[str, ...]) -> list[dict[str, Any]]:
        rows = []
        for ds in datasets:
            out = Dataset()
            for k in keywords:
                if k in ds:
                    setattr(out, k, ds.data_element(k).value)  # type: ignore[union-attr]
            rows.append(out.to_json_dict())
        return rows

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.queries.append(request.url)
        parts = request.url.path.removeprefix("/dicom-web/").split("/")
        params = request.url.params
        if parts == ["studies"]:
            studies: dict[str, list[Dataset]] = {}
            for ds in self.instances:
                studies.setdefault(str(ds.StudyInstanceUID), []).append(ds)
            since = params.get("StudyDate", "").rstrip("-")
            firsts = [v[0] for v in studies.values() if not since or ("StudyDate" in v[0] and v[0].StudyDate >= since)]
            rows = self._rows(firsts, STUDY_LEVEL)
            for row, ds in zip(rows, firsts, strict=True):
                n = len(studies[str(ds.StudyInstanceUID)])
                row["00201208"] = {"vr": "IS", "Value": [n]}
        else:
            uid = parts[1]
            if uid in self.broken:
                return httpx.Response(500, text="PACS error")
            mine = [ds for ds in self.instances if str(ds.StudyInstanceUID) == uid]
            if parts[2] == "series":
                rows = self._rows(mine[:1], ("SeriesInstanceUID", "Modality", "BodyPartExamined", "SeriesNumber"))
            else:
                rows = self._rows(mine, ("SOPInstanceUID", "SOPClassUID", "SeriesInstanceUID", "InstanceNumber"))
        offset, limit = int(params.get("offset", 0)), int(params.get("limit", 1000))
        page = rows[offset : offset + limit]
        return httpx.Response(200, json=page) if page else httpx.Response(204)


@pytest.fixture
def pacs() -> FakePacs:
    return FakePacs()


def puller(config: AdapterConfig, coder: Coder, pacs: FakePacs) -> PacsPull:
    intake = DicomIntake(config, coder, Outbox(config.outbox.path))
    return PacsPull(intake, http=httpx.Client(transport=httpx.MockTransport(pacs.handle)))


@pytest.fixture
def pull_config(tmp_path: Any) -> AdapterConfig:
    return hosp_a_config(tmp_path, dicom={"pull": {"qido_rs": "http://pacs/dicom-web", "page_size": 2}})


def test_every_study_is_listed_page_by_page_and_only_new_ones_fetched(
    pull_config: AdapterConfig, coder: Coder, pacs: FakePacs
) -> None:
    for n in range(5):
        pacs.add(StudyInstanceUID=generate_uid(), PatientID=f"A-{n}", StudyDate="20250101" if n % 2 else "")
    pull = puller(pull_config, coder, pacs)
    first = pull.run()
    assert first.coverage.startswith("first pull: every study the PACS lists")
    assert (first.listed, first.fetched, first.queued) == (5, 5, 5)
    study_queries = [q for q in pacs.queries if q.path == "/dicom-web/studies"]
    assert [q.params.get("offset") for q in study_queries] == ["0", "2", "4"]
    assert all("StudyDate" not in q.params for q in study_queries)
    pacs.queries.clear()
    again = pull.run()
    assert (again.listed, again.fetched, again.queued, again.unchanged) == (5, 0, 0, 5)
    assert all(q.path == "/dicom-web/studies" for q in pacs.queries), "nothing fetched below study level"
    assert "5 known" in again.coverage
    refreshed = pull.run(refresh=True)
    assert (refreshed.fetched, refreshed.queued, refreshed.unchanged) == (5, 0, 5)  # same Bundles: nothing new


def test_a_study_whose_fetch_fails_is_tried_again(pull_config: AdapterConfig, coder: Coder, pacs: FakePacs) -> None:
    ds = pacs.add(StudyInstanceUID=generate_uid(), PatientID="A-1")
    pacs.add(StudyInstanceUID=generate_uid(), PatientID="A-2")
    pacs.broken.add(str(ds.StudyInstanceUID))
    pull = puller(pull_config, coder, pacs)
    report = pull.run()
    assert report.queued == 1, "the other study still goes"
    (error,) = report.errors
    assert error.startswith(f"study {ds.StudyInstanceUID}: QIDO-RS") and "answered 500" in error
    pacs.broken.clear()
    report = pull.run()
    assert (report.fetched, report.queued, report.unchanged) == (1, 1, 1)


def test_a_pulled_study_that_cannot_be_mapped_is_held_until_the_pacs_corrects_it(
    pull_config: AdapterConfig, coder: Coder, pacs: FakePacs
) -> None:
    uid = generate_uid()
    ds = pacs.add(StudyInstanceUID=uid, PatientID="")
    pull = puller(pull_config, coder, pacs)
    report = pull.run()
    assert report.quarantined == [f"study {uid}: PatientID (0010,0020) is empty"]
    assert [h.study_uid for h in pull.intake.quarantine.studies()] == [uid]
    assert pull.run().unchanged == 1  # seen: not fetched, and still held
    ds.PatientID = "A-7"  # corrected at the PACS: the study-level attributes change
    report = pull.run()
    assert report.queued == 1 and pull.intake.quarantine.count() == 0


def test_since_narrows_to_the_study_date_and_says_so(pull_config: AdapterConfig, coder: Coder, pacs: FakePacs) -> None:
    from datetime import date

    pacs.add(StudyInstanceUID=generate_uid(), PatientID="A-1", StudyDate="20250101")
    pacs.add(StudyInstanceUID=generate_uid(), PatientID="A-2", StudyDate="")
    report = puller(pull_config, coder, pacs).run(date(2024, 12, 31))
    assert report.listed == 1
    assert "without a StudyDate" in report.coverage
    assert pacs.queries[0].params["StudyDate"] == "20241231-"
