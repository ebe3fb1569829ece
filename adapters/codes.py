"""The catalog and the hospital's local code map, as the adapter uses them to code what it sends.

A row whose ``item`` is ``-`` declares a local code that is deliberately not a recognized item (a test outside the
catalog): it is sent with its local code only, and the strict policy no longer treats it as unmapped.

The map file is the same CSV ``hr-registry codes import`` takes — ``system,code,item[,display]`` rows, ``item`` being
an item id, a regional item code, a LOINC code or an abbreviation — so one file serves both sides: the adapter adds
the catalog's codes to what it sends, and the registry maps the local code even from other senders.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from adapters.errors import ConfigError
from catalog import Catalog, Coding, InvalidCatalogError, Item, parse_catalog
from catalog.codes import LOINC, RECOGNIZED_ITEMS
from catalog.model import CodeMap

NOT_AN_ITEM = "-"
"""The ``item`` column value declaring a local code that is deliberately not a recognized item."""

DEFAULT_CATALOG = Path(__file__).resolve().parent.parent / "data" / "recognized_items.yaml"

try:  # libyaml's loader when PyYAML was built with it (~10x faster on the catalog)
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader


def load_catalog(path: Path | None = None) -> Catalog:
    path = path or DEFAULT_CATALOG
    try:
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506 - a SafeLoader
    except FileNotFoundError:
        raise ConfigError([f"catalog file not found: {path}"]) from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError([f"catalog file {path} cannot be read: {exc}"]) from None
    try:
        return parse_catalog(document)
    except InvalidCatalogError as exc:
        raise ConfigError([f"catalog file {path}: {exc}"]) from None


@dataclass(frozen=True, slots=True)
class MapRow:
    line: int
    system: str
    code: str
    item: Item | None  # None: declared "not a recognized item" (item column '-')


def read_code_map(path: Path, catalog: Catalog) -> list[MapRow]:
    """Rows of a code-map CSV; ``ConfigError`` names every bad line (unknown item, missing column, duplicate)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError([f"code map {path}: no such file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"code map {path}: cannot be read: {exc}"]) from None
    problems: list[str] = []
    rows: list[MapRow] = []
    seen: dict[tuple[str, str], int] = {}
    for line_no, row in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not row or not any(cell.strip() for cell in row) or row[0].strip().startswith("#"):
            continue
        if line_no == 1 and row[0].strip().lower() == "system":
            continue
        if len(row) < 3 or not row[0].strip() or not row[1].strip() or not row[2].strip():
            problems.append(f"code map {path.name} line {line_no}: expected system,code,item[,display]")
            continue
        system, code, item_text = (cell.strip() for cell in row[:3])
        item = None if item_text == NOT_AN_ITEM else catalog.named(item_text)
        if item is None and item_text != NOT_AN_ITEM:
            problems.append(f"code map {path.name} line {line_no}: {item_text!r} is not a catalog item")
            continue
        if (system, code) in seen:
            problems.append(
                f"code map {path.name} line {line_no}: {system}|{code} is already mapped on line {seen[system, code]}"
            )
            continue
        seen[system, code] = line_no
        rows.append(MapRow(line_no, system, code, item))
    if problems:
        raise ConfigError(problems)
    return rows


class Coder:
    """Maps what a hospital sends (local codes, LOINC, DICOM attributes) to catalog items."""

    def __init__(self, catalog: Catalog, org_id: str, rows: list[MapRow] | None = None) -> None:
        self.catalog = catalog
        self.code_map = CodeMap(org_id, {Coding(r.system, r.code): r.item.id for r in rows or [] if r.item})
        self._known = {Coding(r.system, r.code) for r in rows or []}

    def declared(self, coding: Coding) -> bool:
        """Whether the code map has a row for this code (mapped to an item or declared not one)."""
        return coding in self._known

    def item_for(self, codings: list[Coding]) -> Item | None:
        return self.catalog.resolve(codings, self.code_map)

    @staticmethod
    def item_codings(item: Item) -> list[dict[str, str]]:
        """FHIR codings naming ``item``: the catalog item and its LOINC codes."""
        out = [{"system": RECOGNIZED_ITEMS, "code": item.id, "display": item.name_zh}]
        out += [{"system": LOINC, "code": code} for code in item.loinc]
        return out
