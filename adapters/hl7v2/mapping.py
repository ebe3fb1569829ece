"""ORU^R01 → one FHIR transaction Bundle (the HL7 v2-to-FHIR ORU^R01 mapping).

Every resource is written with a conditional update on its business identifier — the Patient on its MRN, the
DiagnosticReport on the filler order number (OBR-3, the report number), each Observation on report number + OBX-3
code (+ OBX-4 sub-id) — so a repeated message changes nothing and a correction (OBR-25 ``C``) replaces the report in
place. The fullUrls are derived from the same identifiers, so the output for a message is always the same.

A lab report becomes a DiagnosticReport with one Observation per OBX. An imaging report (OBR-24 a radiology section,
or OBR-4 mapping to an imaging item) becomes a DiagnosticReport whose text OBX form the ``conclusion`` and whose
``imagingStudy`` names the study by its Study Instance UID (an OBX coded DCM 113014, or of type RP) or else by the
accession number in OBR-18.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from adapters.codes import Coder
from adapters.config import AdapterConfig, Policy
from adapters.errors import Hl7Error
from adapters.fhir import (
    DATA_ABSENT,
    DICOM_UID,
    OBS_CATEGORY,
    V2_0074,
    V2_0203,
    as_instant,
    hl7_datetime,
    hr_tag,
    merge_codings,
    put_entry,
    query_escape,
    transaction,
)
from adapters.hl7v2 import tables, units
from adapters.hl7v2.message import CE, ObxData, OrderData, OruMessage
from adapters.hl7v2.patient import PatientMapper
from adapters.hl7v2.registry_rules import check_bundle
from adapters.hl7v2.values import ValueProblemError, interpretations, reference_range, value_of
from catalog import Coding, Item, Kind

RECOGNIZABLE = frozenset({"final", "corrected", "amended"})
_UID = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")  # DICOM PS3.5 §9.1, at most 64 characters


@dataclass(frozen=True, slots=True)
class Unmapped:
    system: str
    code: str
    display: str
    where: str


@dataclass(slots=True)
class Mapped:
    bundle: dict[str, Any]
    order_key: str
    reports: int = 0
    observations: int = 0
    unmapped: list[Unmapped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    origins: list[tuple[str, int]] = field(default_factory=list)  # the segment each Bundle entry comes from
    waits_for: list[str] = field(default_factory=list)  # MRNs sent without a national identifier (the HIS's)

    def summary(self, control_id: str) -> str:
        """What the message became, without patient data (fit for logs)."""
        return f"ORU {control_id}: {self.reports} report(s), {self.observations} observation(s)"

    def outbox_summary(self, control_id: str) -> str:
        """The summary kept with the queued message (``hr-adapter outbox status``): it names the MRN a report waits
        for when PID-3 had no national identifier (an MRN, never a national identifier)."""
        if not self.waits_for:
            return self.summary(control_id)
        mrns = ", ".join(self.waits_for)
        return f"{self.summary(control_id)}; no national ID in PID-3: waits until the registry knows MRN {mrns}"


class OruMapper:
    def __init__(self, config: AdapterConfig, coder: Coder) -> None:
        self.config = config
        self.coder = coder
        self.org = config.hospital.organization
        self.tz = config.hospital.tz
        self.strict = config.hl7.policy is Policy.STRICT
        ids = config.identifiers
        self.report_system = ids.system("report-no")
        self.placer_system = ids.system("placer-order")
        self.observation_system = ids.system("observation")
        self.accession_system = ids.system("accession")
        self.local_system = config.local_code_system
        self.hr_mark = config.hl7.hr_mark
        self.patients = PatientMapper(config)

    # ------------------------------------------------------------------------------------------------ entry point
    def map(self, message: OruMessage) -> Mapped:
        entries: list[dict[str, Any]] = []
        out = Mapped(transaction(entries), order_key="")
        patients: dict[str, tuple[int, dict[str, Any]]] = {}  # MRN → (PID sequence, its Patient)
        reports: dict[str, int] = {}  # OBR-3 → OBR sequence
        for group in message.groups:
            seq = group.pid_seq
            found = self.patients.map(
                group.patient, seq, out.warnings, lambda text, code, where: self._problem(out, text, code, where)
            )
            if found.entry is not None:
                earlier = patients.get(found.mrn)
                if earlier is None:
                    patients[found.mrn] = (seq, found.entry["resource"])
                    entries.append(found.entry)
                    out.origins.append(("PID", seq))
                elif earlier[1] != found.entry["resource"]:
                    raise Hl7Error(
                        f"PID {seq} has the MRN of PID {earlier[0]} but other patient data",
                        error_code=205,
                        location=("PID", seq, 3, 0),
                        fix="send one person's data once per MRN (or each person with their own MRN)",
                    )
            elif found.waits_for_mrn and found.mrn not in out.waits_for:
                out.waits_for.append(found.mrn)
            for order in group.orders:
                if order.filler and order.filler in reports:
                    raise Hl7Error(
                        f"report number (OBR-3) {order.filler!r} is also OBR {reports[order.filler]}'s: the registry "
                        "takes each report once per message",
                        error_code=205,
                        location=("OBR", order.seq, 3, 0),
                        fix="give each OBR its own report number (or put all its OBX under one OBR)",
                    )
                reports[order.filler] = order.seq
                for entry, origin in self._report(order, found.subject, out):
                    entries.append(entry)
                    out.origins.append(origin)
        check_bundle(out.bundle, out.origins)
        return out

    # ------------------------------------------------------------------------------------------------ report
    def _codings(self, ce: CE, primary_only: bool = False) -> list[dict[str, str]]:
        out = []
        pairs = [(ce.code, ce.text, ce.system)]
        if not primary_only:
            pairs.append((ce.alt_code, ce.alt_text, ce.alt_system))
        for code, text, system in pairs:
            if not code:
                continue
            uri = self._system_uri(system)
            coding = {"system": uri, "code": code}
            if text:
                coding["display"] = text
            if coding not in out:
                out.append(coding)
        return out

    def _system_uri(self, name: str) -> str:
        if tables.is_local_system(name):
            return self.local_system
        known = tables.CODING_SYSTEMS.get(name.strip().upper())
        return known or f"{self.config.identifiers.base}/cs/{quote(name.strip(), safe='')}"  # a URI has no spaces

    def _code(
        self, ce: CE, where: str, location: tuple[str, int, int, int], out: Mapped
    ) -> tuple[dict[str, Any], Item | None]:
        codings = self._codings(ce)
        item = self.coder.item_for([Coding(c["system"], c["code"]) for c in codings])
        local = [c for c in codings if c["system"] == self.local_system]
        if item is None and local and not any(self.coder.declared(Coding(c["system"], c["code"])) for c in local):
            first = local[0]
            out.unmapped.append(Unmapped(first["system"], first["code"], first.get("display", ""), where))
            self._problem(
                out,
                f"local code {first['code']!r} ({first.get('display', '')}) is not in the code map (item - declares "
                "a test that is not a recognized item)",
                103,
                location,
                fix=f"add a code-map row system,code,item for {first['code']}",
            )
        concept: dict[str, Any] = {"coding": merge_codings(codings, self.coder.item_codings(item) if item else [])}
        text = ce.text or ce.alt_text
        if text:
            concept["text"] = text
        return concept, item

    def _problem(
        self, out: Mapped, text: str, code: int, location: tuple[str, int, int, int], *, fix: str = ""
    ) -> None:
        """A content problem: rejects the message under the strict policy, is recorded under the lenient one."""
        error = Hl7Error(text, error_code=code, location=location, fix=fix)
        if self.strict:
            raise error
        out.warnings.append(str(error))

    def _report(
        self, order: OrderData, subject: dict[str, Any], out: Mapped
    ) -> list[tuple[dict[str, Any], tuple[str, int]]]:
        """The report's Bundle entries (its Observations, then the DiagnosticReport), each with its segment."""
        if not order.filler:
            raise Hl7Error(
                "the filler order number (the report number) is empty",
                error_code=101,
                location=("OBR", order.seq, 3, 0),
            )
        code, item = self._code(order.code, f"OBR-4 (OBR {order.seq})", ("OBR", order.seq, 4, 0), out)
        imaging = order.section.upper() in tables.IMAGING_SECTIONS or (item is not None and item.kind is Kind.IMAGING)
        status = self._report_status(order, out)
        effective = self._time(order.effective, ("OBR", order.seq, 7, 0))
        issued = as_instant(self._time(order.issued, ("OBR", order.seq, 22, 0)))
        if effective is None:
            first = next((o for o in order.observations if o.observed), None)
            effective = (self._time(first.observed, ("OBX", first.seq, 14, 0)) if first else None) or issued
        if effective is None:
            raise Hl7Error(
                "the observation date/time is empty (and no OBX-14 or OBR-22 to fall back on)",
                error_code=101,
                location=("OBR", order.seq, 7, 0),
            )
        if not out.order_key:
            out.order_key = f"{self.report_system}|{order.filler}"

        entries: list[tuple[dict[str, Any], tuple[str, int]]] = []
        results: list[dict[str, str]] = []
        conclusion: list[str] = list(order.notes)
        study_ref: str | None = None
        text_obx = [o for o in order.observations if o.value_type.upper() in ("ST", "TX", "FT")]
        seen: dict[str, int] = {}
        marked_any = item is not None
        statuses: list[str] = []
        for obx in order.observations:
            if imaging and (obx.code.code.upper() in tables.STUDY_UID_CODES or obx.value_type.upper() == "RP"):
                uid = (obx.values[0][0] if obx.values and obx.values[0] else "").strip().removeprefix("urn:oid:")
                if uid and (len(uid) > 64 or not _UID.match(uid)):
                    raise Hl7Error(
                        f"{uid!r} is not a DICOM UID (digits and dots, at most 64)",
                        error_code=102,
                        location=("OBX", obx.seq, 5, 0),
                        fix="send the Study Instance UID (0020,000D) as the PACS has it",
                    )
                study_ref = uid or study_ref
                continue
            if imaging and obx in text_obx:
                text = "\n".join("^".join(v) for v in obx.values).strip()
                if text:
                    label = obx.code.text if len(text_obx) > 1 and obx.code.text else ""
                    conclusion.append(f"{label}：{text}" if label else text)
                continue
            key = obx.code.code or obx.code.text
            key = f"{order.filler}/{key}" + (f"/{obx.sub_id}" if obx.sub_id else "")
            seen[key] = seen.get(key, 0) + 1
            if seen[key] > 1:
                key += f"#{seen[key]}"
            obs, obs_item, obs_status = self._observation(obx, order, key, subject, effective, issued, status, out)
            statuses.append(obs_status)
            marked_any = marked_any or obs_item is not None
            entry = put_entry(obs, self.observation_system, key)
            entries.append((entry, ("OBX", obx.seq)))
            results.append({"reference": entry["fullUrl"]})
            out.observations += 1
        if statuses and all(s == "entered-in-error" for s in statuses):
            status = "entered-in-error"  # every result posted in error: the report is withdrawn

        report: dict[str, Any] = {"resourceType": "DiagnosticReport"}
        if self.hr_mark and status in RECOGNIZABLE and marked_any:
            report["meta"] = hr_tag(self.hr_mark)
        report["identifier"] = [{"system": self.report_system, "value": order.filler}]
        if order.placer:
            # the placer order number names the order, not the report: a logical reference to the ServiceRequest
            # (several reports may answer one order, so it is not a business identifier of the report)
            report["basedOn"] = [
                {
                    "type": "ServiceRequest",
                    "identifier": {
                        "type": {"coding": [{"system": V2_0203, "code": "PLAC"}]},
                        "system": self.placer_system,
                        "value": order.placer,
                    },
                }
            ]
        report |= {
            "status": status,
            "category": [{"coding": [{"system": V2_0074, "code": "RAD" if imaging else (order.section or "LAB")}]}],
            "code": code,
            "subject": subject,
            "effectiveDateTime": effective,
        }
        if issued:
            report["issued"] = issued
        report["performer"] = [{"reference": f"Organization/{self.org}"}]
        if results:
            report["result"] = results
        if imaging:
            if study_ref:
                report["imagingStudy"] = [{"reference": f"ImagingStudy?identifier={DICOM_UID}|urn:oid:{study_ref}"}]
            elif order.accession:
                condition = f"{query_escape(self.accession_system)}|{query_escape(order.accession)}"
                report["imagingStudy"] = [{"reference": f"ImagingStudy?identifier={condition}"}]
        if conclusion:
            report["conclusion"] = "\n".join(conclusion)
        entries.append((put_entry(report, self.report_system, order.filler), ("OBR", order.seq)))
        out.reports += 1
        return entries

    def _report_status(self, order: OrderData, out: Mapped) -> str:
        if not order.status:
            self._problem(out, "the result status is empty", 101, ("OBR", order.seq, 25, 0))
            return "unknown"
        status = tables.REPORT_STATUS.get(order.status.upper())
        if status is None:
            self._problem(
                out, f"result status {order.status!r} is not an HL7 0123 code", 103, ("OBR", order.seq, 25, 0)
            )
            return "unknown"
        return status

    def _time(self, value: str, location: tuple[str, int, int, int]) -> str | None:
        try:
            return hl7_datetime(value, self.tz)
        except ValueError:
            raise Hl7Error(f"{value!r} is not a valid date/time", error_code=102, location=location) from None

    # ------------------------------------------------------------------------------------------------ observation
    def _observation(
        self,
        obx: ObxData,
        order: OrderData,
        key: str,
        subject: dict[str, Any],
        effective: str,
        issued: str | None,
        report_status: str,
        out: Mapped,
    ) -> tuple[dict[str, Any], Item | None, str]:
        code, item = self._code(obx.code, f"OBX-3 (OBX {obx.seq})", ("OBX", obx.seq, 3, 0), out)
        if obx.status:
            status = tables.OBSERVATION_STATUS.get(obx.status.upper())
            if status is None:
                self._problem(out, f"status {obx.status!r} is not an HL7 0085 code", 103, ("OBX", obx.seq, 11, 0))
                status = "unknown"
        else:
            status = report_status if report_status != "partial" else "preliminary"
        obs: dict[str, Any] = {"resourceType": "Observation"}
        if self.hr_mark and status in RECOGNIZABLE and item is not None:
            obs["meta"] = hr_tag(self.hr_mark)
        obs |= {
            "identifier": [{"system": self.observation_system, "value": key}],
            "status": status,
            "category": [{"coding": [{"system": OBS_CATEGORY, "code": "laboratory"}]}],
            "code": code,
            "subject": subject,
            "effectiveDateTime": self._time(obx.observed, ("OBX", obx.seq, 14, 0)) or effective,
        }
        if issued:
            obs["issued"] = issued
        obs["performer"] = [{"reference": f"Organization/{self.org}"}]
        unit_text, unit_code = self._unit(obx, out)
        if obx.values:
            try:
                obs |= value_of(obx, unit_text, unit_code, self.tz, self._system_uri)
            except ValueProblemError as exc:
                self._problem(out, str(exc), 102, ("OBX", obx.seq, 5, 0))
                obs["valueString"] = "\n".join("^".join(v) for v in obx.values)
        elif status in ("cancelled", "final", "corrected"):
            reason = "not-asked" if obx.status.upper() == "N" else "error" if status == "cancelled" else "unknown"
            obs["dataAbsentReason"] = {"coding": [{"system": DATA_ABSENT, "code": reason}]}
        interpretation = self._interpretation(obx, out)
        if interpretation:
            obs["interpretation"] = interpretation
        if obx.notes:
            obs["note"] = [{"text": n} for n in obx.notes]
        if obx.reference_range:
            try:
                obs["referenceRange"] = [reference_range(obx.reference_range, unit_text, unit_code)]
            except ValueProblemError as exc:
                self._problem(out, str(exc), 102, ("OBX", obx.seq, 7, 0))
                obs["referenceRange"] = [{"text": obx.reference_range}]
        return obs, item, status

    def _unit(self, obx: ObxData, out: Mapped) -> tuple[str, str | None]:
        text, code, problem = units.of_obx(obx.units, numeric=obx.value_type.upper() in ("NM", "SN"))
        if problem is not None:
            self._problem(out, problem, 103, ("OBX", obx.seq, 6, 0), fix="send the unit in UCUM (e.g. mmol/L, 10*9/L)")
        return text, code

    def _interpretation(self, obx: ObxData, out: Mapped) -> list[dict[str, Any]]:
        found, unknown = interpretations(obx.flags)
        for flag in unknown:
            self._problem(out, f"abnormal flag {flag!r} is not an HL7 0078 code", 103, ("OBX", obx.seq, 8, 0))
        return found
