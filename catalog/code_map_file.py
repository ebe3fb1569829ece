"""The one grammar of a hospital's code-map file (docs/design.md §4: local codes → catalog items), read by both
``hr-registry codes import`` (which builds the hospital's ConceptMap from it) and ``hr-adapter`` (which codes what it
sends with it), so one file means the same on both sides.

A CSV file (RFC 4180) of rows ``system,code,item[,display]``:

- a UTF-8 byte-order mark, blank lines and lines whose first cell starts with ``#`` are skipped; the first line
  may be the header ``system,code,item[,display]``;
- ``system``, ``code`` and ``item`` are required (cells are stripped of surrounding white space); ``item`` is a
  catalog item id, a regional item code, a LOINC code or an abbreviation the catalog knows, or ``-`` for a local
  test that is deliberately not a recognized item;
- a (system, code) pair appears once;
- every bad line is reported (line numbers count physical CSV records from 1), not only the first.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from catalog.model import Catalog, Item

NOT_AN_ITEM = "-"
"""The ``item`` column value declaring a local code that is deliberately not a recognized item."""


@dataclass(frozen=True, slots=True)
class CodeMapRow:
    line: int
    system: str
    code: str
    item: Item | None  # None: declared not a recognized item ('-')
    display: str | None


class CodeMapFileError(ValueError):
    """The file breaks the grammar; ``problems`` names every bad line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def parse_code_map(text: str, catalog: Catalog, *, name: str = "") -> list[CodeMapRow]:
    """The rows of a code-map file's text; ``CodeMapFileError`` lists every problem, each as ``[<name> ]line N: …``."""
    at = f"{name} line" if name else "line"
    problems: list[str] = []
    rows: list[CodeMapRow] = []
    seen: dict[tuple[str, str], int] = {}
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff")))
    try:
        records = list(reader)
    except csv.Error as exc:
        raise CodeMapFileError([f"{at} {reader.line_num}: not CSV ({exc})"]) from None
    for line_no, row in enumerate(records, start=1):
        cells = [cell.strip() for cell in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if line_no == 1 and cells[0].lower() == "system":
            continue
        if len(cells) < 3 or not all(cells[:3]):
            problems.append(f"{at} {line_no}: expected system,code,item[,display]")
            continue
        system, code, item_text = cells[:3]
        item = None if item_text == NOT_AN_ITEM else catalog.named(item_text)
        if item is None and item_text != NOT_AN_ITEM:
            problems.append(
                f"{at} {line_no}: {item_text!r} is not a catalog item (an item id, regional code or LOINC "
                "code, or '-' for a test that is not one)"
            )
            continue
        if (system, code) in seen:
            problems.append(f"{at} {line_no}: {system}|{code} is already mapped on line {seen[system, code]}")
            continue
        seen[system, code] = line_no
        display = cells[3] if len(cells) > 3 and cells[3] else None
        rows.append(CodeMapRow(line_no, system, code, item, display))
    if problems:
        raise CodeMapFileError(problems)
    return rows
