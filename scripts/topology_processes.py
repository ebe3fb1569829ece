"""The processes of the loopback topology (scripts/topology.py): the process plumbing every piece shares, etcd,
and PostgreSQL nodes managed by Patroni."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
PG_BIN = Path("/usr/lib/postgresql/15/bin")
SCOPE = "hr-topology"
NATIONAL = "https://hr-registry.org.cn/fhir/sid/cn-resident-id"
REGION_EXT_REGION = "beijing"


def missing() -> str | None:
    """Why a topology cannot be started here, or None."""
    for name in ("etcd", "patroni", "haproxy"):
        if shutil.which(name) is None:
            return f"`{name}` is not installed (Debian: etcd-server, patroni, haproxy)"
    if not (PG_BIN / "postgres").exists():
        return f"the PostgreSQL 15 server binaries ({PG_BIN}) are not installed"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "there is no postgres user to run PostgreSQL as"
    return None


def free_ports(n: int) -> list[int]:
    """``n`` distinct loopback ports free now (all sockets held open until every port is picked)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the process that started it dies (PR_SET_PDEATHSIG), so a harness
    killed outright leaves no etcd, Patroni or registry behind (a postmaster Patroni started is in a session of its
    own: ``Topology.close`` kills it)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


def children_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def get_quietly(url: str, timeout: float = 1.0) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=timeout)
    except httpx.HTTPError:
        return None


class Service:
    """One long-running process in a session (process group) of its own, its output in ``log``."""

    name = "service"

    def __init__(self, directory: Path, *, as_postgres: bool = False) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = self.dir / f"{self.name}.log"
        self.as_postgres = as_postgres and os.geteuid() == 0
        if self.as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
            self.dir.chmod(0o700)
        self.cwd = self.dir
        self.proc: subprocess.Popen[bytes] | None = None

    # what a subclass says
    def argv(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def ready(self) -> bool:
        raise NotImplementedError

    # what every service does
    def start(self) -> None:
        if self.alive:
            return
        user: dict[str, Any] = {}
        if self.as_postgres:
            entry = pwd.getpwnam("postgres")
            user = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(  # noqa: S603 - argv built here
                self.argv(),
                cwd=self.cwd,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # PDEATHSIG follows the starting thread: start from one that lives
                **user,
            )

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ready():
                return
            if not self.alive:
                raise RuntimeError(f"{self.name} exited ({self.proc and self.proc.returncode}):\n{self.tail()}")
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} was not ready within {timeout:.0f} s:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _signal_group(self, sig: int) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, sig)

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM to the process group, SIGKILL after ``timeout``."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self._signal_group(signal.SIGKILL)  # whatever of the group is left
        self.proc.wait()

    def kill(self) -> None:
        """``kill -9`` the whole process group, as a crash would."""
        if self.proc is None:
            return
        self._signal_group(signal.SIGKILL)
        self.proc.wait()


class Etcd(Service):
    """One etcd member: its own data dir, client and peer ports."""

    name = "etcd"

    def __init__(self, directory: Path, client_port: int, peer_port: int) -> None:
        super().__init__(directory)
        self.client_port, self.peer_port = client_port, peer_port
        self.url = f"http://127.0.0.1:{client_port}"

    def argv(self) -> list[str]:
        peer = f"http://127.0.0.1:{self.peer_port}"
        return [
            shutil.which("etcd") or "etcd",
            "--name", "e0",
            "--data-dir", str(self.dir / "data"),
            "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"e0={peer}", "--initial-cluster-state", "new",
            "--initial-cluster-token", f"{SCOPE}-{self.client_port}",
            "--log-level", "warn",
        ]  # fmt: skip

    def env(self) -> dict[str, str]:
        # Debian's etcd reads ETCD_* variables too: none of the machine's own must leak in
        return {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}

    def ready(self) -> bool:
        r = get_quietly(f"{self.url}/health")
        return r is not None and r.status_code == 200 and r.json().get("health") == "true"


class PatroniNode(Service):
    """One PostgreSQL 15 node managed by Patroni (both run as the ``postgres`` user when started by root). ``kill``
    is a machine's death: Patroni and every postgres process, ``kill -9``."""

    name = "patroni"

    def __init__(self, directory: Path, member: str, pg_port: int, rest_port: int, etcd_url: str) -> None:
        super().__init__(directory, as_postgres=True)
        self.member, self.pg_port, self.rest_port, self.etcd_url = member, pg_port, rest_port, etcd_url
        self.rest = f"http://127.0.0.1:{rest_port}"
        self.data = self.dir / "data"
        self.config = self.dir / "patroni.json"  # JSON is YAML

    def _write_config(self) -> None:
        hba = ["local all all trust", "host all all 127.0.0.1/32 trust", "host replication all 127.0.0.1/32 trust"]
        config = {
            "scope": SCOPE,
            "namespace": f"/{SCOPE}/",
            "name": self.member,
            "log": {"level": "INFO"},
            "restapi": {"listen": f"127.0.0.1:{self.rest_port}", "connect_address": f"127.0.0.1:{self.rest_port}"},
            "etcd3": {"host": self.etcd_url.removeprefix("http://")},
            "watchdog": {"mode": "off"},
            "bootstrap": {
                "dcs": {
                    "ttl": 8,
                    "loop_wait": 2,
                    "retry_timeout": 3,
                    "synchronous_mode": True,
                    "synchronous_mode_strict": False,
                    "postgresql": {
                        "use_pg_rewind": True,  # a dead primary comes back as a standby of the new one
                        "use_slots": True,
                        "parameters": {
                            "wal_level": "replica",
                            "hot_standby": "on",
                            "wal_log_hints": "on",  # what pg_rewind needs without data checksums
                            "synchronous_commit": "on",
                            "max_wal_senders": 5,
                            "max_replication_slots": 5,
                            "wal_keep_size": "128MB",
                            "max_connections": 100,
                        },
                    },
                },
                "initdb": [{"encoding": "UTF8"}, {"auth-local": "trust"}, {"auth-host": "trust"}],
            },
            "postgresql": {
                "listen": f"127.0.0.1:{self.pg_port}",
                "connect_address": f"127.0.0.1:{self.pg_port}",
                "data_dir": str(self.data),
                "bin_dir": str(PG_BIN),
                "pgpass": str(self.dir / "pgpass"),
                "authentication": {
                    "superuser": {"username": "postgres"},
                    "replication": {"username": "replicator", "password": "replicator"},
                },
                "parameters": {"unix_socket_directories": str(self.dir), "shared_buffers": "64MB", "fsync": "on"},
                "pg_hba": hba,
            },
        }
        self.config.write_text(json.dumps(config, indent=2))

    def start(self) -> None:
        if not self.config.exists():
            self._write_config()
        super().start()

    def argv(self) -> list[str]:
        return [shutil.which("patroni") or "patroni", str(self.config)]

    def env(self) -> dict[str, str]:
        home = str(self.dir) if self.as_postgres else os.environ.get("HOME", str(self.dir))
        return {k: v for k, v in os.environ.items() if not k.startswith(("PATRONI", "PG"))} | {"HOME": home}

    def ready(self) -> bool:
        """PostgreSQL runs (as primary or as a streaming standby)."""
        r = get_quietly(f"{self.rest}/health")
        return r is not None and r.status_code == 200

    def role(self) -> str | None:
        """``primary``, ``replica``, or None when its REST API does not answer."""
        for role in ("primary", "replica"):
            r = get_quietly(f"{self.rest}/{role}")
            if r is not None and r.status_code == 200:
                return role
        return None

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def _kill_postgres(self) -> None:
        """kill -9 the postmaster and every process it started. Patroni starts the postmaster in a session of its
        own, and PostgreSQL puts each child in a session of its own too: no process group holds them all."""
        pid = self.postmaster_pid()
        if pid is None:
            return
        for victim in [pid, *children_of(pid)]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(victim, signal.SIGKILL)

    def kill(self) -> None:
        self._kill_postgres()
        super().kill()

    def stop(self, timeout: float = 30) -> None:
        super().stop(timeout)  # Patroni stops its postgres on SIGTERM
        self._kill_postgres()  # and if it could not
