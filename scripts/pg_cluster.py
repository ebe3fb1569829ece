"""A throw-away PostgreSQL cluster of its own (initdb in a temporary directory, ``pg_ctl`` on a free loopback port,
run as the ``postgres`` user when started by root): for the tests that stop a database and for the benchmarks, which
measure a server with the settings a fresh installation has (autovacuum on) rather than the shared test server's.

    with PgCluster.running() as cluster:   # cluster.url: SQLAlchemy URL of its ``postgres`` database
        ...
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BINARIES = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))


def available() -> str | None:
    """Why a cluster cannot be made here, or None."""
    if not BINARIES:
        return "the PostgreSQL server binaries (/usr/lib/postgresql/*/bin) are not installed"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "runuser is not installed (a cluster started by root runs as the postgres user)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgCluster:
    """One cluster: ``init()`` creates and starts it (with ``database`` created), ``stop``/``start`` as a crash or a
    restart would, ``remove()`` stops it and deletes its files."""

    def __init__(
        self,
        *,
        database: str = "registry",
        settings: dict[str, str] | None = None,
        prefix: str = "hr-pg-",
        port: int | None = None,
    ):
        self.bin = Path(BINARIES[-1]).parent
        self.dir = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        self.data = self.dir / "data"
        self.port = port or _free_port()
        self.database = database
        self.settings = settings or {}
        self.server_url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if self._as_postgres else []
        subprocess.run([*prefix, *argv], check=True, capture_output=True, timeout=120)  # noqa: S603

    def init(self) -> None:
        from sqlalchemy import create_engine, text

        self._run(str(self.bin / "initdb"), "-D", str(self.data), "--auth=trust", "-U", "postgres", "-E", "UTF8")
        self.start()
        admin = create_engine(self.server_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.database}"'))
        admin.dispose()

    def standby(self, **kwargs: object) -> PgCluster:
        """A streaming standby of this (running) cluster: ``pg_basebackup -R`` into a cluster of its own, started
        (hot standby, read-only). Remove it with ``remove()`` like any cluster."""
        other = type(self)(database=self.database, **kwargs)  # type: ignore[arg-type]
        self._run(str(self.bin / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                  "-D", str(other.data), "-R", "-X", "stream", "-c", "fast")  # fmt: skip
        other.start()
        return other

    def start(self) -> None:
        extra = "".join(f" -c {k}={v}" for k, v in self.settings.items())
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1{extra}"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.dir / "log"), "-w",
                  "-t", "60", "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def remove(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def describe(self) -> str:
        """The server's settings that matter to a benchmark, as one line."""
        from sqlalchemy import create_engine, text

        names = ("server_version", "autovacuum", "shared_buffers", "synchronous_commit", "fsync")
        engine = create_engine(self.server_url)
        with engine.connect() as conn:
            rows = {n: conn.execute(text("SELECT current_setting(:n)"), {"n": n}).scalar_one() for n in names}
        engine.dispose()
        return ", ".join(f"{n} {rows.get(n, '?')}" for n in names)

    @classmethod
    @contextmanager
    def running(cls, **kwargs: object) -> Iterator[PgCluster]:
        cluster = cls(**kwargs)  # type: ignore[arg-type]
        try:
            cluster.init()
            yield cluster
        finally:
            cluster.remove()
