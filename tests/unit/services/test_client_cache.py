"""The per-process cache of client rows: bounded in age and size, forgotten on a local change, never keeping a load
that raced with one (registry/services/client_cache.py)."""

from __future__ import annotations

from registry.services.client_cache import ClientCache


class Timer:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_entry_is_reused_within_the_ttl_and_read_again_after_it() -> None:
    timer, loads = Timer(), []
    cache: ClientCache[str | None] = ClientCache(5.0, timer)

    def load() -> str:
        loads.append(timer.now)
        return f"row@{timer.now}"

    assert cache.get("c", load) == "row@1000.0"
    timer.now += 4.9
    assert cache.get("c", load) == "row@1000.0"
    timer.now += 0.2
    assert cache.get("c", load) == "row@1005.1"
    assert loads == [1000.0, 1005.1]


def test_an_unknown_client_is_remembered_too() -> None:
    timer, loads = Timer(), []
    cache: ClientCache[str | None] = ClientCache(5.0, timer)

    def load() -> None:
        loads.append(1)

    assert cache.get("nobody", load) is None
    assert cache.get("nobody", load) is None
    assert loads == [1]


def test_the_cache_holds_at_most_maxsize_clients_least_recently_used_out_first() -> None:
    cache: ClientCache[str] = ClientCache(5.0, Timer(), maxsize=3)
    for name in ("a", "b", "c"):
        cache.get(name, lambda n=name: n)
    cache.get("a", lambda: "reloaded")  # a is now the most recently used
    cache.get("d", lambda: "d")
    assert len(cache) == 3
    assert cache.get("a", lambda: "reloaded") == "a"
    assert cache.get("b", lambda: "b again") == "b again"  # b was the least recently used: it went first


def test_forget_drops_the_entry_at_once() -> None:
    cache: ClientCache[str] = ClientCache(5.0, Timer())
    cache.get("c", lambda: "enabled")
    cache.forget("c")
    assert cache.get("c", lambda: "disabled") == "disabled"


def test_a_load_that_raced_with_a_change_is_not_kept() -> None:
    cache: ClientCache[str] = ClientCache(5.0, Timer())

    def stale_load() -> str:
        cache.forget("c")  # the client is disabled while its old row is being read
        return "enabled"

    assert cache.get("c", stale_load) == "enabled"
    assert cache.get("c", lambda: "disabled") == "disabled"


def test_a_ttl_of_zero_reads_every_time() -> None:
    cache: ClientCache[int] = ClientCache(0.0, Timer())
    counter = iter(range(10))
    assert [cache.get("c", lambda: next(counter)) for _ in range(3)] == [0, 1, 2]
