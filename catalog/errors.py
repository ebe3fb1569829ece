"""The catalog package's one exception hierarchy (docs/design.md §8)."""

from __future__ import annotations

from dataclasses import dataclass


class CatalogError(Exception):
    """Base of every error the pure domain raises."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a catalog document: which item (or section), which field, and what."""

    where: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.field}: {self.message}"


class InvalidCatalogError(CatalogError):
    """The catalog document is not acceptable; ``problems`` names every item and field at fault."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = tuple(problems)
        shown = "\n".join(f"  - {p}" for p in self.problems[:50])
        more = f"\n  … and {len(self.problems) - 50} more" if len(self.problems) > 50 else ""
        super().__init__(f"invalid catalog ({len(self.problems)} problem(s)):\n{shown}{more}")


class UnknownItemError(CatalogError, KeyError):
    """An item id that the catalog does not contain."""

    def __init__(self, item_id: str) -> None:
        self.item_id = item_id
        super().__init__(item_id)

    def __str__(self) -> str:
        return f"no catalog item {self.item_id!r}"


class InvalidFactError(CatalogError, ValueError):
    """A fact handed to the rule is malformed (e.g. a naive datetime)."""
