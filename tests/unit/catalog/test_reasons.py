"""不互认原因 as data: they match the shipped reference table."""

from __future__ import annotations

import csv
from pathlib import Path

from catalog import REASONS, reason

TABLE = Path(__file__).resolve().parents[3] / "data" / "reference" / "nonrecognition_reasons.tsv"


def test_reasons_match_the_reference_table() -> None:
    lines = [line for line in TABLE.read_text(encoding="utf-8").splitlines() if not line.startswith("#")]
    rows = list(csv.DictReader(lines, delimiter="\t"))
    assert [(r.code, r.display_zh, r.counts_as_nonrecognition) for r in REASONS] == [
        (row["code"], row["display_zh"], row["counts_as_nonrecognition"] == "yes") for row in rows
    ]


def test_98_and_99_are_recorded_but_not_counted() -> None:
    assert [r.code for r in REASONS if not r.counts_as_nonrecognition] == ["98", "99"]
    r99 = reason("99")
    assert r99 is not None and r99.requires_comment
    assert reason("00") is None
