"""The configuration cache trusts an entry only for the generation it was loaded at (and, as a backstop for changes
made behind the registry's back, for its TTL); its memory is bounded."""

from __future__ import annotations

from registry.services.config_cache import ConfigCache


class Ticks:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_an_entry_is_reused_within_its_generation_and_reloaded_in_the_next() -> None:
    loads: list[int] = []

    def load() -> int:
        loads.append(1)
        return len(loads)

    cache = ConfigCache(ttl_seconds=60, monotonic=Ticks())
    assert cache.get(7, "quals", load) == 1
    assert cache.get(7, "quals", load) == 1
    assert cache.get(8, "quals", load) == 2  # a change was committed somewhere: reload at once
    assert cache.get(8, "quals", load) == 2
    assert len(loads) == 2


def test_the_ttl_is_a_backstop_for_changes_that_bump_no_generation() -> None:
    ticks = Ticks()
    cache = ConfigCache(ttl_seconds=60, monotonic=ticks)
    assert cache.get(1, "k", lambda: "old") == "old"
    ticks.now = 59.9
    assert cache.get(1, "k", lambda: "new") == "old"
    ticks.now = 60.0
    assert cache.get(1, "k", lambda: "new") == "new"


def test_the_cache_holds_a_bounded_number_of_entries() -> None:
    cache = ConfigCache(monotonic=Ticks(), max_entries=10)
    for n in range(25):
        cache.get(1, ("orgs", n), lambda n=n: n)  # type: ignore[misc]
    assert len(cache._entries) <= 10
    assert cache.get(1, ("orgs", 24), lambda: -1) == 24
