"""The C-STORE receiver (Storage SCP, pynetdicom): modalities or the PACS's routing rules send instances here.

Only the header is kept (committed to the outbox's staging table before the status goes back); the pixel data is
dropped. So every transfer syntax pynetdicom knows is accepted for every storage SOP class, as its own ``storescp``
does — JPEG Baseline/Extended/Lossless, JPEG-LS, JPEG 2000, RLE, deflated, … (PS3.5 §10 and Annex A) — and a
compressed image is never refused at the modality (0006,020E); the pixels are not decoded.

Statuses (PS3.4 Annex B, C-STORE response statuses): **0x0000** once the header is committed — also for an instance
whose study will not map (an empty PatientID): the header is stored, the study goes to the quarantine with its reason
and the operator replays it after the fix (README "DICOM" says why this is Success and not a failure). **0xC000**
(cannot understand) for a dataset without the UIDs that identify it, which could not even be held; **0xA700** (out
of resources) when the outbox cannot be written, so the sender keeps the instance and retries. The listener keeps
running whatever one dataset does. C-ECHO is answered, so the sender's "test connection" works.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from adapters.dicom.intake import DicomIntake

log = logging.getLogger("hr_adapter.cstore")


class StoreServer:
    def __init__(self, intake: DicomIntake, host: str, port: int, ae_title: str, max_pdu: int = 0) -> None:
        self.intake = intake
        self.host, self.port = host, port
        self.ae = AE(ae_title=ae_title)
        self.ae.maximum_pdu_size = max_pdu
        for context in AllStoragePresentationContexts:
            if context.abstract_syntax is not None:
                self.ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        self.ae.add_supported_context(Verification, ALL_TRANSFER_SYNTAXES)
        self._server: Any = None
        self.received = 0
        self.syntaxes: Counter[str] = Counter()  # instances received per transfer syntax

    def _on_store(self, event: Any) -> int:
        try:
            ds = event.dataset  # decoded here: a malformed dataset raises, and is refused
        except Exception as exc:
            log.warning("C-STORE dataset cannot be decoded: %s", exc)
            return 0xC000
        status = self.intake.staged(ds)
        if status == 0:
            self.received += 1
            self.syntaxes[str(event.context.transfer_syntax)] += 1
        return status

    def start(self) -> None:
        self._server = self.ae.start_server(
            (self.host, self.port),
            block=False,
            evt_handlers=[(evt.EVT_C_STORE, self._on_store), (evt.EVT_C_ECHO, lambda _e: 0x0000)],
        )
        self.port = self._server.server_address[1]
        log.info("C-STORE SCP %s listening on %s:%s", self.ae.ae_title, self.host, self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None
