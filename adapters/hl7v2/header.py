"""The one reader of a message's MSH segment (HL7 v2.5.1 §2.14.9; delimiters §2.5.4, §2.14.9.1–2; character sets
§2.14.9.18 and table 0211), used both to parse a message and to answer one that will be refused.

Only the MSH segment's bytes are looked at, and each field is decoded on its own, so what can be read is read even
from a message that is wrong elsewhere: a mislabelled or unsupported character set, a frame cut inside a multi-byte
character, or invalid encoding characters (MSH-2) behind a valid field separator still leave MSH-10 readable and
echoed in the ACK. What makes the header unusable for parsing is kept as ``Header.problem``; only a message whose
fields cannot be told apart at all (no MSH, a truncated MSH, a field separator that is no delimiter) raises.
"""

from __future__ import annotations

from dataclasses import dataclass

from adapters.errors import Hl7Error

DEFAULT_ENCODING_CHARS = "^~\\&"
"""Component, repetition, escape and subcomponent separators of HL7 v2.5.1 §2.5.4 (what an ACK uses when the
message's own are invalid)."""

CHARSETS = {
    "ASCII": "ascii",
    "8859/1": "latin-1",
    "UNICODE UTF-8": "utf-8",
    "UNICODE": "utf-8",
    "UTF-8": "utf-8",
    "GB 18030-2000": "gb18030",
    "GB18030": "gb18030",
    "GB 2312": "gb18030",  # GB 18030 is a superset of GB 2312 and GBK
    "GB2312": "gb18030",
    "GBK": "gb18030",
}
"""MSH-18 values (HL7 table 0211 and the forms Chinese LIS use) → Python codecs."""


@dataclass(slots=True)
class Header:
    control_id: str
    version: str
    sending_app: str
    sending_facility: str
    receiving_app: str
    receiving_facility: str
    timestamp: str
    processing_id: str
    charset: str  # MSH-18 as sent when it names a character set this side knows (echoed in the ACK), else ""
    encoding: str  # the Python codec the message is decoded with
    field_sep: str = "|"
    encoding_chars: str = DEFAULT_ENCODING_CHARS  # the message's own when valid, else the default (for the ACK)
    message_type: str = ""  # MSH-9.1
    event: str = ""  # MSH-9.2
    problem: Hl7Error | None = None  # why the message cannot be parsed although these fields could be read


def strip_preamble(raw: bytes) -> bytes:
    """The message without a UTF-8 byte-order mark and leading blank lines (some LIS files have both)."""
    return raw.removeprefix(b"\xef\xbb\xbf").lstrip(b"\r\n\t ")


def _bad_delimiters(chars: str) -> bool:
    return len(set(chars)) != len(chars) or any(
        c.isalnum() or c.isspace() or not c.isprintable() or ord(c) > 127 for c in chars
    )


def _unescape(value: str, esc: str) -> str:
    """HL7 v2.5.1 §2.7.4 delimiter escapes in a header value (\\F\\ \\S\\ \\T\\ \\R\\ \\E\\)."""
    if not esc or esc not in value:
        return value
    for code, ch in (("F", "|"), ("S", "^"), ("T", "&"), ("R", "~"), ("E", esc)):
        value = value.replace(f"{esc}{code}{esc}", ch)
    return value


def read_header(raw: bytes, default_encoding: str) -> Header:
    """The header facts of ``raw``; ``Hl7Error`` only when the MSH fields cannot be told apart at all."""
    raw = strip_preamble(raw)
    if not raw.startswith(b"MSH"):
        head = raw[:3].decode("ascii", "replace")
        raise Hl7Error(
            f"the message must start with an MSH segment, not {head!r}", error_code=100, location=("MSH", 1, 0, 0)
        )
    if len(raw) < 8:
        raise Hl7Error("the MSH segment is truncated", error_code=101, location=("MSH", 1, 1, 0))
    sep = raw[3:4].decode("latin-1")
    if _bad_delimiters(sep):
        raise Hl7Error(
            f"MSH-1 field separator {sep!r} is not a delimiter (expected a printable ASCII character such as |)",
            error_code=102,
            location=("MSH", 1, 1, 0),
        )
    end = min((i for i in (raw.find(b"\r"), raw.find(b"\n")) if i >= 0), default=len(raw))
    fields = [b"MSH", sep.encode("latin-1"), *raw[:end].split(sep.encode("latin-1"))[1:]]
    enc = fields[2].decode("latin-1") if len(fields) > 2 else ""
    problem: Hl7Error | None = None
    if len(enc) not in (4, 5) or _bad_delimiters(sep + enc):
        if sep in DEFAULT_ENCODING_CHARS:  # neither its own nor the default delimiters can go with it
            raise Hl7Error(
                f"MSH-1/MSH-2 delimiters {sep + enc!r} are not valid (expected a field separator and four distinct "
                "delimiters such as |^~\\&)",
                error_code=102,
                location=("MSH", 1, 2, 0),
            )
        problem = Hl7Error(
            f"encoding characters {enc!r} are not four distinct delimiters",
            error_code=102,
            location=("MSH", 1, 2, 0),
            fix="send MSH-2 as ^~\\& (component, repetition, escape, subcomponent)",
        )
        enc = DEFAULT_ENCODING_CHARS
    comp, rep, esc = enc[0], enc[1], enc[2]

    charset = fields[18].decode("latin-1").split(rep)[0].strip() if len(fields) > 18 else ""
    codec = CHARSETS.get(charset.upper()) if charset else default_encoding
    if codec is None:
        problem = problem or Hl7Error(
            f"character set {charset!r} is not supported",
            error_code=103,
            location=("MSH", 1, 18, 0),
            fix="send UNICODE UTF-8, GB 18030-2000, 8859/1 or ASCII in MSH-18",
        )
        charset, codec = "", default_encoding  # not echoed: the sender's MSH-18 names nothing this side knows

    def component(n: int, c: int = 1) -> str:
        if len(fields) <= n:
            return ""
        parts = fields[n].decode(codec, "replace").split(rep)[0].split(comp)
        return _unescape(parts[c - 1].strip(), esc) if len(parts) >= c else ""

    return Header(
        control_id=component(10),
        version=component(12),
        sending_app=component(3),
        sending_facility=component(4),
        receiving_app=component(5),
        receiving_facility=component(6),
        timestamp=component(7),
        processing_id=component(11),
        charset=charset,
        encoding=codec,
        field_sep=sep,
        encoding_chars=enc,
        message_type=component(9, 1),
        event=component(9, 2),
        problem=problem,
    )
