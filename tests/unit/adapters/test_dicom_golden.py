"""DICOM headers → ImagingStudy: pydicom's CT_small.dcm and MR_small.dcm become exactly the Bundles in
tests/data/adapters/dicom (reviewed by hand against R4 imagingstudy-mappings, DICOM PS3.3 C.7.2.1/C.7.3.1/C.12.1); bad
files are clear errors."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from adapters.codes import Coder
from adapters.config import AdapterConfig
from adapters.dicom.headers import group, read_file
from adapters.dicom.mapping import StudyMapper
from adapters.errors import DicomInputError
from adapters.fhir import dumps

from .conftest import DATA
from .dicom_samples import SAMPLES, write_sample

GOLDEN = DATA / "dicom"


def study_text(paths: list[Path], config: AdapterConfig, coder: Coder) -> tuple[str, object]:
    studies = group([read_file(p) for p in paths])
    assert len(studies) == 1
    mapped = StudyMapper(config, coder).map(next(iter(studies.values())))
    return dumps(mapped.bundle, indent=True).decode() + "\n", mapped


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_file_becomes_the_golden_imaging_study(
    name: str, tmp_path: Path, config: AdapterConfig, coder: Coder
) -> None:
    text, _ = study_text([write_sample(tmp_path, name)], config, coder)
    golden = GOLDEN / (Path(name).stem.lower() + ".json")
    assert text == golden.read_text(encoding="utf-8")
    bundle = orjson.loads(text)
    for entry in bundle["entry"]:
        get_fhir_model_class(entry["resource"]["resourceType"]).model_validate(entry["resource"])


def test_catalog_items_from_modality_body_part_and_contrast(
    tmp_path: Path, config: AdapterConfig, coder: Coder
) -> None:
    _, ct = study_text([write_sample(tmp_path / "ct", "CT_small.dcm")], config, coder)
    _, mr = study_text([write_sample(tmp_path / "mr", "MR_small.dcm")], config, coder)
    assert ct.item is not None and ct.item.imaging is not None  # type: ignore[attr-defined]
    assert (ct.item.imaging.modality, ct.item.imaging.body_part, ct.item.imaging.contrast.value) == (  # type: ignore[attr-defined]
        "CT",
        "CHEST",
        "with",
    )  # CT_small carries ContrastBolusAgent ISOVUE300/100
    assert mr.item is not None and mr.item.imaging.contrast.value == "without"  # type: ignore[attr-defined]


def test_a_study_that_maps_to_no_item_is_reported(tmp_path: Path, config: AdapterConfig, coder: Coder) -> None:
    _, mapped = study_text([write_sample(tmp_path, "MR_small.dcm", BodyPartExamined="PHANTOM")], config, coder)
    assert mapped.item is None  # type: ignore[attr-defined]
    assert mapped.unmapped and mapped.unmapped[0][3] == "Modality+BodyPartExamined"  # type: ignore[attr-defined]
    study = orjson.loads(dumps(mapped.bundle))["entry"][-1]["resource"]  # type: ignore[attr-defined]
    assert "meta" not in study and "procedureCode" not in study  # no HR mark without a catalog item


def test_instances_are_grouped_into_series_and_counted(tmp_path: Path, config: AdapterConfig, coder: Coder) -> None:
    series2 = generate_uid()
    paths = [
        write_sample(tmp_path / "1", "CT_small.dcm"),
        write_sample(tmp_path / "2", "CT_small.dcm", SOPInstanceUID=generate_uid(), InstanceNumber=2),
        write_sample(
            tmp_path / "3", "CT_small.dcm", SOPInstanceUID=generate_uid(), SeriesInstanceUID=series2, SeriesNumber=2
        ),
        write_sample(tmp_path / "4", "CT_small.dcm"),  # the same instance again counts once
    ]
    text, _ = study_text(paths, config, coder)
    study = orjson.loads(text)["entry"][-1]["resource"]
    assert (study["numberOfSeries"], study["numberOfInstances"]) == (2, 3)
    assert [s["number"] for s in study["series"]] == [1, 2]
    assert [i["number"] for i in study["series"][0]["instance"]] == [1, 2]


def test_a_national_id_in_other_patient_ids_sends_the_patient(
    tmp_path: Path, config: AdapterConfig, coder: Coder
) -> None:
    other = Dataset()
    other.PatientID = "110105198503120020"
    other.IssuerOfPatientID = "CHN"
    qualifier = Dataset()
    qualifier.IdentifierTypeCode = "NNCHN"
    other.IssuerOfPatientIDQualifiersSequence = [qualifier]
    path = write_sample(
        tmp_path,
        "CT_small.dcm",
        OtherPatientIDsSequence=[other],
        SpecificCharacterSet="ISO_IR 192",
        PatientName="Wang^Xiaoming=王^小明",
    )
    text, _ = study_text([path], config, coder)
    patient = orjson.loads(text)["entry"][0]["resource"]
    assert patient["resourceType"] == "Patient"
    assert {i["system"] for i in patient["identifier"]} == {
        "https://hosp-a.example.cn/fhir/sid/mrn",
        "https://hr-registry.org.cn/fhir/sid/cn-resident-id",
    }
    assert patient["name"] == [{"family": "王", "given": ["小明"]}]  # the ideographic group


def test_not_dicom_truncated_and_incomplete_files_are_clear_errors(tmp_path: Path) -> None:
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not an image")
    with pytest.raises(DicomInputError, match="not a DICOM file"):
        read_file(text_file)
    whole = write_sample(tmp_path / "w", "CT_small.dcm").read_bytes()
    for cut in (140, 200, 400):
        truncated = tmp_path / f"cut{cut}.dcm"
        truncated.write_bytes(whole[:cut])
        with pytest.raises(DicomInputError):
            read_file(truncated)
    incomplete = write_sample(tmp_path / "i", "CT_small.dcm", StudyInstanceUID="")
    with pytest.raises(DicomInputError, match="StudyInstanceUID"):
        read_file(incomplete)
    with pytest.raises(DicomInputError, match="cannot be read"):
        read_file(tmp_path / "missing.dcm")
