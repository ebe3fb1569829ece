"""Reads from a streaming standby, with read-your-writes (docs/deploy.md "Read scaling"; off unless
``REGISTRY_DATABASE_REPLICA_URL`` is set).

- **Read-your-writes.** After a client's write is answered, the WAL position of the primary at that moment
  (``pg_current_wal_lsn()``, read after the commit, so at or past the commit record) is kept as the client's *mark*
  (:class:`WriteMarks`: in the shared Redis when nodes share one, so a push answered by one node and a search sent to
  the other agree; else in this process), and as its hospital's and its patient's (:func:`readers`). A read of that
  client opens its standby transaction with ``pg_last_wal_replay_lsn() >= mark``: a standby that has not replayed
  the write yet is not used, the primary is. The order check's look-ups (:meth:`ReplicaReads.together`) honour the
  newest mark of the client, its hospital and the patient; a read (:meth:`ReplicaReads.read`) those of the client
  and its hospital, then those of the patients its answer is about; a refusal or a not-found from the standby is
  read again on the primary. Other writes may be missed for a moment (the usual replica semantics): a search the
  standby answered can lack a result pushed or shared a moment ago.
- **Nothing unsafe on failure.** A standby that cannot be reached or is not in recovery any more (it was promoted,
  or the URL is wrong) is not used for ``retry_seconds``; a mark that could not be read (the shared store down) sends
  the read to the primary. A mark that could not be *written* is logged, and for ``retry_seconds`` every read goes to
  the primary.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

import redis
from cachetools import TTLCache
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from registry.errors import ForbiddenError, GoneError, NotFoundError
from registry.outage import Outage
from registry.store.compiled import Compiled, all_together
from registry.store.repository import Repository, UnitOfWork

log = logging.getLogger("registry.replica")
T = TypeVar("T")
# sent first with a standby's reads: may it answer them (still a standby, and it has replayed the reader's mark)?
_STANDING = Compiled(
    lambda _d: text(
        "SELECT pg_is_in_recovery() AS in_recovery, "
        "CAST(:mark AS pg_lsn) IS NULL OR pg_last_wal_replay_lsn() >= CAST(:mark AS pg_lsn) AS caught_up"
    )
)
UNKNOWN = "unknown"
"""A mark that could not be read: the primary answers."""
# What a standby that lags may answer wrongly where the primary would answer: read again on the primary.
_STALE_REFUSALS = (ForbiddenError, NotFoundError, GoneError)
_RECOVERY_CONFLICT = "40001"  # "canceling statement due to conflict with recovery" (hot standby)


class WriteMarks:
    """The WAL position of each client's last answered write (module docstring)."""

    def __init__(
        self,
        url: str | None,
        ttl_seconds: float,
        *,
        prefix: str,
        retry_seconds: float = 5.0,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl_seconds
        self.prefix = prefix
        self._local: TTLCache[str, str] = TTLCache(maxsize=100_000, ttl=ttl_seconds, timer=timer)
        self._redis = redis.Redis.from_url(url, socket_timeout=0.25, socket_connect_timeout=0.25) if url else None
        self._outage = Outage(log, retry_seconds, timer)
        self._lock = threading.Lock()

    def _key(self, client: str) -> str:
        return f"hr-registry:{self.prefix}:lsn:{client}"

    def unavailable(self, exc: Exception) -> None:
        """The marks cannot be trusted for ``retry_seconds``: every read goes to the primary."""
        self._outage.failed("read-your-writes marks unavailable (%s); reads go to the primary", type(exc).__name__)

    def wrote(self, readers: Sequence[str], lsn: str) -> None:
        """``lsn`` is the mark of each of ``readers`` (one Redis round trip)."""
        if self._redis is None:
            with self._lock:
                for reader in readers:
                    self._local[reader] = lsn
            return
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                for reader in readers:
                    pipe.set(self._key(reader), lsn, px=int(self.ttl * 1000))
                pipe.execute()
        except redis.RedisError as exc:
            self.unavailable(exc)

    def last(self, client: str) -> str | None:
        """The client's mark; None when it has none; :data:`UNKNOWN` when it cannot be known now."""
        return self.latest([client])

    def latest(self, readers: Sequence[str]) -> str | None:
        """The newest mark of ``readers`` (one Redis round trip); None when none has one; :data:`UNKNOWN` when it
        cannot be known now."""
        if not readers:
            return None
        if not self._outage.usable():
            return UNKNOWN
        if self._redis is None:
            with self._lock:
                values: list[Any] = [self._local.get(r) for r in readers]
        else:
            try:
                values = list(cast(list[Any], self._redis.mget([self._key(r) for r in readers])))
            except redis.RedisError as exc:
                self.unavailable(exc)
                return UNKNOWN
        found = [v.decode() if isinstance(v, bytes) else v for v in values if v is not None]
        return max(found, key=lsn_order) if found else None


def readers(client_id: str, org_id: str | None = None, patient_key: str | None = None) -> list[str]:
    """The marks a write keeps and a read honours: the client's own; its hospital's, so a hospital that pushes
    through one client and checks orders through another sees its push; and a patient's, so the next order check
    of any hospital honours a consent change the patient just made (only the patient writes their consent)."""
    out = [client_id]
    if org_id:
        out.append(f"org:{org_id}")
    if patient_key:
        out.append(patient_reader(patient_key))
    return out


def patient_reader(patient_key: str) -> str:
    return f"patient:{patient_key}"


def lsn_order(lsn: str) -> int:
    """A WAL position (``pg_lsn``'s text, ``16/B374D848``) as a number, for comparing."""
    high, _, low = lsn.partition("/")
    return (int(high, 16) << 32) + int(low, 16)


class ReplicaReads:
    """Read transactions on the standby when it has what the reader wrote, else on the primary."""

    def __init__(
        self,
        primary: UnitOfWork,
        standby: Engine,
        marks: WriteMarks,
        *,
        retry_seconds: float = 5.0,
        timer: Callable[[], float] = time.monotonic,
        counted: Callable[[str], None] | None = None,
    ) -> None:
        self.counted = counted  # told ``standby`` or ``primary`` for each read (registry.metrics)
        self._lock = threading.Lock()
        self.primary = primary
        self.standby = standby
        self.marks = marks
        self._standby_outage = Outage(log, retry_seconds, timer)
        self.retry_seconds = retry_seconds
        self.served = {"standby": 0, "primary": 0}  # counts, for tests and metrics

    def _count(self, where: str) -> None:
        with self._lock:
            self.served[where] += 1
        if self.counted is not None:
            self.counted(where)

    def mark(self, readers: Sequence[str]) -> None:
        """Record the primary's WAL position as the mark of each of ``readers`` (call after their write committed,
        before the answer goes out)."""
        try:
            with self.primary.engine.connect() as conn:
                lsn = conn.exec_driver_sql("SELECT pg_current_wal_lsn()::text").scalar_one()
        except DBAPIError as exc:  # the write is committed and answered; only its mark is missing
            self.marks.unavailable(exc)
            return
        self.marks.wrote(readers, str(lsn))

    def _skip(self, why: str) -> None:
        self._standby_outage.failed("standby not used for %g s: %s", self.retry_seconds, why)

    def _standby_for(self, mark: str | None) -> tuple[Connection, str] | None:
        """A standby connection in a transaction that sees ``mark``, and the WAL position it had replayed when the
        transaction began; or None (the standby cannot answer this read)."""
        conn: Connection | None = None
        try:
            conn = self.standby.connect()
            conn.begin()
            in_recovery, caught_up, position = conn.exec_driver_sql(
                "SELECT pg_is_in_recovery(), %(mark)s::pg_lsn IS NULL OR pg_last_wal_replay_lsn() >= %(mark)s::pg_lsn, "
                "pg_last_wal_replay_lsn()::text",
                {"mark": mark},
            ).one()
        except DBAPIError as exc:
            if conn is not None:
                conn.close()
            self._skip(f"unreachable ({type(exc.orig).__name__})")
            return None
        if not in_recovery:
            conn.close()
            self._skip("it is not in recovery (promoted, or not a standby)")
            return None
        if not caught_up or position is None:
            conn.close()
            return None
        return conn, str(position)

    def read(
        self, readers: Sequence[str], fn: Callable[[Repository], tuple[T, Sequence[str | None]]]
    ) -> tuple[T, Sequence[str | None]]:
        """``fn`` (a read: what it writes must go to the primary on its own) returns its answer and the patients it
        is about. It runs on the standby if the standby has replayed the newest mark of ``readers`` and, once it
        has answered, of each of those patients (a consent change the patient made binds every reader at once);
        else — or then — on the primary. A refusal or a not-found from the standby, or a read its replay cancelled,
        is read again on the primary: a standby that lags never withholds what the primary would show."""
        mark = self.marks.latest(readers)
        standing = self._standby_for(mark) if mark != UNKNOWN and self._standby_outage.usable() else None
        if standing is not None:
            conn, position = standing
            declined = False
            with conn:
                try:
                    answer, patients = fn(Repository(conn))
                except _STALE_REFUSALS:  # a share resumed, a resource made a moment ago: the primary decides
                    declined = True
                except DBAPIError as exc:
                    if getattr(exc.orig, "sqlstate", None) != _RECOVERY_CONFLICT:
                        self._count("standby")
                        raise
                    declined = True  # cancelled by the standby's replay: run again where nothing replays
                except Exception:
                    self._count("standby")  # an error the primary would give too (a bad parameter, say)
                    raise
                finally:
                    conn.rollback()  # a read: nothing to commit
            if not declined:
                newest = self.marks.latest([patient_reader(k) for k in dict.fromkeys(patients) if k])
                if newest is None or (newest != UNKNOWN and lsn_order(newest) <= lsn_order(position)):
                    self._count("standby")
                    return answer, patients
        self._count("primary")
        with self.primary.begin() as repo:
            return fn(repo)

    def together(
        self, readers: Sequence[str], queries: Sequence[tuple[Compiled, Mapping[str, Any]]]
    ) -> list[Sequence[Any]] | None:
        """``queries`` (plain reads) on the standby in one round trip (``all_together``), behind a first statement
        asking whether the standby may answer for ``readers``; None when it may not — the caller reads on the
        primary. The statements are not one snapshot (the caller decides on each row on its own)."""
        mark = self.marks.latest(readers)
        if mark == UNKNOWN or not self._standby_outage.usable():
            self._count("primary")
            return None
        try:
            with self.standby.connect() as conn:
                found = all_together(conn, [(_STANDING, {"mark": mark}), *queries])
        except DBAPIError as exc:
            self._skip(f"unreachable ({type(exc.orig).__name__})")
            self._count("primary")
            return None
        standing = found[0][0]
        if not standing.in_recovery:
            self._skip("it is not in recovery (promoted, or not a standby)")
        if not (standing.in_recovery and standing.caught_up):
            self._count("primary")
            return None
        self._count("standby")
        return found[1:]
