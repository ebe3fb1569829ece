"""A DICOM header parsed in memory: the first :data:`PREFIX` bytes of the stream in one read, parsed there.
pydicom's reader calls ``tell``, ``seek`` and ``read`` for every element it walks; on a file those are a buffered
reader's, in memory ``BytesIO``'s, and the difference was a third of a header read. The rest of the file is touched
only where the header ends, at the Pixel Data element (``pixels.pixel_data_problem``).

What is read is what reading the stream itself gives (tests/unit/adapters/test_dicom_prefix.py compares the two for
files cut short anywhere, with prefixes ending anywhere): a stream shorter than the prefix is wholly in memory; a
header that does not end inside the prefix — at a Pixel Data element's header — a stream that cannot seek, or a
deflated dataset is read from the stream as before.
"""

from __future__ import annotations

import struct
import zlib
from io import BytesIO
from typing import IO

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from adapters.dicom.pixels import pixel_data_problem

PREFIX = 64 * 1024
"""Bytes read at once: DICOM headers up to the pixel data are a few KiB; a CT slice is about 512 KiB in all."""
_PIXEL_ELEMENTS = (0x0010, 0x0008, 0x0009)  # (7FE0,0010) Pixel Data, (7FE0,0008) Float, (7FE0,0009) Double Float
# what a cut prefix may raise where the whole stream would not: the header is then read from the stream
_CUT = (EOFError, struct.error, ValueError, TypeError, KeyError, OverflowError, LookupError, zlib.error,
        InvalidDicomError, OSError)  # fmt: skip


def read_header(fp: IO[bytes], tags: list[int] | None) -> tuple[Dataset, str | None]:
    """The dataset up to its pixel data (only ``tags``: pydicom's ``specific_tags``; None: every attribute), and
    what is missing of its Pixel Data element, or None (``pixels.pixel_data_problem``)."""
    if not fp.seekable():
        return _from_stream(fp, tags)
    start = fp.tell()
    head = fp.read(PREFIX)
    memory = BytesIO(head)
    if len(head) < PREFIX:  # the whole stream is in memory: what it raises, reading the stream raises
        ds = dcmread(memory, stop_before_pixels=True, force=False, specific_tags=tags)
        return ds, pixel_data_problem(memory, ds)
    cut: Dataset | None
    try:
        cut = dcmread(memory, stop_before_pixels=True, force=False, specific_tags=tags)
    except _CUT:
        cut = None
    if cut is not None and _pixel_data_next(cut, head, memory.tell()):
        fp.seek(start + memory.tell())
        return cut, pixel_data_problem(fp, cut)
    fp.seek(start)
    return _from_stream(fp, tags)


def _from_stream(fp: IO[bytes], tags: list[int] | None) -> tuple[Dataset, str | None]:
    ds = dcmread(fp, stop_before_pixels=True, force=False, specific_tags=tags)
    return ds, pixel_data_problem(fp, ds)


def _pixel_data_next(ds: Dataset, head: bytes, at: int) -> bool:
    """Whether the reader stopped inside ``head`` before a Pixel Data element's header (every element before it was
    then read whole from the prefix), in a dataset that was not inflated (its positions are the file's)."""
    meta = getattr(ds, "file_meta", None)
    syntax = getattr(meta, "TransferSyntaxUID", None) if meta is not None else None
    try:
        deflated = syntax is not None and syntax.is_deflated
    except ValueError:  # not a transfer syntax pydicom knows (or one cut short): let the stream's read decide
        return False
    if deflated or ds.original_encoding[0] is None or at + 8 > len(head):
        return False
    little = ds.original_encoding[1]
    group, element = struct.unpack("<HH" if little else ">HH", head[at : at + 4])
    return group == 0x7FE0 and element in _PIXEL_ELEMENTS
