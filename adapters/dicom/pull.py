"""The DICOMweb pull (``hr-adapter dicom pull``): every study the PACS lists, found without a date filter.

A query on StudyDate never matches a study without one (range matching, PS3.4 C.2.2.2.5, compares a value the study
does not have), and hospitals' PACS hold such studies. So the pull lists **all** studies with QIDO-RS
(PS3.18 §10.6, ``/studies`` with ``limit``/``offset`` paging and no filter) and keeps a watermark of what it has seen:
for each Study Instance UID, a digest of the study-level attributes the PACS returned, counts of series and instances
included. Only a study that is new or whose digest changed (a new instance, a corrected header) is fetched at series
and instance level and mapped; the others count as unchanged. A study is marked seen only once it reached the outbox
or the quarantine, so a failed fetch is tried again by the next pull.

What a pull covers is said in its report: the first pull (no watermark yet) covers every study the PACS lists,
whatever its date; the next ones the same list, fetching only what is new or changed. ``--since DATE`` narrows the
query to StudyDate from DATE (studies without a StudyDate are then not matched — the report says so), ``--refresh``
fetches every listed study again (after a code map change).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import httpx
import orjson

from adapters.dicom.headers import InstanceFacts, StudyFacts, facts_from_json, group
from adapters.dicom.intake import DicomIntake, IntakeReport
from adapters.errors import AdapterError, DicomInputError

STUDY_FIELDS = ["00081030", "00100021", "00080201", "00201206", "00201208"]
"""StudyDescription, IssuerOfPatientID, TimezoneOffsetFromUTC, NumberOfStudyRelatedSeries and …Instances, asked for
beside the PACS's default study attributes (PS3.18 §10.6.3.3.1)."""


@dataclass(slots=True)
class PullReport(IntakeReport):
    listed: int = 0  # studies the PACS listed
    fetched: int = 0  # of which new or changed, fetched at series and instance level
    coverage: str = ""


class PacsPull:
    def __init__(self, intake: DicomIntake, *, http: httpx.Client | None = None) -> None:
        pull = intake.config.dicom.pull
        if pull is None:
            raise AdapterError("dicom.pull.qido_rs is not configured")
        self.intake = intake
        self.outbox = intake.outbox
        self.base = pull.qido_rs.rstrip("/")
        self.page_size = pull.page_size
        self.auth = (pull.username, pull.password or "") if pull.username else None
        self.http = http

    def run(
        self, since: date | None = None, *, refresh: bool = False, progress: Callable[[int], None] | None = None
    ) -> PullReport:
        report = PullReport()
        seen = dict(self.outbox.query("SELECT study_uid, digest FROM dicom_pull_seen"))
        params: dict[str, Any] = {"includefield": STUDY_FIELDS}
        if since is not None:
            params["StudyDate"] = f"{since.strftime('%Y%m%d')}-"
            report.coverage = (
                f"studies with a StudyDate on or after {since.isoformat()} (a date query never matches a study "
                "without a StudyDate: run without --since to cover those)"
            )
        elif not seen:
            report.coverage = "first pull: every study the PACS lists, whatever its date (no date filter)"
        else:
            report.coverage = (
                "every study the PACS lists, whatever its date; only those new or changed since the last pull "
                f"are fetched ({len(seen)} known)"
            )
        if refresh:
            report.coverage += "; --refresh: every listed study fetched again"
        client = self.http or httpx.Client(timeout=60, auth=self.auth)
        try:
            for attrs in self._pages(client, f"{self.base}/studies", params):
                uid = _value(attrs, "0020000D")
                if not uid:
                    continue
                report.listed += 1
                digest = hashlib.sha256(orjson.dumps(attrs, option=orjson.OPT_SORT_KEYS)).hexdigest()
                if not refresh and seen.get(uid) == digest:
                    report.studies += 1
                    report.unchanged += 1
                    continue
                report.fetched += 1
                try:
                    study = self._study(client, uid, attrs)
                except AdapterError as exc:  # this study's answer (not the PACS itself): the others still go
                    report.errors.append(f"study {uid}: {exc}")
                    continue
                report.instances += study.number_of_instances
                self.intake.queue(study, "dicomweb", report)  # to the outbox, or held in the quarantine
                self._seen(uid, digest)
                if progress is not None:
                    progress(1)
        except httpx.HTTPError as exc:
            raise AdapterError(f"the PACS at {self.base} cannot be queried: {exc}") from None
        finally:
            if self.http is None:
                client.close()
        return report

    def _seen(self, uid: str, digest: str) -> None:
        with self.outbox.transaction() as db:
            db.execute(
                "INSERT INTO dicom_pull_seen (study_uid, digest, at) VALUES (?, ?, ?) ON CONFLICT (study_uid) "
                "DO UPDATE SET digest = excluded.digest, at = excluded.at",
                (uid, digest, self.outbox.clock()),
            )

    def _pages(self, client: httpx.Client, url: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        offset = 0
        while True:
            r = client.get(
                url,
                params={**params, "limit": self.page_size, "offset": offset},
                headers={"Accept": "application/dicom+json"},
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
            if len(rows) < self.page_size:
                return
            offset += self.page_size

    def _study(self, client: httpx.Client, uid: str, study_attrs: dict[str, Any]) -> StudyFacts:
        series_attrs = {
            _value(s, "0020000E"): s
            for s in self._pages(
                client,
                f"{self.base}/studies/{uid}/series",
                {"includefield": ["00180015", "00200060", "0008103E", "00080021", "00080031"]},
            )
        }
        instances: list[InstanceFacts] = []
        for inst in self._pages(client, f"{self.base}/studies/{uid}/instances", {"includefield": ["00180010"]}):
            series_uid = _value(inst, "0020000E")
            instances.append(facts_from_json(study_attrs, series_attrs.get(series_uid, {}), inst))
        if not instances:
            raise DicomInputError("the PACS lists no instances")
        studies = group(instances)
        return studies[uid] if uid in studies else next(iter(studies.values()))


def _value(attrs: dict[str, Any], tag: str) -> str:
    element = attrs.get(tag) or {}
    values = element.get("Value") or [] if isinstance(element, dict) else []
    return str(values[0]) if values and not isinstance(values[0], dict) else ""
