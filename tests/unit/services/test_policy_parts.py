"""Pure parts of the access policy: the break-glass request label, namespace patterns and which namespace owns a
system (longest match, never across a separator)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry.errors import BadRequestError
from registry.services.namespaces import check_pattern
from registry.services.policy.purpose import BreakGlass, break_glass_of
from registry.store.namespaces import SEPARATORS, Namespace, _overlap, candidate_patterns

LABEL = 'http://terminology.hl7.org/CodeSystem/v3-ActReason#BTG; scheme="http://hl7.org/fhir/tag/security"'


def test_break_glass_needs_the_label_and_a_reason() -> None:
    assert break_glass_of(None, None) is None
    assert break_glass_of(LABEL, "%E6%80%A5%E8%AF%8A") == BreakGlass("急诊")
    assert break_glass_of(f"http://example.org/x#Y, {LABEL}", "coma") == BreakGlass("coma")
    with pytest.raises(BadRequestError, match="reason"):
        break_glass_of(LABEL, "  ")
    with pytest.raises(BadRequestError, match="label"):
        break_glass_of(None, "because")
    with pytest.raises(BadRequestError, match="longer"):
        break_glass_of(LABEL, "x" * 501)
    assert break_glass_of("http://terminology.hl7.org/CodeSystem/v3-ActReason#TREAT", None) is None


@pytest.mark.parametrize("pattern", ["http://h.example/mrn", "http://h.example/*", "urn:oid:1.2.3.*", "urn:x:*"])
def test_valid_namespace_patterns(pattern: str) -> None:
    assert check_pattern(f" {pattern} ") == pattern


@pytest.mark.parametrize("pattern", ["", "http://h.example*", "http://*/mrn", "a b", "*", "x" * 256])
def test_invalid_namespace_patterns(pattern: str) -> None:
    with pytest.raises(BadRequestError):
        check_pattern(pattern)


systems = st.text(alphabet="abc/:.-", min_size=1, max_size=20)


@given(systems)
def test_a_system_is_owned_only_by_its_own_candidates(system: str) -> None:
    candidates = candidate_patterns(system)
    assert candidates[0] == system
    for pattern in candidates[1:]:
        ns = Namespace(pattern, "o", None)  # type: ignore[arg-type]
        assert ns.matches(system) and pattern[-2] in SEPARATORS


@given(systems, systems)
def test_a_prefix_owns_exactly_the_systems_that_start_with_it(prefix: str, system: str) -> None:
    pattern = (prefix if prefix[-1] in SEPARATORS else prefix + "/") + "*"
    ns = Namespace(pattern, "o", None)  # type: ignore[arg-type]
    assert ns.matches(system) == system.startswith(pattern[:-1])
    assert (pattern in candidate_patterns(system)) == ns.matches(system)


def test_overlap() -> None:
    assert _overlap("http://a/*", "http://a/b")
    assert _overlap("http://a/b/*", "http://a/*")
    assert not _overlap("http://a/*", "http://ab/x")
    assert not _overlap("http://a/x", "http://a/y")
