#!/usr/bin/env python3
"""Registry benchmark (not a test): ingest rate and search/read latency on PostgreSQL, each beside a baseline.

Starts the registry (uvicorn, --workers N) on a fresh database of a PostgreSQL cluster of its own (or --pg), pushes
transaction Bundles — each report a DiagnosticReport with 5 Observations, patients created on their first report —
once each from --clients kept-alive client processes, then measures ``DiagnosticReport?patient.identifier=<national
id>`` and ``DiagnosticReport/<id>`` latency with one client and with --search-clients concurrent ones.

Baselines from the same run: PostgreSQL ``COPY … FROM STDIN`` of exactly the rows the ingest stored (every table it
wrote into, into empty copies with the same indexes), and fhir.resources validation alone of the same resources.

    .venv/bin/python scripts/bench_registry.py --reports 20000 --patients 5000 --write-docs

Figures go to docs/benchmarks.md with the machine, the command and the PostgreSQL settings when --write-docs is given.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.bench_baselines import copy_baseline, snapshot, stored_rows, validation_seconds  # noqa: E402
from scripts.bench_bundles import BASE, NATIONAL, bundles  # noqa: E402
from scripts.bench_common import create_database, finish, national_id, percentile, start_registry  # noqa: E402
from scripts.bench_cpu import cpu_split, peak_rss_mib, profiled, top_entries  # noqa: E402
from scripts.bench_load import http_load_paths, http_push, wrk_binary  # noqa: E402
from scripts.bench_portal import PORTAL, portal_session  # noqa: E402
from scripts.bench_registry_docs import write_docs  # noqa: E402
from scripts.pg_cluster import PgCluster  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reports", type=int, default=100_000)
    ap.add_argument("--patients", type=int, default=10_000)
    ap.add_argument("--per-bundle", type=int, default=20, help="reports per transaction Bundle")
    ap.add_argument("--clients", type=int, default=8, help="kept-alive client processes pushing the Bundles")
    ap.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    ap.add_argument("--queries", type=int, default=2000, help="sequential searches (and as many reads), one client")
    ap.add_argument("--search-clients", type=int, default=4, help="concurrent kept-alive clients for the loaded run")
    ap.add_argument("--seconds", type=int, default=10, help="length of each fixed-concurrency search/read run")
    ap.add_argument("--port", type=int, default=18470, help="the registry's loopback port")
    ap.add_argument("--pg-port", type=int, default=18433, help="the port of the benchmark's own PostgreSQL cluster")
    ap.add_argument("--database", default="hr_bench_registry", help="name prefix of the run's database (dropped after)")
    ap.add_argument("--pg", default="", help="an existing PostgreSQL server URL instead of a cluster of its own")
    ap.add_argument("--profile", type=Path, help="py-spy's collapsed stacks of the registry during the ingest")
    ap.add_argument("--write-docs", action="store_true", help="record the figures in docs/benchmarks.md")
    args = ap.parse_args()
    if args.patients < 2 * args.clients * args.per_bundle:
        # A patient's later reports name it by a conditional reference to the Patient its first report created: the
        # Bundles creating the patients must be in before the ones naming them are sent.
        ap.error("--patients must be at least 2 × --clients × --per-bundle (a Patient is created before it is named)")
    with ExitStack() as stack:
        if args.pg:
            server_url, described, pg_pid = args.pg, "the given server", None
        else:
            cluster = stack.enter_context(PgCluster.running(database="postgres_bench", port=args.pg_port))
            server_url, described = cluster.server_url, f"its own cluster ({cluster.describe()})"
            pg_pid = int((cluster.data / "postmaster.pid").read_text().split()[0])
        return run(args, server_url, described, pg_pid)
    return 1


# ------------------------------------------------------------------------------------------------------------- latency


def sequential(port: int, paths: list[str], headers: dict[str, str]) -> tuple[list[float], list[bytes]]:
    """One kept-alive client, each GET after the last (50 warm-up calls first): latencies (ms) and answers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for path in paths[:50]:
        conn.request("GET", path, headers=headers)
        conn.getresponse().read()
    latencies: list[float] = []
    answers: list[bytes] = []
    for path in paths:
        t = time.perf_counter()
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        data = response.read()
        latencies.append((time.perf_counter() - t) * 1000)
        if response.status != 200:
            raise RuntimeError(f"GET {path}: {response.status} {data[:300]!r}")
        answers.append(data)
    conn.close()
    return latencies, answers


def worker_connections(port: int) -> str:
    """How the established connections to ``port`` are spread over the server's processes, e.g. ``"3+1"`` (a
    kept-alive connection stays with the uvicorn worker that accepted it); ``"?"`` without ``ss``."""
    if shutil.which("ss") is None:
        return "?"
    argv = ["ss", "-Htnp", "state", "established", f"( sport = :{port} )"]
    out = subprocess.run(argv, capture_output=True, text=True, check=False).stdout  # noqa: S603 - fixed argv
    owners = Counter(m.group(1) for line in out.splitlines() if (m := re.search(r"pid=(\d+)", line)))
    return "+".join(str(n) for n in sorted(owners.values(), reverse=True)) or "0"


def autovacuum_now(raw_url: str) -> str:
    """What autovacuum is doing right now in the run's database: ``"none"`` or its workers' commands."""
    with psycopg.connect(raw_url, autocommit=True) as pg:
        rows = pg.execute(
            "SELECT query FROM pg_stat_activity "
            "WHERE backend_type = 'autovacuum worker' AND datname = current_database()"
        ).fetchall()
    return "; ".join(r[0] for r in rows) or "none"


def later(seconds: float, fn: Any, out: list[Any]) -> threading.Timer:
    """``fn()``'s result appended to ``out`` ``seconds`` from now, on a timer thread (started)."""
    timer = threading.Timer(seconds, lambda: out.append(fn()))
    timer.daemon = True
    timer.start()
    return timer


def run(args: argparse.Namespace, server_url: str, described: str, pg_pid: int | None) -> int:
    # imported here, not at the top: the pushing clients are spawned processes that import this module, and need
    # none of the registry
    from registry.app import build_context
    from registry.auth import PrincipalKind
    from registry.services.audit import AuditContext
    from registry.settings import Settings

    db, url = create_database(server_url, args.database)
    raw_url = url.replace("postgresql+psycopg://", "postgresql://")
    var = Path(tempfile.mkdtemp(prefix="hr-bench-registry-"))
    base = f"http://127.0.0.1:{args.port}"
    settings = Settings(var_dir=var, database_url=url, public_base_url=base, identity_secret="bench",
                        rate_limit_per_second=0, max_bundle_entries=5000, token_ttl_seconds=86_400)  # fmt: skip
    server = None
    try:
        ctx = build_context(settings)
        admin = ctx.principals.add(PrincipalKind.ADMIN, "bench-admin", "bench").principal
        body = orjson.dumps({"resourceType": "Organization", "id": "hosp-a", "name": "A"}).decode()
        ctx.ingest.update(admin, AuditContext("bench", admin, "update"), "Organization", "hosp-a", body, None)
        ctx.namespaces.declare(admin, "hosp-a", [f"{BASE}/*"])
        hosp = ctx.principals.add(PrincipalKind.HOSPITAL, "hosp-a-system", "A", org_id="hosp-a").principal
        token = ctx.principals.token(hosp, ttl_seconds=86_400).access_token
        ctx.engine.dispose()

        t = time.perf_counter()
        bodies = list(bundles(args.reports, args.patients, args.per_bundle))
        reports = min(args.reports, max(1, args.reports // args.patients) * args.patients)
        print(f"{len(bodies)} Bundles of {args.per_bundle} reports ({reports} reports, "
              f"{sum(map(len, bodies)) / len(bodies) / 1024:.0f} KiB each) made in {time.perf_counter() - t:.1f} s",
              flush=True)  # fmt: skip

        # ------------------------------------------------------------ baseline: validation alone, one core
        valid_s, resources = validation_seconds(bodies)
        print(f"validation alone: {resources} resources in {valid_s:.1f} s = {reports / valid_s:.0f} reports/s",
              flush=True)  # fmt: skip

        # ------------------------------------------------------------ ingest through the registry
        before = snapshot(raw_url)
        server = start_registry(var=var, database_url=url, port=args.port, workers=args.workers,
                                extra_env={"REGISTRY_MAX_BUNDLE_ENTRIES": "5000"})  # fmt: skip
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
        with psycopg.connect(raw_url, autocommit=True) as pg:
            autovacuum = pg.execute("SELECT current_setting('autovacuum')").fetchone()[0]  # type: ignore[index]
        analyzed_at = [0]

        def progress(sent: int, seconds: float) -> None:
            done = sent * args.per_bundle
            print(f"  ingest: {done}/{reports} reports sent, {done / seconds:.0f}/s", flush=True)
            # Without autovacuum the planner has no statistics and picks scans over the search tables: analyze as
            # autovacuum would, whenever the data has grown by 10 % (autovacuum_analyze_scale_factor).
            if autovacuum == "off" and done >= max(500, analyzed_at[0] * 1.1):
                with psycopg.connect(raw_url, autocommit=True) as pg:
                    pg.execute("ANALYZE")
                analyzed_at[0] = done

        # the machine's CPU split into ours (registry, PostgreSQL unless --pg, this process and its load generators)
        # and everything else running meanwhile (the machine is shared)
        roots = [server.pid, os.getpid()] + ([pg_pid] if pg_pid else [])
        parts = {"registry": [server.pid]} | ({"postgres": [pg_pid]} if pg_pid else {})
        spread: list[str] = []
        with profiled(server.pid, args.profile), cpu_split(roots, parts) as ingest_cpu:
            push = http_push(f"{base}/fhir", bodies, headers, clients=args.clients, progress=progress,
                             on_start=lambda: spread.append(worker_connections(args.port)))  # fmt: skip
        load_after_ingest = os.getloadavg()[0]
        if push["errors"]:
            print(f"{push['errors']} failed Bundles, e.g. {push['first_error']}", file=sys.stderr)
            return 1
        ingest_rate = reports / push["seconds"]
        print(f"ingest: {reports} reports in {push['seconds']:.1f} s = {ingest_rate:.0f} reports/s "
              f"(Bundle p50 {push['p50_ms']:.0f} ms, p99 {push['p99_ms']:.0f} ms; connections per worker "
              f"{(spread or ['?'])[0]}; load average {load_after_ingest:.1f}; cores busy: ours "
              f"{ingest_cpu['ours']:.2f}, others {ingest_cpu['others']:.2f}, steal {ingest_cpu['steal']:.2f}; CPU per "
              f"report: registry {ingest_cpu['registry_cpu_s'] / reports * 1000:.2f} ms, PostgreSQL "
              f"{ingest_cpu.get('postgres_cpu_s', float('nan')) / reports * 1000:.2f} ms)", flush=True)  # fmt: skip
        profile = top_entries(args.profile) if args.profile and args.profile.exists() else []
        for name, anywhere, on_top in profile:
            print(f"  {on_top * 100:5.1f} % own  {anywhere * 100:5.1f} % on the stack  {name}")

        # ------------------------------------------------------------ baseline: COPY of the same rows
        stored = stored_rows(raw_url, before)
        del before
        rows = {t: n for t, (_c, _d, n) in stored.items()}
        size = sum(len(d) for _c, d, _n in stored.values())
        print(f"stored: {sum(rows.values())} rows ({size / 2**20:.0f} MiB as COPY text) in " + ", ".join(
            f"{t} {n}" for t, n in rows.items()), flush=True)  # fmt: skip
        copy_s = copy_baseline(raw_url, stored)
        del stored
        copy_rate = reports / copy_s
        print(f"COPY of the same rows: {copy_s:.1f} s = {copy_rate:.0f} reports/s", flush=True)

        with psycopg.connect(raw_url, autocommit=True) as pg:
            # what autovacuum would do after the load (the insert-triggered vacuum as well as the analyze), done now
            # rather than during the latency runs; and the load's dirty pages flushed, so that the latency runs
            # measure steady state, not a vacuum or a checkpoint
            pg.execute("VACUUM (ANALYZE)")
            pg.execute("CHECKPOINT")

        # ------------------------------------------------------------ search and read latency
        rng = random.Random(11)
        get_headers = {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}
        search_paths = [
            "/fhir/DiagnosticReport?"
            + urlencode({"patient.identifier": f"{NATIONAL}|{national_id(rng.randrange(min(args.patients, reports)))}"})
            for _ in range(args.queries)
        ]
        seq_search, answers = sequential(args.port, search_paths, get_headers)
        read_paths = []
        for path, answer in zip(search_paths, answers, strict=True):
            entries = orjson.loads(answer).get("entry", [])
            if not entries:
                raise RuntimeError(f"no reports found by {path}")
            read_paths.append(f"/fhir/DiagnosticReport/{rng.choice(entries)['resource']['id']}")
        seq_read, _ = sequential(args.port, read_paths, get_headers)
        portal_headers = portal_session(settings, base, NATIONAL, national_id(0))  # the first person's page
        portal_paths = [PORTAL] * args.queries
        seq_portal, _ = sequential(args.port, portal_paths, portal_headers)
        # Each figure from client processes timing every request as made (``processes``), and, where wrk is installed,
        # from wrk too: wrk's percentiles are corrected for coordinated omission (see http_load_paths), a different
        # figure from the same load, printed beside.
        loads: dict[tuple[str, int], dict[str, Any]] = {}
        corrected: dict[tuple[str, int], dict[str, float]] = {}
        kinds = (("search", search_paths, get_headers), ("read", read_paths, get_headers),
                 ("portal", portal_paths, portal_headers))  # fmt: skip
        for kind, paths, kind_headers in kinds:
            for clients in (1, args.search_clients):
                seen: list[str] = []
                later(min(2.0, args.seconds / 2), lambda: worker_connections(args.port), seen)
                vacuums: list[str] = []
                later(args.seconds / 2, lambda: autovacuum_now(raw_url), vacuums)
                with cpu_split(roots, parts) as busy:
                    load: dict[str, Any] = dict(http_load_paths(base, paths, kind_headers, clients=clients,
                                                                seconds=args.seconds, tool="processes"))  # fmt: skip
                load.update(busy, spread=(seen or ["?"])[0], autovacuum=(vacuums or ["?"])[0],
                            loadavg=os.getloadavg()[0])  # fmt: skip
                print(f"  {kind}, {clients} clients: p50 {load['p50_ms']:.1f} ms, p99 {load['p99_ms']:.1f} ms, "
                      f"mean {load['mean_ms']:.1f} ms, max {load['max_ms']:.0f} ms, {load['calls_per_s']:.0f} "
                      f"calls/s, client CPU {load['client_cpu_ms']:.3f} ms per call, connections per worker "
                      f"{load['spread']}, load average {load['loadavg']:.1f}, cores busy: ours {load['ours']:.2f}, "
                      f"others {load['others']:.2f}, steal {load['steal']:.2f}, autovacuum at half time: "
                      f"{load['autovacuum']}, CPU per call: registry "
                      f"{load['registry_cpu_s'] / max(1, load['calls']) * 1000:.2f} ms, PostgreSQL "
                      f"{load.get('postgres_cpu_s', float('nan')) / max(1, load['calls']) * 1000:.2f} ms",
                      flush=True)  # fmt: skip
                if load["errors"]:
                    print(f"{kind}, {clients} clients: {load['errors']:.0f} errors", file=sys.stderr)
                    return 1
                loads[kind, clients] = load
                if wrk_binary():
                    w = http_load_paths(base, paths, kind_headers, clients=clients, seconds=args.seconds, tool="wrk")
                    print(f"    wrk (corrected for coordinated omission): p50 {w['p50_ms']:.1f} ms, p99 "
                          f"{w['p99_ms']:.1f} ms, mean {w['mean_ms']:.1f} ms, max {w['max_ms']:.0f} ms, "
                          f"{w['calls_per_s']:.0f} calls/s, client CPU {w['client_cpu_ms']:.3f} ms per call",
                          flush=True)  # fmt: skip
                    if w["errors"]:
                        print(f"{kind}, {clients} clients, wrk: {w['errors']:.0f} errors", file=sys.stderr)
                        return 1
                    corrected[kind, clients] = w

        r: dict[str, float] = {
            "ingest_reports_per_s": ingest_rate,
            "copy_reports_per_s": copy_rate,
            "ratio_ingest_copy": ingest_rate / copy_rate,
            "validation_reports_per_s": reports / valid_s,
            "ratio_ingest_validation": ingest_rate * valid_s / reports,
            "ingest_seconds": push["seconds"],
            "copy_seconds": copy_s,
            "bundle_p50_ms": push["p50_ms"],
            "bundle_p99_ms": push["p99_ms"],
            "client_cpu_ms_per_report": push["client_cpu_s"] / reports * 1000,
            "client_processes_cpu_ms_per_report": push["children_cpu_s"] / reports * 1000,
            "stored_rows_per_report": sum(rows.values()) / reports,
            "loadavg_ingest": load_after_ingest,
            "ingest_cores_ours": ingest_cpu["ours"],
            "ingest_cores_others": ingest_cpu["others"],
            "ingest_cores_steal": ingest_cpu["steal"],
            "ingest_registry_cpu_ms": ingest_cpu["registry_cpu_s"] / reports * 1000,
            "ingest_postgres_cpu_ms": ingest_cpu.get("postgres_cpu_s", float("nan")) / reports * 1000,
        }
        notes = {"ingest": (spread or ["?"])[0]}
        for kind, seq in (("search", seq_search), ("read", seq_read), ("portal", seq_portal)):
            r[f"{kind}_seq_p50_ms"] = statistics.median(seq)
            r[f"{kind}_seq_p99_ms"] = percentile(seq, 0.99)
            for clients in (1, args.search_clients):
                load = loads[kind, clients]
                r[f"{kind}_{clients}c_p50_ms"] = load["p50_ms"]
                r[f"{kind}_{clients}c_p99_ms"] = load["p99_ms"]
                r[f"{kind}_{clients}c_calls_per_s"] = load["calls_per_s"]
                r[f"{kind}_{clients}c_client_cpu_ms"] = load["client_cpu_ms"]
                r[f"{kind}_{clients}c_loadavg"] = load["loadavg"]
                r[f"{kind}_{clients}c_cores_ours"] = load["ours"]
                r[f"{kind}_{clients}c_cores_others"] = load["others"]
                r[f"{kind}_{clients}c_cores_steal"] = load["steal"]
                r[f"{kind}_{clients}c_mean_ms"] = load["mean_ms"]
                r[f"{kind}_{clients}c_max_ms"] = load["max_ms"]
                r[f"{kind}_{clients}c_registry_cpu_ms"] = load["registry_cpu_s"] / max(1, load["calls"]) * 1000
                r[f"{kind}_{clients}c_postgres_cpu_ms"] = (
                    load.get("postgres_cpu_s", float("nan")) / max(1, load["calls"]) * 1000
                )
                if (kind, clients) in corrected:
                    w = corrected[kind, clients]
                    for name in ("p50_ms", "p99_ms", "mean_ms", "calls_per_s"):
                        r[f"{kind}_{clients}c_wrk_{name}"] = w[name]
                notes[f"{kind}_{clients}c"] = str(load["spread"])
                notes[f"{kind}_{clients}c_autovacuum"] = str(load["autovacuum"])
            r[f"{kind}_ratio_p99"] = r[f"{kind}_{args.search_clients}c_p99_ms"] / r[f"{kind}_1c_p99_ms"]
        r["registry_peak_rss_mib"] = peak_rss_mib(server.pid)
        for k, v in r.items():
            print(f"{k}: {v:.3f}" if v < 10 else f"{k}: {v:.1f}")
        print("connections per worker, autovacuum: " + ", ".join(f"{k} {v}" for k, v in notes.items()))
        if args.write_docs:
            write_docs(args, r, notes, rows, described, profile)
    finally:
        finish(server, server_url, db)
        shutil.rmtree(var, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
