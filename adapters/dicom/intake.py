"""The three ways DICOM comes in, all ending as ImagingStudy Bundles in the outbox:

- **folder scan** (``hr-adapter dicom scan DIR``): every file's header, grouped into studies;
- **C-STORE receiver** (pynetdicom): each instance's header is committed to the outbox's staging table before the
  C-STORE is answered; a study is sent once no instance has arrived for ``stable_seconds`` (and sent again, updated,
  if more instances come later);
- **DICOMweb pull** (``hr-adapter dicom pull``, adapters/dicom/pull.py): QIDO-RS at study, series and instance level.

A study is queued only when its Bundle differs from what was last queued for it, so a rescan or a repeated pull sends
nothing new. A study that cannot be mapped (an empty PatientID; any failure of the mapping) is held in the quarantine
(adapters/dicom/quarantine.py) with its reason, logged once, and replayed by the operator after the fix; a study that
later maps (more instances, a rescan, a corrected PACS) leaves it on its own. Values that are not valid DICOM (a
StudyDate not on the calendar) are left out with a warning, logged once when the study is queued.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adapters.codes import Coder
from adapters.config import AdapterConfig
from adapters.dicom.headers import (
    InstanceFacts,
    StudyFacts,
    checked_date,
    checked_time,
    facts_from_dataset,
    group,
    read_file,
)
from adapters.dicom.mapping import MappedStudy, StudyMapper
from adapters.dicom.quarantine import Quarantine
from adapters.errors import AdapterError, DicomInputError
from adapters.fhir import dumps
from adapters.masking import mask_id_shaped
from adapters.push.outbox import Outbox, OutboxError

log = logging.getLogger("hr_adapter.dicom")


@dataclass(slots=True)
class IntakeReport:
    files: int = 0
    instances: int = 0
    studies: int = 0
    queued: int = 0
    unchanged: int = 0
    unmapped: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)  # "study <uid>: <reason>"
    warnings: list[str] = field(default_factory=list)


CORRECTABLE = {  # DICOM keyword → header fact that ``hr-adapter quarantine replay --set`` may correct
    "PatientID": "patient_id",
    "IssuerOfPatientID": "patient_id_issuer",
    "AccessionNumber": "accession",
    "StudyDate": "study_date",
    "StudyTime": "study_time",
    "Modality": "modality",
    "BodyPartExamined": "body_part",
    "StudyDescription": "study_description",
}


def corrections(pairs: list[str]) -> dict[str, Any]:
    """``KEYWORD=VALUE`` pairs as header facts to set; ``AdapterError`` names what is not correctable or not valid."""
    out: dict[str, Any] = {}
    for pair in pairs:
        keyword, sep, value = pair.partition("=")
        keyword, value = keyword.strip(), value.strip()
        if not sep or keyword not in CORRECTABLE:
            raise AdapterError(
                f"--set {keyword or pair!r}: expected KEYWORD=VALUE with one of {', '.join(CORRECTABLE)}"
            )
        if keyword == "StudyDate" and value:
            value, why = checked_date(value)
            if why:
                raise AdapterError(f"--set StudyDate: not a DICOM date YYYYMMDD ({why})")
        if keyword == "StudyTime" and value:
            value, why = checked_time(value)
            if why:
                raise AdapterError(f"--set StudyTime: not a DICOM time HHMMSS ({why})")
        out[CORRECTABLE[keyword]] = value.upper() if keyword in ("Modality", "BodyPartExamined") else value
    return out


class DicomIntake:
    def __init__(
        self,
        config: AdapterConfig,
        coder: Coder,
        outbox: Outbox,
        *,
        on_queued: Callable[[], None] | None = None,
    ) -> None:
        self.config = config
        self.mapper = StudyMapper(config, coder)
        self.outbox = outbox
        self.quarantine = Quarantine(outbox)
        self.on_queued = on_queued

    def queue(self, study: StudyFacts, source: str, report: IntakeReport) -> MappedStudy | None:
        """Map the study and queue its Bundle, or hold it in the quarantine with the reason (None then)."""
        try:
            mapped = self.mapper.map(study)
        except DicomInputError as exc:
            self._hold(study, source, str(exc).removeprefix(f"study {study.uid}: "), report)
            return None
        except Exception as exc:  # a fault of the adapter itself: held too, never retried in a loop or lost
            log.error("%s: study %s cannot be mapped", source, study.uid, exc_info=exc)
            self._hold(study, source, f"the adapter failed to map it ({type(exc).__name__})", report)
            return None
        body = dumps(mapped.bundle)
        queued = self.outbox.enqueue_study(
            study.uid,
            hashlib.sha256(body).hexdigest(),
            source=source,
            order_key=mapped.order_key,
            summary=mapped.summary,
            body=body,
            unmapped=mapped.unmapped,
        )
        if self.quarantine.release(study.uid):
            log.info("%s: study %s left the quarantine", source, study.uid)
        report.studies += 1
        if mapped.item is None:
            report.unmapped.append(mapped.summary)
        warnings = sorted({w for s in study.series.values() for i in s.instances.values() for w in i.warnings})
        report.warnings += [f"study {study.uid}: {w}" for w in warnings]
        if queued:
            report.queued += 1
            log.info("%s: queued %s", source, mapped.summary)
            for w in warnings:
                log.warning("%s: study %s: %s", source, study.uid, w)
            if self.on_queued is not None:
                self.on_queued()
        else:
            report.unchanged += 1
        return mapped

    def _hold(self, study: StudyFacts, source: str, reason: str, report: IntakeReport) -> None:
        reason = mask_id_shaped(reason)
        report.studies += 1
        report.quarantined.append(f"study {study.uid}: {reason}")
        if self.quarantine.hold(study, source, reason):
            log.warning(
                "%s: study %s held in the quarantine: %s (hr-adapter quarantine list; fix, then replay)",
                source,
                study.uid,
                reason,
            )

    def replay(self, uids: list[str] | None = None, fixes: dict[str, Any] | None = None) -> IntakeReport:
        """Map held studies again (after a code map or configuration change), with ``fixes`` applied to every
        instance's header facts (from :func:`corrections`); a study that maps goes to the outbox and leaves the
        quarantine, one that does not stays with its new reason."""
        report = IntakeReport()
        for held in self.quarantine.studies(uids):
            instances = [dataclasses.replace(i, **fixes) if fixes else i for i in held.instances]
            report.instances += len(instances)
            for study in group(instances).values():
                self.queue(study, held.source, report)
        return report

    # ------------------------------------------------------------------------------------------------ folder scan
    @staticmethod
    def files(paths: Iterable[Path]) -> list[Path]:
        out: list[Path] = []
        for path in paths:
            if path.is_dir():
                out += sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
            elif path.is_file():
                out.append(path)
        return out

    def scan(self, files: list[Path], *, progress: Callable[[int], None] | None = None) -> IntakeReport:
        report = IntakeReport()
        instances: list[InstanceFacts] = []
        for path in files:
            report.files += 1
            try:
                instances.append(read_file(path))
            except DicomInputError as exc:
                report.errors.append(str(exc))
            if progress is not None:
                progress(1)
        report.instances = len(instances)
        for study in group(instances).values():
            self.queue(study, "scan", report)
        return report

    # ------------------------------------------------------------------------------------------------ C-STORE
    def staged(self, dataset: Any) -> int:
        """Handle one C-STORE dataset: the DIMSE status to answer (0x0000 only once the header is committed)."""
        try:
            facts = facts_from_dataset(dataset, "C-STORE dataset")
        except DicomInputError as exc:
            log.warning("C-STORE refused: %s", exc)
            return 0xC000  # cannot understand
        try:
            self.outbox.stage_instance(facts.sop_uid, facts.study_uid, facts.to_json())
        except OutboxError as exc:
            log.error("C-STORE could not be stored: %s", exc)
            return 0xA700  # out of resources: the sender keeps the instance and retries
        return 0x0000

    def flush_stable(self, quiet_seconds: float) -> IntakeReport:
        """Queue every staged study that has been quiet for ``quiet_seconds``."""
        report = IntakeReport()
        for uid in self.outbox.stable_studies(quiet_seconds):
            instances = [InstanceFacts.from_json(h) for h in self.outbox.study_headers(uid)]
            report.instances += len(instances)
            for study in group(instances).values():
                self.queue(study, "cstore", report)
        return report

    def stabilize(self, stop: threading.Event, quiet_seconds: float, poll: float = 1.0) -> None:
        while not stop.is_set():
            try:
                self.flush_stable(quiet_seconds)
            except Exception:  # keep receiving whatever one study does
                log.exception("error while sending received studies")
            stop.wait(poll)
