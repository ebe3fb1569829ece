"""Every branch of the recognition rule (docs/design.md §5), with the window's edges and time zones."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from catalog import Coding, InvalidFactError, Order, OrgFacts, ResultStatus, Status, assess, last_valid_day, recognize
from catalog.codes import RECOGNIZED_ITEMS, REGIONAL_ITEM_CODE
from tests.unit.catalog.factories import (
    B_LOCAL,
    B_MAP,
    CBC_VALUES,
    ISSUER,
    ORDERER,
    OUTSIDER,
    PATIENT,
    QUALS,
    T0,
    TIANJIN,
    catalog,
    loinc,
    qualified,
    result,
)

CAT = catalog()
BEIJING = timezone(timedelta(hours=8))


def order(code: str = "58410-2", *, codes: tuple[Coding, ...] | None = None, org=ORDERER, code_map=None) -> Order:
    return Order(codes if codes is not None else loinc(code), PATIENT, org, code_map, "ServiceRequest/draft-1")


def decide(o: Order, results, *, now: datetime = T0 + timedelta(days=1), quals=QUALS):
    return recognize(o, results, CAT, quals, now=now)


# ------------------------------------------------------------------ rule 1: the order maps to an item
def test_order_with_unknown_code_is_not_in_catalog() -> None:
    d = decide(order("99999-9"), [result()])
    assert d.status is Status.NOT_IN_CATALOG
    assert d.item is None
    assert "99999-9" in d.detail


def test_order_by_hospital_local_code_maps_through_its_code_map() -> None:
    d = decide(order(codes=(Coding(B_LOCAL, "XCG"),), code_map=B_MAP), [result()])
    assert d.status is Status.RECOGNIZABLE
    assert d.item is not None and d.item.id == "L001"


def test_local_code_without_the_map_is_not_in_catalog() -> None:
    assert decide(order(codes=(Coding(B_LOCAL, "XCG"),)), [result()]).status is Status.NOT_IN_CATALOG


def test_order_by_regional_code_or_item_id() -> None:
    for coding in (Coding(REGIONAL_ITEM_CODE, "JY-T-L001"), Coding(RECOGNIZED_ITEMS, "L001")):
        assert decide(order(codes=(coding,)), [result()]).status is Status.RECOGNIZABLE


def test_first_resolvable_coding_of_the_order_wins() -> None:
    d = decide(order(codes=(Coding("urn:x", "?"), *loinc("718-7"))), [result()])
    assert d.item is not None and d.item.id == "L002"


# ------------------------------------------------------------------ rules 2–3: same item, same patient
def test_no_results_is_no_prior_result() -> None:
    d = decide(order(), [])
    assert d.status is Status.NO_PRIOR_RESULT
    assert d.item is not None and d.item.id == "L001"


def test_other_patients_and_other_items_are_ignored() -> None:
    d = decide(order(), [result(patient="pk-2"), result(code="1742-6")])
    assert d.status is Status.NO_PRIOR_RESULT
    assert d.evaluations == ()


def test_panel_result_answers_an_order_for_its_member() -> None:
    d = decide(order("718-7"), [result(code="58410-2", contains=CBC_VALUES)])
    assert d.status is Status.RECOGNIZABLE
    assert d.best is not None and d.best.item.id == "L001"


def test_panel_result_without_the_members_value_does_not_answer_an_order_for_it() -> None:
    # a blood count carrying only the white-cell count answers a WBC order, not a haemoglobin order
    wbc_only = result(code="58410-2", contains=frozenset({"L003"}))
    assert decide(order("6690-2"), [wbc_only]).status is Status.RECOGNIZABLE
    d = decide(order("718-7"), [wbc_only])
    assert d.status is Status.NO_PRIOR_RESULT
    assert d.evaluations == ()


def test_panel_result_with_no_values_answers_no_member_order_but_still_the_panel_order() -> None:
    empty = result(code="58410-2")
    assert decide(order("718-7"), [empty]).status is Status.NO_PRIOR_RESULT
    assert decide(order("58410-2"), [empty]).status is Status.RECOGNIZABLE


def test_member_result_does_not_answer_an_order_for_the_panel() -> None:
    assert decide(order("58410-2"), [result(code="718-7")]).status is Status.NO_PRIOR_RESULT


def test_result_coded_with_the_issuers_local_code_maps_through_its_map() -> None:
    from catalog import CodeMap, PriorResult

    a_map = CodeMap("org-a", {Coding("http://hospital-a.example/lab", "CBC-A"): "L001"})
    r = PriorResult(
        "DiagnosticReport/9",
        PATIENT,
        (Coding("http://hospital-a.example/lab", "CBC-A"),),
        ResultStatus.FINAL,
        T0,
        ISSUER,
        True,
        a_map,
    )
    assert decide(order(), [r]).status is Status.RECOGNIZABLE


# ------------------------------------------------------------------ rule 4: final results only
@pytest.mark.parametrize(
    "status", [ResultStatus.FINAL, ResultStatus.AMENDED, ResultStatus.CORRECTED, ResultStatus.APPENDED]
)
def test_final_amended_corrected_appended_are_recognizable(status: ResultStatus) -> None:
    assert decide(order(), [result(status=status)]).status is Status.RECOGNIZABLE


@pytest.mark.parametrize(
    "status",
    [
        ResultStatus.PRELIMINARY,
        ResultStatus.REGISTERED,
        ResultStatus.PARTIAL,
        ResultStatus.CANCELLED,
        ResultStatus.ENTERED_IN_ERROR,
        ResultStatus.UNKNOWN,
    ],
)
def test_non_final_statuses_are_not_final(status: ResultStatus) -> None:
    d = decide(order(), [result(status=status)])
    assert d.status is Status.NOT_FINAL
    assert d.candidates == ()
    assert status.value in d.detail


# ------------------------------------------------------------------ rule 5: the validity window [effective, +days)
def test_window_start_is_inclusive() -> None:
    assert decide(order(), [result()], now=T0).status is Status.RECOGNIZABLE


def test_last_instant_inside_the_window_is_recognizable() -> None:
    now = T0 + timedelta(days=7) - timedelta(microseconds=1)
    d = decide(order(), [result()], now=now)
    assert d.status is Status.RECOGNIZABLE
    assert d.valid_until == T0 + timedelta(days=7)


def test_window_end_is_exclusive() -> None:
    d = decide(order(), [result()], now=T0 + timedelta(days=7))
    assert d.status is Status.EXPIRED
    assert "ended" in d.detail


def test_result_dated_after_the_order_is_outside_the_window() -> None:
    d = decide(order(), [result()], now=T0 - timedelta(seconds=1))
    assert d.status is Status.EXPIRED
    assert "after the order" in d.detail


def test_window_is_the_ordered_items_window_when_a_panel_answers() -> None:
    # An ALT order (30 days) answered by an ALT result 20 days old is valid; a Hb order (7 days) by a CBC is not.
    assert decide(order("1742-6"), [result(code="1742-6")], now=T0 + timedelta(days=20)).status is Status.RECOGNIZABLE
    cbc = result(contains=CBC_VALUES)
    assert decide(order("718-7"), [cbc], now=T0 + timedelta(days=20)).status is Status.EXPIRED


def test_time_zones_compare_as_instants() -> None:
    # 08:00 in Beijing is 00:00 UTC: the 7-day window ends at 00:00 UTC seven days later, however it is written.
    eff = datetime(2025, 3, 1, 8, 0, tzinfo=BEIJING)
    r = result(effective=eff)
    just_inside = datetime(2025, 3, 7, 23, 59, 59, tzinfo=UTC)
    at_end_utc = datetime(2025, 3, 8, 0, 0, tzinfo=UTC)
    at_end_beijing = datetime(2025, 3, 8, 8, 0, tzinfo=BEIJING)
    assert decide(order(), [r], now=just_inside).status is Status.RECOGNIZABLE
    assert decide(order(), [r], now=at_end_utc).status is Status.EXPIRED
    assert decide(order(), [r], now=at_end_beijing).status is Status.EXPIRED
    d = decide(order(), [r], now=just_inside)
    assert d.valid_until == at_end_utc


def test_a_month_only_date_is_dated_after_the_order_until_the_month_is_over() -> None:
    # effective "2026-12": any instant of December 2026 in Beijing — the 1st at 00:00 is only its earliest
    earliest = datetime(2026, 12, 1, tzinfo=BEIJING)
    latest = datetime(2027, 1, 1, tzinfo=BEIJING) - timedelta(microseconds=1)
    month = result(effective=earliest, latest=latest)
    d = decide(order(), [month], now=datetime(2026, 12, 5, 10, 0, tzinfo=BEIJING))
    assert d.status is Status.EXPIRED
    assert "after the order" in d.detail
    # and once the month is over, its window (from the earliest instant, 7 days) has long ended
    d = decide(order(), [month], now=datetime(2027, 1, 1, tzinfo=BEIJING))
    assert d.status is Status.EXPIRED
    assert "ended" in d.detail


def test_the_window_of_an_imprecise_date_runs_from_its_earliest_instant() -> None:
    # effective "2026-12-01": recognizable from its last instant on, until 7 days after its first
    earliest = datetime(2026, 12, 1, tzinfo=BEIJING)
    latest = datetime(2026, 12, 2, tzinfo=BEIJING) - timedelta(microseconds=1)
    day = result(effective=earliest, latest=latest, issuer=ISSUER)
    quals = (qualified(valid_from=date(2026, 1, 1)),)
    assert decide(order(), [day], now=datetime(2026, 12, 1, 12, 0, tzinfo=BEIJING), quals=quals).status is (
        Status.EXPIRED
    )
    d = decide(order(), [day], now=latest, quals=quals)
    assert d.status is Status.RECOGNIZABLE
    assert d.valid_until == earliest + timedelta(days=7)
    assert decide(order(), [day], now=earliest + timedelta(days=7), quals=quals).status is Status.EXPIRED


def test_an_imprecise_date_needs_a_qualification_covering_both_of_its_ends() -> None:
    earliest = datetime(2026, 12, 1, tzinfo=BEIJING)
    latest = datetime(2026, 12, 2, tzinfo=BEIJING) - timedelta(microseconds=1)
    day = result(effective=earliest, latest=latest)
    now = datetime(2026, 12, 3, tzinfo=BEIJING)
    from_the_1st = qualified(valid_from=date(2026, 12, 1))
    to_the_1st = qualified(valid_from=date(2026, 1, 1), valid_to=date(2026, 12, 1))
    assert decide(order(), [day], now=now, quals=(from_the_1st,)).status is Status.RECOGNIZABLE
    assert decide(order(), [day], now=now, quals=(to_the_1st,)).status is Status.RECOGNIZABLE  # same local day
    # "2026-12" for HbA1c (60 days, alliance scope): the issuer must be qualified from the 1st to the 31st
    hba1c = result(
        code="4548-4", effective=earliest, latest=datetime(2027, 1, 1, tzinfo=BEIJING) - timedelta(microseconds=1)
    )
    later = datetime(2027, 1, 2, tzinfo=BEIJING)
    half = (qualified(scope="alliance", valid_from=date(2026, 1, 1), valid_to=date(2026, 12, 15)),)
    d = decide(order("4548-4"), [hba1c], now=later, quals=half)
    assert d.status is Status.UNQUALIFIED_ISSUER
    assert "2026-12-01 to 2026-12-31" in d.detail
    whole = (qualified(scope="alliance", valid_from=date(2026, 1, 1)),)
    assert decide(order("4548-4"), [hba1c], now=later, quals=whole).status is Status.RECOGNIZABLE


def test_a_latest_instant_before_the_earliest_is_rejected() -> None:
    with pytest.raises(InvalidFactError):
        decide(order(), [result(latest=T0 - timedelta(seconds=1))])


def test_the_last_valid_day_is_the_date_of_the_last_instant_inside_the_window() -> None:
    assert last_valid_day(datetime(2026, 12, 3, tzinfo=BEIJING), BEIJING) == date(2026, 12, 2)
    assert last_valid_day(datetime(2026, 12, 3, 0, 0, 1, tzinfo=BEIJING), BEIJING) == date(2026, 12, 3)
    assert last_valid_day(datetime(2026, 12, 3, 8, 0, tzinfo=BEIJING), BEIJING) == date(2026, 12, 3)
    # 16:00 UTC is midnight in Beijing: the same instant, written in another zone, gives the same day
    assert last_valid_day(datetime(2026, 12, 2, 16, 0, tzinfo=UTC), BEIJING) == date(2026, 12, 2)
    with pytest.raises(InvalidFactError):
        last_valid_day(datetime(2026, 12, 3), BEIJING)


# ------------------------------------------------------------------ one judgement for the order check and the portal
def test_assess_is_what_the_order_check_applies_for_another_hospital() -> None:
    item = CAT.item("L001")
    now = T0 + timedelta(days=1)
    for r in (
        result(),
        result(hr_mark=False),
        result(status=ResultStatus.PRELIMINARY),
        result(effective=T0 - timedelta(days=30)),
        result(issuer=TIANJIN),
        result(issuer=OrgFacts("org-nobody", frozenset({"beijing"}))),
    ):
        standing = assess(r, item, CAT, QUALS, now=now)
        d = decide(order(), [r], now=now)
        assert standing.valid_until == r.effective + timedelta(days=7)
        if standing.recognizable:
            assert d.status in (Status.RECOGNIZABLE, Status.OUT_OF_SCOPE)
        else:
            assert d.status is standing.status
            assert d.detail == standing.detail


def test_assess_never_calls_a_result_without_the_mark_or_qualification_recognizable() -> None:
    item = CAT.item("L001")
    assert assess(result(), item, CAT, QUALS, now=T0).recognizable
    assert not assess(result(hr_mark=False), item, CAT, QUALS, now=T0).recognizable
    assert assess(result(), item, CAT, (), now=T0).status is Status.UNQUALIFIED_ISSUER
    assert assess(result(status=ResultStatus.CANCELLED), item, CAT, QUALS, now=T0).status is Status.NOT_FINAL
    assert assess(result(), item, CAT, QUALS, now=T0 + timedelta(days=7)).status is Status.EXPIRED


def test_naive_datetimes_are_rejected() -> None:
    with pytest.raises(InvalidFactError):
        decide(order(), [result()], now=datetime(2025, 3, 2, 0, 0))
    with pytest.raises(InvalidFactError):
        decide(order(), [result(effective=datetime(2025, 3, 1))])


# ------------------------------------------------------------------ rule 6: HR mark and qualification
def test_result_without_hr_mark_is_unqualified() -> None:
    d = decide(order(), [result(hr_mark=False)])
    assert d.status is Status.UNQUALIFIED_ISSUER
    assert "HR mark" in d.detail


def test_issuer_without_qualification_is_unqualified() -> None:
    d = decide(order(), [result()], quals=())
    assert d.status is Status.UNQUALIFIED_ISSUER


def test_qualification_for_another_group_does_not_count() -> None:
    assert decide(order(), [result()], quals=(qualified(group="liver"),)).status is Status.UNQUALIFIED_ISSUER


def test_item_level_qualification_counts() -> None:
    q = qualified(item_id="L002", group=None)
    assert decide(order("718-7"), [result(code="718-7")], quals=(q,)).status is Status.RECOGNIZABLE
    assert decide(order("6690-2"), [result(code="6690-2")], quals=(q,)).status is Status.UNQUALIFIED_ISSUER


def test_qualification_dates_are_inclusive_on_the_result_date() -> None:
    day = T0.astimezone(BEIJING).date()
    for q, expected in (
        (qualified(valid_from=day), Status.RECOGNIZABLE),
        (qualified(valid_from=day + timedelta(days=1)), Status.UNQUALIFIED_ISSUER),
        (qualified(valid_from=day - timedelta(days=9), valid_to=day), Status.RECOGNIZABLE),
        (
            qualified(valid_from=day - timedelta(days=9), valid_to=day - timedelta(days=1)),
            Status.UNQUALIFIED_ISSUER,
        ),
    ):
        assert decide(order(), [result()], quals=(q,)).status is expected, q


def test_qualification_is_judged_on_the_result_date_in_the_catalog_time_zone() -> None:
    # 2025-02-28T17:00Z is 2025-03-01 01:00 in Beijing: a qualification starting 2025-03-01 covers it.
    eff = datetime(2025, 2, 28, 17, 0, tzinfo=UTC)
    q = qualified(valid_from=date(2025, 3, 1))
    assert decide(order(), [result(effective=eff)], quals=(q,)).status is Status.RECOGNIZABLE
    q_late = qualified(valid_from=date(2025, 3, 2))
    assert decide(order(), [result(effective=eff)], quals=(q_late,)).status is Status.UNQUALIFIED_ISSUER


# ------------------------------------------------------------------ rule 7: recognition scope
def test_issuer_outside_the_items_scope_is_out_of_scope() -> None:
    # ALT is recognized city-wide only; a Tianjin hospital (京津冀鲁 member, not Beijing) is out of scope.
    quals = (qualified("org-tj", "beijing", group="liver"), qualified("org-tj", "jjjl", group="liver"))
    d = decide(order("1742-6"), [result(code="1742-6", issuer=TIANJIN)], quals=quals)
    assert d.status is Status.OUT_OF_SCOPE


def test_regional_scope_covers_member_regions() -> None:
    d = decide(order(), [result(issuer=TIANJIN)])
    assert d.status is Status.RECOGNIZABLE
    assert d.best is not None and d.best.scope == "jjjl"


def test_scope_needs_a_qualification_in_that_scope() -> None:
    d = decide(order(), [result(issuer=TIANJIN)], quals=(qualified("org-tj", "beijing"),))
    assert d.status is Status.OUT_OF_SCOPE


def test_alliance_scope_needs_a_shared_alliance() -> None:
    assert decide(order("4548-4"), [result(code="4548-4")]).status is Status.RECOGNIZABLE
    d = decide(order("4548-4"), [result(code="4548-4", issuer=OUTSIDER)])
    assert d.status is Status.OUT_OF_SCOPE


def test_narrowest_scope_is_recorded() -> None:
    d = decide(order(), [result()])
    assert d.best is not None and d.best.scope == "beijing"


# ------------------------------------------------------------------ same hospital
def test_same_hospital_repeat_is_a_duplicate_order_not_a_recognition() -> None:
    own = result(issuer=ORDERER, hr_mark=False)
    d = decide(order(), [own], quals=())
    assert d.status is Status.SAME_HOSPITAL_DUPLICATE
    assert d.best is not None and d.best.result == own


def test_same_hospital_result_outside_the_window_is_expired() -> None:
    d = decide(order(), [result(issuer=ORDERER)], now=T0 + timedelta(days=8))
    assert d.status is Status.EXPIRED


# ------------------------------------------------------------------ choosing among several results
def test_best_candidate_is_the_most_recent_valid_one() -> None:
    older = result("DiagnosticReport/old", effective=T0 - timedelta(days=2))
    newer = result("DiagnosticReport/new", effective=T0)
    stale = result("DiagnosticReport/stale", effective=T0 - timedelta(days=30))
    d = decide(order(), [older, stale, newer])
    assert [c.result.ref for c in d.candidates] == ["DiagnosticReport/new", "DiagnosticReport/old"]
    assert len(d.evaluations) == 3


def test_newer_same_hospital_result_makes_it_a_duplicate() -> None:
    cross = result("DiagnosticReport/a", effective=T0 - timedelta(days=1))
    own = result("DiagnosticReport/b", effective=T0, issuer=ORDERER)
    d = decide(order(), [cross, own])
    assert d.status is Status.SAME_HOSPITAL_DUPLICATE
    assert [c.status for c in d.candidates] == [Status.SAME_HOSPITAL_DUPLICATE, Status.RECOGNIZABLE]


def test_nearest_miss_names_the_status_when_nothing_passes() -> None:
    prelim = result("DiagnosticReport/p", status=ResultStatus.PRELIMINARY)
    expired = result("DiagnosticReport/e", effective=T0 - timedelta(days=30))
    assert decide(order(), [prelim, expired]).status is Status.EXPIRED
    unmarked = result("DiagnosticReport/u", hr_mark=False)
    assert decide(order(), [prelim, expired, unmarked]).status is Status.UNQUALIFIED_ISSUER


# ------------------------------------------------------------------ imaging
def test_imaging_order_by_loinc_matches_a_study_coded_by_regional_code() -> None:
    study = result("ImagingStudy/1", codes=(Coding(REGIONAL_ITEM_CODE, "JC-T-I001"),))
    d = decide(order("29252-4"), [study], now=T0 + timedelta(days=60))
    assert d.status is Status.RECOGNIZABLE
    assert d.valid_until == T0 + timedelta(days=90)


def test_contrast_matters_for_imaging() -> None:
    plain = result("ImagingStudy/1", code="29252-4")
    assert decide(order("24628-0"), [plain]).status is Status.NO_PRIOR_RESULT
