"""The one walk over a resource: its references (outside ``contained`` and the narrative), its Identifier-shaped
objects anywhere, and the dateTime/instant values beyond the range the registry holds, each with its path."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from registry.fhir.survey import survey

SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_the_walk_finds_references_identifiers_and_unheld_instants_with_their_paths() -> None:
    resource = {
        "resourceType": "DiagnosticReport",
        "identifier": [{"system": "https://h.example/sid", "value": "R-1"}],
        "subject": {"reference": "Patient/p1"},
        "result": [{"reference": "Observation/o1"}, {"reference": "Observation/o2"}],
        "contained": [{"resourceType": "Observation", "subject": {"reference": "Patient/x"}}],
        "text": {"status": "generated", "div": "<div>9999-12-31T23:59:59-12:00</div>"},
        "effectivePeriod": {"start": "2025-03-01T08:00:00+08:00", "end": "9999-12-31T23:59:59-12:00"},
        "extension": [{"url": "u", "valueString": "x"}, ["0001-01-01T00:00:00+14:00"]],
    }
    found = survey(resource, SHANGHAI)
    assert [(p, n["reference"]) for p, n in found.references] == [
        ("subject", "Patient/p1"), ("result", "Observation/o1"), ("result", "Observation/o2")]  # fmt: skip
    assert [p for p, _ in found.identifiers] == ["identifier[0]"]
    assert found.unheld == [("effectivePeriod.end", "9999-12-31T23:59:59-12:00"),
                            ("extension[1][0]", "0001-01-01T00:00:00+14:00")]  # fmt: skip


def test_a_date_without_a_time_and_other_strings_are_not_instants() -> None:
    found = survey({"resourceType": "Observation", "effectiveDateTime": "2025", "note": [{"text": "x"}]}, SHANGHAI)
    assert (found.references, found.identifiers, found.unheld) == ([], [], [])
