#!/usr/bin/env python3
"""Notification benchmark (not a test): a burst of new final reports → their notifications at the gateway.

Starts the registry (uvicorn, --workers N, each process with its delivery worker sharing the queue through
``FOR UPDATE SKIP LOCKED``) on a fresh PostgreSQL database and the local gateway in this process; every patient has
SMS turned on. Then a burst of new final DiagnosticReports is pushed as transaction Bundles from concurrent clients —
the same write path as the hospitals', which queues each notification in the report's own transaction — and the time
until the gateway holds every message is measured (the aim: 10,000 within a minute).

    .venv/bin/python scripts/bench_notifications.py --reports 10000 --patients 2000 --write-docs

Figures go to docs/benchmarks.md with the machine and the command when --write-docs is given.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from registry.app import build_context  # noqa: E402
from registry.auth import PrincipalKind  # noqa: E402
from registry.services.audit import AuditContext  # noqa: E402
from registry.services.notifications.local_gateway import LocalGateway  # noqa: E402
from registry.settings import Settings  # noqa: E402
from registry.store.notification_sql import NotificationSql, Preference  # noqa: E402
from scripts.bench_common import create_database, finish, machine, national_id, record, start_registry  # noqa: E402

NATIONAL = "https://hr-registry.org.cn/fhir/sid/cn-resident-id"
BASE = "http://hosp-a.example"


def patient_entry(p: int) -> dict[str, Any]:
    mrn = f"A{p:07d}"
    return {
        "resource": {
            "resourceType": "Patient",
            "identifier": [{"system": f"{BASE}/mrn", "value": mrn}, {"system": NATIONAL, "value": national_id(p)}],
            "gender": "female",
            "managingOrganization": {"reference": "Organization/hosp-a"},
        },
        "request": {"method": "PUT", "url": f"Patient?identifier={BASE}/mrn|{mrn}"},
    }


def report_entry(n: int, p: int, run: str) -> dict[str, Any]:
    number = f"{run}-R{n}"
    return {
        "fullUrl": f"urn:uuid:{uuid.uuid4()}",
        "resource": {
            "resourceType": "DiagnosticReport",
            "identifier": [{"system": f"{BASE}/report", "value": number}],
            "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "58410-2"}]},
            "subject": {"reference": f"Patient?identifier={BASE}/mrn|A{p:07d}"},
            "effectiveDateTime": f"2026-{n % 12 + 1:02d}-{n % 28 + 1:02d}T08:{n % 60:02d}:00+08:00",
            "performer": [{"reference": "Organization/hosp-a"}],
        },
        "request": {"method": "PUT", "url": f"DiagnosticReport?identifier={BASE}/report|{number}"},
    }


def push(client: httpx.Client, base: str, token: str, entries: list[dict[str, Any]]) -> None:
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    r = client.post(f"{base}/fhir", content=orjson.dumps(bundle), timeout=120,
                    headers={"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"})  # fmt: skip
    if r.status_code != 200:
        raise RuntimeError(f"push failed: {r.status_code} {r.text[:300]}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reports", type=int, default=10_000, help="new final reports in the burst")
    ap.add_argument("--patients", type=int, default=2000, help="patients (each with SMS on)")
    ap.add_argument("--per-bundle", type=int, default=50, help="reports per transaction Bundle")
    ap.add_argument("--clients", type=int, default=8, help="concurrent pushing clients")
    ap.add_argument("--workers", type=int, default=2, help="uvicorn worker processes (each delivers too)")
    ap.add_argument("--timeout", type=float, default=600, help="give up waiting after this many seconds")
    ap.add_argument(
        "--pg",
        default=os.environ.get("REGISTRY_TEST_POSTGRES_URL", "postgresql+psycopg://root@127.0.0.1:5432/postgres"),
    )
    ap.add_argument("--write-docs", action="store_true", help="record the figures in docs/benchmarks.md")
    args = ap.parse_args()

    db, url = create_database(args.pg, "hr_bench_notify")
    var = Path(tempfile.mkdtemp(prefix="hr-bench-notify-"))
    port = 18000 + os.getpid() % 1000
    base = f"http://127.0.0.1:{port}"
    gateway = LocalGateway(var / "gateway.jsonl", secret="bench").start()
    settings = Settings(var_dir=var, database_url=url, public_base_url=base, identity_secret="bench",
                        rate_limit_per_second=0, max_bundle_entries=5000, token_ttl_seconds=86_400)  # fmt: skip
    ctx = build_context(settings)
    admin = ctx.principals.add(PrincipalKind.ADMIN, "bench-admin", "bench").principal
    body = orjson.dumps({"resourceType": "Organization", "id": "hosp-a", "name": "A 医院"}).decode()
    ctx.ingest.update(admin, AuditContext("bench", admin, "update"), "Organization", "hosp-a", body, None)
    ctx.namespaces.declare(admin, "hosp-a", [f"{BASE}/*"])
    hosp = ctx.principals.add(PrincipalKind.HOSPITAL, "hosp-a-system", "A", org_id="hosp-a").principal
    token = ctx.principals.token(hosp, ttl_seconds=86_400).access_token
    now = ctx.clock()
    with ctx.uow.begin() as repo:  # every patient chose SMS (as the portal's settings page saves it)
        sql = NotificationSql(repo.conn)
        for p in range(args.patients):
            key = ctx.identity.master_key(NATIONAL, national_id(p))
            sql.save_preference(Preference(key, f"bench-patient-{p}", True, False, "zh", now))
    ctx.engine.dispose()
    server = start_registry(var=var, database_url=url, port=port, workers=args.workers, extra_env={
        "REGISTRY_MAX_BUNDLE_ENTRIES": "5000", "REGISTRY_NOTIFY_GATEWAY_URL": gateway.url,
        "REGISTRY_NOTIFY_GATEWAY_SECRET": "bench", "REGISTRY_NOTIFY_POLL_SECONDS": "0.2",
    })  # fmt: skip
    try:
        with httpx.Client() as client:
            for i in range(0, args.patients, 500):  # the patients first, outside the measured burst
                push(client, base, token, [patient_entry(p) for p in range(i, min(args.patients, i + 500))])
        run = uuid.uuid4().hex[:6]
        bundles = [
            [report_entry(n, n % args.patients, run) for n in range(i, min(args.reports, i + args.per_bundle))]
            for i in range(0, args.reports, args.per_bundle)
        ]
        clients = [httpx.Client() for _ in range(args.clients)]
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(lambda ib: push(clients[ib[0] % args.clients], base, token, ib[1]), enumerate(bundles)))
        written = time.perf_counter() - t0
        deadline = t0 + args.timeout
        while len(gateway.received()) < args.reports and time.perf_counter() < deadline:
            time.sleep(0.05)
        delivered = time.perf_counter() - t0
        got = len(gateway.received())
        for c in clients:
            c.close()
        results = {"reports": float(args.reports), "written_s": written, "delivered_s": delivered,
                   "after_last_write_s": delivered - written, "received": float(got),
                   "duplicates": float(gateway.duplicates)}  # fmt: skip
        print(f"burst of {args.reports} new final reports written in {written:.1f} s")
        print(
            f"all {got} notifications at the gateway {delivered:.1f} s after the first write "
            f"({delivered - written:.1f} s after the last); duplicates refused by id: {gateway.duplicates}"
        )
        if got < args.reports:
            print(f"only {got} of {args.reports} arrived within {args.timeout:.0f} s", file=sys.stderr)
        if args.write_docs:
            write_docs(args, results)
        return 0 if got == args.reports else 1
    finally:
        finish(server, args.pg, db)
        gateway.stop()
        shutil.rmtree(var, ignore_errors=True)


def write_docs(args: argparse.Namespace, r: dict[str, float]) -> None:
    section = "## Notifications: a burst of reports to the gateway (scripts/bench_notifications.py)"
    command = (
        f".venv/bin/python scripts/bench_notifications.py --reports {args.reports} --patients {args.patients} "
        f"--per-bundle {args.per_bundle} --clients {args.clients} --workers {args.workers} --write-docs"
    )
    body = (
        f"\n### {time.strftime('%Y-%m-%d')} — {args.reports} new final reports, {args.patients} patients "
        "with SMS on\n\n"
        f"- machine: {machine()}\n- command: `{command}`\n\n"
        "| figure | value | aim |\n|---|---|---|\n"
        f"| burst written (transaction Bundles, {args.clients} clients, {args.workers} workers) | "
        f"{r['written_s']:.1f} s | |\n"
        f"| every notification at the local gateway, from the first write | {r['delivered_s']:.1f} s | ≤ 60 s |\n"
        f"| … from the last write | {r['after_last_write_s']:.1f} s | |\n"
        f"| received / duplicates | {r['received']:.0f} / {r['duplicates']:.0f} | all / 0 |\n"
    )
    record(section, body)


if __name__ == "__main__":
    raise SystemExit(main())
