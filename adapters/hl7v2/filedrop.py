"""File-drop mode: a folder the LIS writes HL7 files into.

Each file may hold one message or several (each starting with ``MSH``; batch ``FHS/BHS/BTS/FTS`` wrappers are
skipped). A file is read once it has not changed for ``settle_seconds``. When every message in it is accepted it moves
to ``processed/``; otherwise it moves to ``quarantine/`` with a ``<name>.reason.txt`` next to it naming each refused
message and why — the accepted messages of that file are already queued, and a repeat of them is recognized as a
duplicate if the fixed file is dropped again. Names are kept, with a time prefix so repeated names never collide.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from adapters.hl7v2.processor import Hl7Processor, Result

log = logging.getLogger("hr_adapter.drop")

_MSH = re.compile(rb"(?:^|[\r\n])(?=MSH)")
_BATCH = (b"FHS", b"BHS", b"BTS", b"FTS")


@dataclass(frozen=True, slots=True)
class FileOutcome:
    path: Path
    moved_to: Path
    results: list[Result]

    @property
    def ok(self) -> bool:
        return all(r.code == "AA" for r in self.results) and bool(self.results)


def split_messages(data: bytes) -> list[bytes]:
    """The messages of a file: each starts at a segment beginning with ``MSH``; batch header/trailer segments and a
    UTF-8 byte-order mark are dropped."""
    data = data.removeprefix(b"\xef\xbb\xbf")
    lines = re.split(rb"\r\n|\r|\n", data)
    messages: list[list[bytes]] = []
    for line in lines:
        if not line.strip() or line[:3] in _BATCH:
            continue
        if line.startswith(b"MSH") or not messages:
            messages.append([])
        messages[-1].append(line)
    return [b"\r".join(m) + b"\r" for m in messages]


class DropFolder:
    def __init__(self, processor: Hl7Processor, folder: Path, *, settle_seconds: float = 1.0) -> None:
        self.processor = processor
        self.folder = folder
        self.processed = folder / "processed"
        self.quarantine = folder / "quarantine"
        self.settle_seconds = settle_seconds
        for d in (folder, self.processed, self.quarantine):
            d.mkdir(parents=True, exist_ok=True)

    def _candidates(self) -> Iterator[Path]:
        now = time.time()
        for entry in sorted(os.scandir(self.folder), key=lambda e: (e.stat().st_mtime, e.name)):
            if not entry.is_file() or entry.name.startswith(".") or entry.name.endswith((".tmp", ".part")):
                continue
            if now - entry.stat().st_mtime < self.settle_seconds:
                continue  # still being written
            yield Path(entry.path)

    def scan_once(self) -> list[FileOutcome]:
        return [self.process(path) for path in self._candidates()]

    def process(self, path: Path) -> FileOutcome:
        try:
            data = path.read_bytes()
        except OSError as exc:
            log.warning("%s cannot be read: %s", path.name, exc)
            return FileOutcome(path, path, [])
        source = f"drop:{path.name}"
        results: list[Result] = []
        limit = self.processor.config.hl7.max_message_bytes
        if len(data) > limit * 100:
            reason = f"the file is {len(data)} bytes, more than 100 messages of the {limit}-byte limit"
            return FileOutcome(path, self._move(path, self.quarantine, reason), [])
        for raw in split_messages(data):
            results.append(self.processor.handle(raw, source))
        if any(r.retry for r in results):
            # the adapter itself could not take a message (storage full or locked): leave the file for the next
            # scan; its messages already queued are recognized as duplicates then
            log.warning("%s left in place: %s", path.name, next(r.text for r in results if r.retry))
            return FileOutcome(path, path, results)
        if results and all(r.code == "AA" for r in results):
            moved = self._move(path, self.processed, None)
        else:
            lines = [
                f"message {n} (MSH-10 {r.control_id or 'unreadable'}): {r.code} {r.text}"
                for n, r in enumerate(results, start=1)
                if r.code != "AA"
            ]
            if not results:
                lines = ["the file holds no HL7 message (no segment starts with MSH)"]
            accepted = sum(r.code == "AA" for r in results)
            header = f"{path.name}: {accepted} of {len(results)} message(s) accepted; refused:\n"
            moved = self._move(path, self.quarantine, header + "\n".join(lines) + "\n")
        return FileOutcome(path, moved, results)

    def _move(self, path: Path, to: Path, reason: str | None) -> Path:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        target = to / f"{stamp}-{path.name}"
        os.replace(path, target)
        if reason is not None:
            (to / f"{target.name}.reason.txt").write_text(reason, encoding="utf-8")
            log.warning("%s quarantined: %s", path.name, reason.strip().splitlines()[-1])
        return target

    def watch(self, stop: threading.Event, poll_seconds: float) -> None:
        log.info("watching %s for HL7 files", self.folder)
        while not stop.is_set():
            try:
                self.scan_once()
            except Exception:  # the watcher keeps going whatever one file does
                log.exception("error while scanning %s", self.folder)
            stop.wait(poll_seconds)
