"""The result index (docs/design.md §4): every committed DiagnosticReport, Observation and ImagingStudy mapped to
catalog items, one row per (master patient, item, result), maintained in the transaction of the write.

How a resource maps to an item (first that answers):

- **DiagnosticReport** ``code``, **Observation** ``code``: LOINC, the regional item code, an item id, or — through the
  issuing hospital's local code map (its ConceptMap resources) — the hospital's own code;
- **ImagingStudy** ``procedureCode`` the same way, else DICOM (modality, body part) when the part has one item.

**The HR mark** (互认标识) is a ``meta.tag`` with system ``https://hr-registry.org.cn/fhir/CodeSystem/hr-mark`` and
one of the configured HR codes (``REGISTRY_HR_MARK_CODES``: ``HR`` and the regional forms such as ``京HR``); any other
code in that system is no mark. It counts only as the issuing organization's own mark on its own resource. An
Observation or ImagingStudy also carries the mark of the DiagnosticReport that lists it (``result``, ``imagingStudy``)
and is withdrawn with it (a report that is ``entered-in-error`` or ``cancelled`` takes its results along) — but only a
report of the **same issuer about the same patient** governs a result (docs/design.md §6 ownership): another hospital's
report listing it changes nothing.

A row is a pure function of the stored resources (the resource, the reports that list it, the hospital's code map):
``hr-registry index rebuild`` recomputes every row, and ``index check`` compares.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import tzinfo
from decimal import Decimal
from typing import Any

import orjson

from catalog import Catalog, CodeMap, Coding, Item
from catalog.codes import BODY_PART_SNOMED, HR_MARK
from catalog.model import contrast_from_text
from registry.fhir.extract import held_range, parse_reference, values_at
from registry.store.records import Stored
from registry.store.repository import Repository

SNOMED = "http://snomed.info/sct"
_PART_OF_SNOMED = {code: term for term, (code, _meaning) in BODY_PART_SNOMED.items()}

INDEXED = frozenset({"DiagnosticReport", "Observation", "ImagingStudy"})
WITHDRAWN = frozenset({"entered-in-error", "cancelled"})
# what a report lists, by element, as its search parameters index it (``result`` and ``imaging-study``)
_LISTED = {"result": "Observation", "imagingStudy": "ImagingStudy"}
DCM = "http://dicom.nema.org/resources/ontology/DCM"


@dataclass(frozen=True, slots=True)
class IndexRow:
    patient_key: str
    item_id: str
    effective_us: int
    effective_high_us: int
    org_id: str | None
    status: str
    hr_mark: str | None
    res_type: str
    res_id: str
    res_pk: int
    report_id: str | None
    value_text: str | None
    interpretation: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "patient_key": self.patient_key, "item_id": self.item_id, "effective_us": self.effective_us,
            "effective_high_us": self.effective_high_us, "org_id": self.org_id, "status": self.status,
            "hr_mark": self.hr_mark, "res_type": self.res_type, "res_id": self.res_id, "res_pk": self.res_pk,
            "report_id": self.report_id, "value_text": self.value_text, "interpretation": self.interpretation,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class Unmapped:
    org_id: str
    system: str
    code: str
    display: str | None
    resource_type: str


DEFAULT_HR_CODES = frozenset({"HR", "京HR", "津HR", "冀HR", "鲁HR"})


def hr_mark(resource: Mapping[str, Any], codes: frozenset[str] = DEFAULT_HR_CODES) -> str | None:
    """The HR mark a resource carries (``meta.tag`` in the HR-mark system with a configured code), or None."""
    for tag in values_at(resource, "meta.tag"):
        if isinstance(tag, Mapping) and tag.get("system") == HR_MARK and tag.get("code") in codes:
            return str(tag["code"])
    return None


def _codings(node: Any) -> list[Coding]:
    if not isinstance(node, Mapping):
        return []
    return [
        Coding(str(c.get("system") or ""), c["code"])
        for c in node.get("coding") or []
        if isinstance(c, Mapping) and isinstance(c.get("code"), str)
    ]


def _fmt_number(value: Any) -> str:
    if isinstance(value, float):
        return f"{Decimal(repr(value)).normalize():f}"
    return str(value)


def value_summary(resource: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """A short human value (``135 g/L``, ``阴性``, a conclusion) and the interpretation code (H, L, N…)."""
    rtype = resource.get("resourceType")
    interpretation = None
    for node in values_at(resource, "interpretation"):
        codes = _codings(node)
        if codes:
            interpretation = codes[0].code
            break
    if rtype == "Observation":
        q = resource.get("valueQuantity")
        if isinstance(q, Mapping) and "value" in q:
            unit = q.get("unit") or q.get("code") or ""
            comparator = q.get("comparator") or ""
            return f"{comparator}{_fmt_number(q['value'])} {unit}".strip(), interpretation
        if isinstance(resource.get("valueString"), str):
            return str(resource["valueString"])[:200], interpretation
        cc = resource.get("valueCodeableConcept")
        if isinstance(cc, Mapping):
            first = next((c for c in cc.get("coding") or [] if isinstance(c, Mapping)), {})
            text = cc.get("text") or first.get("display") or first.get("code")
            return (str(text)[:200] if text else None), interpretation
        return _other_value(resource), interpretation
    if rtype == "DiagnosticReport":
        conclusion = resource.get("conclusion")
        if isinstance(conclusion, str):
            return conclusion[:200], interpretation
        results = resource.get("result") or []
        return (f"{len(results)} 项结果" if results else None), interpretation
    if rtype == "ImagingStudy":
        description = resource.get("description")
        series, instances = resource.get("numberOfSeries"), resource.get("numberOfInstances")
        counts = f"{series} 序列 / {instances} 图像" if series is not None and instances is not None else None
        return " · ".join(str(x) for x in (description, counts) if x) or None, None
    return None, None


def _quantity(q: Any) -> str:
    if not isinstance(q, Mapping) or "value" not in q:
        return ""
    return f"{q.get('comparator') or ''}{_fmt_number(q['value'])} {q.get('unit') or q.get('code') or ''}".strip()


def _other_value(o: Mapping[str, Any]) -> str | None:
    """The rest of FHIR R4 Observation.value[x] (integer, boolean, Range, Ratio, time, dateTime, Period, SampledData):
    a result carrying any value has a summary — what lets a panel answer for this analyte (docs/design.md §5 rule 2)."""
    if isinstance(o.get("valueBoolean"), bool):
        return "是" if o["valueBoolean"] else "否"
    if isinstance(o.get("valueInteger"), int):
        return str(o["valueInteger"])
    for key in ("valueTime", "valueDateTime"):
        if isinstance(o.get(key), str):
            return str(o[key])
    r = o.get("valueRange")
    if isinstance(r, Mapping) and (r.get("low") or r.get("high")):
        return f"{_quantity(r.get('low'))}–{_quantity(r.get('high'))}"
    r = o.get("valueRatio")
    if isinstance(r, Mapping) and (r.get("numerator") or r.get("denominator")):
        return f"{_quantity(r.get('numerator'))}:{_quantity(r.get('denominator'))}"
    p = o.get("valuePeriod")
    if isinstance(p, Mapping) and (p.get("start") or p.get("end")):
        return f"{p.get('start') or ''}–{p.get('end') or ''}"
    if isinstance(o.get("valueSampledData"), Mapping):
        return "采样数据"
    return None


def _effective_range(resource: Mapping[str, Any], local: tzinfo) -> tuple[int, int] | None:
    """The earliest and latest instant ``effective`` can mean (docs/design.md §5 rule 5), from the first of effective[x]
    / ``started`` / ``issued`` that parses: a value without a time of day covers its whole day, month or year
    (``2026-12``: all of December, in the region's time zone); one with a time is the instant written (FHIR requires
    its seconds and allows them zero-filled, so a second's or a minute's spread would be noise, not precision)."""
    rtype = resource.get("resourceType")
    candidates: list[Any] = []
    if rtype == "ImagingStudy":
        candidates = [resource.get("started")]
    else:
        candidates = [resource.get("effectiveDateTime"), resource.get("effectiveInstant")]
        period = resource.get("effectivePeriod")
        if isinstance(period, Mapping):
            candidates.append(period.get("start"))
        candidates.append(resource.get("issued"))
    for value in candidates:
        if isinstance(value, str):
            try:
                low, high = held_range(value, local)
            except ValueError:
                continue
            return (low, low) if "T" in value else (low, high)
    return None


class ResultIndexer:
    def __init__(
        self, catalog: Catalog, local_tz: tzinfo, base_url: str, hr_codes: frozenset[str] = DEFAULT_HR_CODES
    ) -> None:
        self.catalog = catalog
        self.local_tz = local_tz
        self.base_url = base_url
        self.hr_codes = hr_codes

    # ------------------------------------------------------------------ mapping
    def item_for(self, resource: Mapping[str, Any], code_map: CodeMap | None) -> Item | None:
        rtype = resource.get("resourceType")
        if rtype == "ImagingStudy":
            codes = [c for node in resource.get("procedureCode") or [] for c in _codings(node)]
            found = self.catalog.resolve(codes, code_map)
            return found if found is not None else self._by_dicom(resource)
        return self.catalog.resolve(_codings(resource.get("code")), code_map)

    def _by_dicom(self, study: Mapping[str, Any]) -> Item | None:
        modalities = {c.code for c in (_codings({"coding": study.get("modality") or []}))}
        parts: set[str] = set()
        for series in study.get("series") or []:
            if not isinstance(series, Mapping):
                continue
            mod = series.get("modality")
            if isinstance(mod, Mapping) and isinstance(mod.get("code"), str):
                modalities.add(mod["code"])
            site = series.get("bodySite")
            if isinstance(site, Mapping):
                code = site.get("code")
                if site.get("system") == SNOMED and isinstance(code, str) and code in _PART_OF_SNOMED:
                    parts.add(_PART_OF_SNOMED[code])  # DICOM PS3.16 Table L-1, read backwards
                for key in ("code", "display"):
                    if isinstance(site.get(key), str):
                        parts.add(site[key].upper().replace(" ", ""))
        contrast = contrast_from_text(study.get("description") if isinstance(study.get("description"), str) else None)
        found = {
            item.id: item
            for mod in modalities
            for part in parts
            if (item := self.catalog.by_imaging(mod, part, contrast)) is not None
        }
        return next(iter(found.values())) if len(found) == 1 else None

    def unmapped(self, resource: Mapping[str, Any], org_id: str | None) -> list[Unmapped]:
        if org_id is None:
            return []
        rtype = str(resource.get("resourceType"))
        node = resource.get("code") if rtype != "ImagingStudy" else None
        nodes = [node] if node is not None else list(resource.get("procedureCode") or [])
        out: list[Unmapped] = []
        for n in nodes:
            for c in n.get("coding") or [] if isinstance(n, Mapping) else []:
                if isinstance(c, Mapping) and isinstance(c.get("code"), str):
                    out.append(Unmapped(org_id, str(c.get("system") or ""), c["code"], c.get("display"), rtype))
        return out

    # ------------------------------------------------------------------ rows
    def rows(
        self,
        stored: Stored,
        resource: Mapping[str, Any],
        code_map: CodeMap | None,
        reports: Sequence[tuple[Stored, Mapping[str, Any]]],
    ) -> tuple[list[IndexRow], list[Unmapped]]:
        """Index rows of one resource; ``reports`` are the DiagnosticReports that list it (for the mark and a
        withdrawal), of which only the issuer's own about the same patient count."""
        if stored.deleted or stored.patient_key is None or stored.type not in INDEXED:
            return [], []
        item = self.item_for(resource, code_map)
        if item is None:
            return [], self.unmapped(resource, stored.org_id)
        status = str(resource.get("status") or "unknown")
        mark = hr_mark(resource, self.hr_codes) if stored.org_id is not None else None
        report_id: str | None = None
        for holder, report in reports:
            if holder.org_id != stored.org_id or holder.patient_key != stored.patient_key or stored.org_id is None:
                continue  # another issuer's or another patient's report governs nothing of this result
            report_status = str(report.get("status") or "")
            if report_status in WITHDRAWN:
                status = report_status
            mark = mark or hr_mark(report, self.hr_codes)
            report_id = report_id or str(report.get("id"))
        if stored.type == "DiagnosticReport":
            report_id = stored.id
        if status == "entered-in-error":
            return [], []  # a withdrawal removes the result from the index
        effective = _effective_range(resource, self.local_tz)
        if effective is None:
            return [], []
        value_text, interpretation = value_summary(resource)
        row = IndexRow(stored.patient_key, item.id, *effective, stored.org_id, status, mark, stored.type, stored.id,
                       stored.pk, report_id, value_text, interpretation)  # fmt: skip
        return [row], []

    # ------------------------------------------------------------------ maintenance
    def reindex(
        self,
        repo: Repository,
        refs: Iterable[tuple[str, str]],
        known: Mapping[tuple[str, str], Stored] | None = None,
        fresh: Iterable[tuple[str, str]] = (),
    ) -> list[Unmapped]:
        """Recompute the rows of these resources (and of the results their reports list) inside the caller's
        transaction; return the codes that mapped to nothing. ``known``: rows the caller holds as they now are
        (what this transaction wrote), not read again (a deleted one is: its last body lists its former results).
        ``fresh``: those of ``known`` this transaction created under an id of the server's making (a POST, a
        conditional update that matched nothing): no index row and no stored report can name an id nobody had seen,
        so only this transaction's reports list them."""
        replaced, rows, unmapped = self._compute(repo, refs, known or {}, frozenset(fresh))
        if replaced or rows:
            repo.replace_index_rows(replaced, [r.as_dict() for r in rows])
        return unmapped

    def compute(self, repo: Repository, refs: Iterable[tuple[str, str]]) -> list[IndexRow]:
        """The rows these resources should have (for ``index check``), writing nothing."""
        targets = {r for r in refs if r[0] in INDEXED}
        current = repo.get_any(targets)
        listing = repo.reports_listing([k for k, s in current.items() if s.type != "DiagnosticReport"])
        wanted = {ref for refs_ in listing.values() for ref in refs_}
        report_bodies = {key: (s, orjson.loads(s.body)) for key, s in repo.get_any(wanted).items() if not s.deleted}
        maps = self.code_maps(repo, {s.org_id for s in current.values() if s.org_id})
        rows: list[IndexRow] = []
        for stored in current.values():
            resource = orjson.loads(stored.body) if not stored.deleted else {}
            reports = [report_bodies[k] for k in listing.get((stored.type, stored.id), ()) if k in report_bodies]
            rows += self.rows(stored, resource, maps.get(stored.org_id or ""), reports)[0]
        return rows

    def _compute(
        self,
        repo: Repository,
        refs: Iterable[tuple[str, str]],
        known: Mapping[tuple[str, str], Stored],
        fresh: frozenset[tuple[str, str]],
    ) -> tuple[list[int], list[IndexRow], list[Unmapped]]:
        """The rows to write, and the pks of the resources whose old rows they replace."""
        targets = {r for r in refs if r[0] in INDEXED}
        if not targets:
            return [], [], []
        current = {k: known[k] for k in targets if k in known and not known[k].deleted}  # a deletion: its last body
        if len(current) < len(targets):
            current |= repo.get_any(targets - set(current))
        # Created by this transaction with an id of its making: nothing to delete for these, nor to look up (not
        # every version 1: a client's id may have been named before it existed, as a dangling reference).
        new = {k for k, s in current.items() if k in fresh and k in known and s.version == 1}
        bodies: dict[tuple[str, str], Any] = {}
        listed_here: dict[tuple[str, str], list[tuple[str, str]]] = {}
        # A report's results inherit its mark and withdrawal: recompute them too (a deleted report keeps its last
        # body, so its former results are found as well).
        for key, stored in list(current.items()):
            if stored.type == "DiagnosticReport" and stored.body:
                body = bodies[key] = orjson.loads(stored.body)
                for path in ("result", "imagingStudy"):
                    for ref in values_at(body, path):
                        parsed = (
                            parse_reference(ref.get("reference", ""), self.base_url)
                            if isinstance(ref, Mapping)
                            else None
                        )
                        if parsed is not None and parsed[0] in INDEXED:
                            targets.add(parsed)
                            if not stored.deleted and parsed[0] == _LISTED[path]:  # as the stored listing has it
                                listed_here.setdefault(parsed, []).append(key)
        for key, stored in repo.get_any(targets - set(current)).items():
            current[key] = stored
        # Reports listing the results (outside this write too, except for the new ones).
        results = [k for k, s in current.items() if s.type != "DiagnosticReport"]
        listing = repo.reports_listing([k for k in results if k not in new])
        listing |= {k: listed_here[k] for k in results if k in new and k in listed_here}
        wanted = {ref for refs in listing.values() for ref in refs}
        report_bodies = {
            key: (current[key], bodies[key]) for key in wanted if key in bodies and not current[key].deleted
        }
        report_bodies |= {
            key: (s, orjson.loads(s.body)) for key, s in repo.get_any(wanted - set(report_bodies)).items()
            if not s.deleted
        }  # fmt: skip
        maps = self.code_maps(repo, {s.org_id for s in current.values() if s.org_id})
        rows: list[IndexRow] = []
        unmapped: list[Unmapped] = []
        for key, stored in current.items():
            resource = (bodies[key] if key in bodies else orjson.loads(stored.body)) if not stored.deleted else {}
            reports = [report_bodies[k] for k in listing.get(key, ()) if k in report_bodies]
            r, u = self.rows(stored, resource, maps.get(stored.org_id or ""), reports)
            rows += r
            unmapped += u
        return [s.pk for k, s in current.items() if k not in new], rows, unmapped

    def code_maps(self, repo: Repository, org_ids: Iterable[str]) -> dict[str, CodeMap]:
        """Each hospital's local code map (from its ConceptMaps), as the pure rule takes it."""
        entries: dict[str, dict[Coding, str]] = {}
        for org_id, system, code, item_id in repo.code_map_entries(sorted(set(org_ids))):
            entries.setdefault(org_id, {})[Coding(system, code)] = item_id
        return {org_id: CodeMap(org_id, e) for org_id, e in entries.items()}
