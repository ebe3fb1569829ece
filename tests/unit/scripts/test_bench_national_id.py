"""The benchmarks' synthetic resident ID numbers: well-formed GB 11643-1999 numbers, and distinct — an earlier
generator repeated every 420 numbers, so a "100,000 patients" run had 42,000 keys."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry.services.identity import looks_like_resident_id
from scripts.bench_common import national_id

LIMIT = 10 * 999 * 32_000


def test_the_first_hundred_thousand_are_distinct() -> None:
    ids = [national_id(n) for n in range(100_000)]
    assert len(set(ids)) == len(ids)


@given(st.integers(min_value=0, max_value=LIMIT - 1), st.integers(min_value=0, max_value=LIMIT - 1))
def test_any_two_differ_and_are_well_formed(a: int, b: int) -> None:
    assert looks_like_resident_id(national_id(a))
    assert (national_id(a) == national_id(b)) == (a == b)


def test_beyond_the_range_is_refused() -> None:
    with pytest.raises(ValueError, match="no distinct"):
        national_id(LIMIT)
