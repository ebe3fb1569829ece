"""Rate limits counted where every registry node sees them (docs/deploy.md): behind a balancer, N nodes that each
counted on their own would let a client through at N× its rate, and an attacker guessing a sign-in password N× as
often.

The counting is the ``limits`` library's moving window in Redis: ``burst`` requests per ``burst / rate`` seconds, the
same long-run rate and the same largest burst as the in-process token bucket (``registry.ratelimit``). Keys are
prefixed with a digest of the region's identity secret, so the nodes of one region share their counts and two
registries (or two test runs) on one Redis never mix theirs.

When the store cannot be reached, a request is not refused for it: the node counts on its own with the in-process
limiter (what one machine does anyway), logs it once, and tries the store again after ``retry_seconds``. Each call to
the store is bounded by ``timeout`` seconds, so a stalled Redis slows a request by at most that much, once per retry
period.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import time
from collections.abc import Callable

from limits import RateLimitItemPerSecond
from limits.errors import StorageError
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter

from registry.outage import Outage
from registry.ratelimit import RateLimiter

log = logging.getLogger("registry.ratelimit")


class SharedRateLimiter:
    """A :class:`registry.ratelimit.Limiter` whose counts live in Redis (module docstring)."""

    blocking = True

    def __init__(
        self,
        url: str,
        rate_per_second: float,
        burst: int,
        *,
        prefix: str,
        fallback: RateLimiter,
        timeout: float = 0.25,
        retry_seconds: float = 5.0,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = rate_per_second
        self.fallback = fallback
        period = max(1, round(burst / rate_per_second)) if rate_per_second > 0 else 1
        self._item = RateLimitItemPerSecond(burst, period, namespace=prefix)
        self._storage = RedisStorage(
            url, wrap_exceptions=True, key_prefix="hr-registry", socket_timeout=timeout, socket_connect_timeout=timeout
        )
        self._limiter = MovingWindowRateLimiter(self._storage)
        self._outage = Outage(log, retry_seconds, timer)

    def acquire(self, key: str) -> int:
        if self.rate <= 0:
            return 0
        if not self._outage.usable():
            return self.fallback.acquire(key)
        try:
            if self._limiter.hit(self._item, key):
                return 0
            stats = self._limiter.get_window_stats(self._item, key)
        except StorageError as exc:
            why = type(exc).__name__
            self._outage.failed("rate-limit store unreachable (%s); counting in this process until it is back", why)
            return self.fallback.acquire(key)
        return max(1, math.ceil(stats.reset_time - time.time()))

    def reachable(self) -> bool:
        """Whether the store answers now (for readiness and tests)."""
        try:
            return bool(self._storage.check())
        except StorageError:
            return False


def rate_limiter(
    url: str | None, rate: float, burst: int, *, max_keys: int, secret: bytes, name: str
) -> RateLimiter | SharedRateLimiter:
    """The limiter a process uses: counted in the shared store at ``url`` when one is configured (the in-process one
    then stands in while the store is down), else in this process. ``name`` keeps apart what is limited (API calls,
    sign-in attempts); ``secret``, the region's identity secret, keeps regions apart."""
    local = RateLimiter(rate, burst, max_keys=max_keys)
    if not url:
        return local
    region = hmac.new(secret, b"hr-registry rate limits", hashlib.sha256).hexdigest()[:16]
    return SharedRateLimiter(url, rate, burst, prefix=f"{region}:{name}", fallback=local)
