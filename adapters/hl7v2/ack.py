"""Original-mode acknowledgements (reference/standards-notes.md §4.2): ``AA``, or ``AE``/``AR`` with an ERR segment.

The ACK mirrors the message's encoding characters, version, processing id and character set. ERR is written in the
form of the message's version: ERR-1 (ELD) for 2.3/2.4, ERR-2/3/4/8 for 2.5 and later.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from datetime import datetime, timezone

from adapters.errors import Hl7Error
from adapters.hl7v2.header import Header

_counter = itertools.count(1)
_lock = threading.Lock()


def _escape(text: str, sep: str, enc: str) -> str:
    comp, rep, esc, sub = enc[0], enc[1], enc[2], enc[3]
    out = text.replace(esc, f"{esc}E{esc}")
    for ch, code in ((sep, "F"), (comp, "S"), (sub, "T"), (rep, "R")):
        out = out.replace(ch, f"{esc}{code}{esc}")
    return " ".join(out.split())  # no CR/LF inside a segment


def _fit(text: str, limit: int, escape: Callable[[str], str]) -> str:
    """``text`` escaped, shortened (before escaping, so no escape sequence is cut) to fit ``limit`` characters."""
    out = escape(text)
    while len(out) > limit and text:
        text = text[: max(0, len(text) - max(1, len(out) - limit))]
        out = escape(text)
    return out


def build_ack(
    header: Header | None, error: Hl7Error | None, *, now: datetime, tz: timezone, app: str, facility: str
) -> str:
    """The ACK text for a message (``header`` None when even MSH could not be read)."""
    sep = header.field_sep if header else "|"
    enc = header.encoding_chars if header and len(header.encoding_chars) >= 4 else "^~\\&"
    version = header.version if header and header.version else "2.5.1"
    code = "AA" if error is None else error.ack_code
    with _lock:
        ack_id = f"ACK{now.strftime('%Y%m%d%H%M%S')}{next(_counter):06d}"
    stamp = now.astimezone(tz).strftime("%Y%m%d%H%M%S%z")

    def e(text: str) -> str:
        return _escape(text, sep, enc)

    msh = [
        "MSH",
        enc,
        e(header.receiving_app if header and header.receiving_app else app),
        e(header.receiving_facility if header and header.receiving_facility else facility),
        e(header.sending_app if header else ""),
        e(header.sending_facility if header else ""),
        stamp,
        "",
        f"ACK{enc[0]}R01{enc[0]}ACK",
        ack_id,
        e(header.processing_id if header and header.processing_id else "P"),
        e(version),
    ]
    if header and header.charset:
        msh += ["", "", "", "", "", e(header.charset)]
    segments = [sep.join(msh)]
    msa = ["MSA", code, e(header.control_id if header else "")]
    if error is not None:
        msa.append(_fit(error.text, 80, e))
    segments.append(sep.join(msa))
    if error is not None:
        comp, sub = enc[0], enc[3]
        seg, seq, field_no, component = error.location or ("", 0, 0, 0)
        text = e(str(error))
        if version in ("2.3", "2.3.1", "2.4"):
            location = comp.join(
                [
                    seg,
                    str(seq or ""),
                    str(field_no or ""),
                    sub.join([str(error.error_code), _fit(str(error), 60, e), "HL70357"]),
                ]
            )
            segments.append(sep.join(["ERR", location]))
        else:
            where = comp.join([seg, str(seq or ""), str(field_no or ""), "", str(component or "")]).rstrip(comp)
            code_cwe = comp.join([str(error.error_code), _ERROR_TEXT.get(error.error_code, ""), "HL70357"])
            segments.append(sep.join(["ERR", "", where, code_cwe, "E", "", "", "", text]))
    return "\r".join(segments) + "\r"


_ERROR_TEXT = {
    0: "Message accepted",
    100: "Segment sequence error",
    101: "Required field missing",
    102: "Data type error",
    103: "Table value not found",
    200: "Unsupported message type",
    201: "Unsupported event code",
    202: "Unsupported processing id",
    203: "Unsupported version id",
    204: "Unknown key identifier",
    205: "Duplicate key identifier",
    206: "Application record locked",
    207: "Application internal error",
}


def encode_ack(text: str, header: Header | None) -> bytes:
    codec = header.encoding if header else "utf-8"
    try:
        return text.encode(codec)
    except UnicodeEncodeError:
        return text.encode(codec, errors="replace")
