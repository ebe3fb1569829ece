#!/usr/bin/env python3
"""Scale-out benchmark (not a test): the topology of docs/deploy.md on this machine (scripts/topology.py: etcd, two
Patroni-managed PostgreSQL nodes in synchronous mode, HAProxy, registry nodes of one uvicorn worker each) — ingest,
order-sign and search throughput through the balancer with **1 node**, **2 nodes**, and **2 nodes + replica reads**
(``REGISTRY_DATABASE_REPLICA_URL`` = HAProxy's read-only frontend, write marks in Redis), side by side in one run;
then the **write pause of a failover**: one writer conditionally creating Observations while the primary's machine is
killed (Patroni and its postgres, ``kill -9``), from its first failed write to its first acknowledged one.

Each configuration ingests its own third of the Bundles (scripts/bench_bundles.py, patient-major, so a patient's
first report carries the Patient), then takes ``--seconds`` of order-sign calls (5 draft orders, patients already
ingested, each presented once to hospital B before the clock starts) and of
``DiagnosticReport?patient.identifier=…`` searches from ``--clients`` kept-alive clients (wrk where
installed). The machine's 2 cores are shared by everything: the registry nodes, both PostgreSQL nodes, HAProxy,
etcd, Patroni and the load generator.

    .venv/bin/python scripts/bench_scale.py --reports 6000 --patients 1500 --seconds 15 --write-docs
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.bench_bundles import NATIONAL, bundles  # noqa: E402
from scripts.bench_check import order_sign_body  # noqa: E402
from scripts.bench_common import machine, national_id, record  # noqa: E402
from scripts.bench_load import http_load, http_load_paths, http_push  # noqa: E402
from scripts.topology import Topology  # noqa: E402
from scripts.topology_front import replica_reads  # noqa: E402
from scripts.topology_processes import missing  # noqa: E402

LAB_ITEMS = ["L001", "L002", "L003", "L004", "L005", "L006", "L007", "L008"]
OBS = "http://hosp-a.example/obs"
MRN = "http://hosp-a.example/mrn"


def signed_at_b(patient: int, codes: list[str]) -> bytes:
    """bench_check's order-sign body, its patient presented with hospital B's record number too (B's care context:
    the check answers only for the calling hospital's patients)."""
    body = orjson.loads(order_sign_body(patient, codes))
    body["prefetch"]["patient"]["identifier"].append({"system": "http://hosp-b.example/mrn", "value": f"B{patient}"})
    return orjson.dumps(body)


def measure(topo: Topology, args: argparse.Namespace, part: list[bytes], patients: int) -> dict[str, float]:
    tokens = topo.seed_data.tokens
    fhir = {"Authorization": f"Bearer {tokens['hosp-a-system']}", "Content-Type": "application/fhir+json"}
    push = http_push(f"{topo.balancer}/fhir", part, fhir, clients=args.clients)
    if push["errors"]:
        raise RuntimeError(f"{push['errors']} Bundles failed: {push['first_error']}")
    reports = len(part) * args.per_bundle
    rng = random.Random(5)
    signs = [signed_at_b(rng.randrange(patients), rng.sample(LAB_ITEMS, 5)) for _ in range(500)]
    cds = {"Authorization": f"Bearer {tokens['dr-b']}", "Content-Type": "application/json"}
    # B presents each patient's record once before the clock starts (its first check registers B's identity of the
    # patient, a write): the timed calls are the steady state of patients B already knows
    with httpx.Client(base_url=topo.balancer, headers=cds, timeout=30) as http:
        for body in signs:
            first = http.post("/cds-services/hr-order-sign", content=body)
            if first.status_code != 200:
                raise RuntimeError(f"order-sign: {first.status_code} {first.text[:400]}")
    admin = topo.seed_data.tokens["admin"]
    offered = replica_reads(topo.registries, admin)
    sign = http_load(f"{topo.balancer}/cds-services/hr-order-sign", signs, cds, clients=args.clients,
                     seconds=args.seconds)  # fmt: skip
    on = {where: n - offered[where] for where, n in replica_reads(topo.registries, admin).items()}
    paths = [
        "/fhir/DiagnosticReport?"
        + urlencode({"patient.identifier": f"{NATIONAL}|{national_id(rng.randrange(patients))}"})
        for _ in range(500)
    ]
    get = {"Authorization": f"Bearer {tokens['hosp-a-system']}", "Accept": "application/fhir+json"}
    search = http_load_paths(topo.balancer, paths, get, clients=args.clients, seconds=args.seconds)
    for name, load in (("order-sign", sign), ("search", search)):
        if load["errors"]:
            raise RuntimeError(f"{name}: {load['errors']:.0f} errors")
    return {
        "ingest_reports_per_s": reports / push["seconds"],
        "sign_calls_per_s": sign["calls_per_s"],
        "sign_p50_ms": sign["p50_ms"],
        "sign_p99_ms": sign["p99_ms"],
        "sign_on_standby": on["standby"] / sum(on.values()) if sum(on.values()) else -1.0,  # -1: no replica
        "search_calls_per_s": search["calls_per_s"],
        "search_p50_ms": search["p50_ms"],
        "search_p99_ms": search["p99_ms"],
    }


def commit_cost(topo: Topology, commits: int = 500) -> dict[str, float]:
    """What synchronous replication costs a commit: the same one-row INSERT committed ``commits`` times with
    ``synchronous_commit = on`` (waiting for the standby's flush, as every registry write does here) and ``local``
    (the primary's own flush only), alternating in blocks of 50; mean ms per commit."""
    import psycopg

    raw = topo.database_url.replace("postgresql+psycopg://", "postgresql://")
    spent = {"on": 0.0, "local": 0.0}
    with psycopg.connect(raw, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_commit (n bigint)")
        for block in range(commits // 50):
            mode = ("on", "local")[block % 2]
            conn.execute(f"SET synchronous_commit = {mode}")
            t = time.perf_counter()
            for n in range(50):
                conn.execute("INSERT INTO bench_commit VALUES (%s)", (n,))
            spent[mode] += time.perf_counter() - t
        conn.execute("DROP TABLE bench_commit")
    half = commits // 2
    return {"sync_commit_ms": spent["on"] / half * 1000, "local_commit_ms": spent["local"] / half * 1000}


def failover_pause(topo: Topology) -> dict[str, float]:
    """One writer (conditional creates, each retried until acknowledged) while the primary's machine dies."""
    headers = {"Authorization": f"Bearer {topo.seed_data.tokens['hosp-a-system']}",
               "Content-Type": "application/fhir+json"}  # fmt: skip
    events: list[tuple[float, float, bool]] = []  # (started, ended, acknowledged)
    stop = threading.Event()

    def write() -> None:
        n = 0
        with httpx.Client(base_url=topo.balancer, headers=headers, timeout=10) as http:
            while not stop.is_set():
                n += 1
                key = f"scale-{n}"
                body = {"resourceType": "Observation", "identifier": [{"system": OBS, "value": key}],
                        "status": "final", "code": {"coding": [{"system": "http://loinc.org", "code": "6690-2"}]},
                        "subject": {"reference": f"Patient?identifier={MRN}|scale"},
                        "valueQuantity": {"value": 5.1, "unit": "10*9/L"}}  # fmt: skip
                bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
                    {"resource": body, "request": {"method": "POST", "url": "Observation",
                                                   "ifNoneExist": f"identifier={OBS}|{key}"}}]}  # fmt: skip
                t = time.monotonic()
                try:
                    ok = http.post("/fhir", content=orjson.dumps(bundle)).status_code < 300
                except httpx.HTTPError:
                    ok = False
                events.append((t, time.monotonic(), ok))
                if not ok:
                    time.sleep(0.05)

    patient = {"resourceType": "Patient", "gender": "female",
               "identifier": [{"system": MRN, "value": "scale"}, {"system": NATIONAL, "value": national_id(9_999_999)}],
               "managingOrganization": {"reference": "Organization/hosp-a"}}  # fmt: skip
    made = httpx.put(f"{topo.balancer}/fhir/Patient?identifier={MRN}|scale", content=orjson.dumps(patient),
                     headers=headers, timeout=10)  # fmt: skip
    if made.status_code >= 300:
        raise RuntimeError(f"the writer's patient: {made.status_code} {made.text[:300]}")
    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    time.sleep(3)
    killed = time.monotonic()
    topo.kill_primary()
    deadline = killed + 90

    def pause_bounds() -> tuple[float | None, float | None]:
        done = list(events)
        failed = next((s for s, e, ok in done if not ok and e >= killed), None)
        # a write started while the kill was under way may still have committed: the pause ends with the first
        # write acknowledged after the first failure
        resumed = next((e for s, e, ok in done if ok and failed is not None and s >= failed), None)
        return failed, resumed

    while time.monotonic() < deadline and None in pause_bounds():
        time.sleep(0.2)
    stop.set()
    writer.join(15)
    failed, resumed = pause_bounds()
    if failed is None or resumed is None:
        raise RuntimeError("the failover did not show: no failed write, or writes did not resume")
    return {"pause_s": resumed - failed, "resumed_after_kill_s": resumed - killed,
            "writes_before_s": sum(1 for s, _e, ok in events if ok and s < killed) / 3}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reports", type=int, default=6000, help="reports ingested in all (a third per configuration)")
    ap.add_argument("--patients", type=int, default=1500)
    ap.add_argument("--per-bundle", type=int, default=20)
    ap.add_argument("--clients", type=int, default=4, help="kept-alive clients of each load")
    ap.add_argument("--seconds", type=float, default=15, help="seconds of order-sign and of search load")
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    if (why := missing()) is not None:
        print(f"no topology on this machine: {why}", file=sys.stderr)
        return 2
    bodies = list(bundles(args.reports, args.patients, args.per_bundle))
    thirds = [bodies[i * len(bodies) // 3 : (i + 1) * len(bodies) // 3] for i in range(3)]
    results: dict[str, dict[str, float]] = {}
    with Topology(registries=2, registry_env={"REGISTRY_MAX_BUNDLE_ENTRIES": "5000"}) as topo:
        # patients ingested so far: the order checks and searches ask about those
        seen = 0
        topo.registries[1].stop()
        topo.wait_for_balancer(30)
        for label, part in (("1 node", thirds[0]), ("2 nodes", thirds[1]), ("2 nodes + replica reads", thirds[2])):
            if label == "2 nodes":
                topo.registries[1].start()
                topo.registries[1].wait_ready(90)
                topo.wait_for_balancer(30)
            elif label.endswith("replica reads"):
                topo.restart_registries({"REGISTRY_DATABASE_REPLICA_URL": topo.standby_url,
                                         "REGISTRY_SHARED_STATE_URL": "redis://127.0.0.1:6379/0"})  # fmt: skip
            seen += len(part) * args.per_bundle
            patients = min(args.patients, max(1, seen * args.patients // args.reports))
            results[label] = measure(topo, args, part, patients)
            print(f"{label}: " + ", ".join(f"{k} {v:.1f}" for k, v in results[label].items()), flush=True)
        pause = commit_cost(topo)
        print(f"commit: {pause['sync_commit_ms']:.2f} ms synchronous, {pause['local_commit_ms']:.2f} ms local",
              flush=True)  # fmt: skip
        pause |= failover_pause(topo)
        print(f"failover: write pause {pause['pause_s']:.1f} s (first acknowledged write "
              f"{pause['resumed_after_kill_s']:.1f} s after the kill)", flush=True)  # fmt: skip
    if args.write_docs:
        write_docs(args, results, pause)
    return 0


def _share(fraction: float) -> str:
    return f"{fraction:.0%}" if fraction >= 0 else "—"


def write_docs(args: argparse.Namespace, results: dict[str, dict[str, float]], pause: dict[str, float]) -> None:
    command = (f".venv/bin/python scripts/bench_scale.py --reports {args.reports} --patients {args.patients} "
               f"--clients {args.clients} --seconds {args.seconds:g} --write-docs")  # fmt: skip
    one = results["1 node"]
    body = (
        f"\n### {time.strftime('%Y-%m-%d %H:%M')} UTC — {args.reports:,} reports, {args.clients} clients\n\n"
        f"- machine: {machine()}\n- command: `{command}`\n- load average before the failover: "
        f"{os.getloadavg()[0]:.1f}\n\n"
        "| configuration | ingest (reports/s) | order-sign (calls/s; p50 / p99) | order-sign look-ups on the standby "
        "| search (calls/s; p50 / p99) |\n"
        "|---|---|---|---|---|\n"
    )
    for label, r in results.items():
        body += (
            f"| {label} | {r['ingest_reports_per_s']:.0f} "
            f"({r['ingest_reports_per_s'] / one['ingest_reports_per_s']:.2f}×)"
            f" | {r['sign_calls_per_s']:.0f} ({r['sign_calls_per_s'] / one['sign_calls_per_s']:.2f}×; "
            f"{r['sign_p50_ms']:.1f} / {r['sign_p99_ms']:.1f} ms) | "
            f"{_share(r['sign_on_standby'])} | {r['search_calls_per_s']:.0f} "
            f"({r['search_calls_per_s'] / one['search_calls_per_s']:.2f}×; {r['search_p50_ms']:.1f} / "
            f"{r['search_p99_ms']:.1f} ms) |\n"
        )
    body += (
        f"\nThe failover's write pause (one writer, conditional creates retried until acknowledged; the primary's "
        f"machine killed): **{pause['pause_s']:.1f} s** from the first failed write to the first acknowledged one, "
        f"writes resuming {pause['resumed_after_kill_s']:.1f} s after the kill. What synchronous replication costs "
        f"a commit (a one-row INSERT on the primary, alternating blocks): {pause['sync_commit_ms']:.2f} ms with "
        f"`synchronous_commit = on` (the standby's flush awaited) vs {pause['local_commit_ms']:.2f} ms `local`.\n"
    )
    record("## Scale-out: nodes, replica reads, failover (scripts/bench_scale.py)", body)


if __name__ == "__main__":
    raise SystemExit(main())
