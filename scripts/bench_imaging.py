#!/usr/bin/env python3
"""DICOMweb gateway benchmark (not a test): rendered frames per second through the registry's gateway and directly
from Orthanc, side by side in one run, and the registry's peak memory while it streams a large study.

Starts an Orthanc of its own (scripts/orthanc_pacs.py) and uploads a study of ``--instances`` CT instances made with
pydicom from its bundled ``CT_small.dcm`` (128×128), each enlarged to ``--size``² pixels (fresh UIDs), so the study is
``instances × size² × 2`` bytes of pixels. The registry runs under uvicorn (one worker process, SQLite) with that
Orthanc configured as the PACS of the hospital that issued the study; the clients are a clinician of another
hospital in the patient's care context — the access policy, the audit and the hierarchy check are all on the path.

1. **rendered frames**: ``--frames`` requests of ``…/instances/{i}/frames/1/rendered`` (JPEG, the instances in
   turn), from ``--clients`` threads with one keep-alive ``httpx.Client`` each — first straight to Orthanc, then the
   same requests through the gateway, alternated for ``--rounds`` (a warm-up of each first); the median run's
   frames/s, p50/p99, and the CPU time per frame of the client, the registry process and Orthanc.
2. **streaming a large study**: ``GET /dicomweb/studies/{study}`` (WADO-RS retrieve, ``multipart/related``), read
   and discarded by the client; the registry process's peak RSS (``VmHWM``) before and after, against the study's
   size.

    .venv/bin/python scripts/bench_imaging.py --instances 300 --size 512 --frames 2000 --clients 4 --write-docs

Figures go to docs/benchmarks.md with the machine, the command and the date (``date``) when --write-docs is given.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from io import BytesIO
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pydicom import dcmread  # noqa: E402
from pydicom.data import get_testdata_file  # noqa: E402
from pydicom.uid import generate_uid  # noqa: E402

from registry.app import build_context  # noqa: E402
from registry.auth import PrincipalKind  # noqa: E402
from registry.services.audit import AuditContext  # noqa: E402
from registry.settings import Settings  # noqa: E402
from scripts.bench_common import machine, national_id, percentile, record, start_registry  # noqa: E402
from scripts.orthanc_pacs import OrthancPacs, available  # noqa: E402

NATIONAL = "https://hr-registry.org.cn/fhir/sid/cn-resident-id"
CONNECTION = "http://terminology.hl7.org/CodeSystem/endpoint-connection-type"


def enlarged(size: int) -> Any:
    """CT_small.dcm (128×128, 16-bit) scaled up to size×size by repeating pixels (nearest neighbour)."""
    path = get_testdata_file("CT_small.dcm")
    if path is None:
        raise FileNotFoundError("CT_small.dcm")
    ds = dcmread(path)
    rows, cols, factor = int(ds.Rows), int(ds.Columns), size // int(ds.Rows)
    pixels = bytes(ds.PixelData)
    out = bytearray()
    for r in range(rows):
        line = pixels[r * cols * 2 : (r + 1) * cols * 2]
        wide = b"".join(line[c * 2 : c * 2 + 2] * factor for c in range(cols))
        out += wide * factor
    ds.Rows = ds.Columns = rows * factor
    ds.PixelData = bytes(out)
    return ds


def make_study(pacs: OrthancPacs, instances: int, size: int) -> tuple[str, str, list[str], int]:
    """Upload the study; (study UID, series UID, SOP instance UIDs, bytes uploaded)."""
    base = enlarged(size)
    study, series = generate_uid(), generate_uid()
    sops: list[str] = []
    total = 0
    with httpx.Client() as client:
        for n in range(instances):
            ds = base.copy()
            ds.PatientID = "A-0001"
            ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = study, series, generate_uid()
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.InstanceNumber = n + 1
            buffer = BytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            pacs.upload(client, buffer.getvalue())
            total += buffer.tell()
            sops.append(ds.SOPInstanceUID)
    return study, series, sops, total


def prepare_registry(var: Path, base: str, pacs: OrthancPacs, study: str, series: str) -> tuple[str, str]:
    """Hospitals A (issuer, its PACS the bench's Orthanc) and B; a patient of both; dr-b's token. Returns (the
    settings' endpoint JSON, the token)."""
    endpoints = orjson.dumps({"hosp-a-wado": {"organization": "hosp-a", "base": pacs.dicom_web}}).decode()
    settings = Settings(var_dir=var, public_base_url=base, identity_secret="bench", rate_limit_per_second=0,
                        token_ttl_seconds=86_400, dicomweb_endpoints=endpoints)  # fmt: skip
    ctx = build_context(settings)
    admin = ctx.principals.add(PrincipalKind.ADMIN, "bench-admin", "bench").principal
    audit = AuditContext("bench", admin, "update")
    patient = None
    for org in ("hosp-a", "hosp-b"):
        body = orjson.dumps({"resourceType": "Organization", "id": org, "name": org}).decode()
        ctx.ingest.update(admin, audit, "Organization", org, body, None)
        ctx.namespaces.declare(admin, org, [f"http://{org}.example/*"])
        hosp = ctx.principals.add(PrincipalKind.HOSPITAL, f"{org}-system", org, org_id=org).principal
        person = {"resourceType": "Patient", "managingOrganization": {"reference": f"Organization/{org}"},
                  "identifier": [{"system": f"http://{org}.example/mrn", "value": "0001"},
                                 {"system": NATIONAL, "value": national_id(1)}]}  # fmt: skip
        created = ctx.ingest.create(hosp, audit, "Patient", orjson.dumps(person).decode(), None).stored
        patient = created.id if org == "hosp-a" else patient
    hosp_a = ctx.principals.get("hosp-a-system")
    assert hosp_a is not None
    endpoint = {"resourceType": "Endpoint", "id": "hosp-a-wado", "status": "active",
                "connectionType": {"system": CONNECTION, "code": "dicom-wado-rs"},
                "managingOrganization": {"reference": "Organization/hosp-a"}, "payloadType": [{"text": "DICOM"}],
                "address": "https://pacs.hosp-a.example.cn/dicom-web"}  # fmt: skip
    ctx.ingest.update(hosp_a, audit, "Endpoint", "hosp-a-wado", orjson.dumps(endpoint).decode(), None)
    imaging = {"resourceType": "ImagingStudy", "status": "available", "subject": {"reference": f"Patient/{patient}"},
               "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{study}"}],
               "endpoint": [{"reference": "Endpoint/hosp-a-wado"}], "series": [{"uid": series, "modality": {
                   "system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CT"}}]}  # fmt: skip
    ctx.ingest.create(hosp_a, audit, "ImagingStudy", orjson.dumps(imaging).decode(), None)
    clinician = ctx.principals.add(PrincipalKind.CLINICIAN, "dr-b", "Dr B", org_id="hosp-b").principal
    token = ctx.principals.token(clinician, ttl_seconds=86_400).access_token
    ctx.engine.dispose()
    return endpoints, token


def rendered_run(urls: list[str], clients: int, headers: dict[str, str]) -> dict[str, float]:
    """Every URL once, from ``clients`` threads with a keep-alive client each."""
    local = threading.local()
    latencies: list[float] = []
    failures: list[int] = []
    lock = threading.Lock()

    def one(url: str) -> None:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(headers=headers, timeout=60)
        t = time.perf_counter()
        r = client.get(url)
        took = time.perf_counter() - t
        with lock:
            latencies.append(took)
            if r.status_code != 200 or not r.content.startswith(b"\xff\xd8"):
                failures.append(r.status_code)

    cpu, wall = time.process_time(), time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, urls))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if failures:
        raise RuntimeError(f"{len(failures)} rendered requests failed: {sorted(set(failures))}")
    return {"fps": len(urls) / wall, "p50_ms": percentile(latencies, 0.5) * 1000,
            "p99_ms": percentile(latencies, 0.99) * 1000, "cpu_ms_per_frame": cpu / len(urls) * 1000,
            "wall_s": wall}  # fmt: skip


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/<pid>/stat utime, stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(urls: list[str], clients: int, headers: dict[str, str], pids: dict[str, int]) -> dict[str, float]:
    """One rendered run, with the CPU time each of ``pids`` spent on it per frame."""
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    out = rendered_run(urls, clients, headers)
    for name, pid in pids.items():
        out[f"{name}_cpu_ms"] = (cpu_seconds(pid) - before[name]) / len(urls) * 1000
    return out


def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """The run of median frames/s (its own latencies and CPU figures with it)."""
    return sorted(runs, key=lambda r: r["fps"])[len(runs) // 2]


def rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for process {pid}")


def stream(url: str, headers: dict[str, str]) -> tuple[int, float]:
    t = time.perf_counter()
    size = 0
    with httpx.stream("GET", url, headers={**headers, "Accept": 'multipart/related; type="application/dicom"'},
                      timeout=600) as r:  # fmt: skip
        if r.status_code != 200:
            raise RuntimeError(f"retrieve failed: {r.status_code} {r.read()[:300]!r}")
        for chunk in r.iter_raw():
            size += len(chunk)
    return size, time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--instances", type=int, default=300, help="CT instances in the study")
    ap.add_argument("--size", type=int, default=512, help="rows = columns of each instance (a multiple of 128)")
    ap.add_argument("--frames", type=int, default=2000, help="rendered requests per side")
    ap.add_argument("--clients", type=int, default=4, help="concurrent keep-alive clients")
    ap.add_argument("--rounds", type=int, default=3, help="alternated runs per side (the median is reported)")
    ap.add_argument("--port", type=int, default=18480, help="the registry's loopback port")
    ap.add_argument("--write-docs", action="store_true", help="record the figures in docs/benchmarks.md")
    args = ap.parse_args()
    why = available()
    if why:
        print(why, file=sys.stderr)
        return 2
    var = Path(tempfile.mkdtemp(prefix="hr-bench-imaging-"))
    port = args.port
    base = f"http://127.0.0.1:{port}"
    load_before = os.getloadavg()[0]
    server = None
    try:
        with OrthancPacs.running() as pacs:
            t = time.perf_counter()
            study, series, sops, uploaded = make_study(pacs, args.instances, args.size)
            took = time.perf_counter() - t
            print(f"study of {len(sops)} instances ({uploaded / 2**20:.0f} MiB) uploaded in {took:.0f} s")
            endpoints, token = prepare_registry(var, base, pacs, study, series)
            server = start_registry(var=var, database_url=f"sqlite:///{var / 'registry.sqlite3'}", port=port,
                                    workers=1, extra_env={"REGISTRY_DICOMWEB_ENDPOINTS": endpoints})  # fmt: skip
            auth = {"Authorization": f"Bearer {token}"}
            paths = [f"studies/{study}/series/{series}/instances/{sops[n % len(sops)]}/frames/1/rendered"
                     for n in range(args.frames)]  # fmt: skip
            direct_urls = [f"{pacs.dicom_web}/{p}" for p in paths]
            gateway_urls = [f"{base}/dicomweb/{p}" for p in paths]
            warm = min(len(sops), 200)
            rendered_run(direct_urls[:warm], args.clients, {})  # Orthanc's caches, the gateway's membership list
            rendered_run(gateway_urls[:warm], args.clients, auth)
            pids = {"registry": server.pid, "orthanc": pacs.pid}
            directs: list[dict[str, float]] = []
            gateways: list[dict[str, float]] = []
            for _ in range(args.rounds):  # alternated, so a busy moment of the machine falls on both sides
                directs.append(measured(direct_urls, args.clients, {}, pids))
                gateways.append(measured(gateway_urls, args.clients, auth, pids))
            direct, gateway = median_run(directs), median_run(gateways)
            overhead = direct["fps"] / gateway["fps"] - 1
            cpu_direct = direct["cpu_ms_per_frame"] + direct["orthanc_cpu_ms"]
            cpu_gateway = gateway["cpu_ms_per_frame"] + gateway["registry_cpu_ms"] + gateway["orthanc_cpu_ms"]
            cpu_overhead = cpu_gateway / cpu_direct - 1
            for name, r in (("Orthanc directly", direct), ("through the gateway", gateway)):
                print(f"{name:>20}: {r['fps']:.0f} frames/s, p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
                      f"CPU per frame: client {r['cpu_ms_per_frame']:.2f} ms, registry {r['registry_cpu_ms']:.2f} ms, "
                      f"Orthanc {r['orthanc_cpu_ms']:.2f} ms")  # fmt: skip
            print(
                f"gateway cost: {overhead * 100:+.0f} % time per frame over Orthanc alone (aim ≤ 20 %); "
                f"CPU per frame of all three processes {cpu_direct:.2f} → {cpu_gateway:.2f} ms "
                f"({cpu_overhead * 100:+.0f} %); load average {load_before:.1f} → {os.getloadavg()[0]:.1f}"
            )
            before = rss_kib(server.pid, "VmHWM")
            size, took = stream(f"{base}/dicomweb/studies/{study}", auth)
            after = rss_kib(server.pid, "VmHWM")
            dsize, dtook = stream(f"{pacs.dicom_web}/studies/{study}", {})
            print(f"retrieve of the study: {size / 2**20:.0f} MiB in {took:.1f} s through the gateway "
                  f"({dsize / 2**20:.0f} MiB in {dtook:.1f} s from Orthanc); registry peak RSS {before / 1024:.0f} → "
                  f"{after / 1024:.0f} MiB")  # fmt: skip
            if size != dsize:
                print(f"the gateway's answer ({size} bytes) differs in size from Orthanc's ({dsize})", file=sys.stderr)
            results = {"direct": direct, "gateway": gateway, "overhead": overhead, "study_mib": size / 2**20,
                       "cpu_direct": cpu_direct, "cpu_gateway": cpu_gateway, "cpu_overhead": cpu_overhead,
                       "load": (load_before, os.getloadavg()[0]),
                       "took": took, "direct_took": dtook, "hwm_before": before / 1024,
                       "hwm_after": after / 1024}  # fmt: skip
            if args.write_docs:
                write_docs(args, results)
            return 0
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
        shutil.rmtree(var, ignore_errors=True)


def write_docs(args: argparse.Namespace, r: dict[str, Any]) -> None:
    section = "## Images: the DICOMweb gateway vs Orthanc alone (scripts/bench_imaging.py)"
    command = (
        f".venv/bin/python scripts/bench_imaging.py --instances {args.instances} --size {args.size} "
        f"--frames {args.frames} --clients {args.clients} --rounds {args.rounds} --port {args.port} --write-docs"
    )
    date = subprocess.run(["date"], capture_output=True, text=True, check=True).stdout.strip()  # noqa: S607
    d, g = r["direct"], r["gateway"]
    body = (
        f"\n### {date} — {args.instances} instances of {args.size}×{args.size}, {args.frames} rendered frames, "
        f"{args.clients} clients\n\n"
        f"- machine: {machine()}\n- command: `{command}`\n\n"
        "| rendered frames (JPEG, keep-alive clients; median of the rounds) | frames/s | p50 | p99 | "
        "CPU per frame: client | registry | Orthanc |\n|---|---|---|---|---|---|---|\n"
        f"| Orthanc directly | {d['fps']:.0f} | {d['p50_ms']:.1f} ms | {d['p99_ms']:.1f} ms | "
        f"{d['cpu_ms_per_frame']:.2f} ms | — | {d['orthanc_cpu_ms']:.2f} ms |\n"
        f"| through the registry's gateway | {g['fps']:.0f} | {g['p50_ms']:.1f} ms | {g['p99_ms']:.1f} ms | "
        f"{g['cpu_ms_per_frame']:.2f} ms | {g['registry_cpu_ms']:.2f} ms | {g['orthanc_cpu_ms']:.2f} ms |\n\n"
        f"The gateway's cost: {r['overhead'] * 100:+.0f} % time per frame over Orthanc alone (aim ≤ 20 %); the CPU "
        f"per frame of client, registry and Orthanc together {r['cpu_direct']:.2f} → {r['cpu_gateway']:.2f} ms "
        f"({r['cpu_overhead'] * 100:+.0f} %, the steadier figure on a shared machine); load average "
        f"{r['load'][0]:.1f} before the run, {r['load'][1]:.1f} after.\n\n"
        "| streaming the study (WADO-RS retrieve, multipart) | value |\n|---|---|\n"
        f"| study size | {r['study_mib']:.0f} MiB |\n"
        f"| through the gateway / from Orthanc | {r['took']:.1f} s / {r['direct_took']:.1f} s |\n"
        f"| registry peak RSS (VmHWM) before → after | {r['hwm_before']:.0f} → {r['hwm_after']:.0f} MiB |\n"
    )
    record(section, body)


if __name__ == "__main__":
    raise SystemExit(main())
