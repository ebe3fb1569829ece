"""The C-STORE receiver (Storage SCP, pynetdicom): modalities or the PACS's routing rules send instances here.

Only the header is kept (committed to the outbox's staging table before the success status goes back); the pixel
data is dropped. A dataset without its identifying UIDs is refused with 0xC000, a storage failure answered 0xA700 so
the sender retries; the listener itself keeps running. C-ECHO is answered, so the sender's "test connection" works.
"""

from __future__ import annotations

import logging
from typing import Any

from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

from adapters.dicom.intake import DicomIntake

log = logging.getLogger("hr_adapter.cstore")


class StoreServer:
    def __init__(self, intake: DicomIntake, host: str, port: int, ae_title: str, max_pdu: int = 0) -> None:
        self.intake = intake
        self.host, self.port = host, port
        self.ae = AE(ae_title=ae_title)
        self.ae.maximum_pdu_size = max_pdu
        self.ae.supported_contexts = AllStoragePresentationContexts
        self.ae.add_supported_context(Verification)
        self._server: Any = None
        self.received = 0

    def _on_store(self, event: Any) -> int:
        try:
            ds = event.dataset  # decoded here: a malformed dataset raises, and is refused
        except Exception as exc:
            log.warning("C-STORE dataset cannot be decoded: %s", exc)
            return 0xC000
        status = self.intake.staged(ds)
        if status == 0:
            self.received += 1
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
