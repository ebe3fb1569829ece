#!/usr/bin/env python3
"""Order-check benchmark (not a test): CDS Hooks ``order-sign`` with 5 draft orders against a PostgreSQL result
index of 1M results for 100k patients, side by side with the bare SQL index lookup that answers the same question.

    .venv/bin/python scripts/bench_check.py --results 1000000 --patients 100000 --write-docs

The index is loaded directly (COPY) with synthetic rows — ingesting a million results through the API is the other
benchmark's business. Latency is measured from one client (sequential), throughput with --clients concurrent ones.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
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

NATIONAL = "https://hr-registry.org.cn/fhir/sid/cn-resident-id"
ORGS = ["hosp-a", "hosp-b", "hosp-c", "hosp-d"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", type=int, default=1_000_000)
    ap.add_argument("--patients", type=int, default=100_000)
    ap.add_argument("--calls", type=int, default=2000, help="sequential order-sign calls for the latency")
    ap.add_argument("--clients", type=int, default=4, help="concurrent clients for the throughput")
    ap.add_argument("--seconds", type=int, default=20, help="throughput run length")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument(
        "--pg",
        default=os.environ.get("REGISTRY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"),
    )
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()

    db, url = create_database(args.pg, "hr_bench_check")
    var = Path(tempfile.mkdtemp(prefix="hr-bench-check-"))
    port = 19000 + os.getpid() % 1000
    base = f"http://127.0.0.1:{port}"
    settings = Settings(
        var_dir=var,
        database_url=url,
        public_base_url=base,
        identity_secret="bench",
        rate_limit_per_second=0,
        token_ttl_seconds=86_400,
    )
    server = None
    try:
        ctx = build_context(settings)
        admin = ctx.principals.add(PrincipalKind.ADMIN, "bench-admin", "bench").principal
        audit = AuditContext("bench", admin, "update")
        for org in ORGS:
            body = {
                "resourceType": "Organization",
                "id": org,
                "name": org,
                "extension": [{"url": REGION_EXT, "valueCode": "beijing"}],
            }
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
        ctx.engine.dispose()

        # ------------------------------------------------------------ load 1M index rows
        print(f"loading {args.results} index rows for {args.patients} patients …", flush=True)
        rng = random.Random(5)
        now = datetime.now(UTC)
        raw_url = url.replace("postgresql+psycopg://", "postgresql://")
        started = time.perf_counter()
        with psycopg.connect(raw_url) as pg:
            with pg.cursor() as cur:
                cur.execute("select max(pk) from resource")
                first_pk = (cur.fetchone() or [0])[0] or 0
                with cur.copy(
                    "COPY resource (pk, type, id, version, last_updated, last_updated_us, deleted, "
                    "patient_key, org_id, content_hash, body) FROM STDIN"
                ) as copy:
                    for n in range(args.results):
                        copy.write_row(
                            [
                                first_pk + 1 + n,
                                "Observation",
                                f"b{n}",
                                1,
                                now,
                                to_us(now),
                                False,
                                keys[n % args.patients],
                                ORGS[n % 3],
                                "-",
                                b"{}",
                            ]
                        )
                    # each patient has a local identity at hosp-b, the calling hospital (its care context)
                    for n in range(args.patients):
                        copy.write_row([first_pk + args.results + 1 + n, "Patient", f"pb{n}", 1, now, to_us(now),
                                        False, keys[n], "hosp-b", "-", b"{}"])  # fmt: skip
                held: dict[int, list[str]] = {}
                with cur.copy(
                    "COPY result_index (patient_key, item_id, effective_us, org_id, status, hr_mark, "
                    "res_type, res_id, res_pk, value_text) FROM STDIN"
                ) as copy:
                    for n in range(args.results):
                        effective = now - timedelta(hours=rng.randrange(1, 24 * 120))
                        item = rng.choice(items)
                        held.setdefault(n % args.patients, []).append(item)
                        copy.write_row(
                            [
                                keys[n % args.patients],
                                item,
                                to_us(effective),
                                ORGS[n % 3],
                                "final",
                                "HR",
                                "Observation",
                                f"b{n}",
                                first_pk + 1 + n,
                                "5.0 mmol/L",
                            ]
                        )
                cur.execute("select setval(pg_get_serial_sequence('resource', 'pk'), (select max(pk) from resource))")
            pg.commit()
            pg.autocommit = True
            pg.execute("ANALYZE")
        print(f"  loaded in {time.perf_counter() - started:.0f} s", flush=True)

        # ------------------------------------------------------------ the server
        server = start_registry(var=var, database_url=url, port=port, workers=args.workers)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

        def request(patient: int, codes: list[str]) -> bytes:
            orders = [
                {
                    "resource": {
                        "resourceType": "ServiceRequest",
                        "id": f"d{k}",
                        "status": "draft",
                        "intent": "order",
                        "subject": {"reference": "Patient/ehr"},
                        "code": {
                            "coding": [
                                {"system": "https://hr-registry.org.cn/fhir/CodeSystem/recognized-items", "code": c}
                            ]
                        },
                    }
                }
                for k, c in enumerate(codes)
            ]
            return orjson.dumps(
                {
                    "hook": "order-sign",
                    "hookInstance": str(uuid.uuid4()),
                    "context": {
                        "userId": "Practitioner/p",
                        "patientId": "ehr",
                        "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": orders},
                    },
                    "prefetch": {
                        "patient": {
                            "resourceType": "Patient",
                            "identifier": [{"system": NATIONAL, "value": national_id(patient)}],
                        }
                    },
                }
            )

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
        # ------------------------------------------------------------ bare SQL: the same question
        since = to_us(now - timedelta(days=max(i.validity.days for i in ctx.catalog.items) + 1))
        bare_ms: list[float] = []
        with psycopg.connect(raw_url) as pg:
            for patient, codes in cases:
                wanted = sorted(set(codes) | {p for c in codes for p in ctx.catalog.panels_containing(c)})
                t = time.perf_counter()
                pg.execute(
                    "SELECT * FROM result_index WHERE patient_key = %s AND item_id = ANY(%s) "
                    "AND effective_us >= %s ORDER BY effective_us DESC",
                    (keys[patient], wanted, since),
                ).fetchall()
                bare_ms.append((time.perf_counter() - t) * 1000)
        # ------------------------------------------------------------ order-sign, sequential
        cds_ms: list[float] = []
        cards = 0
        with httpx.Client(timeout=30) as client:
            for patient, codes in cases[:50]:  # warm up
                client.post(f"{base}/cds-services/hr-order-sign", content=request(patient, codes), headers=headers)
            for patient, codes in cases:
                body = request(patient, codes)
                t = time.perf_counter()
                r = client.post(f"{base}/cds-services/hr-order-sign", content=body, headers=headers)
                cds_ms.append((time.perf_counter() - t) * 1000)
                if r.status_code != 200:
                    print(r.text, file=sys.stderr)
                    return 1
                cards += len(r.json()["cards"])
        # ------------------------------------------------------------ order-sign, concurrent throughput
        done = [0]
        lock = threading.Lock()
        stop = time.perf_counter() + args.seconds

        def hammer(i: int) -> None:
            local = random.Random(i)
            while time.perf_counter() < stop:
                patient, codes = local.choice(cases)
                with httpx.Client(timeout=30) as client:
                    r = client.post(
                        f"{base}/cds-services/hr-order-sign", content=request(patient, codes), headers=headers
                    )
                if r.status_code == 200:
                    with lock:
                        done[0] += 1

        t = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(hammer, range(args.clients)))
        throughput = done[0] / (time.perf_counter() - t)
        results = {
            "cds_p50_ms": statistics.median(cds_ms),
            "cds_p99_ms": percentile(cds_ms, 0.99),
            "bare_p50_ms": statistics.median(bare_ms),
            "bare_p99_ms": percentile(bare_ms, 0.99),
            "throughput": throughput,
            "cards_per_call": cards / len(cases),
        }
        results["ratio_p50"] = results["cds_p50_ms"] / results["bare_p50_ms"]
        results["ratio_p99"] = results["cds_p99_ms"] / results["bare_p99_ms"]
        for k, v in results.items():
            print(f"{k}: {v:.2f}")
        if args.write_docs:
            write_docs(args, results)
    finally:
        finish(server, args.pg, db)
        shutil.rmtree(var, ignore_errors=True)
    return 0


def write_docs(args: argparse.Namespace, r: dict[str, float]) -> None:
    section = "## Order check: CDS Hooks order-sign vs the bare index lookup (scripts/bench_check.py)"
    command = (
        f".venv/bin/python scripts/bench_check.py --results {args.results} --patients {args.patients} "
        f"--calls {args.calls} --clients {args.clients} --workers {args.workers} --write-docs"
    )
    body = (
        f"\n### {time.strftime('%Y-%m-%d')} — {args.results} indexed results, {args.patients} patients, "
        "5 draft orders per call\n\n"
        f"- machine: {machine()}\n- command: `{command}`\n\n"
        "| figure | order-sign (HTTP, full service) | bare SQL lookup | ratio | aim |\n|---|---|---|---|---|\n"
        f"| p50 | {r['cds_p50_ms']:.1f} ms | {r['bare_p50_ms']:.2f} ms | {r['ratio_p50']:.1f}× | |\n"
        f"| p99 | {r['cds_p99_ms']:.1f} ms | {r['bare_p99_ms']:.2f} ms | {r['ratio_p99']:.1f}× | < 25 ms, ≤ 5× |\n"
        f"| throughput ({args.clients} clients, {args.workers} workers) | {r['throughput']:.0f} calls/s | | | |\n\n"
        f"Two of the five orders per call are items the patient has an indexed result for; "
        f"{r['cards_per_call']:.2f} cards per call on average. The order-sign figure is end to end: HTTP, token, "
        "patient key, code maps, the index query, qualifications, the rule, the cards, and a committed write of the "
        "check log, cards and audit rows; the bare lookup is one prepared query on an open connection.\n"
    )
    record(section, body)


if __name__ == "__main__":
    raise SystemExit(main())
