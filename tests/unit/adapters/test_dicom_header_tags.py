"""``read_file`` reads only the attributes ``facts_from_dataset`` uses (``specific_tags``): the facts, or the error,
are the same as from the whole header, for pydicom's sample files, for samples carrying every attribute read (the
sequences, Chinese names in GB 18030, invalid dates) and for files cut short anywhere."""

from __future__ import annotations

from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import pydicom.data
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

from adapters.dicom import headers
from adapters.errors import DicomInputError

from .dicom_samples import sample, sample_bytes

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on odd sample values


def outcome(source: Path | bytes) -> Any:
    try:
        return headers.read_file(source if isinstance(source, Path) else BytesIO(source), "f")
    except DicomInputError as exc:
        return str(exc)


def both(source: Path | bytes, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    ours = outcome(source)
    with monkeypatch.context() as m:
        m.setattr(headers, "_HEADER_TAGS", None)  # the whole header, as before
        whole = outcome(source)
    return ours, whole


def pydicom_files() -> Iterator[str]:
    """The sample files inside the pydicom wheel (never the ones it would download)."""
    for path in sorted((Path(pydicom.data.__file__).parent / "test_files").rglob("*.dcm")):
        if path.stat().st_size < 2_000_000:
            yield str(path)


@pytest.mark.parametrize("path", list(pydicom_files()), ids=lambda p: Path(p).name)
def test_pydicom_samples_read_the_same(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ours, whole = both(Path(path), monkeypatch)
    assert ours == whole


def rich() -> Dataset:
    ds = sample("CT_small.dcm")
    ds.SpecificCharacterSet = "GB18030"
    ds.PatientName = "Zhang^San=张^三"
    ds.ReferringPhysicianName = "Li^Si=李^四"
    ds.StudyDescription = "胸部CT平扫"
    ds.SeriesDescription = "肺窗"
    ds.StudyDate, ds.SeriesDate, ds.SeriesTime = "20250230", "20251103", "99"
    ds.TimezoneOffsetFromUTC = "+0800"
    ds.IssuerOfPatientID = "HOSPA"
    other = Dataset()
    other.PatientID, other.IssuerOfPatientID, other.TypeOfPatientID = "110105198503120020", "CHN", "TEXT"
    qualifier = Dataset()
    qualifier.IdentifierTypeCode = "NNCHN"
    other.IssuerOfPatientIDQualifiersSequence = [qualifier]
    ds.OtherPatientIDsSequence = [other]
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = "CT-CHEST", "99HOSPA", "胸部CT"
    ds.ProcedureCodeSequence = [code]
    issuer = Dataset()
    issuer.LocalNamespaceEntityID = "HOSPA-RIS"
    ds.IssuerOfAccessionNumberSequence = [issuer]
    ds.Laterality, ds.ContrastBolusAgent, ds.StudyID = "R", "Iohexol", "S1"
    return ds


def as_bytes(ds: Dataset) -> bytes:
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_every_attribute_read_reads_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    data = as_bytes(rich())
    ours, whole = both(data, monkeypatch)
    assert not isinstance(ours, str), ours
    assert ours == whole
    assert ours.family == "张" and ours.other_ids and ours.procedure_codes and ours.accession_issuer
    assert ours.warnings  # the invalid dates


def test_files_cut_short_read_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    for data in (as_bytes(rich()), sample_bytes("MR_small.dcm")):
        for end in [*range(0, 2000, 37), *range(2000, len(data), max(len(data) // 60, 1))]:
            ours, whole = both(data[:end], monkeypatch)
            assert ours == whole, end


def test_the_keywords_are_what_the_facts_use() -> None:
    """A dataset holding only the attributes named gives the facts of the whole one."""
    ds = rich()
    path = get_testdata_file("CT_small.dcm")
    assert path is not None
    only = Dataset()
    for keyword in headers.HEADER_KEYWORDS:
        if keyword in ds:
            only[keyword] = ds[keyword]
    only.SpecificCharacterSet = ds.SpecificCharacterSet
    assert headers.facts_from_dataset(only) == headers.facts_from_dataset(ds)
    reread = dcmread(BytesIO(as_bytes(ds)), stop_before_pixels=True)
    assert headers.facts_from_dataset(reread) == headers.facts_from_dataset(ds)


def test_every_keyword_names_a_tag() -> None:
    assert headers._HEADER_TAGS is not None
    assert len(headers._HEADER_TAGS) == len(set(headers.HEADER_KEYWORDS)) == len(headers.HEADER_KEYWORDS)
