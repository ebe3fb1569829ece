"""The CDS Hooks 2.0 field rules for a service response (cds-hooks.hl7.org/2.0 §Card, §Suggestion, §Action, §Link),
as a checker the tests apply to every response."""

from __future__ import annotations

import uuid
from typing import Any


def _coding(c: Any, where: str, *, display_required: bool = False) -> None:
    assert isinstance(c, dict), where
    assert isinstance(c.get("code"), str) and c["code"], f"{where}.code"
    assert isinstance(c.get("system"), str) and c["system"], f"{where}.system"
    if display_required:
        assert isinstance(c.get("display"), str) and c["display"], f"{where}.display"


def assert_valid_cds_response(response: dict[str, Any]) -> None:
    assert set(response) <= {"cards", "systemActions"}, response.keys()
    assert isinstance(response.get("cards"), list), "cards is required"
    for i, card in enumerate(response["cards"]):
        where = f"cards[{i}]"
        assert set(card) <= {
            "uuid",
            "summary",
            "detail",
            "indicator",
            "source",
            "suggestions",
            "selectionBehavior",
            "overrideReasons",
            "links",
        }, f"{where}: unknown fields {set(card)}"
        # OPTIONAL in the specification, but feedback SHALL name it: every card of this service carries one
        assert "uuid" in card, f"{where}.uuid"
        uuid.UUID(card["uuid"])
        assert isinstance(card.get("summary"), str) and card["summary"], f"{where}.summary"
        assert len(card["summary"]) < 140, f"{where}.summary has {len(card['summary'])} characters"
        if "detail" in card:
            assert isinstance(card["detail"], str)
        assert card.get("indicator") in ("info", "warning", "critical"), f"{where}.indicator"
        source = card.get("source")
        assert isinstance(source, dict) and isinstance(source.get("label"), str) and source["label"], f"{where}.source"
        if "topic" in source:
            _coding(source["topic"], f"{where}.source.topic")
        if "suggestions" in card:
            assert card.get("selectionBehavior") in ("at-most-one", "any"), f"{where}.selectionBehavior"
            for j, s in enumerate(card["suggestions"]):
                assert isinstance(s.get("label"), str) and s["label"], f"{where}.suggestions[{j}].label"
                if "uuid" in s:
                    uuid.UUID(s["uuid"])
                for k, a in enumerate(s.get("actions", [])):
                    aw = f"{where}.suggestions[{j}].actions[{k}]"
                    assert a.get("type") in ("create", "update", "delete"), f"{aw}.type"
                    assert isinstance(a.get("description"), str) and a["description"], f"{aw}.description"
                    if a["type"] == "delete":
                        assert isinstance(a.get("resourceId"), str) and "/" in a["resourceId"], f"{aw}.resourceId"
                    else:
                        assert isinstance(a.get("resource"), dict), f"{aw}.resource"
        for j, c in enumerate(card.get("overrideReasons", [])):
            _coding(c, f"{where}.overrideReasons[{j}]", display_required=True)
        for j, link in enumerate(card.get("links", [])):
            lw = f"{where}.links[{j}]"
            assert isinstance(link.get("label"), str) and link["label"], f"{lw}.label"
            assert isinstance(link.get("url"), str) and link["url"], f"{lw}.url"
            assert link.get("type") in ("absolute", "smart"), f"{lw}.type"
