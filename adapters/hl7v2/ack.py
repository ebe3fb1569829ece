"""Original-mode acknowledgements (HL7 v2.5.1 §2.9.2; ACK structure MSH MSA [ERR] in v2.3 and v2.4, MSH [SFT] MSA
[{ERR}] in v2.5 and later): ``AA``, or ``AE``/``AR`` with an ERR segment.

The ACK mirrors the message's encoding characters, version, processing id and character set. The error is written
in the fields of the message's version, each within its maximum length, and where a field is short the text starts
with the fix (``Hl7Error.brief``), so cutting it at its end keeps what the sender must do:

- v2.3 and v2.4: MSA-3 text message (ST, 80) the brief text; MSA-6 error condition (CE, 100 in v2.3, 250 in
  v2.4) ``code^text^HL70357`` with the brief text as far as it fits (whole in v2.4 but for the longest); ERR-1
  (ELD: segment^sequence^field^code, 80) the location and the code, with the brief text as far as it fits;
- v2.5 and v2.5.1: MSA-3 (80) the brief text; ERR-2 location (ERL), ERR-3 HL7 error code (CWE, table 0357), ERR-4
  severity ``E``, ERR-7 diagnostic information (TX, 2048) the whole text, ERR-8 user message (TX, 80) the brief
  text.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

from adapters.errors import Hl7Error
from adapters.hl7v2.header import DEFAULT_ENCODING_CHARS, Header

OLD_VERSIONS = ("2.3", "2.3.1", "2.4")
MSA_3 = 80
ERR_1 = 80
ERR_7 = 2048
ERR_8 = 80


def msa_6_length(version: str) -> int:
    """MSA-6 error condition's maximum length: CE 100 in v2.3/2.3.1, 250 in v2.4."""
    return 250 if version == "2.4" else 100


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
    header: Header | None,
    error: Hl7Error | None,
    *,
    now: datetime,
    tz: timezone,
    app: str,
    facility: str,
    sequence: int,
) -> str:
    """The ACK text for a message (``header`` None when even MSH could not be read); ``sequence`` numbers the ACKs of
    one listener (MSH-10 is ``ACK`` + the time + the sequence)."""
    sep = header.field_sep if header else "|"
    enc = header.encoding_chars if header and len(header.encoding_chars) >= 4 else DEFAULT_ENCODING_CHARS
    version = header.version if header and header.version else "2.5.1"
    code = "AA" if error is None else error.ack_code
    ack_id = f"ACK{now.astimezone(tz).strftime('%Y%m%d%H%M%S')}{sequence:06d}"
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
    if error is None:
        segments.append(sep.join(msa))
        return "\r".join(segments) + "\r"
    comp, sub = enc[0], enc[3]
    seg, seq, field_no, component = error.location or ("", 0, 0, 0)
    number = str(error.error_code)
    msa.append(_fit(error.brief(), MSA_3, e))
    if version in OLD_VERSIONS:
        room = msa_6_length(version) - len(number) - len("HL70357") - 2
        msa += ["", "", comp.join([number, _fit(error.brief(), room, e), "HL70357"])]
        segments.append(sep.join(msa))
        head = comp.join([seg, str(seq or ""), str(field_no or ""), ""])
        room = ERR_1 - len(head) - len(number) - len("HL70357") - 2
        segments.append(sep.join(["ERR", head + sub.join([number, _fit(error.brief(), room, e), "HL70357"])]))
    else:
        segments.append(sep.join(msa))
        where = comp.join([seg, str(seq or ""), str(field_no or ""), "", str(component or "")]).rstrip(comp)
        code_cwe = comp.join([number, _ERROR_TEXT.get(error.error_code, ""), "HL70357"])
        diagnostic = _fit(str(error), ERR_7, e)
        segments.append(sep.join(["ERR", "", where, code_cwe, "E", "", "", diagnostic, _fit(error.brief(), ERR_8, e)]))
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
