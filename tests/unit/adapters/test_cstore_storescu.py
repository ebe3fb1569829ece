"""The C-STORE receiver as a modality meets it: dcmtk's ``storescu`` on a real association sends files compressed
with dcmtk's own encoders (``dcmcjpeg``, ``dcmcrle``, ``dcmcjpls``, ``dcmconv +td``) and pydicom's bundled JPEG 2000
file, each proposed in its own transfer syntax — every one is received and mapped. A study that cannot be mapped is
acknowledged, held in the quarantine with its reason (``outbox status``, ``quarantine list|show``), logged once, and
after the fix replayed into the outbox."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import yaml
from pydicom import dcmread
from pydicom.data import get_testdata_file
from typer.testing import CliRunner

from adapters.cli import app
from adapters.codes import Coder
from adapters.config import AdapterConfig
from adapters.dicom.intake import DicomIntake
from adapters.dicom.scp import StoreServer
from adapters.push.outbox import Outbox

from .conftest import hosp_a_settings
from .dicom_samples import dcmtk, storescu, tool, write_sample  # noqa: F401 - dcmtk: the fixture

pytestmark = pytest.mark.usefixtures("dcmtk")


@pytest.fixture
def receiver(tmp_path: Path, config: AdapterConfig, coder: Coder) -> Iterator[tuple[StoreServer, DicomIntake]]:
    intake = DicomIntake(config, coder, Outbox(config.outbox.path))
    server = StoreServer(intake, "127.0.0.1", 0, "HR-ADAPTER")
    server.start()
    try:
        yield server, intake
    finally:
        server.stop()
        intake.outbox.close()


def jpeg2000(folder: Path) -> Path:
    """pydicom's bundled MR in JPEG 2000 lossless (dcmtk has no free JPEG 2000 encoder), given a body part."""
    source = get_testdata_file("MR_small_jp2klossless.dcm")
    assert source is not None
    ds = dcmread(source)
    ds.BodyPartExamined, ds.AccessionNumber = "BRAIN", "ACC-J2K"
    path = folder / "mr-j2k.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


# name: (sample, how the file is made from it, storescu's option proposing its syntax, the syntax)
COMPRESSED = {
    "jpeg-lossless": ("CT_small.dcm", ["dcmcjpeg"], "-xs", "1.2.840.10008.1.2.4.70"),
    "jpeg-baseline": ("MR_small.dcm", ["dcmcjpeg", "+eb"], "-xy", "1.2.840.10008.1.2.4.50"),
    "jpeg-extended": ("CT_small.dcm", ["dcmcjpeg", "+ee"], "-xx", "1.2.840.10008.1.2.4.51"),
    "rle": ("CT_small.dcm", ["dcmcrle"], "-xr", "1.2.840.10008.1.2.5"),
    "jpeg-ls-lossless": ("CT_small.dcm", ["dcmcjpls"], "-xt", "1.2.840.10008.1.2.4.80"),
    "deflated": ("CT_small.dcm", ["dcmconv", "+td"], "-xd", "1.2.840.10008.1.2.1.99"),
    "jpeg-2000-lossless": ("MR_small_jp2klossless.dcm", [], "-xv", "1.2.840.10008.1.2.4.90"),
}


@pytest.mark.parametrize("name", sorted(COMPRESSED))
def test_a_compressed_image_is_received_and_mapped(
    name: str, receiver: tuple[StoreServer, DicomIntake], tmp_path: Path
) -> None:
    server, intake = receiver
    sample_name, command, option, syntax = COMPRESSED[name]
    if command:
        plain = write_sample(tmp_path / "plain", sample_name, PatientID="A-123")
        path = tmp_path / f"{name}.dcm"
        tool(*command, str(plain), str(path))
    else:
        path = jpeg2000(tmp_path)
    assert str(dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID) == syntax
    sent = storescu(server.port, path, option)
    assert sent.returncode == 0, sent.stderr
    assert dict(server.syntaxes) == {syntax: 1}  # the association carried the file in its own syntax
    report = intake.flush_stable(0)
    assert (report.studies, report.queued, report.quarantined, report.errors) == (1, 1, [], [])
    (message,) = intake.outbox.ready(10, set())
    study = orjson.loads(message.body)["entry"][-1]["resource"]
    modality = "CT" if sample_name.startswith("CT") else "MR"
    assert study["modality"] == [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": modality}]
    assert study["numberOfInstances"] == 1
    assert study["series"][0]["instance"][0]["uid"] == str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def test_uncompressed_only_proposals_still_work(receiver: tuple[StoreServer, DicomIntake], tmp_path: Path) -> None:
    server, intake = receiver
    sent = storescu(server.port, write_sample(tmp_path, "CT_small.dcm", PatientID="A-123"))
    assert sent.returncode == 0, sent.stderr
    assert intake.flush_stable(0).queued == 1


# ---------------------------------------------------------------------------------------------------- no silent loss
def write_config(tmp_path: Path) -> Path:
    path = tmp_path / "hosp-a.yaml"
    path.write_text(yaml.safe_dump(hosp_a_settings(tmp_path), allow_unicode=True), encoding="utf-8")
    return path


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def test_a_study_that_cannot_be_mapped_is_held_visible_and_replayed_after_the_fix(
    receiver: tuple[StoreServer, DicomIntake],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, intake = receiver
    config = write_config(tmp_path)  # the same outbox file as the receiver's
    path = write_sample(tmp_path / "in", "CT_small.dcm", PatientID="", PatientName="Wang^Xiaoming")
    uid = str(dcmread(path, stop_before_pixels=True).StudyInstanceUID)
    caplog.set_level(logging.INFO, logger="hr_adapter")

    sent = storescu(server.port, path)
    assert sent.returncode == 0, sent.stderr  # Success: the header is stored (in the quarantine, as it turns out)
    report = intake.flush_stable(0)
    assert report.queued == 0
    assert report.quarantined == [f"study {uid}: PatientID (0010,0020) is empty"]
    assert intake.flush_stable(0).studies == 0, "a held study is not retried in a loop"
    sent = storescu(server.port, path)  # the modality sends the study again: still held, not logged again
    assert sent.returncode == 0, sent.stderr
    assert intake.flush_stable(0).quarantined == [f"study {uid}: PatientID (0010,0020) is empty"]
    held_lines = [r.getMessage() for r in caplog.records if "held in the quarantine" in r.getMessage()]
    assert held_lines == [
        f"cstore: study {uid} held in the quarantine: PatientID (0010,0020) is empty "
        "(hr-adapter quarantine list; fix, then replay)"
    ]
    assert "Xiaoming" not in caplog.text

    code, out = cli("outbox", "status", "-c", str(config), "--json")
    status = orjson.loads(out)
    assert (code, status["pending"], status["quarantined_studies"]) == (0, 0, 1)
    code, out = cli("outbox", "status", "-c", str(config))
    assert "DICOM studies held in the quarantine 1" in out
    code, out = cli("quarantine", "list", "-c", str(config), "--json")
    (listed,) = orjson.loads(out)
    assert (listed["study_uid"], listed["source"], listed["instances"]) == (uid, "cstore", 1)
    assert listed["reason"] == "PatientID (0010,0020) is empty"
    code, out = cli("quarantine", "show", "-c", str(config), uid)
    shown = orjson.loads(out)
    assert shown["reason"] == "PatientID (0010,0020) is empty"
    assert shown["instances"][0]["family"] == "***" and "Xiaoming" not in out

    # replaying without a fix changes nothing; a bad correction is refused before anything is touched
    code, out = cli("quarantine", "replay", "-c", str(config))
    assert code == 1 and "held in the quarantine" in out
    code, out = cli("quarantine", "replay", "-c", str(config), uid, "--set", "PatientName=X")
    assert code == 2 and "expected KEYWORD=VALUE with one of PatientID" in out
    # the fix: the PACS administrator tells the MRN; the study reaches the outbox and leaves the quarantine
    code, out = cli("quarantine", "replay", "-c", str(config), uid, "--set", "PatientID=A-123")
    assert code == 0, out
    assert "1 queued" in out
    code, out = cli("quarantine", "list", "-c", str(config))
    assert "no DICOM study is held in the quarantine" in out
    (message,) = intake.outbox.ready(10, set())
    study = orjson.loads(message.body)["entry"][-1]["resource"]
    assert study["subject"]["reference"] == "Patient?identifier=https://hosp-a.example.cn/fhir/sid/mrn|A-123"
    assert study["identifier"][0]["value"] == f"urn:oid:{uid}"
