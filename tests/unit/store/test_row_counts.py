"""How many rows each multi-row INSERT of the order check's log carries (registry.store.compiled._row_counts)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from registry.store.compiled import _ROWS_AT_ONCE, _row_counts


@given(st.integers(0, 5000))
def test_every_row_once_in_a_few_statement_shapes(n: int) -> None:
    counts = _row_counts(n)
    assert sum(counts) == n
    assert all(c > 0 and c & (c - 1) == 0 and c <= _ROWS_AT_ONCE for c in counts)  # powers of two, bounded
    assert counts == sorted(counts, reverse=True)
    assert len(counts) <= n // _ROWS_AT_ONCE + _ROWS_AT_ONCE.bit_length()


def test_the_usual_sizes() -> None:
    assert _row_counts(0) == []
    assert _row_counts(1) == [1]
    assert _row_counts(5) == [4, 1]
    assert _row_counts(_ROWS_AT_ONCE + 3) == [_ROWS_AT_ONCE, 2, 1]
