"""The quarantine from a folder scan and for a fault of the adapter itself: held with the reason, logged once without
patient data, the scan's exit code says so, and a replay after the fix sends it (over C-STORE:
test_cstore_storescu.py)."""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
import pytest
import yaml
from pydicom.dataset import Dataset
from typer.testing import CliRunner

from adapters.cli import app
from adapters.codes import Coder
from adapters.config import AdapterConfig
from adapters.dicom.headers import read_file
from adapters.dicom.intake import DicomIntake
from adapters.dicom.mapping import StudyMapper
from adapters.masking import MaskingFilter
from adapters.push.outbox import Outbox

from .conftest import hosp_a_settings
from .dicom_samples import write_sample

NATIONAL_ID = "110105198503120020"


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "hosp-a.yaml"
    path.write_text(yaml.safe_dump(hosp_a_settings(tmp_path), allow_unicode=True), encoding="utf-8")
    return path


def national_id() -> list[Dataset]:
    other = Dataset()
    other.PatientID, other.IssuerOfPatientID = NATIONAL_ID, "CHN"
    qualifier = Dataset()
    qualifier.IdentifierTypeCode = "NNCHN"
    other.IssuerOfPatientIDQualifiersSequence = [qualifier]
    return [other]


def test_a_scanned_study_without_patient_id_is_held_and_the_scan_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_config(tmp_path)
    folder = tmp_path / "images"
    write_sample(folder, "CT_small.dcm", PatientID="", PatientName="Li^Lei", OtherPatientIDsSequence=national_id())
    caplog.set_level(logging.INFO, logger="hr_adapter")
    for _ in range(2):
        code, out = cli("dicom", "scan", "-c", str(config), str(folder))
        assert code == 1, out
        assert "0 queued" in out and "held in the quarantine" in out and "PatientID (0010,0020) is empty" in out
    held = [r for r in caplog.records if "held in the quarantine" in r.getMessage()]
    assert len(held) == 1, "a rescan does not log the study again"
    code, out = cli("quarantine", "show", "-c", str(config), held[0].getMessage().split()[2])
    assert code == 0, out
    shown = orjson.loads(out)
    assert shown["source"] == "scan" and shown["attempts"] == 2
    assert shown["instances"][0]["other_ids"][0]["value"] == "110***********0020"
    assert NATIONAL_ID not in out and "Lei" not in out and NATIONAL_ID not in caplog.text
    code, out = cli("quarantine", "replay", "-c", str(config), "--set", "PatientID=A-123")
    assert code == 2 and "give their Study Instance UIDs" in out
    code, out = cli("quarantine", "replay", "-c", str(config), "1.2.3.4", "--set", "StudyDate=20250230")
    assert code == 2 and "not a DICOM date" in out


def test_a_fault_of_the_mapping_is_held_not_retried_forever_and_replayed_after_the_fix(
    tmp_path: Path,
    config: AdapterConfig,
    coder: Coder,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    intake = DicomIntake(config, coder, Outbox(config.outbox.path))
    facts = read_file(write_sample(tmp_path, "CT_small.dcm", PatientID="A-123"))
    intake.outbox.stage_instance(facts.sop_uid, facts.study_uid, facts.to_json())  # as a C-STORE would
    original = StudyMapper.map

    def broken(self: StudyMapper, study: object) -> object:
        words = ["Li", "Lei", NATIONAL_ID]
        raise RuntimeError(" ".join(words))  # a message that must not reach the log

    monkeypatch.setattr(StudyMapper, "map", broken)
    caplog.handler.addFilter(MaskingFilter())  # as hr-adapter's handlers have it
    caplog.set_level(logging.INFO, logger="hr_adapter")
    report = intake.flush_stable(0)
    assert report.quarantined == [f"study {facts.study_uid}: the adapter failed to map it (RuntimeError)"]
    assert intake.flush_stable(0).studies == 0, "held, so not retried every second"
    assert "RuntimeError" in caplog.text and NATIONAL_ID not in caplog.text and "Li Lei" not in caplog.text
    monkeypatch.setattr(StudyMapper, "map", original)  # the fixed release
    report = intake.replay()
    assert (report.queued, report.quarantined) == (1, [])
    assert intake.quarantine.count() == 0
