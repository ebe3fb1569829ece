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
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.topology_front import HAProxy, RegistryNode
from scripts.topology_processes import (
    REGION_EXT_REGION,
    Etcd,
    PatroniNode,
    children_of,
    free_ports,
    get_quietly,
    missing,
)


@dataclass
class Seed:
    """What the topology's region holds after ``seed``: hospital A pushes results, clinician dr-b at hospital B
    checks orders; their bearer tokens."""

    tokens: dict[str, str] = field(default_factory=dict)
    adapter_secret: str = ""  # hosp-a-adapter's client secret: an hr-adapter's outbox delivers with it
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
                for victim in [pid, *children_of(pid)]:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(victim, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)
        removed.append(root)
    return removed


class Topology:
    """etcd, two Patroni nodes, HAProxy and ``registries`` registry nodes, under one temporary directory.
    ``start`` brings them up in order (each waited for), ``close`` takes everything down and removes the directory;
    as a context manager, ``close`` runs whatever happened in between."""

    def __init__(self, registries: int = 2, *, keep: bool = False, registry_env: dict[str, str] | None = None) -> None:
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
        } | (registry_env or {})
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

    def restart_registries(self, env: dict[str, str]) -> None:
        """Every registry node stopped, then started again with ``env`` added to its environment (e.g. replica reads
        on: ``REGISTRY_DATABASE_REPLICA_URL`` = :attr:`standby_url`); back once the balancer routes to them."""
        for node in self.registries:
            node.stop()
            node.extra_env = env
            node.start()
        for node in self.registries:
            node.wait_ready(90)
        self.wait_for_balancer(timeout=30)

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
                ctx.namespaces.declare(admin, org, [f"http://{org}.example/*", f"https://{org}.example.cn/*"])
                for group in ctx.catalog.groups:
                    ctx.administration.add(
                        admin, {"org": org, "group": group, "scope": REGION_EXT_REGION, "valid_from": "2020-01-01"}
                    )
            hosp = ctx.principals.add(PrincipalKind.HOSPITAL, "hosp-a-system", "A", org_id="hosp-a").principal
            hosp_b = ctx.principals.add(PrincipalKind.HOSPITAL, "hosp-b-system", "B", org_id="hosp-b").principal
            doctor = ctx.principals.add(PrincipalKind.CLINICIAN, "dr-b", "dr", org_id="hosp-b").principal
            adapter = ctx.principals.add(PrincipalKind.HOSPITAL, "hosp-a-adapter", "A's adapter", org_id="hosp-a")
            self.seed_data.adapter_secret = adapter.secret
            self.seed_data.tokens = {
                "hosp-a-system": ctx.principals.token(hosp, ttl_seconds=86_400).access_token,
                "hosp-b-system": ctx.principals.token(hosp_b, ttl_seconds=86_400).access_token,
                "dr-b": ctx.principals.token(doctor, ttl_seconds=86_400).access_token,
                "admin": ctx.principals.token(admin, ttl_seconds=86_400).access_token,
            }
        finally:
            ctx.engine.dispose()
        return self.seed_data

    # ---------------------------------------------------------------- who leads, waiting for it
    def cluster(self) -> dict[str, Any]:
        """Patroni's ``GET /cluster`` from the first member that answers (``{}`` when none does)."""
        for node in self.pg:
            r = get_quietly(f"{node.rest}/cluster")
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

    def rejoin(self, node: PatroniNode, timeout: float = 90) -> None:
        """The machine of a killed node comes back: Patroni rewinds its data directory to the new primary's timeline
        (pg_rewind) and it streams again, until it is the synchronous standby."""
        node.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.wait_for_sync_standby(timeout=max(1, deadline - time.monotonic())) == node.member:
                return
            time.sleep(0.5)
        raise RuntimeError(f"{node.member} did not rejoin within {timeout:.0f} s: {self.cluster()}\n{node.tail(30)}")

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
    raise SystemExit(main())
