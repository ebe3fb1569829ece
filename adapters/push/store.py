"""The outbox's SQLite file: opened owner-only (it holds names and national identifiers, docs/design.md §6), WAL with
``synchronous=FULL`` (a commit is on disk before the sender hears its acknowledgement), its schema checked and
upgraded on open (adapters/push/schema.py); one connection behind one lock, so one process may use it from many
threads while other processes read and write the same file."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from adapters.push import schema
from adapters.push.schema import OutboxError


class OutboxFile:
    def __init__(self, path: Path, *, clock: Any = time.time) -> None:
        self.path = path
        self.clock = clock
        db: sqlite3.Connection | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))  # names and national IDs: the owner's only
            if path.stat().st_mode & 0o077:  # (SQLite gives its -wal and -shm files this mode)
                path.chmod(0o600)
            db = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA busy_timeout=30000")
            schema.check_readable(db, path)  # a newer release's file is refused before anything is written
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            self.upgraded_from = schema.upgrade(db, path)
        except OutboxError:
            if db is not None:
                db.close()
            raise
        except (sqlite3.Error, OSError) as exc:
            if db is not None:
                db.close()
            raise OutboxError(f"cannot open the outbox {path}: {exc}") from None
        self._db = db
        self._lock = threading.RLock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise OutboxError(f"the outbox {self.path} cannot be written: {exc}") from None

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise OutboxError(f"the outbox {self.path} cannot be read: {exc}") from None

    @staticmethod
    def _bump(db: sqlite3.Connection, name: str, by: int = 1) -> None:
        db.execute(
            "INSERT INTO counter (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = value + ?",
            (name, by, by),
        )
