#!/usr/bin/env python3
"""Adapter benchmark (not a test): HL7 messages/s and DICOM headers/s through the adapter, and the outbox's
delivery rate into a live registry on PostgreSQL.

    .venv/bin/python scripts/bench_adapters.py --messages 2000 --files 2000 --deliver 2000 --write-docs

- **HL7**: a CBC ORU^R01 (1 report, 5 results) with a new report number each time, (a) parsed and mapped only,
  (b) through the whole processor (parse, map, durable outbox commit, ACK), (c) over MLLP from one connection
  (each message waits for its ACK, as a LIS does).
- **DICOM**: copies of pydicom's CT_small.dcm (new UIDs, 20 instances per study) read with pydicom up to the pixel
  data, grouped and mapped to ImagingStudy Bundles.
- **Delivery**: that many queued HL7 messages delivered by the outbox (4 in flight) to the registry (uvicorn,
  2 workers, PostgreSQL), until the outbox is empty.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import threading
import time
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
from scripts.bench_common import create_database, finish, machine, record, start_registry  # noqa: E402

DATA = ROOT / "tests" / "data" / "adapters"
SAMPLE = (DATA / "hl7" / "oru_cbc_final.hl7").read_bytes()


def message(n: int) -> bytes:
    return SAMPLE.replace(b"R-2025-0001", f"R-B{n:07d}".encode()).replace(b"A0001", f"B{n:07d}".encode())


def config(folder: Path, registry_url: str = "http://127.0.0.1:9", secret: str | None = None) -> AdapterConfig:
    raw = {
        "registry": {"url": registry_url, "client_id": "hosp-a-adapter", "client_secret": secret or "unused"},
        "hospital": {"organization": "hosp-a"},
        "identifiers": {"base": "https://hosp-a.example.cn/fhir/sid"},
        "codes": {"map_file": str(DATA / "hosp-a-codes.csv")},
        "hl7": {"policy": "strict", "listen": {"host": "127.0.0.1", "port": 0}},
        "dicom": {"wado_rs": "https://pacs.hosp-a.example.cn/dicom-web"},
        "outbox": {"path": str(folder / "outbox.sqlite"), "concurrency": 4},
    }
    return config_from_mapping(raw, folder)


def bench_hl7(n: int, folder: Path) -> dict[str, float]:
    cfg = config(folder)
    catalog = load_catalog()
    coder = Coder(catalog, "hosp-a", read_code_map(cfg.codes.map_file, catalog))
    messages = [message(i) for i in range(n)]
    mapper = OruMapper(cfg, coder)
    t = time.perf_counter()
    for raw in messages:
        dumps(mapper.map(parse(raw)).bundle)
    mapped = n / (time.perf_counter() - t)

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
    return {"hl7_mapped_per_s": mapped, "hl7_handled_per_s": handled, "hl7_mllp_per_s": over_mllp}


def bench_dicom(n: int, folder: Path) -> dict[str, float]:
    from pydicom import dcmread
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    base = dcmread(get_testdata_file("CT_small.dcm"))
    base.BodyPartExamined = "CHEST"
    files = folder / "dicom"
    files.mkdir()
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
    t = time.perf_counter()
    facts = [read_file(p) for p in paths]
    bundles = [dumps(mapper.map(s).bundle) for s in group(facts).values()]
    elapsed = time.perf_counter() - t
    assert len(bundles) == (n + 19) // 20
    return {"dicom_headers_per_s": n / elapsed, "file_kib": (paths[0].stat().st_size / 1024)}


def bench_delivery(n: int, folder: Path, pg: str) -> dict[str, float]:
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
        body = orjson.dumps({"resourceType": "Organization", "name": "A"}).decode()
        ctx.ingest.update(admin, AuditContext("bench", admin, "update"), "Organization", "hosp-a", body, None)
        ctx.namespaces.declare(admin, "hosp-a", ["https://hosp-a.example.cn/*"])
        secret = ctx.principals.add(PrincipalKind.HOSPITAL, "hosp-a-adapter", "A", org_id="hosp-a").secret
        ctx.engine.dispose()
        server = start_registry(var=var, database_url=url, port=port, workers=2)
        cfg = config(folder / "deliver", base, secret)
        (folder / "deliver").mkdir(exist_ok=True)
        catalog = load_catalog()
        coder = Coder(catalog, "hosp-a", read_code_map(cfg.codes.map_file, catalog))
        outbox = Outbox(folder / "deliver" / "outbox.sqlite")
        processor = Hl7Processor(cfg, coder, outbox)
        for i in range(n):
            assert processor.handle(message(10_000_000 + i), "bench").code == "AA"
        deliverer = Deliverer(outbox, RegistryClient(cfg.registry), cfg.outbox)
        t = time.perf_counter()
        result = deliverer.run(threading.Event(), until_empty=True)
        elapsed = time.perf_counter() - t
        if result.pending or result.dead:
            raise RuntimeError(f"delivery left messages behind: {result}")
        return {"delivered_per_s": n / elapsed}
    finally:
        finish(server, pg, db)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--deliver", type=int, default=2000)
    ap.add_argument(
        "--pg",
        default=os.environ.get("REGISTRY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"),
    )
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="hr-bench-adapters-"))
    try:
        (folder / "hl7").mkdir()
        results = bench_hl7(args.messages, folder / "hl7")
        results |= bench_dicom(args.files, folder)
        results |= bench_delivery(args.deliver, folder, args.pg)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    for k, v in results.items():
        print(f"{k}: {v:.1f}")
    if args.write_docs:
        command = (
            f".venv/bin/python scripts/bench_adapters.py --messages {args.messages} --files {args.files} "
            f"--deliver {args.deliver} --write-docs"
        )
        body = (
            f"\n### {time.strftime('%Y-%m-%d')}\n\n- machine: {machine()}\n- command: `{command}`\n\n"
            "| figure | value |\n|---|---|\n"
            f"| HL7 ORU^R01 parsed + mapped to a Bundle (1 report, 5 results) | "
            f"{results['hl7_mapped_per_s']:.0f} messages/s |\n"
            f"| HL7 through the processor (parse, map, durable outbox commit, ACK) | "
            f"{results['hl7_handled_per_s']:.0f} messages/s |\n"
            f"| HL7 over MLLP, one connection, each message waiting for its ACK | "
            f"{results['hl7_mllp_per_s']:.0f} messages/s |\n"
            f"| DICOM headers read (pydicom, to the pixel data), grouped, mapped | "
            f"{results['dicom_headers_per_s']:.0f} files/s ({results['file_kib']:.0f} KiB files) |\n"
            f"| outbox delivery to the registry (4 in flight; registry 2 workers, PostgreSQL) | "
            f"{results['delivered_per_s']:.0f} messages/s |\n\n"
            "Each durable commit is an fsync (SQLite WAL, synchronous=FULL): the processor's rate is bound by the "
            "disk, not the parser. Delivery is bound by the registry's write path (see the registry benchmark).\n"
        )
        record("## Adapters: HL7, DICOM and delivery (scripts/bench_adapters.py)", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
