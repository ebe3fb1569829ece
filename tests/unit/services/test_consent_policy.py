"""The consent rule of the access policy (registry/services/policy/consent.py), as a pure function: who is withheld
what, for every principal, issuer, setting and break-glass."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry.auth import Principal, PrincipalKind
from registry.errors import ForbiddenError
from registry.services import policy
from registry.services.policy import BreakGlass, Sharing, Withheld, withheld

ORGS = ("hosp-a", "hosp-b", "hosp-c")


def _principal(kind: PrincipalKind, org: str | None = "hosp-b") -> Principal:
    return Principal("c", kind, (), org_id=org, patient_key="k" if kind is PrincipalKind.PATIENT else None)


def test_a_pause_withholds_from_the_paused_hospital_and_says_so() -> None:
    b = _principal(PrincipalKind.CLINICIAN)
    paused = Sharing(False, frozenset({"hosp-b"}), False)
    assert withheld(b, "hosp-a", paused, sensitive=False, break_glass=None) is Withheld.PAUSED
    assert withheld(_principal(PrincipalKind.HOSPITAL, "hosp-c"), "hosp-a", paused, sensitive=False,
                    break_glass=None) is Withheld.NO  # fmt: skip
    assert withheld(b, "hosp-b", paused, sensitive=False, break_glass=None) is Withheld.NO  # its own result
    assert withheld(b, "hosp-a", Sharing(True), sensitive=False, break_glass=None) is Withheld.PAUSED
    assert withheld(b, None, Sharing(True), sensitive=False, break_glass=None) is Withheld.PAUSED  # no issuer: not its


def test_sensitive_items_need_the_separate_consent_and_are_not_announced() -> None:
    b = _principal(PrincipalKind.HOSPITAL)
    assert withheld(b, "hosp-a", policy.NOT_SHARED, sensitive=True, break_glass=None) is Withheld.SENSITIVE
    consented = Sharing(False, frozenset(), True)
    assert withheld(b, "hosp-a", consented, sensitive=True, break_glass=None) is Withheld.NO
    # consented but paused: withheld by the pause, which is announced
    assert withheld(b, "hosp-a", Sharing(True, frozenset(), True), sensitive=True, break_glass=None) is Withheld.PAUSED
    # not consented and paused: the sensitive rule wins, so nothing tells that such a test exists
    assert withheld(b, "hosp-a", Sharing(True), sensitive=True, break_glass=None) is Withheld.SENSITIVE


@given(
    kind=st.sampled_from(list(PrincipalKind)),
    issuer=st.sampled_from((*ORGS, None)),
    paused_all=st.booleans(),
    paused=st.frozensets(st.sampled_from(ORGS)),
    shared=st.booleans(),
    sensitive=st.booleans(),
    glass=st.booleans(),
)
def test_the_issuer_the_patient_admins_and_break_glass_always_see_it(
    kind: PrincipalKind,
    issuer: str | None,
    paused_all: bool,
    paused: frozenset[str],
    shared: bool,
    sensitive: bool,
    glass: bool,
) -> None:
    who = _principal(kind)
    found = withheld(who, issuer, Sharing(paused_all, paused, shared), sensitive=sensitive,
                     break_glass=BreakGlass("急诊") if glass else None)  # fmt: skip
    if kind in (PrincipalKind.ADMIN, PrincipalKind.PATIENT) or issuer == who.org_id or glass:
        assert found is Withheld.NO
    elif sensitive and not shared:
        assert found is Withheld.SENSITIVE
    else:
        assert found is (Withheld.PAUSED if paused_all or "hosp-b" in paused else Withheld.NO)


def test_a_refused_read_says_the_same_whatever_the_reason() -> None:
    texts = set()
    for why in (Withheld.PAUSED, Withheld.SENSITIVE):
        with pytest.raises(ForbiddenError) as refused:
            policy.check_shared(why)
        texts.add(refused.value.diagnostics)
    assert len(texts) == 1
    policy.check_shared(Withheld.NO)


def test_only_the_patient_writes_their_consent() -> None:
    assert policy.check_consent_writer(_principal(PrincipalKind.PATIENT, None)) == "k"
    for kind in (PrincipalKind.ADMIN, PrincipalKind.HOSPITAL, PrincipalKind.CLINICIAN):
        with pytest.raises(ForbiddenError):
            policy.check_consent_writer(_principal(kind))


def test_a_search_is_limited_for_hospitals_on_results_only() -> None:
    b = _principal(PrincipalKind.CLINICIAN)
    clause = policy.sharing_filter(b, "DiagnosticReport", frozenset({"L145"}), break_glass=None)
    assert clause is not None and clause.org_id == "hosp-b" and clause.sensitive_items == ("L145",)
    assert policy.sharing_filter(b, "Patient", frozenset(), break_glass=None) is None
    assert policy.sharing_filter(b, "Observation", frozenset(), break_glass=BreakGlass("急诊")) is None
    assert policy.sharing_filter(_principal(PrincipalKind.ADMIN), "Observation", frozenset(), break_glass=None) is None
