"""A hospital's hr-adapter against the topology's balancer: HL7 ORU^R01 messages accepted into its durable outbox at
a steady pace (each ACKed once committed, as over MLLP) while its deliverer sends them to the registry — through a
failover, in the test. Afterwards every accepted message must be in the registry exactly once (its report found by
its number) and none in the dead letters."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from adapters.codes import Coder, load_catalog, read_code_map
from adapters.hl7v2.processor import Hl7Processor
from adapters.push.client import RegistryClient
from adapters.push.delivery import Deliverer, DrainResult
from adapters.push.outbox import Outbox
from scripts.bench_adapters import config, message

REPORT_NUMBERS = "https://hosp-a.example.cn/fhir/sid/report-no"
FIRST = 30_000_000


@dataclass
class OutboxFeed:
    folder: Path
    base: str
    secret: str
    every: float = 0.05
    accepted: list[str] = field(default_factory=list)  # the report numbers ACKed by the adapter
    _stop_feeding: threading.Event = field(default_factory=threading.Event)
    _stop_delivery: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    result: DrainResult | None = None
    dead_letters: int = 0  # in the outbox's dead letters once drained

    def start(self) -> OutboxFeed:
        self.folder.mkdir(parents=True, exist_ok=True)
        cfg = config(self.folder, self.base, self.secret, batch_size=5)
        # the failover's pause is seconds: retry within that (the default backs off up to 5 minutes)
        cfg = cfg.model_copy(update={"outbox": cfg.outbox.model_copy(update={"max_backoff_seconds": 4.0})})
        catalog = load_catalog()
        assert cfg.codes.map_file is not None
        coder = Coder(catalog, "hosp-a", read_code_map(cfg.codes.map_file, catalog))
        self.outbox = Outbox(cfg.outbox.path)
        self.processor = Hl7Processor(cfg, coder, self.outbox)
        self.client = RegistryClient(cfg.registry)
        self.deliverer = Deliverer(self.outbox, self.client, cfg.outbox)
        self.deliverer.acquire()
        self._threads = [
            threading.Thread(target=self._feed, daemon=True),
            threading.Thread(target=self._deliver, daemon=True),
        ]
        for t in self._threads:
            t.start()
        return self

    def _feed(self) -> None:
        n = 0
        while not self._stop_feeding.is_set():
            n += 1
            if self.processor.handle(message(FIRST + n), "topology").code == "AA":
                self.accepted.append(f"R-B{FIRST + n:07d}")
                self.deliverer.wake()
            time.sleep(self.every)

    def _deliver(self) -> None:
        self.result = self.deliverer.run(self._stop_delivery, idle_poll=0.2)

    def drain(self, timeout: float) -> DrainResult:
        """Stop accepting, wait until the outbox is empty (or ``timeout``), stop delivering."""
        self._stop_feeding.set()
        self._threads[0].join(10)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.outbox.pending_count():
            time.sleep(0.2)
        self._stop_delivery.set()
        self._threads[1].join(30)
        self.dead_letters = len(self.outbox.dead_letters())
        self.deliverer.release()
        self.client.close()
        assert self.result is not None, "the deliverer did not finish"
        return self.result

    def close(self) -> None:
        self._stop_feeding.set()
        self._stop_delivery.set()
        self.outbox.close()
