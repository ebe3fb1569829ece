"""`hr-registry catalog list|show|search|validate` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from registry.cli import app

ROOT = Path(__file__).resolve().parents[2]
CATALOG = ROOT / "data" / "recognized_items.yaml"
runner = CliRunner()


def _json_lines(output: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def test_list_by_kind_and_group() -> None:
    r = runner.invoke(app, ["catalog", "list", "--kind", "lab", "--json"])
    assert r.exit_code == 0, r.output
    assert len(_json_lines(r.output)) == 181
    r = runner.invoke(app, ["catalog", "list", "--group", "coagulation", "--json"])
    rows = _json_lines(r.output)
    assert rows and all(row["group"] == "coagulation" for row in rows)
    r = runner.invoke(app, ["catalog", "list", "--kind", "imaging"])
    assert r.exit_code == 0
    assert "胸部CT平扫" in r.output


def test_list_unknown_group_explains() -> None:
    r = runner.invoke(app, ["catalog", "list", "--group", "nope"])
    assert r.exit_code == 2
    assert "unknown group" in r.output


def test_show() -> None:
    r = runner.invoke(app, ["catalog", "show", "L004", "--json"])
    assert r.exit_code == 0, r.output
    row = json.loads(r.output)
    assert row["name_zh"] == "血红蛋白" and row["loinc"] == ["718-7"]
    r = runner.invoke(app, ["catalog", "show", "l001"])
    assert r.exit_code == 0
    assert "血常规" in r.output
    r = runner.invoke(app, ["catalog", "show", "X999"])
    assert r.exit_code == 1
    assert "no item" in r.output


def test_search_chinese_english_abbreviation_code() -> None:
    for text, expected in (
        ("血红蛋白", "L004"),
        ("hemoglobin", "L004"),
        ("ALT", None),
        ("718-7", "L004"),
        ("JY-XY-004", "L004"),
        ("胸部CT平扫", "I032"),
        ("loinc|29252-4", "I032"),
    ):
        r = runner.invoke(app, ["catalog", "search", text, "--json"])
        assert r.exit_code == 0, (text, r.output)
        rows = _json_lines(r.output)
        if expected:
            assert rows[0]["id"] == expected, text
        else:
            assert rows[0]["abbr"] and "ALT" in rows[0]["abbr"]
    r = runner.invoke(app, ["catalog", "search", "no-such-thing-xyz"])
    assert r.exit_code == 1


def test_validate_the_shipped_catalog() -> None:
    r = runner.invoke(app, ["catalog", "validate", str(CATALOG)])
    assert r.exit_code == 0, r.output
    assert "181 lab + 300 imaging = 481 items" in r.output


def test_validate_reports_every_problem_with_item_and_field(tmp_path: Path) -> None:
    doc = yaml.safe_load(CATALOG.read_text(encoding="utf-8"))
    doc["items"][3]["validity"]["days"] = 0
    doc["items"][200]["modality"] = "XX"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    r = runner.invoke(app, ["catalog", "validate", str(bad)])
    assert r.exit_code == 1
    assert "L004 validity.days" in r.output
    assert f"{doc['items'][200]['id']} modality" in r.output


def test_validate_rejects_a_conflicting_loinc_code(tmp_path: Path) -> None:
    doc = yaml.safe_load(CATALOG.read_text(encoding="utf-8"))
    # 48066-5 (D-dimer) is marked C (conflicting) in the shipped reference table.
    ddimer = next(i for i in doc["items"] if i["name_zh"] == "D-二聚体")
    ddimer["codes"] = [{"system": "loinc", "code": "48066-5"}]
    bad = tmp_path / "conflict.yaml"
    bad.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    r = runner.invoke(app, ["catalog", "validate", str(bad)])
    assert r.exit_code == 1
    assert "48066-5 has status C" in r.output


def test_validate_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    r = runner.invoke(app, ["catalog", "validate", str(tmp_path / "none.yaml")])
    assert r.exit_code == 2
    bad = tmp_path / "broken.yaml"
    bad.write_text("items: [\n", encoding="utf-8")
    r = runner.invoke(app, ["catalog", "validate", str(bad)])
    assert r.exit_code == 1
    assert "not valid YAML" in r.output
