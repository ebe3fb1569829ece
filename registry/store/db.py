"""Engines for the two supported stores: embedded SQLite (default) and PostgreSQL (production).

Both are created with ``hide_parameters``: a statement's parameters (names, results) never appear in an exception's
text nor in SQLAlchemy's log (docs/design.md §6). The SQLite file holds names and results, so it is readable by its
owner only (0600, like the keys), in a directory created 0700.
"""

from __future__ import annotations

import contextlib
import math
import os
import stat
import time
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    """An engine with the settings the registry relies on: foreign keys, WAL and a busy timeout on SQLite;
    a bounded pool with pre-ping on PostgreSQL."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:" and not parsed.database.startswith("file:"):
            private_database_file(Path(parsed.database))
        engine = create_engine(
            url,
            hide_parameters=True,
            connect_args={"check_same_thread": False, "timeout": 30},
            json_serializer=_dumps,
            json_deserializer=orjson.loads,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # Take the write lock at BEGIN: read-then-write transactions then never hit a lock upgrade deadlock.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        # PostgreSQL's default plan caching (``plan_cache_mode = auto``): the order check's and the reads' short
        # statements keep one generic plan per connection once psycopg has prepared them (a quarter of the server's
        # CPU per order check went to re-planning them). The write path plans every execution instead
        # (UnitOfWork.begin(plan_each=True)): there a generic plan made while a table was small stayed in use as it
        # grew — 1 ms per Bundle became 18 ms within 60 Bundles on a server without autovacuum.
        hide_parameters=True,
        json_serializer=_dumps,
        json_deserializer=orjson.loads,
    )
    _ping_when_idle(engine)
    return engine


IDLE_PING_SECONDS = 1.0


def _ping_when_idle(engine: Engine) -> None:
    """Pre-ping a pooled connection only when it sat idle longer than ``IDLE_PING_SECONDS`` (SQLAlchemy's
    "pessimistic disconnect handling" recipe, with a threshold): a connection handed back and taken again within a
    second was just seen working, and under load a ping before every transaction was one round trip in four of the
    order check. A failed ping raises ``DisconnectionError``, and the pool replaces the connection (and every other
    connection of the pool, as a restarted server invalidates them all) before the caller sees it."""

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since <= IDLE_PING_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise DisconnectionError("the pooled connection is gone") from exc


def private_database_file(path: Path) -> None:
    """Create the SQLite file 0600 before SQLite opens it (SQLite gives its -wal, -shm and -journal files the mode of
    the database file), and take group and other access away from an existing one and its companions."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    for file in (path, *(path.with_name(path.name + suffix) for suffix in ("-wal", "-shm", "-journal"))):
        try:
            st = file.stat()
        except FileNotFoundError:
            continue
        if st.st_mode & 0o077 and st.st_uid == os.getuid():
            os.chmod(file, stat.S_IMODE(st.st_mode) & 0o700)


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def limit_statements(engine: Engine, seconds: float) -> None:
    """Cancel any statement of ``engine`` that runs longer than ``seconds`` (0: no limit) — the bound on one request's
    database cost. PostgreSQL: ``SET LOCAL statement_timeout`` at the start of every transaction (lock waits count
    too); the statement fails with SQLSTATE 57014. SQLite: a progress handler interrupts the statement past its
    deadline (waiting for a lock does not count: that is the busy timeout's); it fails as ``interrupted``.
    Installed by ``create_app`` only, after the migrations: the command line's long jobs are not cut short."""
    if seconds <= 0:
        return
    if is_postgres(engine):
        milliseconds = max(1, round(seconds * 1000))

        @event.listens_for(engine, "connect")
        def _statement_timeout(dbapi_connection: Any, _record: Any) -> None:
            # once per connection (``SET LOCAL`` per transaction was one more round trip on every request)
            with dbapi_connection.cursor() as cursor:
                cursor.execute(f"SET statement_timeout = {milliseconds}")
            dbapi_connection.commit()

        engine.dispose()  # connections opened before (the migrations') have no limit: open new ones
        return

    @event.listens_for(engine, "connect")
    def _progress_handler(dbapi_connection: Any, record: Any) -> None:
        deadline = record.info["deadline"] = [math.inf]
        dbapi_connection.set_progress_handler(lambda: int(time.monotonic() > deadline[0]), 1000)

    @event.listens_for(engine, "before_cursor_execute")
    def _start_clock(conn: Any, *_args: Any) -> None:
        deadline = conn.connection.info.get("deadline")
        if deadline is not None:
            deadline[0] = time.monotonic() + seconds

    engine.dispose()  # connections opened before (the migrations') have no handler: open new ones


def timed_out(exc: BaseException) -> bool:
    """Whether a database error is a statement cancelled by :func:`limit_statements`."""
    orig = getattr(exc, "orig", exc)
    if getattr(orig, "sqlstate", None) == "57014":  # query_canceled
        return True
    return type(orig).__module__.startswith("sqlite3") and str(orig) == "interrupted"


def ping(engine: Engine) -> None:
    """One round trip to the database (``SELECT 1``); raises what the driver raises when it cannot be reached."""
    with engine.connect() as conn:
        conn.exec_driver_sql("SELECT 1")
