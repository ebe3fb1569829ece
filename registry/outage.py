"""A dependency a node can do without for a while — the shared Redis, a streaming standby — that has just failed:
it is left alone for ``retry_seconds`` (each request must not pay its timeout again), and the failure is logged once
per outage, not once per request. Used by ``registry.shared_ratelimit`` and ``registry.store.replica``."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable


class Outage:
    def __init__(
        self, log: logging.Logger, retry_seconds: float = 5.0, timer: Callable[[], float] = time.monotonic
    ) -> None:
        self.log = log
        self.retry_seconds = retry_seconds
        self._timer = timer
        self._until = 0.0
        self._lock = threading.Lock()

    def usable(self) -> bool:
        """Whether to try the dependency now (no failure within the last ``retry_seconds``)."""
        with self._lock:
            return self._timer() >= self._until

    def failed(self, message: str, *args: object) -> None:
        """The dependency failed: not tried again for ``retry_seconds``; ``message % args`` logged as a warning when
        this begins an outage (not while one lasts)."""
        with self._lock:
            first = self._timer() >= self._until
            self._until = self._timer() + self.retry_seconds
        if first:
            self.log.warning(message, *args)
