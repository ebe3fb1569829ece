"""The catalog and the hospital's local code map, as the adapter uses them to code what it sends.

A row whose ``item`` is ``-`` declares a local code that is deliberately not a recognized item (a test outside the
catalog): it is sent with its local code only, and the strict policy no longer treats it as unmapped.

The map file is the same CSV ``hr-registry codes import`` takes, read by the same grammar (``catalog.code_map_file``)
— ``system,code,item[,display]`` rows, ``item`` being an item id, a regional item code, a LOINC code or an
abbreviation — so one file serves both sides: the adapter adds the catalog's codes to what it sends, and the registry
maps the local code even from other senders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from adapters.errors import ConfigError
from catalog import Catalog, Coding, InvalidCatalogError, Item, parse_catalog
from catalog.code_map_file import NOT_AN_ITEM, CodeMapFileError, CodeMapRow, parse_code_map
from catalog.codes import LOINC, RECOGNIZED_ITEMS
from catalog.model import CodeMap

__all__ = ["NOT_AN_ITEM", "Coder", "MapRow", "load_catalog", "read_code_map"]

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


MapRow = CodeMapRow
"""One row of the code map (the grammar is ``catalog.code_map_file``, shared with ``hr-registry codes import``)."""


def read_code_map(path: Path, catalog: Catalog) -> list[MapRow]:
    """Rows of a code-map CSV; ``ConfigError`` names every bad line (unknown item, missing column, duplicate)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"code map {path}: no such file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([f"code map {path}: cannot be read: {exc}"]) from None
    try:
        return parse_code_map(text, catalog, name=f"code map {path.name}")
    except CodeMapFileError as exc:
        raise ConfigError(exc.problems) from None


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
