"""The rate limiter's memory is bounded whatever keys clients make up (docs/design.md §6), and it still limits."""

from __future__ import annotations

import tracemalloc

from registry.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_200000_made_up_keys_leave_at_most_max_keys_buckets() -> None:
    clock = Clock()
    limiter = RateLimiter(100.0, 300, max_keys=10_000, timer=clock)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for n in range(200_000):
        assert limiter.acquire(f"token:bogus-{n}") == 0
        clock.now += 0.0001  # 20 s of made-up client ids, ten thousand a second
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    assert len(limiter) <= 10_000
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert grown < 8 * 1024 * 1024, grown  # 10,000 buckets, not 200,000 (which took 38.5 MiB)


def test_an_idle_bucket_is_forgotten_once_it_would_be_full_again() -> None:
    clock = Clock()
    limiter = RateLimiter(1.0, 3, max_keys=100, timer=clock)
    for n in range(50):
        limiter.acquire(f"k{n}")
    assert len(limiter) == 50
    clock.now += 3.01  # burst / rate: every bucket would be full again
    assert len(limiter) == 0


def test_limiting_still_works_past_the_bound() -> None:
    clock = Clock()
    limiter = RateLimiter(1.0, 3, max_keys=100, timer=clock)
    assert [limiter.acquire("client") for _ in range(4)] == [0, 0, 0, 1]
    for n in range(99):  # other keys fill the cache; the client's, used last, is kept
        limiter.acquire(f"other-{n}")
        limiter.acquire("client") if n % 10 == 0 else None
    assert limiter.acquire("client") >= 1  # still throttled: its bucket was not evicted and refilled
    clock.now += 1.0
    assert limiter.acquire("client") == 0  # one token back after a second
    assert limiter.acquire("client") == 1


def test_a_rate_of_zero_limits_nothing_and_keeps_nothing() -> None:
    limiter = RateLimiter(0, 1)
    assert all(limiter.acquire(f"k{n}") == 0 for n in range(1000))
    assert len(limiter) == 0
