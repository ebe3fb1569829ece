#!/usr/bin/env python3
"""Order-check benchmark (not a test): CDS Hooks ``order-sign`` with 5 draft orders against a PostgreSQL result
index of 1M results for 100k patients, side by side with the bare SQL index lookup that answers the same question.

    .venv/bin/python scripts/bench_check.py --results 1000000 --patients 100000 --write-docs

The index is loaded directly (COPY) with synthetic rows — ingesting a million results through the API is the other
benchmark's business. Latency is measured from one client (sequential), throughput with --clients concurrent ones.
"""

from __future__ import annotations

import argparse
import http.client
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from catalog import Kind  # noqa: E402
from registry.app import build_context  # noqa: E402
from registry.auth import PrincipalKind  # noqa: E402
from registry.fhir.extract import to_us  # noqa: E402
from registry.services.audit import AuditContext  # noqa: E402
from registry.services.demo import REGION_EXT  # noqa: E402
from registry.settings import Settings  # noqa: E402
from scripts.bench_common import create_database, finish, machine, national_id, percentile, record, start_registry  # noqa: E402
from scripts.bench_cpu import peak_rss_mib, profiled, top_entries, tree_cpu_seconds  # noqa: E402
from scripts.bench_load import http_load, http_load_paths, pgbench  # noqa: E402
from scripts.pg_cluster import PgCluster  # noqa: E402

NATIONAL = "https://hr-registry.org.cn/fhir/sid/cn-resident-id"
ORGS = ["hosp-a", "hosp-b", "hosp-c", "hosp-d"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=int, default=1_000_000)
    ap.add_argument("--patients", type=int, default=100_000)
    ap.add_argument("--calls", type=int, default=2000, help="sequential order-sign calls for the latency")
    ap.add_argument("--clients", type=int, default=4, help="concurrent kept-alive clients for the throughput")
    ap.add_argument("--seconds", type=int, default=20, help="throughput run length (each side)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--port", type=int, default=18490, help="the registry's loopback port")
    ap.add_argument("--pg-port", type=int, default=18432, help="the port of the benchmark's own PostgreSQL cluster")
    ap.add_argument("--database", default="hr_bench_check", help="the database made for the run (dropped after)")
    ap.add_argument("--pg", default="", help="an existing PostgreSQL server URL instead of a cluster of its own")
    ap.add_argument("--profile", type=Path, help="py-spy's collapsed stacks of the registry during the latency run")
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    with ExitStack() as stack:
        if args.pg:
            server_url, described = args.pg, "the given server"
        else:
            cluster = stack.enter_context(PgCluster.running(database="postgres_bench", port=args.pg_port))
            server_url, described = cluster.server_url, f"its own cluster ({cluster.describe()})"
        return run(args, server_url, described)
    return 1


def load_index(
    raw_url: str, args: argparse.Namespace, keys: list[str], items: list[str], now: datetime
) -> dict[int, list[str]]:
    """COPY the synthetic index: ``--results`` Observations with their index rows, one local identity per patient at
    hosp-b (the calling hospital's care context); the items each patient holds."""
    rng = random.Random(5)
    held: dict[int, list[str]] = {}
    with psycopg.connect(raw_url) as pg:
        with pg.cursor() as cur:
            cur.execute("select max(pk) from resource")
            first_pk = (cur.fetchone() or [0])[0] or 0
            with cur.copy(
                "COPY resource (pk, type, id, version, last_updated, last_updated_us, deleted, "
                "patient_key, org_id, content_hash, body) FROM STDIN"
            ) as copy:
                for n in range(args.results):
                    copy.write_row([first_pk + 1 + n, "Observation", f"b{n}", 1, now, to_us(now), False,
                                    keys[n % args.patients], ORGS[n % 3], "-", b"{}"])  # fmt: skip
                for n in range(args.patients):
                    copy.write_row([first_pk + args.results + 1 + n, "Patient", f"pb{n}", 1, now, to_us(now),
                                    False, keys[n], "hosp-b", "-", b"{}"])  # fmt: skip
            with cur.copy(
                "COPY result_index (patient_key, item_id, effective_us, org_id, status, hr_mark, "
                "res_type, res_id, res_pk, value_text) FROM STDIN"
            ) as copy:
                for n in range(args.results):
                    effective = now - timedelta(hours=rng.randrange(1, 24 * 120))
                    item = rng.choice(items)
                    held.setdefault(n % args.patients, []).append(item)
                    copy.write_row([keys[n % args.patients], item, to_us(effective), ORGS[n % 3], "final", "HR",
                                    "Observation", f"b{n}", first_pk + 1 + n, "5.0 mmol/L"])  # fmt: skip
            cur.execute("select setval(pg_get_serial_sequence('resource', 'pk'), (select max(pk) from resource))")
            # the keys by number, for pgbench's baseline
            cur.execute("CREATE TABLE bench_keys (n integer PRIMARY KEY, key text NOT NULL)")
            with cur.copy("COPY bench_keys (n, key) FROM STDIN") as copy:
                for n, key in enumerate(keys):
                    copy.write_row([n, key])
        pg.commit()
        pg.autocommit = True
        pg.execute("VACUUM ANALYZE")
    return held


def order_sign_body(patient: int, codes: list[str]) -> bytes:
    orders = [
        {
            "resource": {
                "resourceType": "ServiceRequest", "id": f"d{k}", "status": "draft", "intent": "order",
                "subject": {"reference": "Patient/ehr"},
                "code": {"coding": [{"system": "https://hr-registry.org.cn/fhir/CodeSystem/recognized-items",
                                     "code": c}]},
            }
        }
        for k, c in enumerate(codes)
    ]  # fmt: skip
    return orjson.dumps({
        "hook": "order-sign", "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/p", "patientId": "ehr",
                    "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": orders}},
        "prefetch": {"patient": {"resourceType": "Patient",
                                 "identifier": [{"system": NATIONAL, "value": national_id(patient)}]}},
    })  # fmt: skip


def sequential(port: int, bodies: list[bytes], headers: dict[str, str]) -> tuple[list[float], int, float]:
    """One kept-alive client, each call after the last: latencies (ms), cards, client CPU ms per call."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for body in bodies[:50]:  # warm up
        conn.request("POST", "/cds-services/hr-order-sign", body=body, headers=headers)
        conn.getresponse().read()
    latencies: list[float] = []
    cards = 0
    cpu = time.process_time()
    for body in bodies:
        t = time.perf_counter()
        conn.request("POST", "/cds-services/hr-order-sign", body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        latencies.append((time.perf_counter() - t) * 1000)
        if response.status != 200:
            raise RuntimeError(data.decode())
        cards += len(orjson.loads(data)["cards"])
    conn.close()
    return latencies, cards, (time.process_time() - cpu) / len(bodies) * 1000


def livez_latencies(port: int, calls: int) -> list[float]:
    """One kept-alive client asking ``GET /livez`` (no token, no database): the HTTP stack's own latency (ms)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    latencies: list[float] = []
    for n in range(calls + 50):
        t = time.perf_counter()
        conn.request("GET", "/livez")
        response = conn.getresponse()
        response.read()
        if n >= 50:  # after the warm-up
            latencies.append((time.perf_counter() - t) * 1000)
        if response.status != 200:
            raise RuntimeError(f"/livez answered {response.status}")
    conn.close()
    return latencies


def run(args: argparse.Namespace, server_url: str, described: str) -> int:
    db, url = create_database(server_url, args.database)
    var = Path(tempfile.mkdtemp(prefix="hr-bench-check-"))
    base = f"http://127.0.0.1:{args.port}"
    settings = Settings(var_dir=var, database_url=url, public_base_url=base, identity_secret="bench",
                        rate_limit_per_second=0, token_ttl_seconds=86_400)  # fmt: skip
    server = None
    try:
        ctx = build_context(settings)
        admin = ctx.principals.add(PrincipalKind.ADMIN, "bench-admin", "bench").principal
        audit = AuditContext("bench", admin, "update")
        for org in ORGS:
            body = {"resourceType": "Organization", "id": org, "name": org,
                    "extension": [{"url": REGION_EXT, "valueCode": "beijing"}]}  # fmt: skip
            ctx.ingest.update(admin, audit, "Organization", org, orjson.dumps(body).decode(), None)
            for group in ctx.catalog.groups:
                ctx.administration.add(
                    admin, {"org": org, "group": group, "scope": "beijing", "valid_from": "2020-01-01"}
                )
        clinician = ctx.principals.add(PrincipalKind.CLINICIAN, "bench-dr", "dr", org_id="hosp-b").principal
        token = ctx.principals.token(clinician, ttl_seconds=86_400).access_token
        keys = [ctx.identity.master_key(NATIONAL, national_id(n)) for n in range(args.patients)]
        items = [i.id for i in ctx.catalog.items if not i.is_panel]
        lab = [i.id for i in ctx.catalog.of_kind(Kind.LAB) if not i.is_panel]
        since = to_us(datetime.now(UTC) - timedelta(days=max(i.validity.days for i in ctx.catalog.items) + 1))
        ctx.engine.dispose()

        print(f"loading {args.results} index rows for {args.patients} patients …", flush=True)
        now = datetime.now(UTC)
        raw_url = url.replace("postgresql+psycopg://", "postgresql://")
        started = time.perf_counter()
        held = load_index(raw_url, args, keys, items, now)
        load_seconds = time.perf_counter() - started
        print(f"  loaded in {load_seconds:.0f} s", flush=True)

        rng = random.Random(9)
        # Two of the five orders are items the patient already has a result for (so cards are built and their
        # details fetched), three are random lab items.
        cases = []
        for _ in range(args.calls):
            patient = rng.randrange(args.patients)
            mine = sorted(set(held.get(patient, [])))
            chosen = rng.sample(mine, min(2, len(mine)))
            chosen += rng.sample([i for i in lab if i not in chosen], 5 - len(chosen))
            cases.append((patient, chosen))
        bodies = [order_sign_body(p, c) for p, c in cases]

        # ------------------------------------------------------------ bare SQL, one client: the same question
        bare_ms: list[float] = []
        with psycopg.connect(raw_url, prepare_threshold=0) as pg:
            for patient, codes in cases:
                wanted = sorted(set(codes) | {p for c in codes for p in ctx.catalog.panels_containing(c)})
                t = time.perf_counter()
                pg.execute(BARE, (keys[patient], wanted, since)).fetchall()
                bare_ms.append((time.perf_counter() - t) * 1000)
        # the same lookup at the same concurrency, by pgbench (a patient drawn at random, five items)
        sample = sorted({c for _p, codes in cases[:1] for c in codes})
        script = (
            f"\\set n random(0, {args.patients - 1})\n"
            "SELECT r.* FROM result_index r WHERE r.patient_key = (SELECT key FROM bench_keys WHERE n = :n) "
            f"AND r.item_id = ANY('{{{','.join(sample)}}}'::text[]) AND r.effective_us >= {since} "
            "ORDER BY r.effective_us DESC;\n"
        )
        bare_load = pgbench(url, script, clients=args.clients, seconds=min(10, args.seconds), variables={})

        # ------------------------------------------------------------ order-sign through the registry
        server = start_registry(var=var, database_url=url, port=args.port, workers=args.workers)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        pg_pid = postmaster_pid(raw_url)
        cpu_before = (tree_cpu_seconds(server.pid), tree_cpu_seconds(pg_pid) if pg_pid else 0.0)
        with profiled(server.pid, args.profile):
            cds_ms, cards, client_cpu = sequential(args.port, bodies, headers)
        registry_cpu = (tree_cpu_seconds(server.pid) - cpu_before[0]) / len(bodies) * 1000
        pg_cpu = ((tree_cpu_seconds(pg_pid) - cpu_before[1]) / len(bodies) * 1000) if pg_pid else float("nan")
        profile = top_entries(args.profile) if args.profile and args.profile.exists() else []
        for name, anywhere, on_top in profile:
            print(f"  {on_top * 100:5.1f} % own  {anywhere * 100:5.1f} % on the stack  {name}")
        load = http_load(f"{base}/cds-services/hr-order-sign", bodies, headers, clients=args.clients,
                         seconds=args.seconds)  # fmt: skip
        # the floor of the HTTP stack alone: the same server, middleware and routing, no token and no database
        floor_one = livez_latencies(args.port, len(bodies))
        floor = http_load_paths(base, ["/livez"], {}, clients=args.clients, seconds=min(10, args.seconds))
        results = {
            "cds_p50_ms": statistics.median(cds_ms),
            "cds_p99_ms": percentile(cds_ms, 0.99),
            "bare_p50_ms": statistics.median(bare_ms),
            "bare_p99_ms": percentile(bare_ms, 0.99),
            "client_cpu_ms": client_cpu,
            "registry_cpu_ms": registry_cpu,
            "pg_cpu_ms": pg_cpu,
            "throughput": load["calls_per_s"],
            "loaded_p50_ms": load["p50_ms"],
            "loaded_p99_ms": load["p99_ms"],
            "errors": load["errors"],
            "load_client_cpu_ms": load["client_cpu_ms"],
            "bare_throughput": bare_load["calls_per_s"],
            "bare_client_cpu_ms": bare_load["client_cpu_ms"],
            "cards_per_call": cards / len(cases),
            "load_seconds": load_seconds,
            "floor_p50_ms": statistics.median(floor_one),
            "floor_throughput": floor["calls_per_s"],
            "registry_peak_rss_mib": peak_rss_mib(server.pid),
        }
        results["ratio_p50"] = results["cds_p50_ms"] / results["bare_p50_ms"]
        results["ratio_p99"] = results["cds_p99_ms"] / results["bare_p99_ms"]
        results["ratio_throughput"] = results["throughput"] / results["bare_throughput"]
        for k, v in results.items():
            print(f"{k}: {v:.2f}")
        if args.write_docs:
            write_docs(args, results, described, "wrk" if load["tool"] == 0 else "keep-alive client processes", profile)
    finally:
        finish(server, server_url, db)
        shutil.rmtree(var, ignore_errors=True)
    return 0


def postmaster_pid(raw_url: str) -> int | None:
    """The PostgreSQL server's process (its backends are its children), when it runs on this machine."""
    try:
        with psycopg.connect(raw_url) as pg:
            row = pg.execute("SELECT current_setting('data_directory')").fetchone()
        return int((Path(row[0]) / "postmaster.pid").read_text().split()[0]) if row else None
    except (OSError, ValueError, psycopg.Error):
        return None


BARE = (
    "SELECT * FROM result_index WHERE patient_key = %s AND item_id = ANY(%s) "
    "AND effective_us >= %s ORDER BY effective_us DESC"
)


def write_docs(
    args: argparse.Namespace, r: dict[str, float], described: str, tool: str, profile: list[tuple[str, float, float]]
) -> None:
    section = "## Order check: CDS Hooks order-sign vs the bare index lookup (scripts/bench_check.py)"
    command = (
        f".venv/bin/python scripts/bench_check.py --results {args.results} --patients {args.patients} "
        f"--calls {args.calls} --clients {args.clients} --seconds {args.seconds} --workers {args.workers} --write-docs"
    )
    body = (
        f"\n### {time.strftime('%Y-%m-%d %H:%M')} UTC — {args.results:,} indexed results, {args.patients:,} patients, "
        "5 draft orders per call\n\n"
        f"- machine: {machine()}\n- command: `{command}`\n- PostgreSQL: {described}\n"
        f"- index loaded (COPY, then VACUUM ANALYZE) in {r['load_seconds']:.0f} s\n\n"
        "| figure | order-sign (HTTP, full service) | bare SQL lookup | ratio | aim |\n|---|---|---|---|---|\n"
        f"| p50, one client | {r['cds_p50_ms']:.2f} ms | {r['bare_p50_ms']:.2f} ms | {r['ratio_p50']:.1f}× "
        "| ≤ 1.5 ms |\n"
        f"| p99, one client | {r['cds_p99_ms']:.2f} ms | {r['bare_p99_ms']:.2f} ms | {r['ratio_p99']:.1f}× | ≤ 4 ms |\n"
        f"| throughput, {args.clients} kept-alive clients ({tool}; pgbench for the bare side) | "
        f"{r['throughput']:.0f} calls/s (p50 {r['loaded_p50_ms']:.1f} ms, p99 {r['loaded_p99_ms']:.1f} ms, "
        f"{r['errors']:.0f} errors) | {r['bare_throughput']:.0f} calls/s | {r['ratio_throughput']:.3f} | "
        "≥ 1,500 calls/s |\n"
        f"| the load generator's CPU per call | {r['load_client_cpu_ms']:.3f} ms (one client: "
        f"{r['client_cpu_ms']:.3f} ms) | {r['bare_client_cpu_ms']:.3f} ms | | |\n"
        f"| CPU per call, one client: the registry's workers / PostgreSQL's backends | {r['registry_cpu_ms']:.2f} ms / "
        f"{r['pg_cpu_ms']:.2f} ms | | | |\n"
        f"| the HTTP stack alone: `GET /livez` on the same server (no token, no database), p50 one client / "
        f"{args.clients} clients' throughput | {r['cds_p50_ms']:.2f} ms / {r['throughput']:.0f} calls/s | "
        f"{r['floor_p50_ms']:.2f} ms / {r['floor_throughput']:.0f} calls/s | "
        f"{r['throughput'] / r['floor_throughput']:.2f} of the floor's throughput | |\n"
        f"| the largest registry process's peak RSS (`VmHWM`) over the run | "
        f"{r['registry_peak_rss_mib']:.0f} MiB | | | ≤ 300 MB |\n\n"
        f"Two of the five orders per call are items the patient has an indexed result for; "
        f"{r['cards_per_call']:.2f} cards per call on average. The order-sign figure is end to end: HTTP, token, "
        "patient key, code maps, the index query, qualifications, the rule, the cards, and a committed write of the "
        "check log, cards and audit rows; the bare lookup is one prepared query on an open connection "
        f"(registry: {args.workers} uvicorn workers; the registry, PostgreSQL and the load generator share the "
        "cores).\n"
    )
    if profile:
        body += (
            "\nWhere the registry's time goes during the one-client run (py-spy, the workers' samples; idle waits left "
            "out):\n\n| function | own | on the stack |\n|---|---|---|\n"
            + "".join(f"| `{name}` | {own * 100:.1f} % | {anywhere * 100:.1f} % |\n" for name, anywhere, own in profile)
        )
    record(section, body)


if __name__ == "__main__":
    raise SystemExit(main())
