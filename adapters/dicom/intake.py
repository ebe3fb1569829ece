"""The three ways DICOM comes in, all ending as ImagingStudy Bundles in the outbox:

- **folder scan** (``hr-adapter dicom scan DIR``): every file's header, grouped into studies;
- **C-STORE receiver** (pynetdicom): each instance's header is committed to the outbox's staging table before the
  C-STORE is answered; a study is sent once no instance has arrived for ``stable_seconds`` (and sent again, updated,
  if more instances come later);
- **DICOMweb pull** (``hr-adapter dicom pull --since …``): QIDO-RS at study, series and instance level.

A study is queued only when its Bundle differs from what was last queued for it, so a rescan or a repeated pull sends
nothing new.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx

from adapters.codes import Coder
from adapters.config import AdapterConfig
from adapters.dicom.headers import InstanceFacts, StudyFacts, facts_from_dataset, facts_from_json, group, read_file
from adapters.dicom.mapping import MappedStudy, StudyMapper
from adapters.errors import AdapterError, DicomInputError
from adapters.fhir import dumps
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
        self.on_queued = on_queued

    def queue(self, study: StudyFacts, source: str, report: IntakeReport) -> MappedStudy | None:
        try:
            mapped = self.mapper.map(study)
        except DicomInputError as exc:
            report.errors.append(str(exc))
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
        report.studies += 1
        if mapped.item is None:
            report.unmapped.append(mapped.summary)
        if queued:
            report.queued += 1
            log.info("%s: queued %s", source, mapped.summary)
            if self.on_queued is not None:
                self.on_queued()
        else:
            report.unchanged += 1
        return mapped

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

    # ------------------------------------------------------------------------------------------------ DICOMweb
    def pull(
        self, since: date | None, *, http: httpx.Client | None = None, progress: Callable[[int], None] | None = None
    ) -> IntakeReport:
        pull = self.config.dicom.pull
        if pull is None:
            raise AdapterError("dicom.pull.qido_rs is not configured")
        report = IntakeReport()
        if since is None:
            mark = self.outbox.mark("dicomweb-since")
            since = date.fromisoformat(mark) if mark else date.today() - timedelta(days=1)  # noqa: DTZ011
        started_on = date.today()  # noqa: DTZ011 - a StudyDate is a local calendar date
        auth = (pull.username, pull.password or "") if pull.username else None
        client = http or httpx.Client(timeout=60, auth=auth)
        base = pull.qido_rs.rstrip("/")
        try:
            for study_attrs in self._pages(
                client,
                f"{base}/studies",
                {
                    "StudyDate": f"{since.strftime('%Y%m%d')}-",
                    "includefield": ["00081030", "00100021", "00080201"],
                },
            ):
                uid = _value(study_attrs, "0020000D")
                if not uid:
                    continue
                try:
                    study = self._study(client, base, uid, study_attrs)
                except DicomInputError as exc:
                    report.errors.append(f"study {uid}: {exc}")
                    continue
                report.instances += study.number_of_instances
                self.queue(study, "dicomweb", report)
                if progress is not None:
                    progress(1)
        except httpx.HTTPError as exc:
            raise AdapterError(f"the PACS at {base} cannot be queried: {exc}") from None
        finally:
            if http is None:
                client.close()
        if not report.errors:
            # next time, start from the day this pull started (studies of that day may still be arriving)
            self.outbox.set_mark("dicomweb-since", started_on.isoformat())
        return report

    def _pages(self, client: httpx.Client, url: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        size = self.config.dicom.pull.page_size if self.config.dicom.pull else 100
        offset = 0
        while True:
            r = client.get(
                url, params={**params, "limit": size, "offset": offset}, headers={"Accept": "application/dicom+json"}
            )
            if r.status_code == 204:
                return
            if r.status_code != 200:
                raise AdapterError(f"QIDO-RS {url} answered {r.status_code}: {r.text[:200]}")
            try:
                rows = r.json()
            except ValueError:
                raise AdapterError(f"QIDO-RS {url} answered with a body that is not DICOM JSON") from None
            if not isinstance(rows, list):
                raise AdapterError(f"QIDO-RS {url} answered with a body that is not a DICOM JSON array")
            yield from (row for row in rows if isinstance(row, dict))
            if len(rows) < size:
                return
            offset += size

    def _study(self, client: httpx.Client, base: str, uid: str, study_attrs: dict[str, Any]) -> StudyFacts:
        series_attrs = {
            _value(s, "0020000E"): s
            for s in self._pages(
                client,
                f"{base}/studies/{uid}/series",
                {"includefield": ["00180015", "00200060", "0008103E", "00080021", "00080031"]},
            )
        }
        instances: list[InstanceFacts] = []
        for inst in self._pages(client, f"{base}/studies/{uid}/instances", {"includefield": ["00180010"]}):
            series_uid = _value(inst, "0020000E")
            instances.append(facts_from_json(study_attrs, series_attrs.get(series_uid, {}), inst))
        if not instances:
            raise DicomInputError("the PACS lists no instances")
        studies = group(instances)
        study = studies[uid] if uid in studies else next(iter(studies.values()))
        return study


def _value(attrs: dict[str, Any], tag: str) -> str:
    element = attrs.get(tag) or {}
    values = element.get("Value") or [] if isinstance(element, dict) else []
    return str(values[0]) if values and not isinstance(values[0], dict) else ""
