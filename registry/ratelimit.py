"""Per-client request rate limits: a token bucket per key (docs/design.md §6). In-process: each worker limits on its
own, so N workers allow up to N× the rate — documented in the README as a limit of the one-machine setup.

Keys are chosen by clients (``/auth/token`` limits by the claimed client id before it is authenticated), so the
buckets live in a bounded cache (``cachetools.TTLCache``, already the client cache's library): a bucket left alone
until it would be full again is forgotten — a fresh one is the same — and past ``max_keys`` the least recently used
go first. Memory stays bounded however many names a client makes up; a forgotten bucket only ever starts full.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from cachetools import TTLCache
from starlette.concurrency import run_in_threadpool


class Limiter(Protocol):
    """What a route asks of a rate limiter. ``blocking``: whether :meth:`acquire` may wait on the network (a
    shared store), so the event loop must hand it to a thread."""

    blocking: bool

    def acquire(self, key: str) -> int:
        """0 when the request may proceed; otherwise the seconds to wait (for ``Retry-After``)."""
        ...


async def acquire_in_loop(limiter: Limiter, key: str) -> int:
    """:meth:`Limiter.acquire` for an async handler: in a worker thread when it may wait on the network."""
    return await run_in_threadpool(limiter.acquire, key) if limiter.blocking else limiter.acquire(key)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    blocking = False

    def __init__(
        self, rate_per_second: float, burst: int, *, max_keys: int = 10_000, timer: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate_per_second
        self.burst = burst
        self._timer = timer
        refill = burst / rate_per_second if rate_per_second > 0 else 1.0
        self._buckets: TTLCache[str, _Bucket] = TTLCache(maxsize=max_keys, ttl=refill, timer=timer)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """Buckets held now (expired ones dropped first)."""
        with self._lock:
            self._buckets.expire()
            return len(self._buckets)

    def acquire(self, key: str) -> int:
        """0 when the request may proceed; otherwise the seconds to wait (for ``Retry-After``)."""
        if self.rate <= 0:
            return 0
        now = self._timer()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = _Bucket(float(self.burst), now)
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) * self.rate)
            bucket.updated = now
            self._buckets[key] = bucket  # (re)set: its time to live runs from its last use
            if bucket.tokens >= 1:
                bucket.tokens -= 1
                return 0
            return max(1, math.ceil((1 - bucket.tokens) / self.rate))
