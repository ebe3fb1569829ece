"""Reading one FHIR resource into what a page shows: an observation's value, range and flags, an imaging study,
the issuing hospital, the title, an instant in the region's time."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, tzinfo
from typing import Any

from catalog import Item
from catalog.body_parts import TERM_OF_SNOMED
from registry.fhir.extract import held_range, parse_reference
from registry.services.portal.views import ObservationView, StudyView, decimal_value, quantity_text
from registry.services.result_index import ResultIndexer


class ResourceViews:
    """The per-resource readings the portal's pages are built from."""

    tz: tzinfo
    indexer: ResultIndexer

    def _when(self, value: Any) -> datetime | None:
        if not isinstance(value, str):
            return None
        try:
            low, _ = held_range(value, self.tz)
        except ValueError:
            return None
        return datetime.fromtimestamp(low / 1_000_000, self.tz)

    @staticmethod
    def _org_of(resource: Mapping[str, Any]) -> str | None:
        for ref in resource.get("performer") or []:
            parsed = parse_reference(ref.get("reference", ""), None) if isinstance(ref, Mapping) else None
            if parsed and parsed[0] == "Organization":
                return parsed[1]
        for ident in resource.get("identifier") or []:
            assigner = ident.get("assigner") if isinstance(ident, Mapping) else None
            parsed = parse_reference(assigner.get("reference", ""), None) if isinstance(assigner, Mapping) else None
            if parsed and parsed[0] == "Organization":
                return parsed[1]
        return None

    @staticmethod
    def _title(resource: Mapping[str, Any], item: Item | None) -> str:
        node = resource.get("code") or next(iter(resource.get("procedureCode") or []), None) or {}
        if isinstance(node, Mapping):
            if node.get("text"):
                return str(node["text"])
            for c in node.get("coding") or []:
                if isinstance(c, Mapping) and c.get("display"):
                    return str(c["display"])
        if item is not None:
            return item.name_zh
        return str(resource.get("description") or resource.get("resourceType"))

    def _observation(self, o: Mapping[str, Any], maps: Mapping[str, Any], org: str | None) -> ObservationView:
        item = self.indexer.item_for(o, maps.get(org or ""))
        value, unit, ucum, number = "", "", None, None
        if isinstance(o.get("valueQuantity"), Mapping):
            value, unit, ucum, number = quantity_text(o["valueQuantity"])
        elif isinstance(o.get("valueString"), str):
            value = o["valueString"]
        elif isinstance(o.get("valueCodeableConcept"), Mapping):
            cc = o["valueCodeableConcept"]
            value = str(cc.get("text") or next((c.get("display") or c.get("code") for c in cc.get("coding") or []), ""))
        elif isinstance(o.get("valueRatio"), Mapping):
            r = o["valueRatio"]
            value = f"{(r.get('numerator') or {}).get('value')}:{(r.get('denominator') or {}).get('value')}"
        elif isinstance(o.get("valueRange"), Mapping):
            r = o["valueRange"]
            low, high = r.get("low") or {}, r.get("high") or {}
            value, unit = f"{low.get('value')}–{high.get('value')}", str(low.get("unit") or "")
        elif isinstance(o.get("valueDateTime"), str):
            value = o["valueDateTime"]
        elif isinstance(o.get("valueTime"), str):
            value = o["valueTime"]
        elif isinstance(o.get("dataAbsentReason"), Mapping):
            value = "—"
        low = high = None
        range_text = ""
        for rr in o.get("referenceRange") or []:
            if not isinstance(rr, Mapping):
                continue
            low = decimal_value((rr.get("low") or {}).get("value")) if rr.get("low") else None
            high = decimal_value((rr.get("high") or {}).get("value")) if rr.get("high") else None
            range_text = str(rr.get("text") or "")
            if not range_text and (low is not None or high is not None):
                range_text = f"{'' if low is None else low:g}–{'' if high is None else high:g}".strip("–")
            break
        flags = tuple(
            str(c.get("code"))
            for i in o.get("interpretation") or []
            if isinstance(i, Mapping)
            for c in i.get("coding") or []
            if isinstance(c, Mapping) and c.get("code")
        )
        notes = " ".join(str(n.get("text")) for n in o.get("note") or [] if isinstance(n, Mapping) and n.get("text"))
        return ObservationView(
            id=str(o.get("id")),
            name=self._title(o, item),
            item=item,
            value=value,
            numeric=number,
            unit=unit,
            ucum=ucum if isinstance(ucum, str) else None,
            low=low,
            high=high,
            range_text=range_text,
            flags=flags,
            status=str(o.get("status") or ""),
            effective=self._when(o.get("effectiveDateTime") or o.get("issued")),
            org_id=org,
            note=notes,
        )

    def _study(self, s: Mapping[str, Any]) -> StudyView:
        """The study's facts; its images are the viewer's, through the registry's DICOMweb gateway — the page never
        links the hospital's own ``Endpoint.address`` (a hospital's statement, not a URL the registry hands on)."""
        uid = next(
            (
                str(i.get("value", "")).removeprefix("urn:oid:")
                for i in s.get("identifier") or []
                if isinstance(i, Mapping) and i.get("system") == "urn:dicom:uid"
            ),
            "",
        )
        modalities = tuple(str(m.get("code")) for m in s.get("modality") or [] if isinstance(m, Mapping))
        parts: list[str] = []
        for series in s.get("series") or []:
            site = series.get("bodySite") if isinstance(series, Mapping) else None
            if isinstance(site, Mapping):
                # the DICOM term when the code is one of PS3.16 Table L-1 (the pages name it), else the text sent
                code = str(site.get("code") or "")
                text = TERM_OF_SNOMED.get(code) or str(site.get("display") or code)
                if text and text not in parts:
                    parts.append(text)
        return StudyView(
            uid,
            modalities,
            tuple(parts),
            s.get("numberOfSeries"),
            s.get("numberOfInstances"),
            str(s.get("description") or ""),
        )

    @staticmethod
    def _managing(p: Mapping[str, Any]) -> str | None:
        ref = (p.get("managingOrganization") or {}).get("reference", "")
        parsed = parse_reference(ref, None) if isinstance(ref, str) else None
        return parsed[1] if parsed and parsed[0] == "Organization" else None
