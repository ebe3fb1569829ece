"""``hr-registry demo pacs``: the demo's local PACS (Orthanc + DICOMweb on loopback) with the demo region's images,
run by ``./scripts/serve`` beside the registry (``registry.services.demo.local_pacs``)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from registry.cli import base
from registry.settings import Settings

MISSING = 3
"""The exit status when Orthanc or its DICOMweb plugin is not installed (``./scripts/serve`` then goes on without)."""


@base.demo_app.command("pacs")
def demo_pacs(
    port: Annotated[int, typer.Option(help="Orthanc's HTTP port on 127.0.0.1; 0 or a taken port: a free one")] = 8042,
    storage: Annotated[Path | None, typer.Option(help="Orthanc's storage (default: REGISTRY_VAR_DIR/orthanc)")] = None,
    endpoints_file: Annotated[
        Path | None, typer.Option(help="write REGISTRY_DICOMWEB_ENDPOINTS for the demo hospitals here")
    ] = None,
    patients: Annotated[int, typer.Option(min=1, max=5000, help="the demo region's size (as loaded)")] = 50,
) -> None:
    """Run a local Orthanc holding the demo region's images (pydicom's sample files with the demo studies' UIDs),
    until Ctrl-C / SIGTERM; Orthanc stops with it. Exit status 3 when Orthanc is not installed."""
    from registry.catalog_file import load_catalog
    from registry.services.demo import demo_studies
    from registry.services.demo.local_pacs import LocalPacs, free_port, missing, port_free, write_endpoints
    from registry.services.demo.people import HOSPITALS

    why = missing()
    if why is not None:
        base.err.print(f"no local PACS: {why}", highlight=False)
        raise typer.Exit(MISSING)
    settings = Settings.from_env()
    with contextlib.suppress(OSError):  # filling the PACS yields the CPU to the registry's own first start
        os.nice(10)
    chosen = port if port and port_free(port) else free_port()
    pacs = LocalPacs(storage or settings.var_dir / "orthanc", chosen)
    if endpoints_file is not None:  # before Orthanc answers: the registry reads it as it starts
        write_endpoints(endpoints_file, pacs.endpoints(h.id for h in HOSPITALS))

    def finish(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)  # also while uploading: Orthanc is stopped on the way out

    signal.signal(signal.SIGTERM, finish)
    signal.signal(signal.SIGINT, finish)
    try:
        try:
            pacs.start()
        except RuntimeError as exc:
            base.err.print(f"no local PACS: {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        base.out.print(f"local PACS (Orthanc, DICOMweb) on {pacs.dicom_web}, storage {pacs.folder}", highlight=False,
                       soft_wrap=True)  # fmt: skip
        done = pacs.upload(demo_studies(load_catalog(settings.catalog_path), datetime.now(UTC), patients))
        if done.studies:
            base.out.print(
                f"local PACS: {done.studies} demo studies ({done.instances} instances) stored in {done.seconds:.1f} s"
                + (f", {done.kept} already there" if done.kept else ""),
                highlight=False,
                soft_wrap=True,
            )
        else:
            base.out.print(f"local PACS: holds the {done.kept} demo studies", highlight=False, soft_wrap=True)
        threading.Event().wait()  # until a signal
    finally:
        pacs.stop()
