"""adapters/dicom/elements.py: ``plain_text`` reads what ``text`` (pydicom's conversion) reads, for files written
with any of the character sets hospitals use (and some it must leave to pydicom), explicit and implicit VR, and
values of every kind: ASCII with padding, backslashes and spaces, Chinese, control bytes, empty."""

from __future__ import annotations

import os
from io import BytesIO
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydicom import config
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from adapters.dicom import elements, headers
from adapters.errors import DicomInputError

from .dicom_samples import sample

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on the odd values written here

PROPERTY = settings(
    max_examples=int(os.environ.get("HR_FUZZ_EXAMPLES", "300")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
CHARSETS = ["", "ISO_IR 100", "ISO_IR 192", "GB18030", "GBK", "ISO 2022 IR 87", "ISO_IR 13", "\\ISO 2022 IR 58"]
KEYWORDS = [
    k
    for k in headers.HEADER_KEYWORDS
    if not k.endswith("Sequence") and k not in ("PatientName", "ReferringPhysicianName")
]
ITEMS = {
    "OtherPatientIDsSequence": ("PatientID", "IssuerOfPatientID", "TypeOfPatientID"),
    "ProcedureCodeSequence": ("CodeValue", "CodingSchemeDesignator", "CodeMeaning"),
    "IssuerOfAccessionNumberSequence": ("LocalNamespaceEntityID", "UniversalEntityID"),
}
"""The sequences the facts read, and the attributes of their items."""
VALUES = st.one_of(
    st.sampled_from(["", " ", "A", "1.2.840.10008", "CT", "20251103", "101500.5", "+0800", "A\\B", " A \\ B ", "\\"]),
    st.sampled_from(["1", " 12", "+7", "-3", "007", "1.0", "1e3", "123456789", "1234567890", "99999999999", "1\\2"]),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12),
    st.text(alphabet="AB1 \\.-^", max_size=12),
    st.sampled_from(["胸部CT", "张三", "ÄÖ", "A\tB", "A\nB", "\x1b$B", "ｱｲ"]),
)


def facts(data: bytes) -> Any:
    try:
        return headers.read_file(BytesIO(data), "f")
    except DicomInputError as exc:
        return str(exc)


@PROPERTY
@given(
    charset=st.sampled_from(CHARSETS),
    implicit=st.booleans(),
    values=st.dictionaries(st.sampled_from(KEYWORDS), VALUES, max_size=8),
    items=st.dictionaries(st.sampled_from(sorted(ITEMS)), st.lists(VALUES, min_size=3, max_size=3), max_size=3),
)
def test_plain_reads_are_pydicoms(
    charset: str,
    implicit: bool,
    values: dict[str, str],
    items: dict[str, list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ds = sample("CT_small.dcm")
    for sequence, texts in items.items():
        item = Dataset()
        for keyword, value in zip(ITEMS[sequence], texts, strict=False):
            setattr(item, keyword, value)
        setattr(ds, sequence, [item])
    if charset:
        ds.SpecificCharacterSet = charset
    try:
        for keyword, value in values.items():
            setattr(ds, keyword, value)
    except (ValueError, OverflowError):  # pydicom refuses the value for its VR (an IS that is no number)
        assume(False)
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian
    buffer = BytesIO()
    try:
        ds.save_as(buffer, implicit_vr=implicit, little_endian=True)
    except Exception:  # a value its character set cannot encode (pydicom refuses to write it)
        assume(False)
    data = buffer.getvalue()
    ours = facts(data)
    with monkeypatch.context() as m:
        m.setattr(elements, "plain_text", elements.text)
        theirs = facts(data)
    assert ours == theirs


def test_plain_reads_are_taken_and_left() -> None:
    """Not vacuous: an ASCII value of a listed VR is read plainly, the rest through pydicom."""
    ds = sample("CT_small.dcm")
    buffer = BytesIO()
    ds.save_as(buffer)
    from pydicom import dcmread

    read = dcmread(BytesIO(buffer.getvalue()), stop_before_pixels=True)
    assert elements.plain_text(read, "StudyInstanceUID") == str(ds.StudyInstanceUID)
    assert type(read.get_item(0x0020000D)).__name__ == "RawDataElement"  # not converted by the plain read
    chinese = Dataset()
    chinese.SpecificCharacterSet = "GB18030"
    chinese.StudyDescription = "胸部CT"
    assert elements.plain_text(chinese, "StudyDescription") == "胸部CT"
    assert config.datetime_conversion is False
