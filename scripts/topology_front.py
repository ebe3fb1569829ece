"""The front of the loopback topology (scripts/topology.py): HAProxy (PostgreSQL read-write and read-only frontends
checking Patroni's REST API, and the registry nodes' HTTP frontend) and the registry nodes themselves."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import httpx

from scripts.topology_processes import ROOT, PatroniNode, Service, get_quietly


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
        r = get_quietly(f"http://127.0.0.1:{self.stats_port}/stats;csv")
        return r is not None and r.status_code == 200

    def servers(self) -> dict[tuple[str, str], str]:
        """(frontend, server) -> status (UP, DOWN, …) from the stats page."""
        r = get_quietly(f"http://127.0.0.1:{self.stats_port}/stats;csv")
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
        self.extra_env: dict[str, str] = {}  # added on the next start (Topology.restart_registries)
        self.cwd = ROOT
        self.url = f"http://127.0.0.1:{port}"

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "uvicorn", "registry.app:create_app", "--factory", "--host", "127.0.0.1",
                "--port", str(self.port), "--workers", "1", "--log-level", "warning", "--no-access-log"]  # fmt: skip

    def env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        return keep | {"PYTHONPATH": str(ROOT)} | self._env | self.extra_env

    def ready(self) -> bool:
        r = get_quietly(f"{self.url}/readyz", timeout=3)
        return r is not None and r.status_code == 200


def replica_reads(nodes: list[RegistryNode], admin_token: str) -> dict[str, float]:
    """``hr_replica_reads_total`` summed over the registry nodes that answer (registry.metrics), by where the reads
    ran: ``standby`` or ``primary``."""
    total = {"standby": 0.0, "primary": 0.0}
    for node in nodes:
        try:
            text = httpx.get(f"{node.url}/metrics", headers={"Authorization": f"Bearer {admin_token}"}, timeout=5).text
        except httpx.HTTPError:
            continue  # a stopped node
        for where, n in re.findall(r'^hr_replica_reads_total\{on="(\w+)"\} ([0-9.e+]+)$', text, re.M):
            total[where] += float(n)
    return total
