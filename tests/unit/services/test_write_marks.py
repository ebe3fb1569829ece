"""Read-your-writes marks (registry.store.replica) compared as WAL positions, in a process of its own (no Redis):
the shared-Redis path runs in tests/integration/test_replica_reads.py."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from registry.store.replica import UNKNOWN, WriteMarks, lsn_order, readers

POSITIONS = st.integers(min_value=0, max_value=2**64 - 1)


def _text(position: int) -> str:
    return f"{position >> 32:X}/{position & 0xFFFFFFFF:X}"


@given(POSITIONS, POSITIONS)
def test_wal_positions_compare_as_numbers_not_as_text(a: int, b: int) -> None:
    assert (lsn_order(_text(a)) < lsn_order(_text(b))) == (a < b)


def test_the_newest_mark_of_the_readers_is_the_one_honoured() -> None:
    now = [0.0]
    marks = WriteMarks(None, 60.0, prefix="t", timer=lambda: now[0])
    marks.wrote(["a"], "9/FFFFFFFF")
    marks.wrote(["b", "c"], "10/0")  # later, though "10/0" < "9/FFFFFFFF" as text
    assert marks.latest(["a", "b"]) == "10/0"
    assert marks.latest(["a"]) == marks.last("a") == "9/FFFFFFFF"
    assert marks.latest(["x", "y"]) is None
    now[0] = 61.0  # a mark is kept for the TTL only
    assert marks.latest(["a", "b", "c"]) is None
    marks.unavailable(RuntimeError("shared store down"))
    assert marks.latest(["a"]) == UNKNOWN


def test_a_write_marks_its_client_its_hospital_and_its_patient() -> None:
    assert readers("dr-b", "hosp-b") == ["dr-b", "org:hosp-b"]
    assert readers("patient-1", None, "k1") == ["patient-1", "patient:k1"]
    assert readers("admin") == ["admin"]
