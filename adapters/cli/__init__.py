"""``hr-adapter``: the hospital-side adapter's command line (typer + rich), one module per group of commands.

Every command takes the hospital's configuration file (``--config FILE`` or ``HR_ADAPTER_CONFIG``):

    hr-adapter check-config                 explain every problem in the configuration (and test the connections)
    hr-adapter run                          MLLP listener, file drop, C-STORE receiver and delivery, as configured
    hr-adapter hl7 import FILE…             queue HL7 files once (as the drop folder would), print each ACK code
    hr-adapter hl7 convert FILE             print the FHIR Bundle a message becomes (nothing is queued)
    hr-adapter dicom scan DIR…              queue the studies found in a folder (progress bar)
    hr-adapter dicom pull [--since DATE]    query the PACS (QIDO-RS, every study it lists) and queue new or changed ones
    hr-adapter outbox status|retry|drain|show
    hr-adapter quarantine list|show|replay  DICOM studies that could not be mapped: why, and send them after the fix
    hr-adapter codes unmapped               local codes seen that the code map does not cover
"""

from __future__ import annotations

import logging

from adapters.cli import (  # noqa: F401 - each module registers its commands on the app
    config_commands,
    intake_commands,
    outbox_commands,
)
from adapters.cli.base import app
from adapters.cli.quarantine_commands import quarantine_app
from adapters.masking import MaskingFilter

app.add_typer(quarantine_app, name="quarantine")


def main() -> None:
    if logging.lastResort is not None:  # commands that set up no logging still write warnings through it
        logging.lastResort.addFilter(MaskingFilter())
    app()


__all__ = ["app", "main"]
