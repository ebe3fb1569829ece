"""The adapter's own error types: everything it refuses is one of these, with a message an integration engineer can act
on. Listeners turn them into ACKs / DIMSE statuses and keep running; the command line prints them without a trace."""

from __future__ import annotations


class AdapterError(Exception):
    """Base of every error the adapter raises on purpose."""


class ConfigError(AdapterError):
    """The configuration file is missing, unreadable or wrong; ``problems`` lists every problem found."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class Hl7Error(AdapterError):
    """An HL7 v2 message the adapter will not accept.

    ``ack_code`` is the MSA-1 answer (HL7 v2.5 §2.9.2): ``AE`` for an error in the message's format or content, ``AR``
    for an unsupported message type, event, processing id or version (and, from the processor, for a failure unrelated
    to the message, so the sender tries again). ``error_code`` is from HL7 table
    0357 (100 segment sequence, 101 required field missing, 102 data type, 103 table value not found, 200 unsupported
    message type, 201 unsupported event, 202 unsupported processing id, 203 unsupported version, 207 application
    internal error). ``location`` is (segment id, segment sequence, field, component) where known; ``fix`` says
    what the sender should do about it.
    """

    def __init__(
        self,
        text: str,
        *,
        ack_code: str = "AE",
        error_code: int = 207,
        location: tuple[str, int, int, int] | None = None,
        fix: str = "",
    ) -> None:
        super().__init__(text)
        self.text = text
        self.ack_code = ack_code
        self.error_code = error_code
        self.location = location
        self.fix = fix  # what the sender should do, put first where an ACK field is short (v2.3 MSA-3: 80)

    def where(self) -> str:
        if self.location is None:
            return ""
        seg, seq, field, comp = self.location
        out = f"{seg}-{field}" if field else seg
        if comp:
            out += f".{comp}"
        return out + (f" (segment {seq})" if seq > 1 else "")

    def __str__(self) -> str:
        where = self.where()
        text = f"{self.text}; {self.fix}" if self.fix else self.text
        return f"{where}: {text}" if where else text

    def brief(self) -> str:
        """The text with the fix first, for the length-limited ACK fields (cut at the end, it keeps the hint)."""
        where = self.where()
        text = f"{self.fix} — {self.text}" if self.fix else self.text
        return f"{where}: {text}" if where else text


class DicomInputError(AdapterError):
    """A file or dataset that is not usable DICOM (not DICOM at all, truncated, or missing a required attribute)."""


class RegistryRejectedError(AdapterError):
    """The registry refused a message for good (a 4xx that will never succeed); ``outcome`` is its OperationOutcome."""

    def __init__(self, status: int, outcome: str) -> None:
        super().__init__(f"HTTP {status}: {outcome}")
        self.status = status
        self.outcome = outcome


class RegistryUnavailableError(AdapterError):
    """The registry could not take a message now (network error, 5xx, 429…); it will be retried."""

    def __init__(
        self, reason: str, *, retry_after: float | None = None, waiting: bool = False, conflict: bool = False
    ) -> None:
        super().__init__(reason)
        self.retry_after = retry_after
        self.waiting = waiting  # the registry lacks a resource the message refers to (it may arrive later)
        self.conflict = conflict  # 409: a concurrent write got there first; worth a few more tries
