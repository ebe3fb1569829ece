"""The adapter assembled from its configuration, and ``hr-adapter run``: every configured listener plus delivery.

Shutting down (SIGTERM, Ctrl-C) stops the listeners first, so nothing new is accepted, then lets in-flight
deliveries finish; whatever is left stays in the outbox for the next start. Killing the process outright loses
nothing either: an ACK or C-STORE success is only ever sent after the outbox commit.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from adapters.codes import Coder, load_catalog, read_code_map
from adapters.config import AdapterConfig
from adapters.dicom.intake import DicomIntake
from adapters.dicom.scp import StoreServer
from adapters.hl7v2.filedrop import DropFolder
from adapters.hl7v2.mllp import MllpServer
from adapters.hl7v2.processor import Hl7Processor
from adapters.push.client import RegistryClient
from adapters.push.delivery import Deliverer
from adapters.push.outbox import Outbox

log = logging.getLogger("hr_adapter")


@dataclass(slots=True)
class Listening:
    """Where the running adapter listens (ports resolved when 0 was configured)."""

    mllp: tuple[str, int] | None = None
    cstore: tuple[str, int] | None = None
    drop: str | None = None
    lines: list[str] = field(default_factory=list)


class Adapter:
    def __init__(self, config: AdapterConfig, *, http: httpx.Client | None = None) -> None:
        self.config = config
        catalog = load_catalog(config.codes.catalog)
        rows = read_code_map(config.codes.map_file, catalog) if config.codes.map_file else []
        self.coder = Coder(catalog, config.hospital.organization, rows)
        self.outbox = Outbox(config.outbox.path)
        self.client = RegistryClient(config.registry, http)
        self.deliverer = Deliverer(self.outbox, self.client, config.outbox)
        self.hl7 = Hl7Processor(config, self.coder, self.outbox, on_queued=self.deliverer.wake)
        self.dicom = DicomIntake(config, self.coder, self.outbox, on_queued=self.deliverer.wake)

    def close(self) -> None:
        self.client.close()
        self.outbox.close()

    def run(
        self, stop: threading.Event, *, on_ready: Callable[[Listening], None] | None = None, deliver: bool = True
    ) -> None:
        """Run every configured listener and the delivery until ``stop`` is set."""
        cfg = self.config
        listening = Listening()
        threads: list[threading.Thread] = []
        listeners_stop = threading.Event()
        if deliver:
            self.deliverer.acquire()
        self.outbox.prune()
        try:
            loop: asyncio.AbstractEventLoop | None = None
            mllp: MllpServer | None = None
            if cfg.hl7.listen is not None:
                loop = asyncio.new_event_loop()
                mllp = MllpServer(
                    self.hl7,
                    cfg.hl7.listen.host,
                    cfg.hl7.listen.port,
                    max_bytes=cfg.hl7.max_message_bytes,
                    idle_timeout=cfg.hl7.idle_timeout_seconds,
                )
                loop.run_until_complete(mllp.start())
                listening.mllp = (cfg.hl7.listen.host, mllp.port)
                listening.lines.append(f"HL7 v2 MLLP   {cfg.hl7.listen.host}:{mllp.port}  ({cfg.hl7.policy.value})")
                t = threading.Thread(target=loop.run_forever, name="mllp", daemon=True)
                t.start()
            if cfg.hl7.drop is not None:
                drop = DropFolder(self.hl7, cfg.hl7.drop.folder, settle_seconds=cfg.hl7.drop.settle_seconds)
                listening.drop = str(cfg.hl7.drop.folder)
                listening.lines.append(f"HL7 file drop {cfg.hl7.drop.folder}")
                t = threading.Thread(
                    target=drop.watch, args=(listeners_stop, cfg.hl7.drop.poll_seconds), name="drop", daemon=True
                )
                t.start()
                threads.append(t)
            store: StoreServer | None = None
            if cfg.dicom.listen is not None:
                store = StoreServer(
                    self.dicom, cfg.dicom.listen.host, cfg.dicom.listen.port, cfg.dicom.ae_title, cfg.dicom.max_pdu
                )
                store.start()
                listening.cstore = (cfg.dicom.listen.host, store.port)
                listening.lines.append(f"DICOM C-STORE {cfg.dicom.ae_title}@{cfg.dicom.listen.host}:{store.port}")
                t = threading.Thread(
                    target=self.dicom.stabilize,
                    args=(listeners_stop, cfg.dicom.stable_seconds),
                    name="stabilize",
                    daemon=True,
                )
                t.start()
                threads.append(t)
            delivery_stop = threading.Event()
            delivery: threading.Thread | None = None
            if deliver:
                delivery = threading.Thread(
                    target=self.deliverer.run, args=(delivery_stop,), name="delivery", daemon=True
                )
                delivery.start()
                listening.lines.append(f"delivering to {cfg.registry.url} from {cfg.outbox.path}")
            if on_ready is not None:
                on_ready(listening)
            stop.wait()
            log.info("stopping: listeners first, then delivery")
            listeners_stop.set()
            if store is not None:
                store.stop()
            if loop is not None and mllp is not None:
                asyncio.run_coroutine_threadsafe(mllp.close(), loop).result(timeout=30)
                loop.call_soon_threadsafe(loop.stop)
            for t in threads:
                t.join(timeout=30)
            if delivery is not None:
                delivery_stop.set()
                self.deliverer.wake()
                delivery.join(timeout=60)
        finally:
            if deliver:
                self.deliverer.release()
