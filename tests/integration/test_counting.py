"""Counting right (statistics, docs/design.md §1, §5): a same-hospital duplicate is its own figure, never a
cross-hospital recognition; an acceptance after the result was withdrawn is flagged and saves nothing; the breakdowns
carry orders checked and recognizable found, and list a hospital or item with checks but no decisions. On SQLite and
PostgreSQL, each module with a database of its own (so the region's hospitals and figures start from nothing)."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from catalog.codes import NONRECOGNITION_REASONS
from registry.auth import PrincipalKind
from tests.integration.conftest import Api, Database, unique
from tests.integration.recognition_region import new_person, recognition_region
from tests.integration.test_pages import sign_in
from tests.integration.test_recognition import ORDERS, T0, Clock, card_for, push_cbc, sign


@pytest.fixture(scope="module")
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture(scope="module")
def api(database: Database, tmp_path_factory: pytest.TempPathFactory, clock: Clock) -> Iterator[Api]:
    with recognition_region(database, tmp_path_factory.mktemp("var"), clock) as region:
        yield region


@pytest.fixture
def person(api: Api) -> dict[str, Any]:
    return new_person(api)


def summary(api: Api, **params: str) -> dict[str, Any]:
    r = api.get("/stats/api/summary", who="admin", params=params)
    assert r.status_code == 200, r.text
    return dict(r.json())


def accept(api: Api, card: dict[str, Any], clock: Clock, who: str = "dr-hosp-b") -> None:
    feedback = {
        "feedback": [
            {
                "card": card["uuid"],
                "outcome": "accepted",
                "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}],
                "outcomeTimestamp": (clock.now + timedelta(minutes=1)).isoformat(),
            }
        ]
    }
    r = api.post("/cds-services/hr-order-sign/feedback", feedback, who=who)
    assert r.status_code == 200, r.text


def group(rows: list[dict[str, Any]], key: str, value: str | None) -> dict[str, Any]:
    found = [g for g in rows if g[key] == value]
    assert found, f"no {key} {value!r} in {[g[key] for g in rows]}"
    return found[0]


def fee(api: Api, item_id: str) -> Decimal:
    return api.ctx.catalog.item(item_id).fee.amount.quantize(Decimal("0.01"))


def test_an_accepted_same_hospital_duplicate_is_a_duplicate_avoided_not_a_recognition(
    api: Api, person: dict[str, Any], clock: Clock
) -> None:
    clock.now = T0
    push_cbc(api, "hosp-b", f"Patient/{person['b']['id']}", unique("R"), marked=False)
    before = summary(api)
    card = card_for(sign(api, "dr-hosp-b", person["nid"], ORDERS[:1]), "o-cbc")
    assert card is not None and card["summary"].startswith("重复开单")
    accept(api, card, clock)
    after = summary(api)
    # none of the cross-hospital figures moves
    assert after["recognized"] == before["recognized"]
    assert after["money_saved_cny"] == before["money_saved_cny"]
    assert after["patients_benefited"] == before["patients_benefited"]
    assert after["recognition_rate"] == before["recognition_rate"]
    assert after["recognizable_found"] == before["recognizable_found"]
    # the ordering hospital is not the issuer of a recognition of its own result
    assert "hosp-b" not in {g["issuer"] for g in after["by_issuer"]}
    # it is its own figure, with the fee of the repeat it avoided
    assert after["duplicates_found"] == before["duplicates_found"] + 1
    assert after["duplicates_avoided"] == before["duplicates_avoided"] + 1
    saved = Decimal(after["duplicate_money_saved_cny"]) - Decimal(before["duplicate_money_saved_cny"])
    assert saved == fee(api, "L001")
    b = group(after["by_hospital"], "hospital", "hosp-b")
    assert b["duplicates_avoided"] >= 1 and b["recognized"] == 0
    with api.ctx.engine.connect() as conn:
        row = conn.execute(
            text("select card_status, result_withdrawn from decision where card_uuid = :u"), {"u": card["uuid"]}
        ).one()
    assert row.card_status == "same-hospital-duplicate"
    assert not row.result_withdrawn


def test_declining_a_same_hospital_duplicate_is_no_refusal(api: Api, person: dict[str, Any], clock: Clock) -> None:
    clock.now = T0
    push_cbc(api, "hosp-b", f"Patient/{person['b']['id']}", unique("R"), marked=False)
    before = summary(api)
    card = card_for(sign(api, "dr-hosp-b", person["nid"], ORDERS[:1]), "o-cbc")
    assert card is not None
    feedback = {
        "feedback": [
            {
                "card": card["uuid"],
                "outcome": "overridden",
                "outcomeTimestamp": clock.now.isoformat(),
                "overrideReason": {
                    "reason": {
                        "system": NONRECOGNITION_REASONS,
                        "code": "02",
                    }
                },
            }
        ]
    }
    assert api.post("/cds-services/hr-order-sign/feedback", feedback, who="dr-hosp-b").status_code == 200
    after = summary(api)
    assert (after["declined"], after["refusals"]) == (before["declined"], before["refusals"])
    assert after["recognition_rate"] == before["recognition_rate"]
    assert after["duplicates_declined"] == before["duplicates_declined"] + 1


def test_accepting_after_the_result_was_withdrawn_is_flagged_and_saves_nothing(
    api: Api, person: dict[str, Any], clock: Clock
) -> None:
    clock.now = T0
    number = unique("R")
    push_cbc(api, "hosp-a", f"Patient/{person['a']['id']}", number)
    card = card_for(sign(api, "dr-hosp-b", person["nid"], ORDERS[:1]), "o-cbc")
    assert card is not None
    push_cbc(api, "hosp-a", f"Patient/{person['a']['id']}", number, status="entered-in-error")
    before = summary(api)
    accept(api, card, clock)
    after = summary(api)
    assert after["money_saved_cny"] == before["money_saved_cny"]
    assert after["patients_benefited"] == before["patients_benefited"]
    assert after["recognized"] == before["recognized"] + 1  # the clinician did accept the advice given
    assert after["recognized_withdrawn_result"] == before["recognized_withdrawn_result"] + 1
    a = group(after["by_issuer"], "issuer", "hosp-a")
    assert a["recognized_withdrawn_result"] >= 1
    with api.ctx.engine.connect() as conn:
        flagged = conn.execute(
            text("select result_withdrawn from decision where card_uuid = :u"), {"u": card["uuid"]}
        ).scalar_one()
    assert flagged


def test_the_decision_operation_says_the_result_was_withdrawn_and_a_correction_is_no_withdrawal(
    api: Api, person: dict[str, Any], clock: Clock
) -> None:
    clock.now = T0

    def check_and_decide(status_between: str) -> tuple[bool, Decimal]:
        number = unique("R")
        push_cbc(api, "hosp-a", f"Patient/{person['a']['id']}", number)
        card = card_for(sign(api, "dr-hosp-b", person["nid"], ORDERS[:1]), "o-cbc")
        assert card is not None
        push_cbc(api, "hosp-a", f"Patient/{person['a']['id']}", number, hb=118, status=status_between)
        before = Decimal(summary(api)["money_saved_cny"])
        decision = {
            "resourceType": "Parameters",
            "parameter": [
                {"name": "card", "valueString": card["uuid"]},
                {"name": "outcome", "valueCode": "recognized"},
            ],
        }
        r = api.post("/fhir/ServiceRequest/$recognition-decision", decision, who="hosp-b-system")
        assert r.status_code == 200, r.text
        parts = {p["name"]: p for p in r.json()["parameter"]}
        return parts["resultWithdrawn"]["valueBoolean"], Decimal(summary(api)["money_saved_cny"]) - before

    assert check_and_decide("cancelled") == (True, Decimal("0.00"))
    assert check_and_decide("corrected") == (False, fee(api, "L001"))


def test_breakdowns_carry_orders_checked_and_list_a_hospital_with_checks_but_no_decisions(
    api: Api, person: dict[str, Any], clock: Clock
) -> None:
    clock.now = T0
    api.patient("hosp-c", unique("C"), person["nid"])  # hospital C has the patient in care
    push_cbc(api, "hosp-a", f"Patient/{person['a']['id']}", unique("R"))
    by_loinc = [("o-cbc", "http://loinc.org", "58410-2"), *ORDERS[1:]]  # hospital C has no local code map
    response = sign(api, "dr-hosp-c", person["nid"], by_loinc)  # blood count, chest CT, brain MR: nothing decided
    assert card_for(response, "o-cbc") is not None
    s = summary(api)
    c = group(s["by_hospital"], "hospital", "hosp-c")
    assert c["orders_checked"] == 3
    assert c["recognizable_found"] == 1
    assert (c["recognized"], c["declined"]) == (0, 0)
    assert c["name"] == "HOSP-C 医院"
    # the chest CT (I032) and the brain MR (I101) were checked, never decided: they are listed all the same
    for item_id, found in (("I032", 0), ("I101", 0)):
        g = group(s["by_item"], "item", item_id)
        assert (g["orders_checked"], g["recognizable_found"], g["recognized"]) == (1, found, 0)
    assert group(s["by_item"], "item", "L001")["recognizable_found"] >= 1
    assert group(s["by_issuer"], "issuer", "hosp-a")["recognizable_found"] >= 1
    # every checked order is in exactly one hospital's and one item's row
    assert sum(g["orders_checked"] for g in s["by_hospital"]) == s["orders_checked"]
    assert sum(g["orders_checked"] for g in s["by_item"]) == s["orders_checked"]
    assert sum(g["recognizable_found"] for g in s["by_hospital"]) == s["recognizable_found"]
    # the CSV carries the same numbers
    rows = list(csv.DictReader(io.StringIO(api.get("/stats/api/export.csv", who="admin").text.lstrip("\ufeff"))))
    hosp_c = next(r for r in rows if r["section"] == "hospital" and r["key"] == "hosp-c")
    assert (hosp_c["orders_checked"], hosp_c["recognizable_found"], hosp_c["recognized"]) == ("3", "1", "0")
    total = next(r for r in rows if r["section"] == "total")
    for k in ("orders_checked", "recognizable_found", "duplicates_found", "duplicates_avoided", "recognized"):
        assert total[k] == str(s[k]), k
    assert total["money_saved_cny"] == s["money_saved_cny"]


def test_statistics_reconcile_with_the_decision_log(api: Api) -> None:
    s = summary(api)
    with api.ctx.engine.connect() as conn:
        rows = conn.execute(
            text("select outcome, counts_as_refusal, patient_key, fee_fen, card_status, result_withdrawn from decision")
        ).all()
    cross = [r for r in rows if r.card_status != "same-hospital-duplicate"]
    dup = [r for r in rows if r.card_status == "same-hospital-duplicate"]
    recognized = [r for r in cross if r.outcome == "recognized"]
    counted = [r for r in recognized if not r.result_withdrawn]
    assert rows and dup and len(counted) < len(recognized)  # the tests above left all three kinds
    assert s["recognized"] == len(recognized)
    assert s["recognized_withdrawn_result"] == len(recognized) - len(counted)
    assert s["declined"] == sum(1 for r in cross if r.outcome == "declined")
    assert s["refusals"] == sum(1 for r in cross if r.counts_as_refusal)
    assert s["patients_benefited"] == len({r.patient_key for r in counted})
    assert Decimal(s["money_saved_cny"]) == Decimal(sum(r.fee_fen for r in counted)) / 100
    assert s["duplicates_avoided"] == sum(1 for r in dup if r.outcome == "recognized")
    assert s["duplicates_declined"] == sum(1 for r in dup if r.outcome == "declined")
    assert len(rows) == s["recognized"] + s["declined"] + s["duplicates_avoided"] + s["duplicates_declined"]
    for breakdown in ("by_day", "by_hospital", "by_item"):
        for k in ("recognized", "declined", "refusals", "duplicates_avoided", "recognized_withdrawn_result"):
            assert sum(g[k] for g in s[breakdown]) == s[k], (breakdown, k)
    assert sum(g["recognized"] for g in s["by_issuer"]) == s["recognized"]


def test_the_statistics_page_shows_duplicates_withdrawn_results_and_checks_by_hospital(api: Api) -> None:
    s = summary(api)
    manager = unique("manager")
    secret = api.ctx.principals.add(PrincipalKind.ADMIN, manager, "统计管理员").secret
    with TestClient(api.client.app, follow_redirects=False) as browser:
        assert sign_in(browser, "stats", manager, secret).status_code == 303
        page = browser.get("/stats").text
    for k in ("recognized", "duplicates_found", "duplicates_avoided", "duplicates_declined",
              "duplicate_money_saved_cny", "recognized_withdrawn_result"):  # fmt: skip
        shown = re.search(rf'data-testid="kpi-{k}">([^<]+)<', page)
        assert shown and shown.group(1) == str(s[k]), k
    row = re.search(r'<tr data-hospital="hosp-c">(.*?)</tr>', page)
    assert row, "hospital C (checks, no decisions) is listed"
    c = group(s["by_hospital"], "hospital", "hosp-c")
    cells = re.findall(r'class="num">([^<]*)<', row.group(1))
    assert cells[:3] == [str(c["orders_checked"]), str(c["recognizable_found"]), str(c["recognized"])]
    assert '<tr data-item="I101">' in page  # checked, never decided
