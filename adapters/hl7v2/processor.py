"""One HL7 message in, one ACK out: parse, map, commit to the outbox, then acknowledge.

``AA`` is sent only after the Bundle is durably in the outbox; a message that fails anywhere leaves nothing behind
(the outbox write is a single transaction). Following the original acknowledgment rules (HL7 v2.5 §2.9.2):
``AE`` (application error) for an error in the message's format or content — sending it again unchanged will not
help; ``AR`` (application reject) for an unsupported message type, event, processing id or version, and for a
failure unrelated to the message (the outbox cannot be written, an internal error) — the sender keeps the message
and sends it again. Nothing here raises.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from adapters.codes import Coder
from adapters.config import AdapterConfig, Policy
from adapters.errors import Hl7Error
from adapters.fhir import dumps
from adapters.hl7v2 import units
from adapters.hl7v2.ack import build_ack, encode_ack
from adapters.hl7v2.header import Header, read_header, strip_preamble
from adapters.hl7v2.mapping import Mapped, OruMapper
from adapters.hl7v2.message import parse
from adapters.hl7v2.pid import message_secrets
from adapters.masking import Secrets
from adapters.push.outbox import Outbox, OutboxError

log = logging.getLogger("hr_adapter.hl7")


@dataclass(frozen=True, slots=True)
class Result:
    ack: bytes
    code: str  # AA, AE, AR
    text: str  # what happened, without patient data (its identifiers and names masked)
    queued: bool = False
    duplicate: bool = False
    warnings: tuple[str, ...] = ()
    retry: bool = False  # refused for a reason of the adapter's own (storage, a bug): the same bytes may pass later
    control_id: str = ""  # MSH-10, when it could be read


class Hl7Processor:
    def __init__(
        self,
        config: AdapterConfig,
        coder: Coder,
        outbox: Outbox,
        *,
        on_queued: Callable[[], None] | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.mapper = OruMapper(config, coder)
        self.outbox = outbox
        self.on_queued = on_queued
        self.now = now
        self._acks = itertools.count(1)
        units.warm()  # the UCUM grammar, before the first message rather than during it
        self._acks_lock = threading.Lock()

    def map_only(self, raw: bytes) -> tuple[Header, Mapped]:
        """Parse and map without queuing (golden tests, ``hr-adapter hl7 convert``)."""
        message = parse(
            raw,
            default_encoding=self.config.hl7.encoding,
            processing_ids=tuple(self.config.hl7.processing_ids),
        )
        return message.header, self.mapper.map(message)

    def handle(self, raw: bytes, source: str) -> Result:
        header = _salvage_header(raw, self.config.hl7.encoding)
        try:
            limit = self.config.hl7.max_message_bytes
            if len(raw) > limit:
                raise Hl7Error(
                    f"the message is {len(raw)} bytes; this interface takes at most {limit}",
                    error_code=207,
                    location=segment_at(raw, limit),
                    fix="send the results in smaller messages (one report each)",
                )
            header, mapped = self.map_only(raw)
            unmapped = [(u.system, u.code, u.display, u.where) for u in mapped.unmapped]
            queued = self.outbox.enqueue(
                source=source,
                kind="hl7",
                order_key=mapped.order_key,
                summary=mapped.outbox_summary(header.control_id),
                digest=hashlib.sha256(raw).hexdigest(),
                body=dumps(mapped.bundle),
                unmapped=unmapped,
            )
        except Hl7Error as exc:
            if exc.error_code == 103 and "code map" in exc.text:
                self._note_unmapped(raw)
            said = self._secrets(raw, header).text(str(exc))
            log.warning("%s: message %s refused (%s): %s", source, _cid(header) or "?", exc.ack_code, said)
            return Result(self._ack(header, exc), exc.ack_code, said, control_id=_cid(header))
        except OutboxError as exc:
            log.error("%s: message %s could not be stored: %s", source, _cid(header) or "?", exc)
            error = Hl7Error("the adapter could not store the message; send it again", ack_code="AR", error_code=207)
            return Result(self._ack(header, error), "AR", str(exc), retry=True, control_id=_cid(header))
        except Exception:  # a bug must not take the listener down nor lose the message: the sender will resend
            log.exception("%s: message %s: unexpected error", source, _cid(header) or "?")
            error = Hl7Error("internal error in the adapter; send the message again", ack_code="AR", error_code=207)
            return Result(self._ack(header, error), "AR", "internal error", retry=True, control_id=_cid(header))
        if queued and self.on_queued is not None:
            self.on_queued()
        warnings = tuple(self._secrets(raw, header).text(w) for w in mapped.warnings) if mapped.warnings else ()
        for warning in warnings:
            log.warning("%s: message %s: %s", source, header.control_id, warning)
        text = mapped.summary(header.control_id) + ("" if queued else " (duplicate of a message already accepted)")
        log.info("%s: %s", source, text)
        return Result(
            self._ack(header, None),
            "AA",
            text,
            queued=queued,
            duplicate=not queued,
            warnings=warnings,
            control_id=header.control_id,
        )

    def _secrets(self, raw: bytes, header: Header | None) -> Secrets:
        """What of this message must not be written down where people read: its identifiers and names."""
        return message_secrets(raw, header, self.config.hl7.encoding)

    def refuse_oversized(
        self, head: bytes, source: str, location: tuple[str, int, int, int] = ("MSH", 1, 0, 0)
    ) -> Result:
        """The ACK for a message over the size limit, of which only the first bytes were kept; ``location`` is the
        segment where the limit was crossed, as far as the reader knew."""
        header = _salvage_header(head, self.config.hl7.encoding)
        limit = self.config.hl7.max_message_bytes
        error = Hl7Error(
            f"the message exceeds {limit} bytes, the limit of this interface",
            error_code=207,
            location=location,
            fix="send the results in smaller messages (one report each)",
        )
        log.warning("%s: message %s refused: %s", source, header.control_id if header else "?", error)
        return Result(self._ack(header, error), "AE", str(error), control_id=_cid(header))

    def _note_unmapped(self, raw: bytes) -> None:
        """Under the strict policy a message with an unmapped code is refused; its codes are still counted."""
        try:
            lenient = self.config.model_copy(
                update={"hl7": self.config.hl7.model_copy(update={"policy": Policy.LENIENT})}
            )
            message = parse(
                raw, default_encoding=lenient.hl7.encoding, processing_ids=tuple(lenient.hl7.processing_ids)
            )
            mapped = OruMapper(lenient, self.mapper.coder).map(message)
            self.outbox.note_unmapped([(u.system, u.code, u.display, u.where) for u in mapped.unmapped])
        except Exception:  # noqa: S110 - counting is best effort; the ACK already names the problem
            pass

    def _ack(self, header: Header | None, error: Hl7Error | None) -> bytes:
        with self._acks_lock:
            sequence = next(self._acks)
        text = build_ack(
            header,
            error,
            now=self.now(),
            tz=self.config.hospital.tz,
            app="HR-ADAPTER",
            facility=self.config.hospital.organization,
            sequence=sequence,
        )
        return encode_ack(text, header)


def segment_at(raw: bytes, offset: int) -> tuple[str, int, int, int]:
    """The segment holding byte ``offset`` of a message (where it crossed a size limit) as an ERR location: name and
    sequence among the segments of that name; MSH when ``raw`` does not reach the offset (not known)."""
    counts: dict[str, int] = {}
    position = 0
    for segment in re.split(rb"\r\n|\r|\n", strip_preamble(raw)):
        position += len(segment) + 1
        if not segment.strip():
            continue
        name = segment[:3].decode("ascii", "replace")
        counts[name] = counts.get(name, 0) + 1
        if position > offset:
            return (name, counts[name], 0, 0) if name.isalnum() else ("MSH", 1, 0, 0)
    return ("MSH", 1, 0, 0)


def _cid(header: Header | None) -> str:
    return header.control_id if header is not None else ""


def _salvage_header(raw: bytes, default_encoding: str) -> Header | None:
    """What of MSH can be read even from a message that will be refused, so the ACK can name it (the one MSH reader,
    ``adapters.hl7v2.header``); None when not even the fields can be told apart."""
    try:
        return read_header(raw, default_encoding)
    except Hl7Error:
        return None
