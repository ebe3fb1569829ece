"""A small in-process cache for recognition's configuration data — code maps, organizations' regions,
qualifications — which every order check needs and which changes rarely.

Entries live ``ttl_seconds`` (default 10 s); a write that changes them in this process (a ConceptMap, an
Organization, a qualification) clears the cache at once. Other worker processes see a change within the TTL: a
qualification revoked at 10:00:00 may still count in another worker until 10:00:10.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")


class ConfigCache:
    def __init__(self, ttl_seconds: float = 10.0, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl_seconds
        self.monotonic = monotonic
        self._entries: dict[Hashable, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, load: Callable[[], T]) -> T:
        now = self.monotonic()
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None and hit[0] > now:
                return hit[1]  # type: ignore[no-any-return]
        value = load()
        with self._lock:
            self._entries[key] = (now + self.ttl, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
