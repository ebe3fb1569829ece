#!/usr/bin/env python3
"""Registry benchmark (not a test): ingest rate and search/read latency on PostgreSQL.

Starts the registry (uvicorn, --workers N) on a fresh PostgreSQL database, pushes transaction Bundles — each report a
DiagnosticReport with 5 Observations, patients created on their first report — from concurrent clients, then measures
``DiagnosticReport?patient.identifier=<national id>`` and ``DiagnosticReport/<id>`` latency from one client.

    .venv/bin/python scripts/bench_registry.py --reports 100000 --patients 10000 --write-docs

Figures go to docs/benchmarks.md with the machine and the command when --write-docs is given.
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
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from registry.app import build_context  # noqa: E402
from registry.auth import PrincipalKind  # noqa: E402
from registry.settings import Settings  # noqa: E402
from scripts.bench_common import create_database, finish, machine, national_id, percentile, record, start_registry  # noqa: E402

NATIONAL = "https://hr-registry.org.cn/fhir/sid/cn-resident-id"
BASE = "http://hosp-a.example"
ANALYTES = [
    ("6690-2", "10*9/L", 4.0, 10.0),
    ("789-8", "10*12/L", 4.3, 5.8),
    ("718-7", "g/L", 130, 175),
    ("4544-3", "%", 40, 50),
    ("777-3", "10*9/L", 125, 350),
]


def report_entries(n: int, patient: int, first: bool, rng: random.Random) -> list[dict[str, Any]]:
    mrn = f"A{patient:07d}"
    p_url = f"urn:uuid:{uuid.UUID(int=patient + 1)}"
    entries: list[dict[str, Any]] = []
    if first:
        entries.append(
            {
                "fullUrl": p_url,
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [
                        {"system": f"{BASE}/mrn", "value": mrn},
                        {"system": NATIONAL, "value": national_id(patient)},
                    ],
                    "gender": "female",
                    "managingOrganization": {"reference": "Organization/hosp-a"},
                },
                "request": {"method": "PUT", "url": f"Patient?identifier={BASE}/mrn|{mrn}"},
            }
        )
        subject = p_url
    else:
        subject = f"Patient?identifier={BASE}/mrn|{mrn}"
    when = f"2025-{n % 12 + 1:02d}-{n % 28 + 1:02d}T08:{n % 60:02d}:00+08:00"
    results = []
    for k, (code, unit, lo, hi) in enumerate(ANALYTES):
        o_url = f"urn:uuid:{uuid.UUID(int=(n << 8) + k + (1 << 100))}"
        results.append({"reference": o_url})
        entries.append(
            {
                "fullUrl": o_url,
                "resource": {
                    "resourceType": "Observation",
                    "identifier": [{"system": f"{BASE}/obs", "value": f"R{n}-{k}"}],
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
                    "subject": {"reference": subject},
                    "effectiveDateTime": when,
                    "valueQuantity": {
                        "value": round(rng.uniform(lo, hi), 2),
                        "unit": unit,
                        "system": "http://unitsofmeasure.org",
                        "code": unit,
                    },
                    "performer": [{"reference": "Organization/hosp-a"}],
                },
                "request": {"method": "PUT", "url": f"Observation?identifier={BASE}/obs|R{n}-{k}"},
            }
        )
    entries.append(
        {
            "fullUrl": f"urn:uuid:{uuid.UUID(int=(n << 8) + 255 + (1 << 101))}",
            "resource": {
                "resourceType": "DiagnosticReport",
                "identifier": [{"system": f"{BASE}/report", "value": f"R{n}"}],
                "status": "final",
                "meta": {"tag": [{"system": "https://hr-registry.org.cn/fhir/CodeSystem/hr-mark", "code": "HR"}]},
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB"}]}],
                "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]},
                "subject": {"reference": subject},
                "effectiveDateTime": when,
                "issued": when,
                "performer": [{"reference": "Organization/hosp-a"}],
                "result": results,
            },
            "request": {"method": "PUT", "url": f"DiagnosticReport?identifier={BASE}/report|R{n}"},
        }
    )
    return entries


def bundles(reports: int, patients: int, per_bundle: int) -> Iterator[bytes]:
    """Reports in patient-major order so a patient's first report carries the Patient."""
    rng = random.Random(7)
    per_patient = max(1, reports // patients)
    batch: list[dict[str, Any]] = []
    n = 0
    for round_ in range(per_patient):
        for patient in range(patients):
            if n >= reports:
                break
            batch += report_entries(n, patient, round_ == 0, rng)
            n += 1
            if n % per_bundle == 0:
                yield orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": batch})
                batch = []
    if batch:
        yield orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": batch})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reports", type=int, default=100_000)
    ap.add_argument("--patients", type=int, default=10_000)
    ap.add_argument("--per-bundle", type=int, default=1, help="reports per transaction Bundle")
    ap.add_argument("--clients", type=int, default=8, help="concurrent pushing clients")
    ap.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument(
        "--pg",
        default=os.environ.get("REGISTRY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"),
    )
    ap.add_argument("--write-docs", action="store_true", help="record the figures in docs/benchmarks.md")
    args = ap.parse_args()

    db, url = create_database(args.pg, "hr_bench")
    var = Path(tempfile.mkdtemp(prefix="hr-bench-"))
    port = 18000 + os.getpid() % 1000
    base = f"http://127.0.0.1:{port}"
    settings = Settings(
        var_dir=var,
        database_url=url,
        public_base_url=base,
        identity_secret="bench",
        rate_limit_per_second=0,
        max_bundle_entries=5000,
        token_ttl_seconds=86_400,
    )
    ctx = build_context(settings)
    from registry.services.audit import AuditContext

    admin_p = ctx.principals.add(PrincipalKind.ADMIN, "bench-admin", "bench").principal
    ctx.ingest.update(
        admin_p,
        AuditContext("bench", admin_p, "update"),
        "Organization",
        "hosp-a",
        orjson.dumps({"resourceType": "Organization", "name": "A"}).decode(),
        None,
    )
    ctx.namespaces.declare(admin_p, "hosp-a", [f"{BASE}/*"])
    hosp = ctx.principals.add(PrincipalKind.HOSPITAL, "hosp-a-system", "A", org_id="hosp-a").principal
    token = ctx.principals.token(hosp, ttl_seconds=86_400).access_token
    ctx.engine.dispose()
    server = start_registry(
        var=var,
        database_url=url,
        port=port,
        workers=args.workers,
        extra_env={"REGISTRY_MAX_BUNDLE_ENTRIES": "5000"},
    )
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
    try:
        # ---------------------------------------------------------------- ingest
        lock = threading.Lock()
        done = [0]
        errors: list[str] = []
        source = bundles(args.reports, args.patients, args.per_bundle)

        def pusher(_: int) -> None:
            while True:
                with lock:
                    body = next(source, None)
                if body is None:
                    return
                # a connection per Bundle, so the workers share the load as behind a load balancer (a kept-alive
                # connection stays with the worker that accepted it)
                with httpx.Client(timeout=120) as client:
                    r = client.post(f"{base}/fhir", content=body, headers=headers)
                if r.status_code != 200:
                    errors.append(r.text[:300])
                with lock:
                    done[0] += 1

        # This machine's PostgreSQL runs with autovacuum off. Production runs it on (the default), and without
        # statistics the planner picks scans over the search tables; so analyze as autovacuum would, whenever the
        # data has grown by 10% (autovacuum_analyze_scale_factor) since the last time.
        analyze = create_engine(url, isolation_level="AUTOCOMMIT")
        analyzed_at = [0]

        def autoanalyze(reports_done: int) -> None:
            if reports_done >= max(500, analyzed_at[0] * 1.1):
                with analyze.connect() as conn:
                    conn.execute(text("ANALYZE"))
                analyzed_at[0] = reports_done

        started = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            futures = [pool.submit(pusher, i) for i in range(args.clients)]
            while not all(f.done() for f in futures):
                time.sleep(5)
                autoanalyze(done[0] * args.per_bundle)
                rate = done[0] * args.per_bundle / (time.perf_counter() - started)
                print(f"  ingest: {done[0] * args.per_bundle}/{args.reports} reports, {rate:.0f}/s", flush=True)
        elapsed = time.perf_counter() - started
        if errors:
            print(f"{len(errors)} failed bundles, e.g. {errors[0]}", file=sys.stderr)
            return 1
        ingest_rate = args.reports / elapsed
        print(f"ingest: {args.reports} reports in {elapsed:.1f} s = {ingest_rate:.0f} reports/s")
        with analyze.connect() as conn:
            conn.execute(text("ANALYZE"))
            # flush the load's dirty pages now, so the latency run measures steady state, not a checkpoint
            conn.execute(text("CHECKPOINT"))
        analyze.dispose()

        # ---------------------------------------------------------------- latency
        rng = random.Random(11)
        search_ms: list[float] = []
        read_ms: list[float] = []
        report_ids: list[str] = []
        with httpx.Client(timeout=30) as client:
            for _ in range(args.queries):
                patient = rng.randrange(args.patients)
                t = time.perf_counter()
                r = client.get(
                    f"{base}/fhir/DiagnosticReport",
                    params={"patient.identifier": f"{NATIONAL}|{national_id(patient)}"},
                    headers=headers,
                )
                search_ms.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200, r.text
                entries = r.json().get("entry", [])
                assert entries, f"no reports for patient {patient}"
                report_ids.append(entries[0]["resource"]["id"])
            for rid in report_ids:
                t = time.perf_counter()
                r = client.get(f"{base}/fhir/DiagnosticReport/{rid}", headers=headers)
                read_ms.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200
        results = {
            "ingest_reports_per_s": ingest_rate,
            "search_p50_ms": statistics.median(search_ms),
            "search_p99_ms": percentile(search_ms, 0.99),
            "read_p50_ms": statistics.median(read_ms),
            "read_p99_ms": percentile(read_ms, 0.99),
        }
        for k, v in results.items():
            print(f"{k}: {v:.1f}")
        if args.write_docs:
            write_docs(args, results)
    finally:
        finish(server, args.pg, db)
        shutil.rmtree(var, ignore_errors=True)
    return 0


def write_docs(args: argparse.Namespace, r: dict[str, float]) -> None:
    section = "## Registry: ingest and search (scripts/bench_registry.py)"
    command = (
        f".venv/bin/python scripts/bench_registry.py --reports {args.reports} --patients {args.patients} "
        f"--per-bundle {args.per_bundle} --clients {args.clients} --workers {args.workers} --write-docs"
    )
    body = (
        f"\n### {time.strftime('%Y-%m-%d')} — {args.reports} reports, {args.patients} patients, "
        f"{args.per_bundle} report(s) per Bundle\n\n"
        f"- machine: {machine()}\n- command: `{command}`\n\n"
        "| figure | value | aim |\n|---|---|---|\n"
        f"| ingest (transaction Bundles, {args.clients} clients, {args.workers} workers) | "
        f"{r['ingest_reports_per_s']:.0f} reports/s | ≥ 1,000 |\n"
        f"| `DiagnosticReport?patient.identifier=…` p50 / p99 | {r['search_p50_ms']:.1f} / {r['search_p99_ms']:.1f} ms "
        "| p99 < 20 ms |\n"
        f"| `DiagnosticReport/<id>` read p50 / p99 | {r['read_p50_ms']:.1f} / {r['read_p99_ms']:.1f} ms | |\n"
    )
    record(section, body)


if __name__ == "__main__":
    raise SystemExit(main())
