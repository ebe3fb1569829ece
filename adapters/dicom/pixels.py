"""Whether a DICOM file holds the whole Pixel Data element it declares, checked from where reading the header up to
the pixel data left the stream (headers.read_file): a file cut short in transit is refused, not sent as valid."""

from __future__ import annotations

import os
import struct
from typing import IO

from pydicom.dataset import Dataset

_LONG_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"UN", b"SQ", b"UT", b"UC", b"UR"}
_ITEM, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE0DD


def pixel_data_problem(fp: IO[bytes], ds: Dataset) -> str | None:
    """What is missing of the Pixel Data element at the stream's position (where ``stop_before_pixels`` left it), or
    None. Native pixel data must fit its declared length; encapsulated pixel data (PS3.5 A.4) must reach its
    sequence delimiter. Only the element headers are read (the fragments are skipped), so this costs a few seeks."""
    if not fp.seekable() or ds.original_encoding[0] is None:
        return None
    ts = getattr(ds.file_meta, "TransferSyntaxUID", None) if hasattr(ds, "file_meta") else None
    if ts is not None and ts.is_deflated:
        return None  # the dataset was inflated into memory: a cut stream already failed to inflate
    implicit, little = ds.original_encoding
    end = "<" if little else ">"
    start = fp.tell()
    size = fp.seek(0, os.SEEK_END)
    fp.seek(start)
    head = fp.read(8)
    if not head:
        return None  # no pixel data (a structured report, a presentation state)
    if len(head) < 8:
        return "the file ends inside the Pixel Data element's header"
    if implicit:
        length, body = struct.unpack(f"{end}L", head[4:8])[0], start + 8
    elif head[4:6] in _LONG_VRS:
        more = fp.read(4)
        if len(more) < 4:
            return "the file ends inside the Pixel Data element's header"
        length, body = struct.unpack(f"{end}L", more)[0], start + 12
    else:
        length, body = struct.unpack(f"{end}H", head[6:8])[0], start + 8
    if length != 0xFFFFFFFF:
        if body + length > size:
            return f"Pixel Data (7FE0,0010) declares {length} bytes, the file holds {max(size - body, 0)}"
        return None
    position = body
    while True:
        fp.seek(position)
        item = fp.read(8)
        if len(item) < 8:
            return "encapsulated Pixel Data (7FE0,0010) ends before its sequence delimiter"
        group, element, item_length = struct.unpack("<HHL", item)  # items are little endian (PS3.5 A.4)
        tag = (group << 16) | element
        if tag == _SEQUENCE_END:
            return None
        if tag != _ITEM:
            return f"encapsulated Pixel Data (7FE0,0010) holds ({group:04X},{element:04X}) where an item belongs"
        position += 8 + item_length
        if position > size:
            return f"a Pixel Data fragment declares {item_length} bytes past the end of the file"
