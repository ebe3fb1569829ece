"""Reading the catalog document from disk (the pure ``catalog`` package has no I/O and no YAML parser)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from catalog import Catalog, InvalidCatalogError, Problem, parse_catalog
from registry.errors import CatalogUnavailableError

try:  # the C loader is ~10x faster on the 3,000-line catalog when libyaml is present
    _Loader: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader


def read_document(path: Path) -> Any:
    """The YAML document at ``path`` as plain data; a clear error for a missing or unparsable file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CatalogUnavailableError(f"catalog file not found: {path}") from None
    except OSError as exc:
        raise CatalogUnavailableError(f"catalog file unreadable: {path}: {exc.strerror}") from None
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader (C or Python)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise InvalidCatalogError([Problem(str(path), "yaml", f"not valid YAML{where}: {exc}")]) from None


def load_catalog(path: Path) -> Catalog:
    """Read and validate the catalog; raises ``InvalidCatalogError`` naming every bad item and field."""
    return parse_catalog(read_document(path))
