"""What every ``hr-adapter`` command shares: the typer apps, the consoles, the configuration option, loading the
configuration, logging (masked), the adapter, and the summary of an intake."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from adapters.config import AdapterConfig, load_config
from adapters.errors import AdapterError, ConfigError
from adapters.masking import MaskingFilter, mask_id_shaped

app = typer.Typer(
    help="HR Registry hospital adapter: HL7 v2, DICOM and a durable push to the registry.", no_args_is_help=True
)
hl7_app = typer.Typer(help="HL7 v2 ORU^R01 lab and imaging reports.", no_args_is_help=True)
dicom_app = typer.Typer(help="DICOM studies: folder scan and DICOMweb pull.", no_args_is_help=True)
outbox_app = typer.Typer(help="The durable outbox: what waits, what failed for good.", no_args_is_help=True)
codes_app = typer.Typer(help="Local code maps.", no_args_is_help=True)
app.add_typer(hl7_app, name="hl7")
app.add_typer(dicom_app, name="dicom")
app.add_typer(outbox_app, name="outbox")
app.add_typer(codes_app, name="codes")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

ConfigOption = Annotated[
    Path,
    typer.Option("--config", "-c", envvar="HR_ADAPTER_CONFIG", help="The hospital's adapter YAML configuration."),
]


def config_of(path: Path, *, need_registry: bool = True) -> AdapterConfig:
    try:
        return load_config(path, need_registry=need_registry)
    except ConfigError as exc:
        err.print(f"[red]{path}: {len(exc.problems)} problem(s):[/red]")
        for p in exc.problems:
            err.print(f"  ✗ {p}")
        err.print("Run [bold]hr-adapter check-config[/bold] for the full check.")
        raise typer.Exit(2) from None


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("pynetdicom").setLevel(logging.WARNING)
    logging.getLogger("pydicom").setLevel(logging.ERROR)  # invalid values: the adapter says what it left out
    logging.getLogger("httpx").setLevel(logging.WARNING)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, MaskingFilter) for f in handler.filters):
            handler.addFilter(MaskingFilter())  # no ID-shaped number in any line (docs/design.md §6)


def adapter_for(config: AdapterConfig) -> Any:
    from adapters.service import Adapter

    try:
        return Adapter(config)
    except AdapterError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


def intake_summary(report: Any) -> None:
    out.print(
        f"{report.files or report.instances} file(s)/instance(s) read, {report.studies} study(ies): "
        f"{report.queued} queued, {report.unchanged} unchanged since last sent"
    )
    for line in report.unmapped:
        out.print(f"  ! no catalog item: {line}", highlight=False)
    for line in report.warnings:
        out.print(mask_id_shaped(f"  ! {line}"), highlight=False)
    for line in report.quarantined:
        err.print(mask_id_shaped(f"  ✗ held in the quarantine: {line}"), highlight=False)
    if report.quarantined:
        err.print("Fix the cause, then [bold]hr-adapter quarantine replay[/bold] (see [bold]quarantine list[/bold]).")
    for line in report.errors[:50]:
        err.print(f"  ✗ {line}", highlight=False)
    if len(report.errors) > 50:
        err.print(f"  … and {len(report.errors) - 50} more")
    if report.errors or report.quarantined:
        raise typer.Exit(1)
