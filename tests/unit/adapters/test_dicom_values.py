"""DICOM values checked with pydicom's own types before they become FHIR: a date that is not on the calendar, a time
that is not a time of day or a bad UTC offset is left out with a warning (logged once, the rest of the study sent);
a file cut short anywhere — header, native pixel data, encapsulated fragments, a deflated stream — is refused with
the reason, and whole compressed files are read."""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from adapters.codes import Coder
from adapters.config import AdapterConfig
from adapters.dicom.headers import checked_date, checked_time, facts_from_dataset, read_file
from adapters.dicom.intake import DicomIntake
from adapters.errors import DicomInputError
from adapters.push.outbox import Outbox

from .dicom_samples import write_sample


def bundled(name: str) -> Path:
    path = get_testdata_file(name)
    assert path is not None
    return Path(str(path))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20250228", ("20250228", None)),
        ("20240229", ("20240229", None)),
        ("2025.02.28", ("20250228", None)),  # ACR-NEMA form (PS3.5 §6.2, retired but still sent)
        ("", ("", None)),
    ],
)
def test_valid_dates_are_kept(text: str, expected: tuple[str, None]) -> None:
    assert checked_date(text) == expected


@pytest.mark.parametrize("text", ["20250230", "20251301", "20230229", "2025", "2025-02-28", "yesterday"])
def test_dates_not_on_the_calendar_are_refused_by_pydicom(text: str) -> None:
    value, why = checked_date(text)
    assert value == "" and why


@pytest.mark.parametrize(
    ("text", "expected"),
    [("072730", "072730"), ("0727", "0727"), ("07", "07"), ("07:27:30", "072730"), ("235959.5", "235959.5")],
)
def test_valid_times_are_kept(text: str, expected: str) -> None:
    assert checked_time(text) == (expected, None)


@pytest.mark.parametrize("text", ["256000", "126000", "1261", "noon"])
def test_times_that_are_no_time_of_day_are_refused(text: str) -> None:
    assert checked_time(text)[0] == ""


def test_an_impossible_study_date_is_left_out_with_a_warning_and_the_study_is_sent(
    tmp_path: Path, config: AdapterConfig, coder: Coder, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_sample(
        tmp_path / "in",
        "CT_small.dcm",
        PatientID="A-123",
        StudyDate="20250230",
        StudyTime="256000",
        SeriesDate="20250231",
        TimezoneOffsetFromUTC="+2500",
        PatientBirthDate="19850230",
    )
    facts = read_file(path)
    assert (facts.study_date, facts.study_time, facts.series_date, facts.tz_offset, facts.birth_date) == ("",) * 5
    assert set(facts.warnings) == {
        "StudyDate (0008,0020) '20250230' is not a valid DICOM value (day is out of range for month): left out",
        "StudyTime (0008,0030) '256000' is not a valid DICOM value (not a time of day): left out",
        "SeriesDate (0008,0021) '20250231' is not a valid DICOM value (day is out of range for month): left out",
        "TimezoneOffsetFromUTC (0008,0201) '+2500' is not a valid DICOM value (not a UTC offset ±HHMM): left out",
        "PatientBirthDate (0010,0030) is not a valid DICOM value (day is out of range for month): left out",
    }
    caplog.set_level(logging.INFO, logger="hr_adapter")
    intake = DicomIntake(config, coder, Outbox(config.outbox.path))
    report = intake.scan([path])
    assert (report.queued, report.quarantined, report.errors) == (1, [], [])
    assert len(report.warnings) == 5
    assert intake.scan([path]).unchanged == 1  # a rescan: unchanged, not logged again
    warned = [
        r.getMessage() for r in caplog.records if r.name.startswith("hr_adapter") and r.levelno >= logging.WARNING
    ]
    assert len(warned) == 5 and all("left out" in w for w in warned)
    assert "19850230" not in caplog.text  # a birth date is not repeated
    (message,) = intake.outbox.ready(10, set())
    study = orjson.loads(message.body)["entry"][-1]["resource"]
    assert "started" not in study and "started" not in study["series"][0]
    assert study["numberOfInstances"] == 1 and study["identifier"][0]["system"] == "urn:dicom:uid"


def test_a_valid_date_with_a_bad_time_keeps_the_date(config: AdapterConfig, coder: Coder, tmp_path: Path) -> None:
    intake = DicomIntake(config, coder, Outbox(config.outbox.path))
    path = write_sample(tmp_path, "CT_small.dcm", PatientID="A-123", StudyDate="20250228", StudyTime="99")
    assert intake.scan([path]).queued == 1
    (message,) = intake.outbox.ready(10, set())
    assert orjson.loads(message.body)["entry"][-1]["resource"]["started"] == "2025-02-28"


def test_a_c_store_dataset_is_checked_the_same_way() -> None:
    ds = Dataset()
    for keyword, value in {
        "StudyInstanceUID": "1.2.3",
        "SeriesInstanceUID": "1.2.3.1",
        "SOPInstanceUID": "1.2.3.1.1",
        "SOPClassUID": "1.2.840.10008.5.1.4.1.1.2",
        "Modality": "CT",
        "StudyDate": "20250230",
    }.items():
        setattr(ds, keyword, value)
    facts = facts_from_dataset(ds)
    assert facts.study_date == "" and facts.warnings[0].startswith("StudyDate (0008,0020) '20250230'")


# ---------------------------------------------------------------------------------------------------- truncation
def test_pydicoms_truncated_sample_is_refused() -> None:
    with pytest.raises(DicomInputError, match=r"truncated DICOM file: Pixel Data \(7FE0,0010\) declares 8192 bytes"):
        read_file(bundled("MR_truncated.dcm"))


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("CT_small.dcm", "Pixel Data (7FE0,0010) declares 32768 bytes, the file holds"),  # native
        ("MR_small_jp2klossless.dcm", "past the end of the file"),  # encapsulated JPEG 2000
        ("MR_small_RLE.dcm", "past the end of the file"),  # encapsulated RLE
        ("image_dfl.dcm", "incomplete or truncated stream"),  # deflated
    ],
)
def test_a_file_cut_short_is_refused_and_the_whole_file_is_read(name: str, reason: str, tmp_path: Path) -> None:
    whole = bundled(name).read_bytes()
    assert read_file(bundled(name)).sop_uid == str(dcmread(bundled(name), stop_before_pixels=True).SOPInstanceUID)
    cut = tmp_path / name
    cut.write_bytes(whole[: len(whole) - 200])
    with pytest.raises(DicomInputError, match="truncated") as caught:
        read_file(cut)
    assert reason in str(caught.value)


def test_encapsulated_pixel_data_without_its_delimiter_is_refused(tmp_path: Path) -> None:
    whole = bundled("JPEG2000.dcm").read_bytes()
    assert whole.endswith(b"\xfe\xff\xdd\xe0\x00\x00\x00\x00")  # the sequence delimiter item
    cut = tmp_path / "no-delimiter.dcm"
    cut.write_bytes(whole[:-8])
    with pytest.raises(DicomInputError, match="ends before its sequence delimiter"):
        read_file(cut)


def test_a_scan_reports_the_truncated_file_and_sends_the_others(
    tmp_path: Path, config: AdapterConfig, coder: Coder
) -> None:
    good = write_sample(tmp_path / "a", "MR_small.dcm", PatientID="A-123")
    whole = write_sample(tmp_path / "b", "CT_small.dcm", PatientID="A-123").read_bytes()
    bad = tmp_path / "b" / "CT_small.dcm"
    bad.write_bytes(whole[:-1000])
    report = DicomIntake(config, coder, Outbox(config.outbox.path)).scan([good, bad])
    assert report.queued == 1
    assert report.errors == [
        "CT_small.dcm: truncated DICOM file: Pixel Data (7FE0,0010) declares 32768 bytes, the file holds 31906"
    ]
