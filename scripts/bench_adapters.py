#!/usr/bin/env python3
"""Adapter benchmark (not a test): HL7 messages/s and DICOM headers/s through the adapter, and the outbox's
delivery rate into a live registry on PostgreSQL.

    .venv/bin/python scripts/bench_adapters.py --messages 2000 --files 2000 --deliver 2000 --batch-size 20 --write-docs

- **HL7**: a CBC ORU^R01 (1 report, 5 results) with a new report number each time, (a) parsed and mapped only,
  beside the bare ``hl7.parse`` (python-hl7) of the same messages in alternating rounds (the median of
  ``--rounds`` each, and their ratio), (b) through the whole processor (parse, map, durable outbox commit, ACK),
  (c) over MLLP from one connection (each message waits for its ACK, as a LIS does).
- **DICOM**: copies of pydicom's CT_small.dcm (new UIDs, 20 instances per study) read up to the pixel data, grouped
  and mapped to ImagingStudy Bundles, beside the bare ``dcmread(path, stop_before_pixels=True)`` of the same files in
  alternating rounds (the median of ``--rounds`` each, and their ratio; the files are read once before, so both
  read from the page cache).
- **Delivery**: that many queued HL7 messages (one report, 5 results and the patient) delivered by the outbox
  (4 requests in flight) to the registry (uvicorn, 2 workers, PostgreSQL) until the outbox is empty — side by side on
  one registry in one run: one message per request (``batch_size 1``, delivery as it was before batching), then
  batches of up to ``--batch-size`` messages per transaction Bundle; each with every message about one patient (the
  workload of the figure before batching), then about 500 patients (a hospital's backlog); new report numbers each
  time. Then the adapter's own cost: the same drains against a registry that answers at once.

PostgreSQL: by default a cluster of its own (initdb's defaults, autovacuum on, as a fresh installation runs; see
scripts/pg_cluster.py). ``--pg URL`` uses an existing server instead; the machine's shared test server runs with
autovacuum off, so its planner statistics go stale as the tables grow and the figures there are lower.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from io import BytesIO
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from adapters.codes import Coder, load_catalog, read_code_map  # noqa: E402
from adapters.config import AdapterConfig, config_from_mapping  # noqa: E402
from adapters.dicom.headers import group, read_file  # noqa: E402
from adapters.dicom.mapping import StudyMapper  # noqa: E402
from adapters.fhir import dumps  # noqa: E402
from adapters.hl7v2.mapping import OruMapper  # noqa: E402
from adapters.hl7v2.message import parse  # noqa: E402
from adapters.hl7v2.mllp import MllpServer  # noqa: E402
from adapters.hl7v2.processor import Hl7Processor  # noqa: E402
from adapters.push.client import RegistryClient  # noqa: E402
from adapters.push.delivery import Deliverer  # noqa: E402
from adapters.push.outbox import Outbox  # noqa: E402
from scripts.bench_common import create_database, finish, machine, national_id, record, start_registry  # noqa: E402
from scripts.pg_cluster import PgCluster  # noqa: E402

DATA = ROOT / "tests" / "data" / "adapters"
SAMPLE = (DATA / "hl7" / "oru_cbc_final.hl7").read_bytes()


def message(n: int, patients: int = 0) -> bytes:
    """The sample with report number ``n``; about the sample's one patient, or one of ``patients`` (MRN and resident
    ID number by ``n``), as a hospital's backlog would be."""
    raw = SAMPLE.replace(b"R-2025-0001", f"R-B{n:07d}".encode()).replace(b"A0001", f"B{n:07d}".encode())
    if patients:
        raw = raw.replace(b"A-123", f"M-{n % patients:03d}".encode())
        raw = raw.replace(b"110105198503120020", national_id(n % patients).encode())
    return raw


def config(
    folder: Path, registry_url: str = "http://127.0.0.1:9", secret: str | None = None, batch_size: int = 1
) -> AdapterConfig:
    raw = {
        "registry": {"url": registry_url, "client_id": "hosp-a-adapter", "client_secret": secret or "unused"},
        "hospital": {"organization": "hosp-a"},
        "identifiers": {"base": "https://hosp-a.example.cn/fhir/sid"},
        "codes": {"map_file": str(DATA / "hosp-a-codes.csv")},
        "hl7": {"policy": "strict", "listen": {"host": "127.0.0.1", "port": 0}},
        "dicom": {"wado_rs": "https://pacs.hosp-a.example.cn/dicom-web"},
        "outbox": {"path": str(folder / "outbox.sqlite"), "concurrency": 4, "batch_size": batch_size},
    }
    return config_from_mapping(raw, folder)


def side_by_side(rounds: int, n: int, bare: Callable[[], object], ours: Callable[[], object]) -> tuple[float, float]:
    """The median rate (items/s) of ``bare`` and of ``ours`` over ``rounds`` alternating rounds of ``n`` items each
    (which goes first alternates too), so that both see the same load on a shared machine."""
    rates: dict[str, list[float]] = {"bare": [], "ours": []}
    for r in range(rounds):
        order = [("bare", bare), ("ours", ours)]
        for name, run in order if r % 2 == 0 else order[::-1]:
            t = time.perf_counter()
            run()
            rates[name].append(n / (time.perf_counter() - t))
    return statistics.median(rates["bare"]), statistics.median(rates["ours"])


def bench_hl7(n: int, folder: Path, rounds: int) -> dict[str, float]:
    import hl7

    cfg = config(folder)
    catalog = load_catalog()
    coder = Coder(catalog, "hosp-a", read_code_map(cfg.codes.map_file, catalog))
    messages = [message(i) for i in range(n)]
    mapper = OruMapper(cfg, coder)

    def bare() -> None:
        for raw in messages:
            hl7.parse(raw)

    def ours() -> None:
        for raw in messages:
            dumps(mapper.map(parse(raw)).bundle)

    ours()  # warm: the code map, the UCUM grammar, the FHIR models
    bare_rate, mapped = side_by_side(rounds, n, bare, ours)

    outbox = Outbox(folder / "outbox.sqlite")
    processor = Hl7Processor(cfg, coder, outbox)
    t = time.perf_counter()
    for raw in messages:
        assert processor.handle(raw, "bench").code == "AA"
    handled = n / (time.perf_counter() - t)

    # over MLLP: a fresh outbox, one connection, each message waits for its ACK
    outbox2 = Outbox(folder / "outbox-mllp.sqlite")
    server = MllpServer(Hl7Processor(cfg, coder, outbox2), "127.0.0.1", 0, max_bytes=1 << 20)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(server.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    import socket

    with socket.create_connection(("127.0.0.1", server.port)) as s:
        t = time.perf_counter()
        for raw in messages:
            s.sendall(b"\x0b" + raw + b"\x1c\r")
            data = b""
            while not data.endswith(b"\x1c\r"):
                data += s.recv(65536)
            assert b"MSA|AA" in data
        over_mllp = n / (time.perf_counter() - t)
    asyncio.run_coroutine_threadsafe(server.close(), loop).result()
    loop.call_soon_threadsafe(loop.stop)
    outbox.close()
    outbox2.close()
    return {
        "hl7_mapped_per_s": mapped,
        "hl7_bare_parse_per_s": bare_rate,
        "hl7_ratio": mapped / bare_rate,
        "hl7_handled_per_s": handled,
        "hl7_mllp_per_s": over_mllp,
    }


def bench_dicom(n: int, folder: Path, rounds: int, image: int = 0) -> dict[str, float]:
    """``image``: the pixel matrix's side (0: the sample's own 128 × 128; 512 is a CT slice, about 512 KiB)."""
    from pydicom import dcmread
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    base = dcmread(get_testdata_file("CT_small.dcm"))
    base.BodyPartExamined = "CHEST"
    if image:
        base.Rows = base.Columns = image
        base.PixelData = bytes(image * image * 2)
    files = folder / "dicom"
    files.mkdir(parents=True)
    study = series = ""
    for i in range(n):
        if i % 20 == 0:
            study, series = generate_uid(), generate_uid()
            base.AccessionNumber = f"ACC{i:07d}"
        base.StudyInstanceUID, base.SeriesInstanceUID, base.SOPInstanceUID = study, series, generate_uid()
        base.InstanceNumber = i % 20 + 1
        buffer = BytesIO()
        base.save_as(buffer, enforce_file_format=True)
        (files / f"{i:07d}.dcm").write_bytes(buffer.getvalue())
    cfg = config(folder)
    catalog = load_catalog()
    mapper = StudyMapper(cfg, Coder(catalog, "hosp-a", []))
    paths = sorted(files.iterdir())

    def bare() -> None:
        for p in paths:
            dcmread(p, stop_before_pixels=True)

    def ours() -> None:
        facts = [read_file(p) for p in paths]
        bundles = [dumps(mapper.map(s).bundle) for s in group(facts).values()]
        assert len(bundles) == (n + 19) // 20

    ours()  # warm: the page cache, the code map
    bare_rate, rate = side_by_side(rounds, n, bare, ours)
    return {
        "dicom_headers_per_s": rate,
        "dicom_bare_read_per_s": bare_rate,
        "dicom_ratio": rate / bare_rate,
        "file_kib": (paths[0].stat().st_size / 1024),
    }


def deliver(n: int, folder: Path, base: str, secret: str, batch_size: int, first: int, patients: int = 0) -> float:
    """Queue ``n`` new messages (report numbers from ``first``) in a fresh outbox, then drain it; messages/s."""
    folder.mkdir()
    cfg = config(folder, base, secret, batch_size)
    catalog = load_catalog()
    coder = Coder(catalog, "hosp-a", read_code_map(cfg.codes.map_file, catalog))
    outbox = Outbox(cfg.outbox.path)
    processor = Hl7Processor(cfg, coder, outbox)
    for i in range(n):
        assert processor.handle(message(first + i, patients), "bench").code == "AA"
    client = RegistryClient(cfg.registry)
    deliverer = Deliverer(outbox, client, cfg.outbox)
    t = time.perf_counter()
    result = deliverer.run(threading.Event(), until_empty=True)
    elapsed = time.perf_counter() - t
    client.close()
    outbox.close()
    if result.pending or result.dead or result.delivered != n:
        raise RuntimeError(f"delivery left messages behind: {result}")
    return n / elapsed


PATIENTS = 500


def bench_delivery_cost(n: int, folder: Path, batch_size: int) -> dict[str, float]:
    """The adapter's own cost of delivery: the same drain against a registry that answers every Bundle at once (an
    httpx mock transport), so what the live figures lack of this is the registry's."""
    import httpx

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/auth/token":
            return httpx.Response(200, json={"access_token": "t", "expires_in": 300})
        return httpx.Response(200, json={"resourceType": "Bundle", "type": "transaction-response", "entry": []})

    out: dict[str, float] = {}
    for size in (1, batch_size):
        cfg = config(folder / f"cost-{size}", "http://registry.invalid", "s", size)
        (folder / f"cost-{size}").mkdir()
        catalog = load_catalog()
        outbox = Outbox(cfg.outbox.path)
        processor = Hl7Processor(cfg, Coder(catalog, "hosp-a", read_code_map(cfg.codes.map_file, catalog)), outbox)
        for i in range(n):
            assert processor.handle(message(30_000_000 + i), "bench").code == "AA"
        client = RegistryClient(cfg.registry, httpx.Client(transport=httpx.MockTransport(answer)))
        t = time.perf_counter()
        result = Deliverer(outbox, client, cfg.outbox).run(threading.Event(), until_empty=True)
        out[f"delivery_cost_{'one' if size == 1 else 'batched'}_per_s"] = n / (time.perf_counter() - t)
        assert result.delivered == n
        outbox.close()
    return out


def bench_delivery(n: int, folder: Path, pg: str, batch_size: int) -> dict[str, float]:
    from registry.app import build_context
    from registry.auth import PrincipalKind
    from registry.services.audit import AuditContext
    from registry.settings import Settings

    db, url = create_database(pg, "hr_bench_adapter")
    var = folder / "registry"
    port = 17000 + os.getpid() % 1000
    base = f"http://127.0.0.1:{port}"
    server = None
    try:
        settings = Settings(
            var_dir=var, database_url=url, public_base_url=base, identity_secret="bench", rate_limit_per_second=0
        )
        ctx = build_context(settings)
        admin = ctx.principals.add(PrincipalKind.ADMIN, "bench-admin", "bench").principal
        body = orjson.dumps({"resourceType": "Organization", "id": "hosp-a", "name": "A"}).decode()
        ctx.ingest.update(admin, AuditContext("bench", admin, "update"), "Organization", "hosp-a", body, None)
        ctx.namespaces.declare(admin, "hosp-a", ["https://hosp-a.example.cn/*"])
        secret = ctx.principals.add(PrincipalKind.HOSPITAL, "hosp-a-adapter", "A", org_id="hosp-a").secret
        ctx.engine.dispose()
        server = start_registry(var=var, database_url=url, port=port, workers=2)
        # side by side on one registry: one message per request (as before batching), then batches; all about one
        # patient (as the figure before batching), then about 500 patients
        return {
            "delivered_per_s": deliver(n, folder / "d1", base, secret, 1, 10_000_000),
            "delivered_batched_per_s": deliver(n, folder / "d2", base, secret, batch_size, 20_000_000),
            "delivered_many_per_s": deliver(n, folder / "d3", base, secret, 1, 40_000_000, PATIENTS),
            "delivered_many_batched_per_s": deliver(n, folder / "d4", base, secret, batch_size, 50_000_000, PATIENTS),
        }
    finally:
        finish(server, pg, db)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--deliver", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=20, help="messages per transaction Bundle in the batched run")
    ap.add_argument("--pg", default=None, help="an existing server's URL (default: a cluster of the run's own)")
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds against the bare baselines (median)")
    ap.add_argument(
        "--no-delivery",
        action="store_true",
        help="HL7 and DICOM only (no PostgreSQL nor registry; not with --write-docs)",
    )
    ap.add_argument("--ct-slices", type=int, default=0,
                    help="the DICOM figures again for this many 512 × 512 slices (about 512 KiB each)")  # fmt: skip
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    if args.rounds < 3:
        ap.error("--rounds must be at least 3 (the figures are medians)")
    if args.no_delivery and args.write_docs:
        ap.error("--write-docs records the whole run: leave out --no-delivery")
    folder = Path(tempfile.mkdtemp(prefix="hr-bench-adapters-"))
    try:
        (folder / "hl7").mkdir()
        results = bench_hl7(args.messages, folder / "hl7", args.rounds)
        results |= bench_dicom(args.files, folder, args.rounds)
        if args.ct_slices:
            ct = bench_dicom(args.ct_slices, folder / "ct", args.rounds, image=512)
            results |= {f"ct512_{k}": v for k, v in ct.items()}
        load_before = os.getloadavg()[0]
        pg_desc = ""
        if not args.no_delivery:
            with ExitStack() as stack:
                pg = args.pg
                if pg is None:
                    cluster = stack.enter_context(PgCluster.running(prefix="hr-bench-pg-"))
                    pg, pg_desc = cluster.server_url, f"a cluster of its own ({cluster.describe()})"
                else:
                    pg_desc = f"the server at {pg.split('@')[-1]}"
                results |= bench_delivery(args.deliver, folder, pg, args.batch_size)
            results |= bench_delivery_cost(args.deliver, folder, args.batch_size)
        load = f"{load_before:.1f} / {os.getloadavg()[0]:.1f}"
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    for k, v in results.items():
        print(f"{k}: {v:.2f}" if k.endswith("_ratio") else f"{k}: {v:.1f}")
    if args.write_docs:
        command = (
            f".venv/bin/python scripts/bench_adapters.py --messages {args.messages} --files {args.files} "
            f"--deliver {args.deliver} --batch-size {args.batch_size} --rounds {args.rounds}"
            f"{' --pg ' + args.pg if args.pg else ''} --write-docs"
        )
        body = (
            f"\n### {time.strftime('%Y-%m-%d')}\n\n- machine: {machine()}\n- command: `{command}`\n"
            f"- PostgreSQL for the delivery runs: {pg_desc}\n\n"
            "| figure | value |\n|---|---|\n"
            f"| HL7 ORU^R01 parsed + mapped to a Bundle (1 report, 5 results) | "
            f"{results['hl7_mapped_per_s']:.0f} messages/s |\n"
            f"| HL7: the bare `hl7.parse` (python-hl7) of the same messages, alternating rounds, same run | "
            f"{results['hl7_bare_parse_per_s']:.0f} messages/s |\n"
            f"| HL7 parsed + mapped ÷ bare `hl7.parse` (median of {args.rounds} rounds each) | "
            f"{results['hl7_ratio']:.2f}× |\n"
            f"| HL7 through the processor (parse, map, durable outbox commit, ACK) | "
            f"{results['hl7_handled_per_s']:.0f} messages/s |\n"
            f"| HL7 over MLLP, one connection, each message waiting for its ACK | "
            f"{results['hl7_mllp_per_s']:.0f} messages/s |\n"
            f"| DICOM headers read (pydicom, to the pixel data), grouped, mapped | "
            f"{results['dicom_headers_per_s']:.0f} files/s ({results['file_kib']:.0f} KiB files) |\n"
            f"| DICOM: the bare `dcmread(path, stop_before_pixels=True)` of the same files, alternating rounds, same "
            f"run | {results['dicom_bare_read_per_s']:.0f} files/s |\n"
            f"| DICOM headers read, grouped, mapped ÷ bare `dcmread` (median of {args.rounds} rounds each) | "
            f"{results['dicom_ratio']:.2f}× |\n"
            f"| outbox delivery to the registry, one message per request (4 in flight; registry 2 workers, "
            f"PostgreSQL) | {results['delivered_per_s']:.0f} messages/s |\n"
            f"| outbox delivery to the registry, batches of up to {args.batch_size} messages (4 in flight; same "
            f"registry, same run) | {results['delivered_batched_per_s']:.0f} messages/s |\n"
            f"| the same two drains, the messages about {PATIENTS} patients: one per request / batched | "
            f"{results['delivered_many_per_s']:.0f} / {results['delivered_many_batched_per_s']:.0f} messages/s |\n"
            f"| the adapter's own cost: the same drains against a registry that answers at once, one per request / "
            f"batched | {results['delivery_cost_one_per_s']:.0f} / {results['delivery_cost_batched_per_s']:.0f} "
            "messages/s |\n\n"
            f"Load average (1 min) before / after the delivery runs: {load} on {os.cpu_count()} cores (the machine is "
            "shared).\n\n"
            "Each durable commit is an fsync (SQLite WAL, synchronous=FULL): the processor's rate is bound by the "
            "disk, not the parser. Delivery is bound by the registry's write path (see the registry benchmark).\n"
        )
        record("## Adapters: HL7, DICOM and delivery (scripts/bench_adapters.py)", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
