"""The demo's images (registry.services.demo.images): DICOM instances made from pydicom's bundled samples that carry
the demo studies' own UIDs and patients, one slice per instance of a CT / MR stack (each a different picture), a
30-frame ultrasound cine, and nothing of the patient's national identifier."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from io import BytesIO

import pytest
from pydicom import dcmread

from registry.catalog_file import load_catalog
from registry.services.demo import demo_studies
from registry.services.demo.images import SAMPLES, DemoStudy, _zoom, instances, series_size
from registry.services.demo.people import _patients
from registry.services.demo.region import SEED
from registry.settings import Settings

NOW = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def studies() -> list[DemoStudy]:
    return demo_studies(load_catalog(Settings().catalog_path), NOW, patients=12)


def test_a_stack_has_8_to_16_slices_and_other_series_one_instance() -> None:
    assert {series_size("CT", n) for n in range(1, 300)} == set(range(8, 17))
    assert {series_size("MR", n) for n in range(1, 300)} == set(range(8, 17))
    assert {series_size(m, n) for m in ("US", "DX") for n in range(1, 4)} == {1}


def test_the_plan_is_seeded_and_its_uids_are_dicom_uids(studies: list[DemoStudy]) -> None:
    again = demo_studies(load_catalog(Settings().catalog_path), datetime(2027, 1, 1, tzinfo=UTC), patients=12)
    assert [(s.uid, [(x.uid, x.instances) for x in s.series]) for s in again] == [
        (s.uid, [(x.uid, x.instances) for x in s.series]) for s in studies
    ]  # another day: the same studies (only their dates move)
    assert {s.series[0].modality for s in studies} >= {"CT", "MR"}
    for s in studies:
        assert len(s.uid) <= 64 and all(len(f"{x.uid}.{x.instances}") <= 64 for x in s.series)


def test_every_instance_is_the_studys_with_its_patient_and_never_the_national_id(studies: list[DemoStudy]) -> None:
    people = _patients(random.Random(SEED), 12)  # the demo's seeded draw
    national = {p.national_id for p in people}
    seen: set[str] = set()
    for study in studies[:6]:
        made = list(instances(study))
        assert len(made) == study.instances
        for sop, data in made:
            ds = dcmread(BytesIO(data))
            assert ds.StudyInstanceUID == study.uid and ds.SOPInstanceUID == sop and sop not in seen
            seen.add(sop)
            assert ds.SeriesInstanceUID in {x.uid for x in study.series}
            assert ds.PatientID == study.patient_id and str(ds.PatientName) == study.patient_name
            assert ds.AccessionNumber == study.accession and ds.StudyDate == f"{study.started:%Y%m%d}"
            assert len(ds.SeriesDescription) <= 64 and ds.SeriesDescription.startswith("Demo: pydicom ")
            assert not any(n.encode() in data for n in national)  # synthetic, and still never written
            assert not ds.get("OtherPatientIDsSequence")


def test_a_ct_stack_shows_another_picture_on_every_slice_and_keeps_hounsfield_units(studies: list[DemoStudy]) -> None:
    study = next(s for s in studies if s.series[0].modality == "CT")
    made = [dcmread(BytesIO(d)) for _, d in instances(study)][: study.series[0].instances]
    pixels = [bytes(ds.PixelData) for ds in made]
    assert len(set(pixels)) == len(pixels)  # a picture per slice
    assert [int(ds.InstanceNumber) for ds in made] == list(range(1, len(made) + 1))
    positions = [float(ds.ImagePositionPatient[2]) for ds in made]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    assert all(float(ds.RescaleIntercept) == -1024 and (ds.WindowCenter, ds.WindowWidth) == (40, 400) for ds in made)


def test_an_ultrasound_is_one_instance_of_thirty_frames(studies: list[DemoStudy]) -> None:
    study = next(s for s in studies if s.series[0].modality == "US")
    (_sop, data), *_ = instances(study)
    ds = dcmread(BytesIO(data))
    assert int(ds.NumberOfFrames) == 30 and ds.Modality == "US"
    assert SAMPLES["US"][0] == "examples_ybr_color.dcm"


def test_magnifying_by_one_changes_nothing_and_by_two_spreads_the_centre() -> None:
    from array import array

    frame = array("h", range(16)).tobytes()  # 4 × 4
    assert _zoom(frame, 4, 4, 1.0, "h") == frame
    # a plane (value 4·y + x) is interpolated exactly: the centre half of it, spread over the frame
    q = (0.75, 1.25, 1.75, 2.25)
    assert array("h", _zoom(frame, 4, 4, 2.0, "h")).tolist() == [round(4 * y + x) for y in q for x in q]
