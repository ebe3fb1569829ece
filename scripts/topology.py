#!/usr/bin/env python3
"""A scaled-out registry on loopback, with real processes: one etcd member, two PostgreSQL 15 nodes managed by
Patroni (streaming replication, synchronous mode), HAProxy in front of both (a read-write and a read-only frontend,
each health-checking Patroni's REST API) and of N registry nodes (uvicorn, one worker each, sharing one var dir).

    python scripts/topology.py up --registries 2     # prints the URLs and a token, stays up until Ctrl-C

    with Topology(registries=2) as topo:             # the test's way (tests/topology/test_failover.py)
        topo.kill_registry(0)
        old = topo.kill_primary()                    # the machine dies: Patroni and its postgres, kill -9
        new = topo.wait_for_leader(other_than=old.name)

Every file lives under one temporary directory, removed on teardown; every process is started in a session of its
own and killed (its whole process group) on teardown, also after a failure half-way through ``start``.

Replication. ``synchronous_mode: true`` makes Patroni name the standby in ``synchronous_standby_names``, so a commit is
acknowledged only once the standby has flushed it (``synchronous_commit: on``), and only that synchronous standby may
be promoted: an acknowledged write survives the primary's death. ``synchronous_mode_strict: true`` would add one thing:
with no synchronous standby left (after a failover the new primary is alone) the primary would keep refusing to
acknowledge commits — writes block — rather than fall back to asynchronous commits. It is left off: with two nodes the
point of a failover is that writes resume on the survivor; what this costs is that the commits made while it is alone
exist on one node only until the other comes back. A region wanting strict durability needs a third node (then strict
mode still has a standby to wait for after one failure).

Timing. ``ttl: 8``, ``loop_wait: 2``, ``retry_timeout: 3`` (Patroni's rule: ``loop_wait + 2 × retry_timeout ≤ ttl``):
the dead primary's leader key expires within 8 s, the standby notices within one loop and promotes; HAProxy checks
every second (``fall 2``, ``rise 1``), and ``on-marked-down shutdown-sessions`` cuts the connections still open to
the old primary, so the registries' pools reconnect to the new one.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
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


def _children(pid: int) -> list[int]:
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


def _get(url: str, timeout: float = 1.0) -> httpx.Response | None:
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
        r = _get(f"{self.url}/health")
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
                        "use_pg_rewind": False,
                        "use_slots": True,
                        "parameters": {
                            "wal_level": "replica",
                            "hot_standby": "on",
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
        r = _get(f"{self.rest}/health")
        return r is not None and r.status_code == 200

    def role(self) -> str | None:
        """``primary``, ``replica``, or None when its REST API does not answer."""
        for role in ("primary", "replica"):
            r = _get(f"{self.rest}/{role}")
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
        for victim in [pid, *_children(pid)]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(victim, signal.SIGKILL)

    def kill(self) -> None:
        self._kill_postgres()
        super().kill()

    def stop(self, timeout: float = 30) -> None:
        super().stop(timeout)  # Patroni stops its postgres on SIGTERM
        self._kill_postgres()  # and if it could not


class HAProxy(Service):
    """The balancer: ``pg_rw`` (the Patroni primary), ``pg_ro`` (the standby) and ``registry`` (HTTP, N nodes)."""

    name = "haproxy"

    def __init__(
        self,
        directory: Path,
        *,
        rw_port: int,
        ro_port: int,
        http_port: int,
        stats_port: int,
        pg_nodes: Sequence[PatroniNode],
        registry_ports: Sequence[int],
    ) -> None:
        super().__init__(directory)
        self.rw_port, self.ro_port, self.http_port, self.stats_port = rw_port, ro_port, http_port, stats_port
        self.pg_nodes, self.registry_ports = list(pg_nodes), list(registry_ports)
        self.config = self.dir / "haproxy.cfg"
        self.url = f"http://127.0.0.1:{http_port}"

    def config_text(self) -> str:
        pg_servers = "".join(
            f"    server {n.member} 127.0.0.1:{n.pg_port} check port {n.rest_port}\n" for n in self.pg_nodes
        )
        registries = "".join(f"    server r{i} 127.0.0.1:{p} check\n" for i, p in enumerate(self.registry_ports))
        return f"""\
global
    maxconn 2000
    log stdout format raw local0 notice

defaults
    log global
    retries 3
    timeout connect 2s
    timeout check 2s
    timeout queue 10s

# PostgreSQL, read-write: the member whose Patroni answers 200 on /primary. When it stops answering (fall 2 checks,
# one a second), the connections still open to it are cut, so no client keeps talking to a demoted or dead node.
listen pg_rw
    bind 127.0.0.1:{self.rw_port}
    mode tcp
    timeout client 1h
    timeout server 1h
    option httpchk GET /primary
    http-check expect status 200
    default-server inter 1s fall 2 rise 1 on-marked-down shutdown-sessions
{pg_servers}
# PostgreSQL, read-only: the streaming standby (Patroni answers 200 on /replica).
listen pg_ro
    bind 127.0.0.1:{self.ro_port}
    mode tcp
    timeout client 1h
    timeout server 1h
    option httpchk GET /replica
    http-check expect status 200
    default-server inter 1s fall 2 rise 1 on-marked-down shutdown-sessions
{pg_servers}
# The registry nodes. /readyz answers 503 while a node's database is unreachable (registry/api/health.py). A request
# whose connection to a node fails is retried (retries 3), on another node (redispatch); only connection failures
# are retried (HAProxy's default retry-on), since a request a node received may have been carried out.
listen registry
    bind 127.0.0.1:{self.http_port}
    mode http
    option httplog
    balance roundrobin
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 10s
    option redispatch 1
    retry-on conn-failure
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 1s fall 2 rise 1
    # no node ready (the database is failing over): the registry's own 503 shape, a FHIR OperationOutcome and
    # Retry-After, rather than HAProxy's HTML page
    http-error status 503 content-type "application/fhir+json" string "{self._no_node}" hdr Retry-After 2
{registries}
listen stats
    bind 127.0.0.1:{self.stats_port}
    mode http
    timeout client 10s
    timeout server 10s
    stats enable
    stats uri /stats
"""

    _no_node = (
        '{\\"resourceType\\":\\"OperationOutcome\\",\\"issue\\":[{\\"severity\\":\\"fatal\\",'
        '\\"code\\":\\"transient\\",\\"diagnostics\\":\\"no registry node is ready; retry later\\"}]}'
    )

    def start(self) -> None:
        self.config.write_text(self.config_text())
        check = subprocess.run(  # noqa: S603
            [self.argv()[0], "-c", "-q", "-f", str(self.config)], capture_output=True, text=True, check=False
        )
        if check.returncode != 0:
            raise RuntimeError(f"haproxy refused its configuration:\n{check.stdout}{check.stderr}")
        super().start()

    def argv(self) -> list[str]:
        return [shutil.which("haproxy") or "haproxy", "-db", "-f", str(self.config)]

    def ready(self) -> bool:
        r = _get(f"http://127.0.0.1:{self.stats_port}/stats;csv")
        return r is not None and r.status_code == 200

    def servers(self) -> dict[tuple[str, str], str]:
        """(frontend, server) -> status (UP, DOWN, …) from the stats page."""
        r = _get(f"http://127.0.0.1:{self.stats_port}/stats;csv")
        if r is None:
            return {}
        states = {}
        for line in r.text.splitlines()[1:]:
            cells = line.split(",")
            if len(cells) > 17 and cells[1] not in ("FRONTEND", "BACKEND"):
                states[cells[0], cells[1]] = cells[17]
        return states


class RegistryNode(Service):
    """One registry: uvicorn, the app factory, one worker; its database is HAProxy's read-write frontend."""

    name = "registry"

    def __init__(self, directory: Path, index: int, port: int, env: dict[str, str]) -> None:
        self.name = f"registry-{index}"
        super().__init__(directory)
        self.index, self.port, self._env = index, port, env
        self.cwd = ROOT
        self.url = f"http://127.0.0.1:{port}"

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "uvicorn", "registry.app:create_app", "--factory", "--host", "127.0.0.1",
                "--port", str(self.port), "--workers", "1", "--log-level", "warning", "--no-access-log"]  # fmt: skip

    def env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        return keep | {"PYTHONPATH": str(ROOT)} | self._env

    def ready(self) -> bool:
        r = _get(f"{self.url}/readyz", timeout=3)
        return r is not None and r.status_code == 200


@dataclass
class Seed:
    """What the topology's region holds after ``seed``: hospital A pushes results, clinician dr-b at hospital B
    checks orders; their bearer tokens."""

    tokens: dict[str, str] = field(default_factory=dict)
    obs_system: str = "http://hosp-a.example/obs"
    mrn_system: str = "http://hosp-a.example/mrn"


def reap_abandoned(parent: Path | None = None) -> list[Path]:
    """Remove the directories of topologies whose harness died without tearing down (``kill -9``): its etcd, Patroni,
    HAProxy and registries die with it (PR_SET_PDEATHSIG), but each postmaster runs in a session of its own and stays.
    Kills only a postmaster whose command line names that directory's data dir; returns the directories removed."""
    removed = []
    for root in (parent or Path(tempfile.gettempdir())).glob("hr-topology-*"):
        try:
            owner = int((root / "harness.pid").read_text())
        except (OSError, ValueError):
            continue
        if Path(f"/proc/{owner}").exists():
            continue  # its harness still runs
        for data in root.glob("pg*/data"):
            try:
                pid = int((data / "postmaster.pid").read_text().split()[0])
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except (OSError, ValueError, IndexError):
                continue
            if str(data).encode() in cmdline:
                for victim in [pid, *_children(pid)]:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(victim, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)
        removed.append(root)
    return removed


class Topology:
    """etcd, two Patroni nodes, HAProxy and ``registries`` registry nodes, under one temporary directory.
    ``start`` brings them up in order (each waited for), ``close`` takes everything down and removes the directory;
    as a context manager, ``close`` runs whatever happened in between."""

    def __init__(self, registries: int = 2, *, keep: bool = False) -> None:
        reap_abandoned()
        self.root = Path(tempfile.mkdtemp(prefix="hr-topology-"))
        self.root.chmod(0o755)  # the postgres user walks into its nodes' directories
        (self.root / "harness.pid").write_text(str(os.getpid()))
        self.keep = keep
        ports = free_ports(10 + registries)
        self.etcd = Etcd(self.root / "etcd", ports[0], ports[1])
        self.pg = [
            PatroniNode(self.root / f"pg{i}", f"pg{i}", ports[2 + 2 * i], ports[3 + 2 * i], self.etcd.url)
            for i in range(2)
        ]
        registry_ports = ports[10:]
        self.haproxy = HAProxy(self.root / "haproxy", rw_port=ports[6], ro_port=ports[7], http_port=ports[8],
                               stats_port=ports[9], pg_nodes=self.pg, registry_ports=registry_ports)  # fmt: skip
        self.var = self.root / "var"  # shared by every registry node: the signing key and identity secret
        self.database_url = f"postgresql+psycopg://postgres@127.0.0.1:{self.haproxy.rw_port}/registry"
        self.standby_url = f"postgresql+psycopg://postgres@127.0.0.1:{self.haproxy.ro_port}/registry"
        self.balancer = self.haproxy.url
        env = {
            "REGISTRY_VAR_DIR": str(self.var),
            "REGISTRY_DATABASE_URL": self.database_url,
            "REGISTRY_PUBLIC_BASE_URL": self.balancer,
            "REGISTRY_AUTO_MIGRATE": "false",  # migrated once by ``seed``, not raced by N nodes
            "REGISTRY_RATE_LIMIT_PER_SECOND": "0",
        }
        self.registries = [RegistryNode(self.root / f"registry-{i}", i, p, env) for i, p in enumerate(registry_ports)]
        self.seed_data = Seed()

    # ---------------------------------------------------------------- up and down
    def __enter__(self) -> Topology:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def start(self) -> None:
        self.etcd.start()
        self.etcd.wait_ready(30)
        self.pg[0].start()
        self.wait_for_leader(timeout=90)
        self.pg[1].start()
        self.wait_for_sync_standby(timeout=90)
        self.haproxy.start()
        self.haproxy.wait_ready(15)
        self.wait_for_routes(timeout=30)
        self.wait_for_writes(timeout=30)
        self.create_database()
        self.seed()
        for node in self.registries:
            node.start()
        for node in self.registries:
            node.wait_ready(90)
        self.wait_for_balancer(timeout=30)

    def close(self) -> None:
        """Stop everything (newest first), kill what does not stop, remove the directory. Never raises."""
        for service in [*self.registries, self.haproxy, *self.pg, self.etcd]:
            try:
                service.stop()
            except Exception as exc:  # keep going: everything else must still go down
                print(f"topology: stopping {service.name} failed: {exc}", file=sys.stderr)
                with contextlib.suppress(Exception):
                    service.kill()
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    # ---------------------------------------------------------------- the database and the region
    def create_database(self) -> None:
        import psycopg

        raw = f"postgresql://postgres@127.0.0.1:{self.haproxy.rw_port}/postgres"
        with psycopg.connect(raw, autocommit=True, connect_timeout=5) as conn:
            conn.execute('CREATE DATABASE "registry"')

    def seed(self) -> Seed:
        """Migrate the database (once, before any node starts), create the keys the nodes will share, and a small
        region: hospitals A and B (both qualified for every item group in Beijing), A's system client, B's
        clinician; their tokens."""
        from registry.app import build_context
        from registry.auth import PrincipalKind
        from registry.services.audit import AuditContext
        from registry.services.demo import REGION_EXT
        from registry.settings import Settings

        settings = Settings(var_dir=self.var, database_url=self.database_url, public_base_url=self.balancer,
                            rate_limit_per_second=0, auto_migrate=True)  # fmt: skip
        ctx = build_context(settings)
        try:
            admin = ctx.principals.add(PrincipalKind.ADMIN, "topology-admin", "admin").principal
            audit = AuditContext("topology", admin, "update")
            for org in ("hosp-a", "hosp-b"):
                body = {"resourceType": "Organization", "id": org, "name": org,
                        "extension": [{"url": REGION_EXT, "valueCode": REGION_EXT_REGION}]}  # fmt: skip
                ctx.ingest.update(admin, audit, "Organization", org, json.dumps(body), None)
                ctx.namespaces.declare(admin, org, [f"http://{org}.example/*"])
                for group in ctx.catalog.groups:
                    ctx.administration.add(
                        admin, {"org": org, "group": group, "scope": REGION_EXT_REGION, "valid_from": "2020-01-01"}
                    )
            hosp = ctx.principals.add(PrincipalKind.HOSPITAL, "hosp-a-system", "A", org_id="hosp-a").principal
            hosp_b = ctx.principals.add(PrincipalKind.HOSPITAL, "hosp-b-system", "B", org_id="hosp-b").principal
            doctor = ctx.principals.add(PrincipalKind.CLINICIAN, "dr-b", "dr", org_id="hosp-b").principal
            self.seed_data.tokens = {
                "hosp-a-system": ctx.principals.token(hosp, ttl_seconds=86_400).access_token,
                "hosp-b-system": ctx.principals.token(hosp_b, ttl_seconds=86_400).access_token,
                "dr-b": ctx.principals.token(doctor, ttl_seconds=86_400).access_token,
            }
        finally:
            ctx.engine.dispose()
        return self.seed_data

    # ---------------------------------------------------------------- who leads, waiting for it
    def cluster(self) -> dict[str, Any]:
        """Patroni's ``GET /cluster`` from the first member that answers (``{}`` when none does)."""
        for node in self.pg:
            r = _get(f"{node.rest}/cluster")
            if r is not None and r.status_code == 200:
                return dict(r.json())
        return {}

    def leader(self) -> PatroniNode | None:
        """The member ``/cluster`` names leader (and whose postgres runs), or None."""
        for member in self.cluster().get("members", []):
            if member.get("role") == "leader" and member.get("state") == "running":
                return next(n for n in self.pg if n.member == member["name"])
        return None

    def wait_for_leader(self, *, other_than: str | None = None, timeout: float = 60) -> PatroniNode:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            node = self.leader()
            if node is not None and node.member != other_than and node.role() == "primary":
                return node
            time.sleep(0.2)
        raise RuntimeError(f"no leader (other than {other_than}) within {timeout:.0f} s: {self.cluster()}\n"
                           + "\n".join(n.tail(15) for n in self.pg))  # fmt: skip

    def wait_for_sync_standby(self, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for member in self.cluster().get("members", []):
                if member.get("role") == "sync_standby" and member.get("state") in ("running", "streaming"):
                    return str(member["name"])
            time.sleep(0.3)
        raise RuntimeError(f"no synchronous standby within {timeout:.0f} s: {self.cluster()}\n"
                           + "\n".join(n.tail(15) for n in self.pg))  # fmt: skip

    def wait_for_routes(self, timeout: float = 30) -> None:
        """Until HAProxy has checked every PostgreSQL member: the leader alone UP behind ``pg_rw``, the others behind
        ``pg_ro`` (HAProxy starts with every server UP, before its first check)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            leader = self.leader()
            states = self.haproxy.servers()
            if leader is not None and all(
                states.get(("pg_rw", n.member)) == ("UP" if n is leader else "DOWN")
                and states.get(("pg_ro", n.member)) == ("DOWN" if n is leader else "UP")
                for n in self.pg
                if n.alive
            ):
                return
            time.sleep(0.2)
        raise RuntimeError(f"HAProxy did not route to the leader alone: {self.haproxy.servers()}")

    def wait_for_writes(self, timeout: float = 60) -> float:
        """Seconds until a write through HAProxy's read-write frontend commits (raises past ``timeout``)."""
        import psycopg

        raw = f"postgresql://postgres@127.0.0.1:{self.haproxy.rw_port}/postgres"
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            with contextlib.suppress(psycopg.Error), psycopg.connect(raw, autocommit=True, connect_timeout=2) as conn:
                conn.execute("CREATE TEMP TABLE probe (x int)")
                return time.monotonic() - started
            time.sleep(0.2)
        raise RuntimeError(f"no write through the balancer within {timeout:.0f} s")

    def wait_for_balancer(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            up = [s for (fe, _), s in self.haproxy.servers().items() if fe == "registry" and s == "UP"]
            if len(up) == sum(n.alive for n in self.registries):
                return
            time.sleep(0.2)
        raise RuntimeError(f"the balancer did not see every registry node up: {self.haproxy.servers()}")

    # ---------------------------------------------------------------- failures
    def kill_registry(self, index: int) -> None:
        """``kill -9`` one registry node."""
        self.registries[index].kill()

    def kill_primary(self) -> PatroniNode:
        """The current primary's machine dies: its Patroni and every postgres process, ``kill -9``."""
        node = self.leader()
        if node is None:
            raise RuntimeError(f"no primary to kill: {self.cluster()}")
        node.kill()
        return node

    def time_until_writes(self, write: Callable[[], bool], timeout: float = 60, pause: float = 0.1) -> float:
        """Seconds until ``write()`` (one attempt: True when it was acknowledged) succeeds, trying every ``pause``."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if write():
                return time.monotonic() - started
            time.sleep(pause)
        raise RuntimeError(f"writes did not resume within {timeout:.0f} s")

    def describe(self) -> str:
        lines = [
            f"registry (balancer)   {self.balancer}   FHIR base {self.balancer}/fhir",
            *(f"registry node {n.index}       {n.url}" for n in self.registries),
            f"PostgreSQL read-write {self.database_url}",
            f"PostgreSQL read-only  {self.standby_url}",
            *(f"Patroni {n.member}            {n.rest}  (postgres 127.0.0.1:{n.pg_port})" for n in self.pg),
            f"etcd                  {self.etcd.url}",
            f"HAProxy stats         http://127.0.0.1:{self.haproxy.stats_port}/stats",
            f"files                 {self.root}",
        ]
        lines += [f"token {who:14s}  {token}" for who, token in self.seed_data.tokens.items()]
        return "\n".join(lines)


@contextlib.contextmanager
def running(registries: int = 2) -> Iterator[Topology]:
    with Topology(registries) as topo:
        yield topo


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the topology, print its URLs, stay up until Ctrl-C")
    up.add_argument("--registries", type=int, default=2, help="registry nodes behind the balancer")
    up.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, data) afterwards")
    args = ap.parse_args(argv)
    why = missing()
    if why:
        print(f"cannot start: {why}", file=sys.stderr)
        return 2

    def interrupted(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)  # also where the shell started this with SIGINT ignored (``cmd &``)
    topo = Topology(args.registries, keep=args.keep)
    try:
        print("starting etcd, Patroni × 2, HAProxy, registries …", flush=True)
        topo.start()
        print(topo.describe(), flush=True)
        print("up; Ctrl-C stops everything", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("\nstopping …", flush=True)
    finally:
        topo.close()
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
