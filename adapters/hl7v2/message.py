"""HL7 v2 ORU^R01 (v2.3–2.5.1) from raw bytes to a plain description of its content.

Bytes are decoded with the character set MSH-18 names (or the configured default — many Chinese LIS send GB 18030),
the segment structure is split as the ``hl7`` library splits it (segments.py), and the ORU structure is walked:
``MSH { PID [PV1] { [ORC] OBR {NTE} { OBX {NTE} } } }``. Everything wrong is an ``Hl7Error`` naming the segment
and field, with the ACK code and HL7 table 0357 error code to answer with.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field

from adapters.errors import Hl7Error
from adapters.hl7v2 import segments
from adapters.hl7v2.header import Header, read_header, strip_preamble
from adapters.hl7v2.segments import Segment

log = logging.getLogger("hr_adapter.hl7")

SUPPORTED_VERSIONS = ("2.3", "2.3.1", "2.4", "2.5", "2.5.1")


@dataclass(frozen=True, slots=True)
class CE:
    """A coded element (CE/CWE): identifier^text^coding system, and the alternate triplet."""

    code: str
    text: str
    system: str
    alt_code: str = ""
    alt_text: str = ""
    alt_system: str = ""

    @property
    def empty(self) -> bool:
        return not (self.code or self.text or self.alt_code)


@dataclass(frozen=True, slots=True)
class CX:
    """One PID-3 repetition: id, assigning authority (namespace and universal id), identifier type code."""

    value: str
    authority: str
    authority_uid: str
    type: str


@dataclass(slots=True)
class PatientData:
    identifiers: list[CX]
    family: str
    given: list[str]
    birth: str
    sex: str


@dataclass(slots=True)
class ObxData:
    seq: int  # the segment's position among the message's OBX segments (1-based), for error locations
    set_id: str
    value_type: str
    code: CE
    sub_id: str
    values: list[list[str]]  # repetitions of OBX-5, each its components (unescaped)
    units: CE
    reference_range: str
    flags: list[str]
    status: str
    observed: str
    notes: list[str] = field(default_factory=list)


@dataclass(slots=True)
class OrderData:
    seq: int  # position among the message's OBR segments (1-based)
    placer: str
    filler: str
    code: CE
    effective: str
    issued: str
    status: str
    section: str  # OBR-24 diagnostic service section (LAB, HM, CT, MR, RAD…)
    accession: str  # OBR-18 placer field 1 (the accession number in IHE radiology)
    observations: list[ObxData] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(slots=True)
class PatientGroup:
    patient: PatientData
    pid_seq: int
    orders: list[OrderData] = field(default_factory=list)


@dataclass(slots=True)
class OruMessage:
    header: Header
    groups: list[PatientGroup]


# ---------------------------------------------------------------------------------------------------- field access
_get = segments.get
_reps = segments.reps
_components = segments.components
_get_components = segments.get_components


def _ce(seg: Segment, field_no: int, rep: int = 1) -> CE:
    return CE(*_get_components(seg, field_no, rep, 6))


# ---------------------------------------------------------------------------------------------------- parse
_DATE = re.compile(r"^\d{4}(\d{2}(\d{2}(\d{2}(\d{2}(\d{2}(\.\d{1,4})?)?)?)?)?)?([+-]\d{4})?$")


def check_timestamp(value: str, location: tuple[str, int, int, int]) -> str:
    """An HL7 DTM/TS value (the first component) checked for form; empty stays empty."""
    value = value.strip()
    if value and not _DATE.match(value):
        raise Hl7Error(
            f"{value!r} is not an HL7 date/time (YYYY[MM[DD[HH[MM[SS]]]]][+ZZZZ])", error_code=102, location=location
        )
    return value


def parse(raw: bytes, *, default_encoding: str = "utf-8", processing_ids: tuple[str, ...] = ("P",)) -> OruMessage:
    """Decode and parse an ORU^R01; any problem is an ``Hl7Error`` (never another exception)."""
    raw = strip_preamble(raw)
    header = read_header(raw, default_encoding)
    if header.problem is not None:
        raise header.problem
    try:
        text = raw.decode(header.encoding)
    except UnicodeDecodeError as exc:
        raise Hl7Error(
            f"the message is not valid {header.encoding} text (byte {exc.start}); MSH-18 names the character set",
            error_code=102,
            location=("MSH", 1, 18, 0),
        ) from None
    text = "\r".join(s for s in text.replace("\r\n", "\r").replace("\n", "\r").split("\r") if s.strip())
    try:
        message = segments.split_message(text)
    except Exception as exc:  # defensive: as hl7.parse, whose splitting this is
        raise Hl7Error(f"the message cannot be parsed as HL7 v2: {exc}", error_code=100) from None
    try:
        return _walk(message, header, processing_ids)
    except Hl7Error:
        raise
    except Exception as exc:  # defensive: a library quirk on odd input is still the sender's problem, not a crash
        log.warning("unexpected %s while reading the message structure", type(exc).__name__, exc_info=True)
        raise Hl7Error(f"the message structure cannot be read: {type(exc).__name__}", error_code=100) from None


def _walk(message: list[Segment], header: Header, processing_ids: tuple[str, ...]) -> OruMessage:
    if not header.control_id:
        raise Hl7Error("the message control id is empty", error_code=101, location=("MSH", 1, 10, 0))
    msg_type, event = header.message_type, header.event
    if msg_type != "ORU":
        raise Hl7Error(
            f"message type {msg_type or '(empty)'} is not supported; this interface takes ORU^R01",
            ack_code="AR",
            error_code=200,
            location=("MSH", 1, 9, 1),
        )
    if event != "R01":
        raise Hl7Error(
            f"event {event or '(empty)'} is not supported; this interface takes ORU^R01",
            ack_code="AR",
            error_code=201,
            location=("MSH", 1, 9, 2),
        )
    if header.version not in SUPPORTED_VERSIONS:
        raise Hl7Error(
            f"version {header.version or '(empty)'} is not supported ({', '.join(SUPPORTED_VERSIONS)})",
            ack_code="AR",
            error_code=203,
            location=("MSH", 1, 12, 0),
        )
    if header.processing_id not in processing_ids:
        raise Hl7Error(
            f"processing id {header.processing_id or '(empty)'} is not accepted here ({', '.join(processing_ids)})",
            ack_code="AR",
            error_code=202,
            location=("MSH", 1, 11, 0),
        )
    check_timestamp(header.timestamp, ("MSH", 1, 7, 0))

    groups: list[PatientGroup] = []
    order: OrderData | None = None
    last_obx: ObxData | None = None
    counts = {"PID": 0, "OBR": 0, "OBX": 0}
    for seg in message[1:]:
        name = seg.name
        if name in counts:
            counts[name] += 1
        if name == "PID":
            groups.append(PatientGroup(_patient(seg, counts["PID"]), counts["PID"]))
            order, last_obx = None, None
        elif name == "OBR":
            if not groups:
                raise Hl7Error(
                    "OBR comes before any PID segment", error_code=100, location=("OBR", counts["OBR"], 0, 0)
                )
            order = _order(seg, counts["OBR"])
            groups[-1].orders.append(order)
            last_obx = None
        elif name == "OBX":
            if order is None:
                raise Hl7Error(
                    "OBX comes before its OBR segment", error_code=100, location=("OBX", counts["OBX"], 0, 0)
                )
            last_obx = _observation(seg, counts["OBX"])
            order.observations.append(last_obx)
        elif name == "NTE":
            note = "".join(_get(seg, 3, r) for r in range(1, max(_reps(seg, 3), 1) + 1)).strip()
            if note:
                (last_obx.notes if last_obx is not None else order.notes if order is not None else []).append(note)
        elif name == "MSH":
            raise Hl7Error(
                "a second MSH segment: send one message per frame (or per file entry)",
                error_code=100,
                location=("MSH", 2, 0, 0),
            )
        # PV1, PD1, NK1, ORC, SPM, TQ1, CTI, Z-segments… carry nothing the registry keeps
    if not groups:
        raise Hl7Error(
            "the message has no PID segment (patient identification is required)",
            error_code=100,
            location=("PID", 1, 0, 0),
        )
    for g in groups:
        if not g.orders:
            raise Hl7Error(
                "no OBR segment follows the PID: the message carries no result",
                error_code=100,
                location=("OBR", 1, 0, 0),
            )
    return OruMessage(header, groups)


def _patient(seg: Segment, seq: int) -> PatientData:
    ids: list[CX] = []
    for rep in range(1, _reps(seg, 3) + 1):
        value = _get(seg, 3, rep, 1)
        if value:
            authority = _get(seg, 3, rep, 4, 1)
            uid = _get(seg, 3, rep, 4, 2)
            ids.append(CX(value, authority, uid, _get(seg, 3, rep, 5)))
    if not ids:
        raise Hl7Error("the patient identifier list is empty", error_code=101, location=("PID", seq, 3, 0))
    birth = check_timestamp(_get(seg, 7), ("PID", seq, 7, 0))
    given = [g for g in (_get(seg, 5, 1, 2), _get(seg, 5, 1, 3)) if g]
    return PatientData(ids, _get(seg, 5, 1, 1), given, birth, _get(seg, 8))


def _order(seg: Segment, seq: int) -> OrderData:
    code = _ce(seg, 4)
    if code.empty:
        raise Hl7Error("the universal service identifier is empty", error_code=101, location=("OBR", seq, 4, 0))
    return OrderData(
        seq=seq,
        placer=_get(seg, 2),
        filler=_get(seg, 3),
        code=code,
        effective=check_timestamp(_get(seg, 7), ("OBR", seq, 7, 0)),
        issued=check_timestamp(_get(seg, 22), ("OBR", seq, 22, 0)),
        status=_get(seg, 25),
        section=_get(seg, 24),
        accession=_get(seg, 18),
    )


def _observation(seg: Segment, seq: int) -> ObxData:
    code = _ce(seg, 3)
    if code.empty:
        raise Hl7Error("the observation identifier is empty", error_code=101, location=("OBX", seq, 3, 0))
    values = [_components(seg, 5, rep) for rep in range(1, _reps(seg, 5) + 1)]
    values = [v for v in values if any(v)]
    value_type = _get(seg, 2)
    if values and not value_type:
        raise Hl7Error("the value type is empty but OBX-5 has a value", error_code=101, location=("OBX", seq, 2, 0))
    flags = [f for f in (_get(seg, 8, rep) for rep in range(1, _reps(seg, 8) + 1)) if f]
    return ObxData(
        seq=seq,
        set_id=_get(seg, 1),
        value_type=value_type,
        code=code,
        sub_id=_get(seg, 4),
        values=values,
        units=_ce(seg, 6),
        reference_range=_get(seg, 7),
        flags=flags,
        status=_get(seg, 11),
        observed=check_timestamp(_get(seg, 14), ("OBX", seq, 14, 0)),
    )
