"""``read_header`` parses the header from the first bytes of the stream in memory (adapters.dicom.prefix): the
dataset and the pixel-data verdict — or the error — are the same as reading the stream itself gives, for pydicom's
sample files, for a sample carrying every attribute read, for files cut short anywhere and for prefixes ending
anywhere: before the header's end, inside an element, at the Pixel Data element, past the end of the file."""

from __future__ import annotations

import zlib
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from adapters.dicom import headers, prefix
from adapters.dicom.pixels import pixel_data_problem

from .dicom_samples import sample_bytes
from .test_dicom_header_tags import as_bytes, pydicom_files, rich

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom on odd sample values


def _seen(ds: Dataset, problem: str | None) -> Any:
    """What the caller gets: the facts (or the facts' error) and the pixel-data verdict."""
    try:
        return headers.facts_from_dataset(ds, "f"), problem
    except Exception as exc:
        return type(exc).__name__, str(exc), problem


def from_stream(data: bytes) -> Any:
    """The reference: the header read from the stream itself, as before."""
    fp = BytesIO(data)
    try:
        ds = dcmread(fp, stop_before_pixels=True, force=False, specific_tags=headers._HEADER_TAGS)
        return _seen(ds, pixel_data_problem(fp, ds))
    except Exception as exc:
        return type(exc).__name__


def in_memory(data: bytes, size: int, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(prefix, "PREFIX", size)
    try:
        return _seen(*prefix.read_header(BytesIO(data), headers._HEADER_TAGS))
    except Exception as exc:
        return type(exc).__name__


def prefixes(data: bytes) -> list[int]:
    return sorted({1, 131, 132, 200, 500, 1000, 1500, 2000, 3000, len(data) - 1, len(data), len(data) + 1,
                   *range(0, len(data), max(len(data) // 40, 1))} - {0})  # fmt: skip


@pytest.mark.parametrize("path", list(pydicom_files()), ids=lambda p: Path(p).name)
def test_pydicom_samples_read_the_same_with_any_prefix(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    data = Path(path).read_bytes()
    expected = from_stream(data)
    for size in (64, 1024, 4096, 65536, len(data)):
        assert in_memory(data, size, monkeypatch) == expected, size


def test_files_cut_short_read_the_same_with_any_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    for data in (as_bytes(rich()), sample_bytes("MR_small.dcm"), sample_bytes("CT_small.dcm")):
        for end in [*range(0, 2000, 97), *range(2000, len(data) + 1, max(len(data) // 25, 1)), len(data)]:
            cut = data[:end]
            expected = from_stream(cut)
            for size in prefixes(data):
                assert in_memory(cut, size, monkeypatch) == expected, (end, size)


def test_the_pixel_check_reads_the_file_past_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    """A header inside the prefix, the Pixel Data element beyond it: still checked against the whole file."""
    data = sample_bytes("CT_small.dcm")
    fp = BytesIO(data)
    dcmread(fp, stop_before_pixels=True)
    header_end = fp.tell()
    size = header_end + 64  # the prefix holds the header and the Pixel Data element's header, not its value
    assert size < len(data) - 20_000
    ok = in_memory(data, size, monkeypatch)
    assert not isinstance(ok, str) and ok[1] is None
    short = in_memory(data[: len(data) - 20_000], size, monkeypatch)
    assert not isinstance(short, str) and short[1] is not None and "declares" in short[1]
    assert short == from_stream(data[: len(data) - 20_000])


def test_a_deflated_dataset_is_read_from_the_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    ds = dcmread(BytesIO(sample_bytes("CT_small.dcm")))
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1.99"  # Deflated Explicit VR Little Endian
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    assert zlib is not None and len(data) > 1000
    for size in (256, 1024, len(data) - 1, len(data) + 1):
        assert in_memory(data, size, monkeypatch) == from_stream(data), size


def test_a_stream_that_cannot_seek_is_read_as_it_comes() -> None:
    data = sample_bytes("MR_small.dcm")

    class Pipe(BytesIO):
        def seekable(self) -> bool:
            return False

    ds, problem = prefix.read_header(Pipe(data), headers._HEADER_TAGS)
    assert (headers.facts_from_dataset(ds, "f"), problem) == from_stream(data)
