"""Exact ACKs in the forms of HL7 v2.3, v2.4 and v2.5.1 (adapters/hl7v2/ack.py): each field within its maximum
length, the fix first wherever a field is short, MSH-10 echoed whenever it is readable, and an oversized message's
ERR naming the segment that crossed the limit."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.hl7v2.ack import ERR_1, MSA_3, msa_6_length
from adapters.hl7v2.processor import Hl7Processor
from catalog import Catalog

from .test_hl7_bad_input import CBC, client, edit, make_processor, mllp_server, read_ack, set_field

NOW = datetime(2025, 11, 3, 2, 15, 0, tzinfo=UTC)  # 10:15 at the hospital (+08:00)
UNKNOWN_CODE = edit(CBC, "OBX|1|NM|WBC^", "OBX|1|NM|XYZ^")
HEAD = "MSH|^~\\&|HR-ADAPTER|REGION|LIS|HOSP_A|20251103101500+0800||ACK^R01^ACK|ACK20251103101500000001|P|"
BRIEF = "OBX-3: add a code-map row system,code,item for XYZ — local code 'XYZ' (白细胞计数) is"
FULL = (
    "OBX-3: local code 'XYZ' (白细胞计数) is not in the code map (item - declares a test that is not a recognized "
    "item); add a code-map row system,code,item for XYZ"
)

EXPECTED = {
    "2.3": (
        f"{HEAD}2.3||||||UNICODE UTF-8\r"
        f"MSA|AE|A0001|{BRIEF}|||103^OBX-3: add a code-map row system,code,item for XYZ — local code "
        "'XYZ' (白细胞计数) is not in^HL70357\r"
        "ERR|OBX^1^3^103&OBX-3: add a code-map row system,code,item for XYZ — local c&HL70357\r"
    ),
    "2.4": (
        f"{HEAD}2.4||||||UNICODE UTF-8\r"
        f"MSA|AE|A0001|{BRIEF}|||103^OBX-3: add a code-map row system,code,item for XYZ — local code "
        "'XYZ' (白细胞计数) is not in the code map (item - declares a test that is not a recognized item)^HL70357\r"
        "ERR|OBX^1^3^103&OBX-3: add a code-map row system,code,item for XYZ — local c&HL70357\r"
    ),
    "2.5.1": (
        f"{HEAD}2.5.1||||||UNICODE UTF-8\r"
        f"MSA|AE|A0001|{BRIEF}\r"
        f"ERR||OBX^1^3|103^Table value not found^HL70357|E|||{FULL}|{BRIEF}\r"
    ),
}


def processor(tmp_path: Path, catalog: Catalog, **sections: object) -> Hl7Processor:
    p, _ = make_processor(tmp_path, catalog, **sections)
    p.now = lambda: NOW
    return p


@pytest.mark.parametrize("version", sorted(EXPECTED))
def test_the_ack_of_each_version_is_exact(tmp_path: Path, catalog: Catalog, version: str) -> None:
    ack = processor(tmp_path, catalog).handle(set_field(UNKNOWN_CODE, "MSH", 12, version), "test").ack
    assert ack.decode() == EXPECTED[version]


@pytest.mark.parametrize("version", sorted(EXPECTED))
def test_every_field_keeps_its_maximum_length_and_the_hint(tmp_path: Path, catalog: Catalog, version: str) -> None:
    ack = read_ack(processor(tmp_path, catalog).handle(set_field(UNKNOWN_CODE, "MSH", 12, version), "test").ack)
    msa, err = ack.message.segment("MSA"), ack.message.segment("ERR")
    assert len(str(msa[3])) <= MSA_3
    assert str(msa[3]).startswith("OBX-3: add a code-map row system,code,item for XYZ")
    if version == "2.5.1":
        assert len(str(err[8])) <= 80 and str(err[7]) == FULL
    else:
        assert len(str(err[1])) <= ERR_1
        assert len(str(msa[6])) <= msa_6_length(version)
        assert "add a code-map row system,code,item for XYZ" in str(err[1])


def test_wrong_encoding_characters_still_echo_msh_10(tmp_path: Path, catalog: Catalog) -> None:
    ack = processor(tmp_path, catalog).handle(edit(CBC, "^~\\&", "^^\\&"), "test").ack.decode()
    assert ack == (
        f"{HEAD}2.5.1||||||UNICODE UTF-8\r"
        "MSA|AE|A0001|MSH-2: send MSH-2 as \\S\\\\R\\\\E\\\\T\\ (component, repetition, escape, subc\r"
        "ERR||MSH^1^2|102^Data type error^HL70357|E|||MSH-2: encoding characters '\\S\\\\S\\\\E\\\\E\\\\T\\' are not "
        "four distinct delimiters; send MSH-2 as \\S\\\\R\\\\E\\\\T\\ (component, repetition, escape, subcomponent)|"
        "MSH-2: send MSH-2 as \\S\\\\R\\\\E\\\\T\\ (component, repetition, escape, subc\r"
    )


def test_an_oversized_message_names_the_segment_that_crossed_the_limit(tmp_path: Path, catalog: Catalog) -> None:
    raw = CBC + b"NTE|1||" + b"x" * 2000 + b"\r"
    ack = processor(tmp_path, catalog, hl7={"max_message_bytes": 2000}).handle(raw, "test").ack.decode()
    assert ack == (
        f"{HEAD}2.5.1||||||UNICODE UTF-8\r"
        "MSA|AE|A0001|NTE (segment 2): send the results in smaller messages (one report each) — the me\r"
        "ERR||NTE^2|207^Application internal error^HL70357|E|||NTE (segment 2): the message is 2652 bytes; this "
        "interface takes at most 2000; send the results in smaller messages (one report each)|NTE (segment 2): send "
        "the results in smaller messages (one report each) — the me\r"
    )


def test_an_oversized_frame_over_mllp_names_its_segment(tmp_path: Path, catalog: Catalog) -> None:
    """The listener keeps only the frame's head, but knows where the limit was crossed (here OBX 3, far past the
    4096 bytes kept): the ERR names it."""
    big = CBC.replace(b"OBX|3|NM|HGB^", b"OBX|3|NM|HGB^" + b"y" * 6000, 1)
    limit = CBC.index(b"OBX|3|") + 100
    p = processor(tmp_path, catalog, hl7={"max_message_bytes": limit})
    with mllp_server(p) as server, client(server) as c:
        ack = c.exchange(big)
        assert (ack.code, ack.control_id, ack.error_code, ack.location) == ("AE", "A0001", 207, "OBX^3")


def test_an_oversized_frame_whose_limit_falls_in_msh_is_located_at_msh(tmp_path: Path, catalog: Catalog) -> None:
    p = processor(tmp_path, catalog, hl7={"max_message_bytes": 50})
    with mllp_server(p) as server, client(server) as c:
        ack = c.exchange(CBC)
    assert (ack.code, ack.control_id, ack.error_code, ack.location) == ("AE", "A0001", 207, "MSH^1")
