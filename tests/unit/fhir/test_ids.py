"""The ids the server assigns are never shaped like a resident ID number: the audit trail and the logs mask that
shape wherever it stands, and would mask the id in the patient's own audit references."""

from __future__ import annotations

import uuid

import pytest

from registry.fhir import ids
from registry.services.redaction import mask_id_shaped

SHAPED = uuid.UUID("9417c9c1-6608-4024-9236-19951d853675")  # 18 digits across the dashes: "1-6608-4024-9236-1995…"


def test_a_uuid_can_be_shaped_like_an_id_number_and_is_then_masked() -> None:
    assert ids.ID_SHAPED.search(str(SHAPED))
    assert mask_id_shaped(f"Patient/{SHAPED}") != f"Patient/{SHAPED}"


def test_new_ids_draw_again_past_an_id_shaped_uuid(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = uuid.UUID("0f8fad5b-d9cb-469f-a165-70867728950e")
    drawn = iter([SHAPED, SHAPED, plain])
    monkeypatch.setattr(ids.uuid, "uuid4", lambda: next(drawn))
    assert ids.new_id() == str(plain)


def test_new_ids_survive_the_audit_masking() -> None:
    for _ in range(20_000):  # about 100 of these would be masked without the redraw (0.5 % of version-4 UUIDs)
        rid = ids.new_id()
        assert mask_id_shaped(rid) == rid
