"""An in-process cache for recognition's configuration — hospitals' code maps, organizations' regions,
qualifications — which every order check needs and which changes rarely.

Every change to that configuration, through the API or the command line, bumps the configuration generation in the
same transaction (``registry.store.config_generation``). A reader asks for the current generation once per request
(one primary-key SELECT, before it loads anything; the order check sends it with its first reads) and gets only
entries loaded at that generation, so a change is seen **at once** by the next order check of every process,
whichever process made it. ``ttl_seconds`` (60 s) is a backstop for changes written behind the registry's back (SQL
typed into the database): those are seen within it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from sqlalchemy import Connection

from registry.store.config_generation import ConfigGenerations

T = TypeVar("T")

MAX_ENTRIES = 4096


class ConfigCache:
    def __init__(
        self,
        ttl_seconds: float = 60.0,
        monotonic: Callable[[], float] = time.monotonic,
        max_entries: int = MAX_ENTRIES,
    ) -> None:
        self.ttl = ttl_seconds
        self.monotonic = monotonic
        self.max_entries = max_entries
        self._entries: dict[Hashable, tuple[int, float, Any]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def generation(conn: Connection) -> int:
        """The configuration generation the caller's transaction sees (read it before loading anything)."""
        return ConfigGenerations(conn).current()

    @staticmethod
    def changed(conn: Connection) -> None:
        """Record a configuration change in the caller's transaction: every process reloads once it commits."""
        ConfigGenerations(conn).bump()

    def get(self, generation: int, key: Hashable, load: Callable[[], T]) -> T:
        """The entry for ``key`` loaded at ``generation`` (and younger than the TTL), else ``load()``'s value.

        The generation is read before the load, on the same connection: the value is at least as new as the
        generation it is filed under, never older."""
        now = self.monotonic()
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None and hit[0] == generation and hit[1] > now:
                return hit[2]  # type: ignore[no-any-return]
        value = load()
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()  # bounded memory: the keys are sets of hospitals, many may come and go
            self._entries[key] = (generation, now + self.ttl, value)
        return value

    def latest(self, key: Hashable) -> tuple[int, Any] | None:
        """``(generation, value)`` last loaded for ``key``, however old: a guess for reading ahead, to be confirmed
        against the generation the transaction then reads (``get``)."""
        with self._lock:
            hit = self._entries.get(key)
        return (hit[0], hit[2]) if hit is not None else None

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
