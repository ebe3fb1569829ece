"""Properties of the recognition rule over random prior results (hypothesis)."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from catalog import FINAL_STATUSES, Order, PriorResult, ResultStatus, Status, recognize
from tests.unit.catalog.factories import (
    ISSUER,
    ORDERER,
    OUTSIDER,
    PATIENT,
    QUALS,
    T0,
    TIANJIN,
    catalog,
    loinc,
)

CAT = catalog()
NOW = T0
CODES = ["58410-2", "718-7", "6690-2", "1742-6", "4548-4", "29252-4"]  # CBC, Hb, WBC, ALT, HbA1c, CT chest
ORGS = [ISSUER, ORDERER, TIANJIN, OUTSIDER]

MEMBERS = sorted({m for item in CAT for m in item.members})


@st.composite
def results(draw: st.DrawFn) -> PriorResult:
    """A prior result, sometimes with an imprecise effective (a day or a month long) and, for a panel, the values
    of some of its members."""
    effective = NOW + timedelta(minutes=draw(st.integers(min_value=-100 * 24 * 60, max_value=60)))
    spread = draw(st.sampled_from([None, timedelta(days=1), timedelta(days=31)]))
    return PriorResult(
        ref=draw(st.uuids().map(lambda u: f"DiagnosticReport/{u}")),
        patient_key=draw(st.sampled_from([PATIENT, "pk-2"])),
        codes=draw(st.sampled_from(CODES).map(loinc)),
        status=draw(st.sampled_from(list(ResultStatus))),
        effective=effective,
        issuer=draw(st.sampled_from(ORGS)),
        hr_mark=draw(st.booleans()),
        effective_latest=None if spread is None else effective + spread - timedelta(microseconds=1),
        contains=frozenset(draw(st.sets(st.sampled_from(MEMBERS)))),
    )


orders = st.builds(
    Order,
    codes=st.sampled_from(CODES).map(loinc),
    patient_key=st.just(PATIENT),
    ordering_org=st.sampled_from(ORGS),
)


def _qualified(r: PriorResult, order_item_id: str) -> bool:
    item = CAT.item(order_item_id)
    on = r.effective.astimezone(CAT.timezone).date()
    return r.hr_mark and any(q.org_id == r.issuer.id and q.covers(item, on) for q in QUALS)


@settings(max_examples=300)
@given(orders, st.lists(results(), max_size=12))
def test_expired_unqualified_or_not_final_results_are_never_recognizable(
    order: Order, prior: list[PriorResult]
) -> None:
    d = recognize(order, prior, CAT, QUALS, now=NOW)
    for c in d.candidates:
        r = c.result
        assert r.status in FINAL_STATUSES
        assert r.effective <= r.latest <= NOW < c.valid_until
        assert c.valid_until == r.effective + timedelta(days=CAT.item(d.item.id).validity.days)  # type: ignore[union-attr]
        if c.status is Status.RECOGNIZABLE:
            assert r.issuer.id != order.ordering_org.id
            assert _qualified(r, d.item.id)  # type: ignore[union-attr]


@settings(max_examples=300)
@given(orders, st.lists(results(), max_size=12), st.data())
def test_decision_does_not_depend_on_the_order_of_prior_results(order, prior, data) -> None:
    shuffled = data.draw(st.permutations(prior))
    assert recognize(order, prior, CAT, QUALS, now=NOW) == recognize(order, shuffled, CAT, QUALS, now=NOW)


@settings(max_examples=300)
@given(orders, st.lists(results(), max_size=12), results(), st.data())
def test_adding_an_unrelated_result_never_changes_the_decision(order, prior, extra, data) -> None:
    before = recognize(order, prior, CAT, QUALS, now=NOW)
    # Unrelated: another patient, or an item that does not answer the ordered one.
    if data.draw(st.booleans()):
        unrelated = PriorResult(
            extra.ref, "pk-other", extra.codes, extra.status, extra.effective, extra.issuer, extra.hr_mark
        )
    else:
        order_item = CAT.resolve(order.codes)
        assert order_item is not None
        others = [c for c in CODES if not CAT.satisfies(CAT.resolve(loinc(c)).id, order_item.id)]  # type: ignore[union-attr]
        unrelated = PriorResult(
            extra.ref,
            PATIENT,
            loinc(data.draw(st.sampled_from(others))),
            extra.status,
            extra.effective,
            extra.issuer,
            extra.hr_mark,
        )
    position = data.draw(st.integers(min_value=0, max_value=len(prior)))
    after = recognize(order, [*prior[:position], unrelated, *prior[position:]], CAT, QUALS, now=NOW)
    assert after == before


@settings(max_examples=300)
@given(orders, st.lists(results(), max_size=12))
def test_chosen_candidate_is_the_most_recent_valid_one(order: Order, prior: list[PriorResult]) -> None:
    d = recognize(order, prior, CAT, QUALS, now=NOW)
    # A result is valid on its own exactly when the rule, shown that result alone, finds a candidate.
    valid = [r for r in prior if recognize(order, [r], CAT, QUALS, now=NOW).best is not None]
    assert {c.result.ref for c in d.candidates} == {r.ref for r in valid}
    if valid:
        newest = max(r.effective for r in valid)
        assert d.best is not None and d.best.result.effective == newest
        assert d.status in (Status.RECOGNIZABLE, Status.SAME_HOSPITAL_DUPLICATE)
    else:
        assert d.best is None
        assert d.status not in (Status.RECOGNIZABLE, Status.SAME_HOSPITAL_DUPLICATE)


@settings(max_examples=300)
@given(orders, results())
def test_a_panel_answers_an_analyte_order_only_with_the_analytes_value(order: Order, r: PriorResult) -> None:
    d = recognize(order, [r], CAT, QUALS, now=NOW)
    result_item = CAT.resolve(r.codes)
    assert d.item is not None and result_item is not None
    if d.evaluations and result_item.id != d.item.id:
        assert result_item.is_panel and d.item.id in result_item.members
        assert d.item.id in r.contains
    if result_item.is_panel and d.item.id in result_item.members and d.item.id not in r.contains:
        assert d.status is Status.NO_PRIOR_RESULT


@settings(max_examples=300)
@given(orders, results(), st.floats(min_value=0, max_value=1))
def test_an_imprecise_date_is_recognizable_only_if_every_reading_of_it_is(
    order: Order, r: PriorResult, where: float
) -> None:
    """Safety of rule 5 (and 6) for imprecise dates: when the rule recognizes a result dated "2026-12", it would
    recognize it for any instant of December too."""
    d = recognize(order, [r], CAT, QUALS, now=NOW)
    if d.best is None:
        return
    span = r.latest - r.effective
    instant = r.effective + timedelta(microseconds=int(span / timedelta(microseconds=1) * where))
    precise = PriorResult(r.ref, r.patient_key, r.codes, r.status, instant, r.issuer, r.hr_mark, contains=r.contains)
    again = recognize(order, [precise], CAT, QUALS, now=NOW)
    assert again.status is d.status
    assert again.valid_until is not None and d.valid_until is not None
    assert d.valid_until <= again.valid_until
