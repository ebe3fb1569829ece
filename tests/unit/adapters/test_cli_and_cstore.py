"""``hr-adapter`` as an integration engineer uses it (offline commands: check-config --offline, hl7 import/convert,
dicom scan, outbox status/retry/show, codes unmapped), and the C-STORE receiver on a real DICOM association: bad
datasets are refused with a DIMSE status and the listener keeps taking good ones."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
import yaml
from pydicom.uid import generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, MRImageStorage  # type: ignore[attr-defined]
from typer.testing import CliRunner

from adapters.cli import app
from adapters.codes import Coder
from adapters.config import AdapterConfig
from adapters.dicom.intake import DicomIntake
from adapters.dicom.scp import StoreServer
from adapters.push.outbox import Outbox

from .conftest import DATA, hosp_a_settings
from .dicom_samples import sample, write_sample

runner = CliRunner()
CBC = (DATA / "hl7" / "oru_cbc_final.hl7").read_bytes()


def write_config(tmp_path: Path, **sections: object) -> Path:
    path = tmp_path / "hosp-a.yaml"
    path.write_text(yaml.safe_dump(hosp_a_settings(tmp_path, **sections), allow_unicode=True), encoding="utf-8")
    return path


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_check_config_explains_every_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HR_NOT_SET", raising=False)
    bad_map = tmp_path / "codes.csv"
    bad_map.write_text("system,code,item\nhttp://lis,X1,NOT-AN-ITEM\nhttp://lis,X2\n", encoding="utf-8")
    path = tmp_path / "bad.yaml"
    path.write_text(
        "registry: {url: 'ftp://registry', client_id: c, client_secret: '${HR_NOT_SET}'}\n"
        "hospital: {organization: 'hosp a', timezone: 'Asia/Shanghai'}\n"
        "identifiers: {base: https://hosp-a.example.cn/fhir/sid}\n"
        "hl7: {policy: relaxed, listn: {port: 2575}}\n",
        encoding="utf-8",
    )
    code, out = run("check-config", "-c", str(path), "--offline")
    assert code == 1
    for expected in (
        "environment variable HR_NOT_SET is not set",
        "registry.url: must be an http:// or https:// URL",
        "hospital.organization",
        "hospital.timezone: must be a UTC offset",
        "hl7.policy",
        "hl7.listn: is not a known setting",
        "outbox: is required",
    ):
        assert expected in out, (expected, out)
    # a well-formed file whose code map names unknown items
    good = hosp_a_settings(tmp_path)
    good["codes"] = {"map_file": str(bad_map)}
    path.write_text(yaml.safe_dump(good), encoding="utf-8")
    code, out = run("check-config", "-c", str(path), "--offline")
    assert code == 1
    assert "line 2: 'NOT-AN-ITEM' is not a catalog item" in out
    assert "line 3: expected system,code,item[,display]" in out


def test_check_config_of_a_good_file_passes_offline(tmp_path: Path) -> None:
    code, out = run("check-config", "-c", str(write_config(tmp_path, hl7={"drop": {"folder": "drop"}})), "--offline")
    assert code == 0, out
    assert "configuration OK" in out and "code(s) mapped" in out


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    code, out = run("outbox", "status", "-c", str(tmp_path / "nope.yaml"))
    assert code == 2 and "no such file" in out


def test_hl7_import_convert_and_the_outbox_commands(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    unknown = CBC.replace(b"OBX|1|NM|WBC^", b"OBX|1|NM|XYZ^").replace(b"A0001", b"A0009")
    (tmp_path / "good.hl7").write_bytes(CBC)
    (tmp_path / "bad.hl7").write_bytes(unknown)
    code, out = run("hl7", "import", "-c", str(config), str(tmp_path / "good.hl7"), str(tmp_path / "bad.hl7"))
    assert code == 1
    assert "good.hl7 #1: AA" in out and "bad.hl7 #1: AE" in out and "XYZ" in out

    code, out = run("hl7", "convert", "-c", str(config), str(tmp_path / "good.hl7"))
    assert code == 0
    bundle = orjson.loads(out[out.index("{") :])
    assert bundle["type"] == "transaction" and len(bundle["entry"]) == 7
    assert '"value": 4.60' in out  # the decimal as sent

    code, out = run("outbox", "status", "-c", str(config), "--json")
    status = orjson.loads(out)
    assert (status["pending"], status["accepted"], status["dead"]) == (1, 1, 0)

    code, out = run("codes", "unmapped", "-c", str(config))
    assert code == 0 and "XYZ" in out

    # a dead letter is listed with the registry's words, shown, and queued again by retry
    cfg = yaml.safe_load(config.read_text())
    box = Outbox(Path(cfg["outbox"]["path"]))
    [pending] = box.ready(10, set())
    box.dead(pending.id, 422, "Observation.subject: Patient/x is not known to the registry")
    box.close()
    code, out = run("outbox", "status", "-c", str(config))
    assert "dead letters 1" in out and "is not known to the registry" in out
    code, out = run("outbox", "show", "-c", str(config), str(pending.id))
    assert code == 0 and '"resourceType": "Bundle"' in out
    code, out = run("outbox", "retry", "-c", str(config))
    assert code == 0 and "1 dead letter(s) queued again" in out
    status = orjson.loads(run("outbox", "status", "-c", str(config), "--json")[1])
    assert (status["pending"], status["dead"]) == (1, 0)


def test_dicom_scan_queues_new_studies_once_and_reports_bad_files(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    folder = tmp_path / "images"
    write_sample(folder / "ct", "CT_small.dcm")
    write_sample(folder / "mr", "MR_small.dcm")
    (folder / "readme.txt").write_text("not an image")
    code, out = run("dicom", "scan", "-c", str(config), str(folder))
    assert code == 1, out  # the non-DICOM file is an error worth an exit code
    assert "3 file(s)/instance(s) read, 2 study(ies): 2 queued" in out
    assert "readme.txt: not a DICOM file" in out
    (folder / "readme.txt").unlink()
    code, out = run("dicom", "scan", "-c", str(config), str(folder))
    assert code == 0 and "0 queued, 2 unchanged since last sent" in out


# ---------------------------------------------------------------------------------------------------- C-STORE
def test_c_store_refuses_a_bad_dataset_and_keeps_receiving(tmp_path: Path, config: AdapterConfig, coder: Coder) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite")
    intake = DicomIntake(config, coder, outbox)
    server = StoreServer(intake, "127.0.0.1", 0, "HR-ADAPTER")
    server.start()
    try:
        scu = AE(ae_title="MODALITY")
        scu.add_requested_context(CTImageStorage)
        scu.add_requested_context(MRImageStorage)
        assoc = scu.associate("127.0.0.1", server.port, ae_title="HR-ADAPTER")
        assert assoc.is_established
        no_study = sample("CT_small.dcm")
        del no_study.StudyInstanceUID
        assert assoc.send_c_store(no_study).Status == 0xC000
        ct = sample("CT_small.dcm", StudyInstanceUID=generate_uid())
        second = sample(
            "CT_small.dcm", StudyInstanceUID=ct.StudyInstanceUID, SOPInstanceUID=generate_uid(), InstanceNumber=2
        )
        assert assoc.send_c_store(ct).Status == 0x0000
        assert assoc.send_c_store(second).Status == 0x0000
        assoc.release()
        # a second association after the refusal still works
        assoc = scu.associate("127.0.0.1", server.port, ae_title="HR-ADAPTER")
        assert assoc.send_c_store(sample("MR_small.dcm", StudyInstanceUID=generate_uid())).Status == 0x0000
        assoc.release()
    finally:
        server.stop()
    assert server.received == 3
    report = intake.flush_stable(0)
    assert (report.studies, report.queued) == (2, 2)
    bodies = [orjson.loads(m.body) for m in outbox.ready(10, set())]
    counts = sorted(b["entry"][-1]["resource"]["numberOfInstances"] for b in bodies)
    assert counts == [1, 2]
    assert intake.flush_stable(0).studies == 0, "a study sent is not sent again until a new instance arrives"
