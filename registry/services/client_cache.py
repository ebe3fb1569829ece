"""The short per-process memory of client rows that every bearer token and page session is checked against
(docs/design.md §6: "a disabled client's tokens stop working").

Bounded in age and in size: an entry lives ``ttl_seconds`` (``REGISTRY_CLIENT_CACHE_SECONDS``, 5 s by default) and
at most ``maxsize`` client ids are kept, least recently used first out (``cachetools.TTLCache``). Keys are the
``sub`` of tokens and the client id of sessions this registry signed, never a name a caller picks freely, and an
unknown client is remembered as ``None`` like any other, so neither memory nor queries grow with callers' input.

A change made through this process (``Principals.disable``…) forgets the entry at once; a change made by another
process — the CLI, another server behind the load balancer — is seen when the entry expires. A load that raced with
such a change is not kept (the generation counter), so the process that made a change never serves the old row.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from cachetools import TTLCache

T = TypeVar("T")

DEFAULT_MAXSIZE = 4096


class ClientCache(Generic[T]):
    def __init__(self, ttl_seconds: float, timer: Callable[[], float], maxsize: int = DEFAULT_MAXSIZE) -> None:
        self.ttl_seconds = ttl_seconds
        self._entries: TTLCache[str, T, float] = TTLCache(maxsize=maxsize, ttl=ttl_seconds, timer=timer)
        self._lock = threading.Lock()
        self._generation = 0

    def get(self, client_id: str, load: Callable[[], T]) -> T:
        """The remembered value for ``client_id``, or ``load()`` (outside the lock: it queries the database)."""
        if self.ttl_seconds <= 0:
            return load()
        with self._lock:
            try:
                return self._entries[client_id]
            except KeyError:
                generation = self._generation
        value = load()
        with self._lock:
            if generation == self._generation:
                self._entries[client_id] = value
        return value

    def holds(self, client_id: str) -> bool:
        """Whether :meth:`get` would answer from memory now (no database)."""
        if self.ttl_seconds <= 0:
            return False
        with self._lock:
            return client_id in self._entries

    def forget(self, client_id: str) -> None:
        with self._lock:
            self._generation += 1
            self._entries.pop(client_id, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
