"""The recognized-item catalog as immutable values (docs/design.md §4 "Catalog", §5 rules 1–2).

Built by :func:`catalog.parse.parse_catalog` from the mapping that ``data/recognized_items.yaml`` holds; nothing here
reads files, clocks or databases.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, tzinfo
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType

from catalog.codes import LOINC, RECOGNIZED_ITEMS, REGIONAL_ITEM_CODE, Coding
from catalog.errors import UnknownItemError


class Kind(StrEnum):
    """检验 (lab) or 检查 (imaging)."""

    LAB = "lab"
    IMAGING = "imaging"


class Contrast(StrEnum):
    """Contrast of an imaging item, as the Radiology Playbook names it (WO / W / WO and W)."""

    WITHOUT = "without"
    WITH = "with"
    WITHOUT_THEN_WITH = "without_then_with"
    NOT_APPLICABLE = "not_applicable"


def contrast_from_text(text: str | None) -> Contrast | None:
    """Contrast stated in a study or procedure description (平扫 / 增强 / 平扫+增强), or None."""
    if not text:
        return None
    if "平扫+增强" in text or "平扫及增强" in text or "平扫加增强" in text:
        return Contrast.WITHOUT_THEN_WITH
    if "增强" in text:
        return Contrast.WITH
    if "平扫" in text:
        return Contrast.WITHOUT
    return None


DICOM_MODALITIES = frozenset(
    {"CT", "MR", "DX", "CR", "MG", "US", "NM", "PT", "XA", "RF", "BMD", "OT", "IO", "PX", "ES", "OP", "OCT"}
)
"""DICOM Modality (0008,0060) defined terms the catalog accepts (PS3.3 C.7.3.1.1.1)."""

MODALITY_ALIASES = MappingProxyType({"CR": "DX", "DR": "DX", "PET": "PT", "MRI": "MR", "DXA": "BMD"})
"""Modality values seen in the field that mean the same catalog modality (a CR or DR study is a DX item)."""


@dataclass(frozen=True, slots=True)
class Validity:
    """互认时限: how many days after ``effective`` a result stays recognizable, and where that number comes from.

    ``source`` is ``published:<region>`` when a published list gives the number, ``assumed`` otherwise
    (``data/reference/validity_reference.md``).
    """

    days: int
    source: str

    @property
    def assumed(self) -> bool:
        return self.source == "assumed"


@dataclass(frozen=True, slots=True)
class Fee:
    """Price of the item in yuan; used to count the money a recognition saves. ``source`` says if it is assumed."""

    amount: Decimal
    source: str


@dataclass(frozen=True, slots=True)
class LabSpec:
    """What a lab item is measured on: specimen type and UCUM unit (None for qualitative items and panels)."""

    specimen: str
    unit: str | None


@dataclass(frozen=True, slots=True)
class ImagingSpec:
    """How an imaging item is recognized from DICOM headers when no procedure code is sent.

    ``modality`` is a DICOM Modality (0008,0060) term, ``body_part`` a Body Part Examined (0018,0015) term,
    ``technique`` distinguishes special exams of the same part and contrast (perfusion, calcium score…).
    """

    modality: str
    body_part: str
    contrast: Contrast
    technique: str | None


@dataclass(frozen=True, slots=True)
class RegionalListing:
    """Membership of a published regional list, e.g. the 京津冀鲁 60 lab items.

    ``evidence`` is ``published`` when the item was read in the published list, ``inferred`` when the list's
    group is known but the copy seen was cut off before naming the item.
    """

    list_id: str
    evidence: str


@dataclass(frozen=True, slots=True)
class Item:
    """One recognized item (互认项目)."""

    id: str
    kind: Kind
    group: str
    name_zh: str
    name_en: str
    abbr: tuple[str, ...]
    codes: tuple[Coding, ...]
    regional_code: str
    validity: Validity
    fee: Fee
    scopes: frozenset[str]
    members: tuple[str, ...] = ()
    lab: LabSpec | None = None
    imaging: ImagingSpec | None = None
    listings: tuple[RegionalListing, ...] = ()
    note: str | None = None
    # Health data the patient must consent to share separately (PIPL Art. 28-29): HIV, syphilis, hepatitis serology
    # and panels holding them. Never named in a notification; shared with another hospital only with that consent.
    sensitive: bool = False

    @property
    def is_panel(self) -> bool:
        return bool(self.members)

    @property
    def loinc(self) -> tuple[str, ...]:
        return tuple(c.code for c in self.codes if c.system == LOINC)

    def all_codings(self) -> tuple[Coding, ...]:
        """Every coding that names this item: its standard codes, its regional code and its item id."""
        return (
            *self.codes,
            Coding(REGIONAL_ITEM_CODE, self.regional_code),
            Coding(RECOGNIZED_ITEMS, self.id),
        )


@dataclass(frozen=True, slots=True)
class Scope:
    """A recognition scope (互认范围): a region such as the city, or ``alliance`` (within one medical alliance)."""

    code: str
    name_zh: str
    name_en: str
    kind: str  # "region" | "alliance"


@dataclass(frozen=True, slots=True)
class Group:
    code: str
    kind: Kind
    name_zh: str
    name_en: str


@dataclass(frozen=True, slots=True)
class Specimen:
    code: str
    name_zh: str
    name_en: str


ALLIANCE_PREFIX = "alliance:"


@dataclass(frozen=True, slots=True)
class OrgFacts:
    """What the rule needs to know of a hospital: its id and the regions/alliances it belongs to.

    Alliance memberships are written ``alliance:<id>``; plain entries are region scope codes (``beijing``, ``jjjl``).
    """

    id: str
    regions: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class CodeMap:
    """A hospital's local code map: its own order/result codes → catalog item ids (docs/design.md §5 rule 1)."""

    org_id: str
    entries: Mapping[Coding, str] = field(default_factory=dict)

    def item_for(self, coding: Coding) -> str | None:
        return self.entries.get(coding)


def _fold(text: str) -> str:
    """Case- and width-insensitive form for search (full-width Ｃ Ｔ → CT; Greek γ stays γ)."""
    return unicodedata.normalize("NFKC", text).casefold().replace(" ", "")


@dataclass(frozen=True, slots=True)
class SearchHit:
    item: Item
    score: int  # lower is better: 0 exact code/abbr/id, 1 exact name, 2 prefix, 3 substring


class Catalog:
    """The whole catalog: items, groups, scopes, specimens, and the lookups the rule and the registry need."""

    __slots__ = (
        "_by_code",
        "_by_id",
        "_by_imaging",
        "_panels_of",
        "edition",
        "effective",
        "groups",
        "items",
        "loinc_notice",
        "region",
        "scopes",
        "specimens",
        "timezone",
        "title_zh",
    )

    def __init__(
        self,
        *,
        edition: str,
        effective: date,
        region: str,
        title_zh: str,
        timezone: tzinfo,
        scopes: Iterable[Scope],
        groups: Iterable[Group],
        specimens: Iterable[Specimen],
        items: Iterable[Item],
        loinc_notice: str | None = None,
    ) -> None:
        self.edition = edition
        self.loinc_notice = loinc_notice
        self.effective = effective
        self.region = region
        self.title_zh = title_zh
        self.timezone = timezone
        self.scopes: Mapping[str, Scope] = MappingProxyType({s.code: s for s in scopes})
        self.groups: Mapping[str, Group] = MappingProxyType({g.code: g for g in groups})
        self.specimens: Mapping[str, Specimen] = MappingProxyType({s.code: s for s in specimens})
        self.items: tuple[Item, ...] = tuple(items)
        self._by_id: Mapping[str, Item] = MappingProxyType({i.id: i for i in self.items})
        self._by_code: Mapping[Coding, Item] = MappingProxyType({c: i for i in self.items for c in i.all_codings()})
        self._by_imaging: Mapping[tuple[str, str, Contrast, str | None], Item] = MappingProxyType(
            {
                (i.imaging.modality, i.imaging.body_part, i.imaging.contrast, i.imaging.technique): i
                for i in self.items
                if i.imaging is not None
            }
        )
        panels: dict[str, list[str]] = {}
        for i in self.items:
            for m in i.members:
                panels.setdefault(m, []).append(i.id)
        self._panels_of: Mapping[str, tuple[str, ...]] = MappingProxyType({k: tuple(v) for k, v in panels.items()})

    # ------------------------------------------------------------------ access
    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Item]:
        return iter(self.items)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._by_id

    def item(self, item_id: str) -> Item:
        try:
            return self._by_id[item_id]
        except KeyError:
            raise UnknownItemError(item_id) from None

    def get(self, item_id: str) -> Item | None:
        return self._by_id.get(item_id)

    def named(self, text: str) -> Item | None:
        """The item named exactly by ``text``: its id, regional item code, LOINC code or abbreviation (what a code-map
        file's ``item`` column may hold); None when nothing matches exactly."""
        found = self._by_id.get(text.strip().upper())
        if found is not None:
            return found
        hits = self.search(text, limit=1)
        return hits[0].item if hits and hits[0].score == 0 else None

    def of_kind(self, kind: Kind) -> tuple[Item, ...]:
        return tuple(i for i in self.items if i.kind is kind)

    # ------------------------------------------------------------------ code lookup (rule 1–2)
    def by_code(self, coding: Coding, code_map: CodeMap | None = None) -> Item | None:
        """The item a coding names: a standard code (LOINC…), the regional item code, an item id, or — through
        ``code_map`` — a hospital's local code. The hospital's own map wins over a standard code it overrides."""
        if code_map is not None:
            mapped = code_map.item_for(coding)
            if mapped is not None:
                return self._by_id.get(mapped)
        return self._by_code.get(coding)

    def resolve(self, codings: Iterable[Coding], code_map: CodeMap | None = None) -> Item | None:
        """The item the first resolvable coding of a resource names (FHIR ``code.coding`` order), or None."""
        for coding in codings:
            found = self.by_code(coding, code_map)
            if found is not None:
                return found
        return None

    def by_imaging(
        self, modality: str, body_part: str, contrast: Contrast | None, technique: str | None = None
    ) -> Item | None:
        """The imaging item for DICOM (Modality, BodyPartExamined) and the contrast, for studies without a procedure
        code. ``CR``/``DR`` mean ``DX``. When the contrast is unknown, the item is returned only if the part has
        exactly one item of that modality and technique (otherwise the answer would be a guess)."""
        mod = modality.strip().upper()
        mod = MODALITY_ALIASES.get(mod, mod)
        part = body_part.strip().upper().replace(" ", "")
        if contrast is not None:
            return self._by_imaging.get((mod, part, contrast, technique))
        matches = [
            item for (m, p, _c, t), item in self._by_imaging.items() if m == mod and p == part and t == technique
        ]
        return matches[0] if len(matches) == 1 else None

    # ------------------------------------------------------------------ equivalence (rule 2)
    def panels_containing(self, item_id: str) -> tuple[str, ...]:
        return self._panels_of.get(item_id, ())

    def satisfies(self, result_item: str, order_item: str) -> bool:
        """A result for ``result_item`` answers an order for ``order_item`` when it is the same item, or when the
        result is a panel whose members include the ordered analyte (a blood count answers an order for Hb)."""
        if result_item == order_item:
            return True
        panel = self._by_id.get(result_item)
        return panel is not None and order_item in panel.members

    # ------------------------------------------------------------------ search
    def search(self, text: str, *, kind: Kind | None = None, limit: int | None = None) -> list[SearchHit]:
        """Find items by Chinese or English name, abbreviation, id, regional code or any code, best first."""
        q = _fold(text)
        if not q:
            return []
        code = Coding.parse(text) if "|" in text else None
        hits: list[SearchHit] = []
        for item in self.items:
            if kind is not None and item.kind is not kind:
                continue
            score = self._score(item, q, code)
            if score is not None:
                hits.append(SearchHit(item, score))
        hits.sort(key=lambda h: (h.score, h.item.id))
        return hits[:limit] if limit is not None else hits

    @staticmethod
    def _score(item: Item, q: str, code: Coding | None) -> int | None:
        if code is not None and code in item.all_codings():
            return 0
        exact_keys = {_fold(item.id), _fold(item.regional_code), *(_fold(a) for a in item.abbr)}
        exact_keys.update(_fold(c.code) for c in item.codes)
        if q in exact_keys:
            return 0
        names = (_fold(item.name_zh), _fold(item.name_en))
        if q in names:
            return 1
        if any(n.startswith(q) for n in names) or any(k.startswith(q) for k in exact_keys):
            return 2
        if any(q in n for n in names) or any(q in k for k in exact_keys):
            return 3
        return None
