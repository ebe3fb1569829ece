"""Bad HL7 input gets a clear refusal and leaves nothing behind: through ``Hl7Processor.handle`` with a real outbox,
through the MLLP listener on a real TCP socket, and through the file-drop folder.

Every refusal is checked the way an LIS reads it: the ACK bytes parse as HL7, MSA-1 is the expected code, MSA-2 echoes
MSH-10 when the message had a readable one, the ERR segment names the HL7 table 0357 code and the segment/field, and
the outbox's pending count did not move. Each bug these tests found in ``adapters/`` was fixed; its test stays.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hl7
import orjson
import pytest

from adapters.codes import Coder, read_code_map
from adapters.config import AdapterConfig
from adapters.hl7v2.filedrop import DropFolder
from adapters.hl7v2.header import CHARSETS
from adapters.hl7v2.mllp import MllpServer
from adapters.hl7v2.processor import Hl7Processor, Result
from adapters.push.outbox import Outbox, OutboxError
from catalog import Catalog

from .conftest import DATA, hosp_a_config

HL7_DIR = DATA / "hl7"
CBC = (HL7_DIR / "oru_cbc_final.hl7").read_bytes()  # v2.5.1, UTF-8, MSH-10 A0001, national id + MRN
VALUE_TYPES = (HL7_DIR / "oru_value_types.hl7").read_bytes()  # v2.4 (ERR-1 form), MSH-10 A0002, OBX 6 DT, OBX 7 TM
GB18030 = (HL7_DIR / "oru_gb18030_mrn_only.hl7").read_bytes()  # v2.3, MSH-18 GB 18030-2000, MSH-10 A0007
LIS = "https://hosp-a.example.cn/fhir/sid/lis"
SB, EB, CR = b"\x0b", b"\x1c", b"\r"


# ---------------------------------------------------------------------------------------------------- helpers
def edit(raw: bytes, old: str, new: str, *, encoding: str = "utf-8") -> bytes:
    """``raw`` with the first ``old`` replaced (which must be there: a test must not silently test the original)."""
    text = raw.decode(encoding)
    assert old in text, f"{old!r} is not in the sample"
    return text.replace(old, new, 1).encode(encoding)


def set_field(raw: bytes, segment: str, field_no: int, value: str, *, occurrence: int = 1) -> bytes:
    """``raw`` with field ``segment-field_no`` (of the n-th such segment) set to ``value`` (UTF-8 samples)."""
    segments = raw.decode("utf-8").split("\r")
    matches = [i for i, s in enumerate(segments) if s.startswith(segment + "|")]
    index = matches[occurrence - 1]
    fields = segments[index].split("|")
    position = field_no - 1 if segment == "MSH" else field_no  # MSH-1 is the separator itself
    fields += [""] * (position + 1 - len(fields))
    fields[position] = value
    segments[index] = "|".join(fields)
    return "\r".join(segments).encode("utf-8")


def move_segment(raw: bytes, name: str, *, after: str) -> bytes:
    """``raw`` with its first ``name`` segment moved to just after its first ``after`` segment."""
    segments = raw.split(b"\r")
    moved = segments.pop(next(i for i, s in enumerate(segments) if s.startswith(name.encode() + b"|")))
    target = next(i for i, s in enumerate(segments) if s.startswith(after.encode() + b"|"))
    segments.insert(target + 1, moved)
    return b"\r".join(segments)


def drop_segments(raw: bytes, *names: str) -> bytes:
    return b"\r".join(s for s in raw.split(b"\r") if s[:3] not in {n.encode() for n in names})


def ack_text(ack: bytes) -> str:
    """The ACK as text, decoded with the character set its MSH-18 names (the ACK mirrors the message's)."""
    first = ack.split(b"\r", 1)[0].decode("latin-1")
    fields = first.split(first[3]) if len(first) > 3 else []
    charset = fields[17].split("~")[0].strip().upper() if len(fields) > 17 else ""
    return ack.decode(CHARSETS.get(charset) or "utf-8")


@dataclass(frozen=True)
class Ack:
    code: str  # MSA-1
    control_id: str  # MSA-2
    error_code: int | None  # HL7 0357 from ERR-3 (2.5+) or ERR-1.4 (2.3/2.4)
    location: str  # segment^sequence^field from ERR-2 (2.5+) or ERR-1 (2.3/2.4)
    err: str  # the ERR segment as text ("" when absent)
    message: Any


def read_ack(ack: bytes) -> Ack:
    """Parse an ACK as an LIS would; fails the test when it is not an HL7 ACK."""
    assert ack.startswith(b"MSH"), ack[:40]
    message = hl7.parse(ack_text(ack))
    names = [str(s[0]) for s in message]
    assert names[:2] == ["MSH", "MSA"], names
    assert str(message.segment("MSH")[9]).startswith("ACK"), str(message.segment("MSH")[9])
    msa = message.segment("MSA")
    code, control_id = str(msa[1]), str(msa[2]) if len(msa) > 2 else ""
    if "ERR" not in names:
        return Ack(code, control_id, None, "", "", message)
    err = message.segment("ERR")
    version = str(message.segment("MSH")[12])
    if version in ("2.3", "2.3.1", "2.4"):
        parts = str(err[1]).split("^")
        location = "^".join(p for p in parts[:3] if p)
        error_code = int(parts[3].split("&")[0])
    else:
        location = str(err[2])
        error_code = int(str(err[3]).split("^")[0])
    return Ack(code, control_id, error_code, location, str(err), message)


def queued_bundles(outbox: Outbox) -> list[dict[str, Any]]:
    return [orjson.loads(p.body) for p in outbox.ready(100, set())]


def observations(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"]


def make_processor(
    tmp_path: Path, catalog: Catalog, outbox: Outbox | None = None, **sections: Any
) -> tuple[Hl7Processor, Outbox]:
    """A processor built the way ``adapters.service.Adapter`` builds it, with a real outbox in ``tmp_path``."""
    config = hosp_a_config(tmp_path, **sections)
    assert config.codes.map_file is not None
    coder = Coder(catalog, config.hospital.organization, read_code_map(config.codes.map_file, catalog))
    box = outbox if outbox is not None else Outbox(config.outbox.path)
    return Hl7Processor(config, coder, box), box


@pytest.fixture
def outbox(config: AdapterConfig) -> Iterator[Outbox]:
    box = Outbox(config.outbox.path)
    yield box
    box.close()


@pytest.fixture
def processor(config: AdapterConfig, coder: Coder, outbox: Outbox) -> Hl7Processor:
    return Hl7Processor(config, coder, outbox)


def assert_refused(result: Result, outbox: Outbox, before: int, code: str, control_id: str) -> Ack:
    ack = read_ack(result.ack)
    assert (result.code, ack.code) == (code, code), result.text
    assert ack.control_id == control_id
    assert ack.err, "an AE/AR ACK carries an ERR segment"
    assert not result.queued
    assert outbox.pending_count() == before, "a refused message must leave nothing in the outbox"
    return ack


# ---------------------------------------------------------------------------------------------------- the processor
def test_the_sample_is_accepted(processor: Hl7Processor, outbox: Outbox) -> None:
    """The baseline the refusals below are variations of: the unmodified sample is AA and queued."""
    result = processor.handle(CBC, "test")
    ack = read_ack(result.ack)
    assert (result.code, ack.code, ack.control_id, ack.err) == ("AA", "AA", "A0001", "")
    assert result.queued
    assert outbox.pending_count() == 1


REFUSALS = [
    # id, raw, MSA-1, MSA-2, HL7 0357 code, ERR location (segment^sequence^field)
    ("no-msh", CBC[CBC.index(b"PID") :], "AE", "", 100, "MSH^1"),
    ("empty-bytes", b"", "AE", "", 100, "MSH^1"),
    ("whitespace-only", b"\r\n \r", "AE", "", 100, "MSH^1"),
    ("truncated-msh", b"MSH|^~", "AE", "", 101, "MSH^1^1"),
    ("msh-only", CBC.split(b"\r")[0] + b"\r", "AE", "A0001", 100, "PID^1"),
    ("msh-without-pid", drop_segments(CBC, "PID", "PV1"), "AE", "A0001", 100, "OBR^1"),  # OBR before any PID
    ("pid-without-obr", drop_segments(CBC, "OBR", "OBX", "NTE"), "AE", "A0001", 100, "OBR^1"),
    ("obr-before-pid", drop_segments(CBC, "PID") + b"PID|1||A-123^^^HOSPA^MR\r", "AE", "A0001", 100, "OBR^1"),
    ("obx-before-obr", move_segment(CBC, "OBR", after="OBX"), "AE", "A0001", 100, "OBX^1"),
    ("second-msh", CBC + CBC.split(b"\r")[0] + b"\r", "AE", "A0001", 100, "MSH^2"),
    # wrong encoding characters behind a valid field separator: MSH-10 is still readable and echoed
    ("duplicate-encoding-chars", edit(CBC, "^~\\&", "^^\\&"), "AE", "A0001", 102, "MSH^1^2"),
    ("letter-in-encoding-chars", edit(CBC, "^~\\&", "^~\\A"), "AE", "A0001", 102, "MSH^1^2"),
    ("three-encoding-chars", edit(CBC, "^~\\&", "^~\\"), "AE", "A0001", 102, "MSH^1^2"),
    # a field separator that is no delimiter: the fields cannot be told apart, so nothing of MSH is echoed
    ("alnum-field-separator", CBC.replace(b"|", b"X"), "AE", "", 102, "MSH^1^1"),
    ("adt-a01", edit(CBC, "ORU^R01^ORU_R01", "ADT^A01^ADT_A01"), "AR", "A0001", 200, "MSH^1^9^^1"),
    ("empty-message-type", set_field(CBC, "MSH", 9, ""), "AR", "A0001", 200, "MSH^1^9^^1"),
    ("oru-r30", edit(CBC, "ORU^R01^ORU_R01", "ORU^R30^ORU_R30"), "AR", "A0001", 201, "MSH^1^9^^2"),
    ("version-2.7", set_field(CBC, "MSH", 12, "2.7"), "AR", "A0001", 203, "MSH^1^12"),
    ("version-empty", set_field(CBC, "MSH", 12, ""), "AR", "A0001", 203, "MSH^1^12"),
    ("processing-id-t", set_field(CBC, "MSH", 11, "T"), "AR", "A0001", 202, "MSH^1^11"),
    ("empty-msh-10", set_field(CBC, "MSH", 10, ""), "AE", "", 101, "MSH^1^10"),
    ("bad-msh-7", set_field(CBC, "MSH", 7, "yesterday"), "AE", "A0001", 102, "MSH^1^7"),
    # GB 18030 bytes (王小明…) with no MSH-18: the default UTF-8 cannot decode them
    (
        "gb18030-bytes-no-msh18",
        edit(CBC, "|CHN|UNICODE UTF-8", "").decode().encode("gb18030"),
        "AE",
        "A0001",
        102,
        "MSH^1^18",
    ),
    ("pid-3-empty", set_field(CBC, "PID", 3, ""), "AE", "A0001", 101, "PID^1^3"),
    ("pid-3-without-mrn", set_field(CBC, "PID", 3, "110105198503120020^^^CHN^NNCHN"), "AE", "A0001", 101, "PID^1^3"),
    ("obr-3-empty", set_field(CBC, "OBR", 3, ""), "AE", "A0001", 101, "OBR^1^3"),
    ("obr-4-empty", set_field(CBC, "OBR", 4, ""), "AE", "A0001", 101, "OBR^1^4"),
    ("obr-7-month-13", set_field(CBC, "OBR", 7, "20251340"), "AE", "A0001", 102, "OBR^1^7"),
    ("obr-7-feb-30", set_field(CBC, "OBR", 7, "20250230120000"), "AE", "A0001", 102, "OBR^1^7"),
    ("obr-7-not-a-date", set_field(CBC, "OBR", 7, "2025-11-03"), "AE", "A0001", 102, "OBR^1^7"),
    ("obr-25-unknown", set_field(CBC, "OBR", 25, "Q"), "AE", "A0001", 103, "OBR^1^25"),
    ("obx-3-empty", set_field(CBC, "OBX", 3, "", occurrence=2), "AE", "A0001", 101, "OBX^2^3"),
    ("obx-2-empty-with-value", set_field(CBC, "OBX", 2, ""), "AE", "A0001", 101, "OBX^1^2"),
    ("nm-not-a-number", set_field(CBC, "OBX", 5, "abc"), "AE", "A0001", 102, "OBX^1^5"),
    ("nm-two-numbers", set_field(CBC, "OBX", 5, "1~2", occurrence=2), "AE", "A0001", 102, "OBX^2^5"),
    ("unknown-value-type", set_field(CBC, "OBX", 2, "ZZ", occurrence=3), "AE", "A0001", 102, "OBX^3^5"),
    ("unknown-obx-8-flag", set_field(CBC, "OBX", 8, "ZZ"), "AE", "A0001", 103, "OBX^1^8"),
    ("unknown-obx-11-status", set_field(CBC, "OBX", 11, "Q", occurrence=4), "AE", "A0001", 103, "OBX^4^11"),
    ("unknown-unit", set_field(CBC, "OBX", 6, "furlongs", occurrence=2), "AE", "A0001", 103, "OBX^2^6"),
    ("unknown-local-code", edit(CBC, "OBX|1|NM|WBC^", "OBX|1|NM|XYZ^"), "AE", "A0001", 103, "OBX^1^3"),
    ("unknown-sex", set_field(CBC, "PID", 8, "X"), "AE", "A0001", 103, "PID^1^8"),
]


@pytest.mark.parametrize(
    ("raw", "code", "control_id", "error_code", "location"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS]
)
def test_bad_message_is_refused_with_a_clear_ack(
    processor: Hl7Processor, outbox: Outbox, raw: bytes, code: str, control_id: str, error_code: int, location: str
) -> None:
    before = outbox.pending_count()
    result = processor.handle(raw, "test")
    ack = assert_refused(result, outbox, before, code, control_id)
    assert ack.error_code == error_code, ack.err
    assert ack.location == location, ack.err
    assert result.text and result.text != "internal error", result.text
    assert outbox.status().accepted == 0


def test_err_text_says_what_is_wrong(processor: Hl7Processor) -> None:
    """ERR-8 and MSA-3 carry a human-readable reason naming the offending value (escaped, still one segment)."""
    ack = read_ack(processor.handle(set_field(CBC, "MSH", 9, "ADT^A01"), "test").ack)
    assert "ADT" in str(ack.message.segment("MSA")[3])
    assert "ORU\\S\\R01" in ack.err  # a component separator in the text is escaped, not a new component
    assert len(ack.message) == 3


def test_oversized_message_is_refused(tmp_path: Path, catalog: Catalog) -> None:
    processor, box = make_processor(tmp_path, catalog, hl7={"max_message_bytes": 2000})
    raw = CBC + b"NTE|1||" + b"x" * 2000 + b"\r"
    result = processor.handle(raw, "test")
    ack = assert_refused(result, box, 0, "AE", "A0001")
    assert ack.error_code == 207
    assert "2000" in result.text
    assert processor.handle(CBC, "test").code == "AA", "a message under the limit still passes"


def test_declared_gb18030_message_is_decoded_and_answered_in_gb18030(tmp_path: Path, catalog: Catalog) -> None:
    processor, outbox = make_processor(tmp_path, catalog, hl7={"without_national_id": "wait"})  # an MRN-only PID
    result = processor.handle(GB18030, "test")
    assert result.code == "AA", result.text
    ack = read_ack(result.ack)
    assert (ack.code, ack.control_id) == ("AA", "A0007")
    assert str(ack.message.segment("MSH")[18]) == "GB 18030-2000"
    bundle = queued_bundles(outbox)[0]
    report = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "DiagnosticReport")
    assert report["code"]["text"] == "葡萄糖"
    assert observations(bundle)[0]["note"] == [{"text": "空腹血糖偏高，建议复查"}]


def test_utf8_declared_but_gb18030_sent_is_refused(processor: Hl7Processor, outbox: Outbox) -> None:
    raw = edit(GB18030, "GB 18030-2000", "UNICODE UTF-8", encoding="gb18030")
    result = processor.handle(raw, "test")
    ack = read_ack(result.ack)
    assert (result.code, ack.code, ack.error_code, ack.location) == ("AE", "AE", 102, "MSH^1^18")
    assert outbox.pending_count() == 0


def test_mislabelled_character_set_ack_still_echoes_the_control_id(processor: Hl7Processor) -> None:
    raw = edit(GB18030, "GB 18030-2000", "UNICODE UTF-8", encoding="gb18030")
    ack = read_ack(processor.handle(raw, "test").ack)
    assert (ack.code, ack.control_id) == ("AE", "A0007")


def test_unsupported_character_set_ack_still_echoes_the_control_id(processor: Hl7Processor, outbox: Outbox) -> None:
    result = processor.handle(edit(CBC, "UNICODE UTF-8", "KOI8-R"), "test")
    ack = read_ack(result.ack)
    assert (ack.code, ack.error_code, ack.location, ack.control_id) == ("AE", 103, "MSH^1^18", "A0001")
    assert outbox.pending_count() == 0
    assert ack.control_id == "A0001"


def test_outbox_failure_is_an_error_the_sender_retries(tmp_path: Path, catalog: Catalog) -> None:
    class BrokenOutbox(Outbox):
        def enqueue(self, **message: Any) -> bool:
            raise OutboxError("the outbox cannot be written: database is locked")

    processor, box = make_processor(tmp_path, catalog, outbox=BrokenOutbox(tmp_path / "broken.sqlite"))
    result = processor.handle(CBC, "test")
    ack = assert_refused(result, box, 0, "AR", "A0001")  # unrelated to the message: the sender resends (AR)
    assert ack.error_code == 207
    assert "send it again" in ack.err


# ---------------------------------------------------------------------------------------------------- policies
def test_unknown_local_code_strict_is_refused_and_counted(processor: Hl7Processor, outbox: Outbox) -> None:
    raw = edit(CBC, "OBX|1|NM|WBC^", "OBX|1|NM|XYZ^")
    result = processor.handle(raw, "test")
    ack = assert_refused(result, outbox, 0, "AE", "A0001")
    assert (ack.error_code, ack.location) == (103, "OBX^1^3")
    assert "XYZ" in ack.err
    assert [(u[0], u[1], u[4]) for u in outbox.unmapped()] == [(LIS, "XYZ", 1)]


def test_unknown_local_code_lenient_is_accepted_queued_and_counted(tmp_path: Path, catalog: Catalog) -> None:
    processor, box = make_processor(tmp_path, catalog, hl7={"policy": "lenient"})
    result = processor.handle(edit(CBC, "OBX|1|NM|WBC^", "OBX|1|NM|XYZ^"), "test")
    ack = read_ack(result.ack)
    assert (result.code, ack.code, ack.control_id, ack.err) == ("AA", "AA", "A0001", "")
    assert result.queued
    assert box.pending_count() == 1
    assert [(u[0], u[1], u[4]) for u in box.unmapped()] == [(LIS, "XYZ", 1)]
    assert any("XYZ" in w and "OBX-3" in w for w in result.warnings), result.warnings
    wbc = observations(queued_bundles(box)[0])[0]
    assert wbc["code"]["coding"] == [{"system": LIS, "code": "XYZ", "display": "白细胞计数"}]
    assert "meta" not in wbc, "an unmapped code is not a recognized item, so it gets no HR mark"


def test_non_number_nm_lenient_becomes_value_string(tmp_path: Path, catalog: Catalog) -> None:
    processor, box = make_processor(tmp_path, catalog, hl7={"policy": "lenient"})
    result = processor.handle(set_field(CBC, "OBX", 5, "abc"), "test")
    assert (result.code, result.queued) == ("AA", True)
    assert any("OBX-5" in w and "abc" in w for w in result.warnings), result.warnings
    wbc = observations(queued_bundles(box)[0])[0]
    assert wbc["valueString"] == "abc"
    assert "valueQuantity" not in wbc


def test_unknown_flag_lenient_is_dropped_with_a_warning(tmp_path: Path, catalog: Catalog) -> None:
    processor, box = make_processor(tmp_path, catalog, hl7={"policy": "lenient"})
    result = processor.handle(set_field(CBC, "OBX", 8, "ZZ"), "test")
    assert (result.code, result.queued) == ("AA", True)
    assert any("OBX-8" in w and "ZZ" in w for w in result.warnings), result.warnings
    assert "interpretation" not in observations(queued_bundles(box)[0])[0]


def test_lenient_policy_still_refuses_structural_errors(tmp_path: Path, catalog: Catalog) -> None:
    processor, box = make_processor(tmp_path, catalog, hl7={"policy": "lenient"})
    for raw in (set_field(CBC, "OBR", 7, "20251340"), drop_segments(CBC, "PID"), set_field(CBC, "MSH", 12, "2.7")):
        result = processor.handle(raw, "test")
        assert result.code in ("AE", "AR"), result.text
    assert box.pending_count() == 0


def test_same_message_twice_is_acknowledged_twice_and_queued_once(processor: Hl7Processor, outbox: Outbox) -> None:
    first, second = processor.handle(CBC, "test"), processor.handle(CBC, "test")
    assert [read_ack(r.ack).code for r in (first, second)] == ["AA", "AA"]
    assert [read_ack(r.ack).control_id for r in (first, second)] == ["A0001", "A0001"]
    assert (first.queued, first.duplicate, second.queued, second.duplicate) == (True, False, False, True)
    assert "duplicate" in second.text
    assert outbox.pending_count() == 1
    assert (outbox.status().accepted, outbox.status().duplicates) == (1, 1)


def test_a_refused_message_fixed_and_resent_is_queued(processor: Hl7Processor, outbox: Outbox) -> None:
    assert processor.handle(set_field(CBC, "OBX", 5, "abc"), "test").code == "AE"
    assert processor.handle(CBC, "test").queued
    assert outbox.pending_count() == 1


# ---------------------------------------------------------------------------------------------------- bugs found
def test_invalid_birth_date_is_a_data_type_error(processor: Hl7Processor, outbox: Outbox) -> None:
    result = processor.handle(set_field(CBC, "PID", 7, "19851340"), "test")
    ack = assert_refused(result, outbox, 0, "AE", "A0001")
    assert (ack.error_code, ack.location) == (102, "PID^1^7"), ack.err


def test_dt_value_that_is_no_date_is_refused(processor: Hl7Processor, outbox: Outbox) -> None:
    result = processor.handle(edit(VALUE_TYPES, "|DT|COLL^采样日期^L||20251104|", "|DT|COLL^采样日期^L||abcd|"), "t")
    ack = assert_refused(result, outbox, 0, "AE", "A0002")
    assert (ack.error_code, ack.location) == (102, "OBX^6^5"), ack.err


def test_tm_value_with_minute_99_is_refused(processor: Hl7Processor, outbox: Outbox) -> None:
    result = processor.handle(edit(VALUE_TYPES, "|TM|COLLT^采样时间^L||0745|", "|TM|COLLT^采样时间^L||0799|"), "t")
    ack = assert_refused(result, outbox, 0, "AE", "A0002")
    assert (ack.error_code, ack.location) == (102, "OBX^7^5"), ack.err


def test_fallback_obx_14_error_names_the_right_obx(processor: Hl7Processor) -> None:
    raw = set_field(set_field(CBC, "OBR", 7, ""), "OBX", 14, "20251340", occurrence=3)
    ack = read_ack(processor.handle(raw, "test").ack)
    assert (ack.code, ack.error_code) == ("AE", 102), ack.err
    assert ack.location == "OBX^3^14", ack.err


@pytest.mark.parametrize("length", [32, 33])
def test_err_1_text_keeps_escape_sequences_whole(processor: Hl7Processor, length: int) -> None:
    value = "a" * length + "\\F\\b"  # a '|' in the value, escaped as the standard says
    raw = edit(VALUE_TYPES, "|DT|COLL^采样日期^L||20251104|", f"|DT|COLL^采样日期^L||{value}|")
    ack = read_ack(processor.handle(raw, "test").ack)
    assert (ack.code, ack.error_code) == ("AE", 102)
    text = ack.err.split("^")[3].split("&")[1]
    assert text.count("\\") % 2 == 0, f"unterminated escape sequence in ERR-1 text {text!r}"


# ---------------------------------------------------------------------------------------------------- MLLP listener
class MllpClient:
    """A blocking MLLP client on a real TCP socket."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        self.buffer = b""

    def send(self, payload: bytes) -> None:
        self.sock.sendall(payload)

    def frame(self) -> bytes:
        """The next ACK frame's content (checks the 0x0B … 0x1C 0x0D framing)."""
        while EB + CR not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed by the listener; unread {self.buffer!r}")
            self.buffer += chunk
        frame, _, self.buffer = self.buffer.partition(EB + CR)
        assert frame.startswith(SB), frame[:20]
        return frame[1:]

    def exchange(self, message: bytes) -> Ack:
        self.send(SB + message + EB + CR)
        return read_ack(self.frame())

    def close(self) -> None:
        self.sock.close()


@contextlib.contextmanager
def mllp_server(processor: Hl7Processor, *, idle_timeout: float = 30) -> Iterator[MllpServer]:
    """The listener on an ephemeral port, its event loop in a thread (as ``adapters.service`` runs it)."""
    loop = asyncio.new_event_loop()
    server = MllpServer(
        processor, "127.0.0.1", 0, max_bytes=processor.config.hl7.max_message_bytes, idle_timeout=idle_timeout
    )
    loop.run_until_complete(server.start())
    thread = threading.Thread(target=loop.run_forever, name="mllp-test", daemon=True)
    thread.start()

    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(timeout=30)
        stop_loop(loop, thread)


def stop_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    """Cancel what still runs on ``loop`` (connection handlers), stop it and close it."""

    async def cancel_the_rest() -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run_coroutine_threadsafe(cancel_the_rest(), loop).result(timeout=30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    loop.close()


@contextlib.contextmanager
def client(server: MllpServer) -> Iterator[MllpClient]:
    c = MllpClient(server.port)
    try:
        yield c
    finally:
        c.close()


def test_mllp_good_message_gets_an_aa_frame(processor: Hl7Processor, outbox: Outbox) -> None:
    with mllp_server(processor) as server, client(server) as c:
        ack = c.exchange(CBC)
        assert (ack.code, ack.control_id) == ("AA", "A0001")
    assert outbox.pending_count() == 1


def test_mllp_garbage_before_the_frame_is_skipped(processor: Hl7Processor, outbox: Outbox) -> None:
    with mllp_server(processor) as server, client(server) as c:
        c.send(b"\x00\xff garbage \r\n\x1c\r")
        ack = c.exchange(CBC)
        assert (ack.code, ack.control_id) == ("AA", "A0001")
    assert outbox.pending_count() == 1


def test_mllp_non_hl7_frame_gets_ae_and_the_connection_stays_usable(processor: Hl7Processor, outbox: Outbox) -> None:
    with mllp_server(processor) as server, client(server) as c:
        ack = c.exchange(b"GET / HTTP/1.1\r\nHost: lis\r\n\r\n")
        assert (ack.code, ack.control_id, ack.error_code) == ("AE", "", 100)
        assert outbox.pending_count() == 0
        ack = c.exchange(CBC)
        assert (ack.code, ack.control_id) == ("AA", "A0001")
    assert outbox.pending_count() == 1


def test_mllp_client_leaving_mid_frame_does_not_break_the_listener(processor: Hl7Processor, outbox: Outbox) -> None:
    with mllp_server(processor) as server:
        with client(server) as c:
            c.send(SB + CBC[: len(CBC) // 2])
        with client(server) as c:
            c.send(SB + set_field(CBC, "MSH", 10, "HALF")[:100])
            c.sock.shutdown(socket.SHUT_WR)  # half-close: EOF in the middle of a frame
            assert c.sock.recv(100) == b"", "no ACK for a message that never ended"
        with client(server) as c:
            ack = c.exchange(CBC)
            assert (ack.code, ack.control_id) == ("AA", "A0001")
        assert server.connections == 3
    assert outbox.pending_count() == 1, "the half-sent messages were not kept"


def test_mllp_oversized_frame_gets_ae_then_the_next_message_passes(tmp_path: Path, catalog: Catalog) -> None:
    processor, box = make_processor(tmp_path, catalog, hl7={"max_message_bytes": 2000})
    with mllp_server(processor) as server, client(server) as c:
        big = set_field(CBC, "MSH", 10, "BIG1") + b"NTE|1||" + b"x" * 5000 + b"\r"
        ack = c.exchange(big)
        assert (ack.code, ack.control_id, ack.error_code) == ("AE", "BIG1", 207)
        huge = set_field(CBC, "MSH", 10, "BIG2") + b"NTE|1||" + b"y" * 300_000 + b"\r"  # past the stream limit
        ack = c.exchange(huge)
        assert (ack.code, ack.control_id, ack.error_code) == ("AE", "BIG2", 207)
        assert box.pending_count() == 0
        ack = c.exchange(CBC)
        assert (ack.code, ack.control_id) == ("AA", "A0001")
    assert box.pending_count() == 1


def test_mllp_large_frame_under_the_limit_is_read_whole(processor: Hl7Processor, outbox: Outbox) -> None:
    """A frame longer than the stream reader's 64 KiB buffer but under max_message_bytes is reassembled intact."""
    note = "影像所见" * 30_000  # 360 kB of UTF-8
    raw = CBC + f"NTE|1||{note}\r".encode()
    with mllp_server(processor) as server, client(server) as c:
        ack = c.exchange(raw)
        assert (ack.code, ack.control_id) == ("AA", "A0001")
    bundle = queued_bundles(outbox)[0]
    assert observations(bundle)[4]["note"] == [{"text": note}]


def test_mllp_several_messages_on_one_connection_are_answered_in_order(processor: Hl7Processor, outbox: Outbox) -> None:
    ids = [f"SEQ{n}" for n in range(6)]
    messages = [set_field(CBC, "MSH", 10, i) for i in ids]
    messages[2] = set_field(messages[2], "MSH", 12, "2.7")  # one refusal in the middle keeps its place
    with mllp_server(processor) as server, client(server) as c:
        c.send(b"".join(SB + m + EB + CR for m in messages))  # pipelined, without waiting for each ACK
        acks = [read_ack(c.frame()) for _ in messages]
    assert [a.control_id for a in acks] == ids
    assert [a.code for a in acks] == ["AA", "AA", "AR", "AA", "AA", "AA"]
    assert outbox.pending_count() == 5


def test_mllp_oversized_chinese_frame_ack_echoes_the_control_id(tmp_path: Path, catalog: Catalog) -> None:
    processor, _ = make_processor(tmp_path, catalog, hl7={"max_message_bytes": 2000})
    head = set_field(CBC, "MSH", 10, "CN1") + b"NTE|1||x"
    if (4096 - len(head)) % 3 == 0:
        head += b"x"  # so that the 4096-byte cut falls inside a 3-byte character
    raw = head + "备注".encode() * 3000 + b"\r"
    assert (4096 - len(head)) % 3 != 0
    with mllp_server(processor) as server, client(server) as c:
        ack = c.exchange(raw)
    assert (ack.code, ack.control_id) == ("AE", "CN1")


def test_mllp_close_does_not_wait_for_an_idle_client(processor: Hl7Processor) -> None:
    loop = asyncio.new_event_loop()
    server = MllpServer(processor, "127.0.0.1", 0, max_bytes=10_000, idle_timeout=120)
    loop.run_until_complete(server.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    idle = MllpClient(server.port)
    try:
        idle.exchange(CBC)  # an LIS keeps its connection open between messages
        started = time.monotonic()
        asyncio.run_coroutine_threadsafe(asyncio.wait_for(server.close(), 5), loop).result(timeout=10)
        assert time.monotonic() - started < 5
    finally:
        idle.close()
        stop_loop(loop, thread)


# ---------------------------------------------------------------------------------------------------- file drop
def age(path: Path, seconds: float = 60) -> Path:
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def test_drop_file_with_one_refused_message_is_quarantined_with_a_reason(
    tmp_path: Path, processor: Hl7Processor, outbox: Outbox
) -> None:
    drop = DropFolder(processor, tmp_path / "drop", settle_seconds=1)
    bad = edit(set_field(CBC, "MSH", 10, "B2"), "OBX|1|NM|WBC^", "OBX|1|NM|XYZ^")
    path = drop.folder / "results.hl7"
    path.write_bytes(CBC.replace(b"\r", b"\r\n") + bad)
    age(path)
    [outcome] = drop.scan_once()
    assert [r.code for r in outcome.results] == ["AA", "AE"]
    assert not outcome.ok
    assert not path.exists()
    assert outcome.moved_to.parent == drop.quarantine
    assert outcome.moved_to.read_bytes() == CBC.replace(b"\r", b"\r\n") + bad, "the file is kept as it came"
    reason = (drop.quarantine / f"{outcome.moved_to.name}.reason.txt").read_text(encoding="utf-8")
    assert "results.hl7: 1 of 2 message(s) accepted" in reason
    assert "\nmessage 2 (MSH-10 B2): AE " in reason and "XYZ" in reason and "OBX-3" in reason, reason
    assert "\nmessage 1 " not in reason, "the accepted message is not listed as refused"
    assert list(drop.processed.iterdir()) == []
    assert outbox.pending_count() == 1, "the good message of the file is queued"


def test_drop_all_good_file_goes_to_processed(tmp_path: Path, processor: Hl7Processor, outbox: Outbox) -> None:
    drop = DropFolder(processor, tmp_path / "drop", settle_seconds=1)
    batch = b"\xef\xbb\xbfFHS|^~\\&|LIS\nBHS|^~\\&|LIS\n" + CBC + set_field(CBC, "MSH", 10, "A0009") + b"BTS|2\nFTS|1\n"
    path = drop.folder / "batch.hl7"
    path.write_bytes(batch)
    age(path)
    [outcome] = drop.scan_once()
    assert outcome.ok
    assert [read_ack(r.ack).control_id for r in outcome.results] == ["A0001", "A0009"]
    assert outcome.moved_to.parent == drop.processed
    assert not path.exists()
    assert list(drop.quarantine.iterdir()) == []
    assert outbox.pending_count() == 2


def test_drop_file_still_being_written_is_left_alone(tmp_path: Path, processor: Hl7Processor, outbox: Outbox) -> None:
    drop = DropFolder(processor, tmp_path / "drop", settle_seconds=30)
    path = drop.folder / "fresh.hl7"
    path.write_bytes(CBC[:200])  # the LIS is still writing it
    part = drop.folder / "other.hl7.part"
    part.write_bytes(CBC)
    age(part)
    assert drop.scan_once() == []
    assert path.exists() and part.exists()
    assert outbox.pending_count() == 0
    path.write_bytes(CBC)  # finished
    age(path)
    [outcome] = drop.scan_once()
    assert (outcome.path.name, outcome.ok) == ("fresh.hl7", True)
    assert part.exists(), "a .part file is never read"
    assert outbox.pending_count() == 1


@pytest.mark.parametrize(
    ("content", "reason_part"),
    [
        (b"%PDF-1.7\n binary \x00\xff report", "must start with an MSH segment"),
        (b"", "no HL7 message"),
        (b"PID|1||A-123^^^HOSPA^MR\rOBR|1||R-1|CBC\r", "must start with an MSH segment"),
    ],
    ids=["pdf", "empty", "no-msh"],
)
def test_drop_non_hl7_file_is_quarantined(
    tmp_path: Path, processor: Hl7Processor, outbox: Outbox, content: bytes, reason_part: str
) -> None:
    drop = DropFolder(processor, tmp_path / "drop", settle_seconds=1)
    path = drop.folder / "report.bin"
    path.write_bytes(content)
    age(path)
    [outcome] = drop.scan_once()
    assert not outcome.ok
    assert outcome.moved_to.parent == drop.quarantine
    reason = (drop.quarantine / f"{outcome.moved_to.name}.reason.txt").read_text(encoding="utf-8")
    assert reason_part in reason, reason
    assert outbox.pending_count() == 0
    assert drop.scan_once() == [], "a quarantined file is not read again"


def test_drop_file_stays_for_a_retry_when_the_outbox_fails(tmp_path: Path, catalog: Catalog) -> None:
    class BrokenOutbox(Outbox):
        def enqueue(self, **message: Any) -> bool:
            raise OutboxError("the outbox cannot be written: disk I/O error")

    processor, _ = make_processor(tmp_path, catalog, outbox=BrokenOutbox(tmp_path / "broken.sqlite"))
    drop = DropFolder(processor, tmp_path / "drop", settle_seconds=1)
    path = drop.folder / "good.hl7"
    path.write_bytes(CBC)
    age(path)
    [outcome] = drop.scan_once()
    assert [r.code for r in outcome.results] == ["AR"]
    assert path.exists()
    assert list(drop.quarantine.iterdir()) == []
