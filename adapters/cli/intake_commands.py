"""``hr-adapter run``, ``hl7 import|convert`` and ``dicom scan|pull``: the listeners, and what is taken in by hand."""

from __future__ import annotations

import signal
import sys
import threading
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from adapters.cli.base import (
    ConfigOption,
    adapter_for,
    app,
    config_of,
    dicom_app,
    err,
    hl7_app,
    intake_summary,
    out,
    setup_logging,
)
from adapters.codes import Coder, load_catalog, read_code_map
from adapters.errors import AdapterError, ConfigError
from adapters.fhir import dumps
from adapters.hl7v2.filedrop import split_messages
from adapters.push.delivery import DeliveryLockedError


@app.command()
def run(
    config_path: ConfigOption,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the configured listeners and deliver to the registry until stopped (SIGTERM / Ctrl-C)."""
    setup_logging(verbose)
    config = config_of(config_path)
    adapter = adapter_for(config)
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def ready(listening: Any) -> None:
        out.print(f"hr-adapter for Organization/{config.hospital.organization} is running:")
        for line in listening.lines:
            out.print(f"  {line}")
        out.print("Stop with Ctrl-C (nothing accepted is lost).", highlight=False)

    try:
        adapter.run(stop, on_ready=ready)
    except (DeliveryLockedError, OSError) as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    finally:
        adapter.close()


# ---------------------------------------------------------------------------------------------------- hl7
@hl7_app.command("import")
def hl7_import(
    config_path: ConfigOption,
    files: Annotated[list[Path], typer.Argument(help="HL7 files (one or more messages each).")],
) -> None:
    """Queue the messages of these files (the files are left where they are); exit 1 if any was refused."""
    config = config_of(config_path)
    adapter = adapter_for(config)
    refused = 0
    try:
        for path in files:
            try:
                data = path.read_bytes()
            except OSError as exc:
                err.print(f"{path}: {exc.strerror}")
                refused += 1
                continue
            for n, raw in enumerate(split_messages(data), start=1):
                result = adapter.hl7.handle(raw, f"import:{path.name}")
                style = "green" if result.code == "AA" else "red"
                out.print(f"{path.name} #{n}: [{style}]{result.code}[/{style}] {result.text}", highlight=False)
                for w in result.warnings:
                    out.print(f"    ! {w}", highlight=False)
                refused += result.code != "AA"
    finally:
        adapter.close()
    out.print("Queued messages are delivered by [bold]hr-adapter run[/bold] or [bold]hr-adapter outbox drain[/bold].")
    if refused:
        raise typer.Exit(1)


@hl7_app.command("convert")
def hl7_convert(config_path: ConfigOption, file: Path) -> None:
    """Print the transaction Bundle each message of FILE becomes (nothing is queued or sent)."""
    config = config_of(config_path, need_registry=False)
    catalog = load_catalog(config.codes.catalog)
    try:
        rows = read_code_map(config.codes.map_file, catalog) if config.codes.map_file else []
    except ConfigError as exc:
        err.print("\n".join(exc.problems))
        raise typer.Exit(2) from None
    from adapters.hl7v2.mapping import OruMapper
    from adapters.hl7v2.message import parse

    mapper = OruMapper(config, Coder(catalog, config.hospital.organization, rows))
    failed = False
    for raw in split_messages(file.read_bytes()):
        try:
            message = parse(raw, default_encoding=config.hl7.encoding, processing_ids=tuple(config.hl7.processing_ids))
            mapped = mapper.map(message)
        except AdapterError as exc:
            err.print(f"[red]{exc}[/red]")
            failed = True
            continue
        sys.stdout.write(dumps(mapped.bundle, indent=True).decode() + "\n")
        for w in mapped.warnings:
            err.print(f"! {w}")
    if failed:
        raise typer.Exit(1)


# ---------------------------------------------------------------------------------------------------- dicom
@dicom_app.command("scan")
def dicom_scan(
    config_path: ConfigOption,
    paths: Annotated[list[Path], typer.Argument(help="Folders (searched recursively) or files.")],
) -> None:
    """Read every DICOM file's header, group them into studies and queue the new or changed ones."""
    from rich.progress import Progress

    config = config_of(config_path)
    adapter = adapter_for(config)
    try:
        files = adapter.dicom.files(paths)
        with Progress(console=out, transient=not out.is_terminal) as progress:
            task = progress.add_task("reading DICOM headers", total=len(files))
            report = adapter.dicom.scan(files, progress=lambda n: progress.advance(task, n))
    finally:
        adapter.close()
    intake_summary(report)


@dicom_app.command("pull")
def dicom_pull(
    config_path: ConfigOption,
    since: Annotated[
        str | None,
        typer.Option(
            help="Only studies with a StudyDate from this date (YYYY-MM-DD); studies without a StudyDate are then "
            "not found. Default: every study the PACS lists, fetching only the new or changed ones."
        ),
    ] = None,
    refresh: Annotated[bool, typer.Option(help="Fetch every listed study again (after a code map change).")] = False,
) -> None:
    """Query the PACS (QIDO-RS) for its studies and queue the new or changed ones; says what the pull covered."""
    from adapters.dicom.pull import PacsPull

    config = config_of(config_path)
    day: date | None = None
    if since:
        try:
            day = datetime.strptime(since.replace("-", ""), "%Y%m%d").date()  # noqa: DTZ007 - a calendar date
        except ValueError:
            err.print(f"[red]--since {since!r} is not a date (YYYY-MM-DD)[/red]")
            raise typer.Exit(2) from None
    adapter = adapter_for(config)
    try:
        with out.status("querying the PACS …"):
            report = PacsPull(adapter.dicom).run(day, refresh=refresh)
    except AdapterError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    finally:
        adapter.close()
    out.print(f"covered: {report.coverage}", highlight=False)
    out.print(f"the PACS listed {report.listed} study(ies), {report.fetched} new or changed fetched", highlight=False)
    intake_summary(report)
