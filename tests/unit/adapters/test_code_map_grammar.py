"""One grammar for code-map files (catalog/code_map_file.py): ``hr-adapter`` (adapters.codes.read_code_map) and
``hr-registry codes import`` (registry.services.code_maps.concept_map_from_csv) read a file the same way — the same
rows, the same refusals naming the same lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapters.codes import read_code_map
from adapters.errors import ConfigError
from catalog import Catalog
from catalog.code_map_file import CodeMapFileError, parse_code_map
from registry.errors import BadRequestError
from registry.services.code_maps import concept_map_from_csv

LIS = "http://hosp-a.example.cn/lis"


def both(tmp_path: Path, catalog: Catalog, text: str) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    """(system, code, item id or '-') as the adapter reads the file, and as the registry's ConceptMap holds it."""
    path = tmp_path / "codes.csv"
    path.write_bytes(text.encode("utf-8"))
    adapter = [(r.system, r.code, r.item.id if r.item else "-") for r in read_code_map(path, catalog)]
    concept_map = concept_map_from_csv(text, "hosp-a", catalog)
    registry = [
        (g["source"], e["code"], e["target"][0].get("code", "-")) for g in concept_map["group"] for e in g["element"]
    ]
    return sorted(adapter), sorted(registry)


GOOD = (
    "\ufeffsystem,code,item,display\n"
    "# hosp-a's LIS codes\n"
    "\n"
    f"{LIS},CBC,L001,血常规\n"
    f" {LIS} , WBC , L002 \n"  # cells are stripped
    f'"{LIS}","HGB, 2",718-7,"血红蛋白, 血液"\n'  # quoted cells with commas; a LOINC code as the item
    f"{LIS},ZZ1,-,a local test that is no recognized item\n"
    "   ,   ,   \n"  # blank cells only: skipped like a blank line
)


def test_a_good_file_reads_the_same_on_both_sides(tmp_path: Path, catalog: Catalog) -> None:
    adapter, registry = both(tmp_path, catalog, GOOD)
    assert (
        adapter
        == registry
        == sorted([(LIS, "CBC", "L001"), (LIS, "WBC", "L002"), (LIS, "HGB, 2", "L004"), (LIS, "ZZ1", "-")])
    )
    rows = parse_code_map(GOOD, catalog)
    assert [(r.line, r.display) for r in rows] == [
        (4, "血常规"),
        (5, None),
        (6, "血红蛋白, 血液"),
        (7, "a local test that is no recognized item"),
    ]


BAD = [
    # the file, the problems both sides report
    (f"{LIS},CBC\n", ["line 1: expected system,code,item[,display]"]),
    (f",CBC,L001\n{LIS},,L001\n", ["line 1: expected system,code,item[,display]",
                                  "line 2: expected system,code,item[,display]"]),
    (f"{LIS},CBC,NOT-AN-ITEM\n", ["line 1: 'NOT-AN-ITEM' is not a catalog item (an item id, regional code or LOINC "
                                 "code, or '-' for a test that is not one)"]),
    (f"{LIS},CBC,L001\n{LIS},CBC,L002\n", [f"line 2: {LIS}|CBC is already mapped on line 1"]),
    (f"{LIS},CBC,L001\n{LIS},CBC,L001\n", [f"line 2: {LIS}|CBC is already mapped on line 1"]),  # even the same item
    (f'{LIS},"CBC,L001\n', ["line 1: expected system,code,item[,display]"]),  # an unclosed quote swallows the rest
]  # fmt: skip


@pytest.mark.parametrize(("text", "problems"), BAD, ids=[f"bad-{n}" for n in range(len(BAD))])
def test_a_bad_file_is_refused_the_same_on_both_sides(
    tmp_path: Path, catalog: Catalog, text: str, problems: list[str]
) -> None:
    with pytest.raises(CodeMapFileError) as grammar:
        parse_code_map(text, catalog)
    assert grammar.value.problems == problems
    path = tmp_path / "codes.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as adapter:
        read_code_map(path, catalog)
    assert adapter.value.problems == [f"code map codes.csv {p}" for p in problems]
    with pytest.raises(BadRequestError) as registry:
        concept_map_from_csv(text, "hosp-a", catalog)
    assert registry.value.diagnostics == "; ".join(problems)
