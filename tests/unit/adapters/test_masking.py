"""No patient name and no national identifier in what the adapter writes for people (docs/design.md §6): log lines,
file-drop quarantine reasons, ``hr-adapter outbox status`` and ``show``; and its outbox file readable by its owner
only."""

from __future__ import annotations

import io
import logging
import os
import stat
from pathlib import Path

import orjson
import pytest
import yaml
from typer.testing import CliRunner

from adapters.cli import app
from adapters.hl7v2.filedrop import DropFolder
from adapters.push.outbox import Outbox
from catalog import Catalog

from .conftest import hosp_a_settings
from .test_hl7_bad_input import CBC, age, make_processor, set_field

NATIONAL_ID = "110105198503120020"  # PID-3 of the sample, type NNCHN
FAMILY, GIVEN = "王", "小明"  # PID-5 of the sample
SHOWN = "110***********0020"


def _clear(text: str) -> bool:
    return NATIONAL_ID not in text and FAMILY not in text and GIVEN not in text


def test_refusals_quoting_the_patient_mask_the_name_and_national_id(
    tmp_path: Path, catalog: Catalog, caplog: pytest.LogCaptureFixture
) -> None:
    processor, outbox = make_processor(tmp_path, catalog)
    # a LIS that shifted PID fields: the name lands in the birth date (PID-7), the ID number in the sex (PID-8)
    name_as_birth = set_field(set_field(CBC, "MSH", 10, "B1"), "PID", 7, f"{FAMILY}{GIVEN}")
    id_as_sex = set_field(set_field(CBC, "MSH", 10, "B2"), "PID", 8, NATIONAL_ID)
    drop = DropFolder(processor, tmp_path / "drop", settle_seconds=1)
    path = drop.folder / "shifted.hl7"
    path.write_bytes(name_as_birth + id_as_sex)
    age(path)
    with caplog.at_level(logging.DEBUG):
        [outcome] = drop.scan_once()
    assert [r.code for r in outcome.results] == ["AE", "AE"]
    reason = (drop.quarantine / f"{outcome.moved_to.name}.reason.txt").read_text(encoding="utf-8")
    assert _clear(reason), reason
    assert _clear(caplog.text), caplog.text
    assert all(_clear(r.text) for r in outcome.results)
    assert "PID-7" in reason or "PID^1^7" in reason or "is not an HL7 date/time" in reason, reason
    assert f"sex '{SHOWN}'" in reason, reason
    assert outbox.pending_count() == 0


def test_outbox_status_and_show_mask_national_ids(tmp_path: Path, catalog: Catalog) -> None:
    config_path = tmp_path / "hosp-a.yaml"
    config_path.write_text(yaml.safe_dump(hosp_a_settings(tmp_path), allow_unicode=True), encoding="utf-8")
    processor, box = make_processor(tmp_path, catalog)
    assert processor.handle(CBC, "test").code == "AA"
    [pending] = box.ready(10, set())
    box.dead(pending.id, 422, f"Patient.identifier: {NATIONAL_ID} was refused")
    box.close()
    runner = CliRunner()
    status = runner.invoke(app, ["outbox", "status", "-c", str(config_path)])
    as_json = runner.invoke(app, ["outbox", "status", "-c", str(config_path), "--json"])
    show = runner.invoke(app, ["outbox", "show", "-c", str(config_path), str(pending.id)])
    assert (status.exit_code, as_json.exit_code, show.exit_code) == (0, 0, 0)
    for output in (status.output, as_json.output, show.output):
        assert NATIONAL_ID not in output, output
    assert SHOWN in status.output and SHOWN in show.output
    bundle = orjson.loads(show.output)
    assert bundle["resourceType"] == "Bundle"


def test_adapter_log_lines_carry_no_id_number_and_no_exception_text() -> None:
    from adapters.masking import MaskingFilter  # what ``hr-adapter`` puts on its log handlers

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(MaskingFilter())
    log = logging.getLogger("hr_adapter.test-masking")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("message %s refused: %s", "A1", f"PID-7 {NATIONAL_ID!r} is not a date")
        try:
            raise KeyError(f"{FAMILY}{GIVEN} {NATIONAL_ID}")
        except KeyError:
            log.exception("unexpected error")
    finally:
        log.removeHandler(handler)
    written = stream.getvalue()
    assert _clear(written), written
    assert SHOWN in written and "Traceback" in written and "KeyError" in written


def test_the_outbox_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        Outbox(tmp_path / "new" / "outbox.sqlite").close()
        assert stat.S_IMODE((tmp_path / "new" / "outbox.sqlite").stat().st_mode) == 0o600
        assert stat.S_IMODE((tmp_path / "new").stat().st_mode) == 0o700
        loose = tmp_path / "loose.sqlite"
        Outbox(loose).close()
        loose.chmod(0o644)
        box = Outbox(loose)
        box.note_unmapped([("http://lis", "X", "x", "OBX-3")])
        assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in tmp_path.glob("loose.sqlite*")} == {
            p.name: 0o600 for p in tmp_path.glob("loose.sqlite*")
        }
        box.close()
    finally:
        os.umask(old)
