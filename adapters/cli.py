"""``hr-adapter``: the hospital-side adapter's command line (typer + rich).

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
import signal
import socket
import sys
import threading
import time
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any

import httpx
import orjson
import typer
from rich.console import Console
from rich.table import Table

from adapters.codes import Coder, load_catalog, read_code_map
from adapters.config import AdapterConfig, load_config
from adapters.dicom.quarantine import Quarantine
from adapters.errors import AdapterError, ConfigError
from adapters.fhir import dumps
from adapters.hl7v2.filedrop import split_messages
from adapters.masking import MaskingFilter, mask_document, mask_id_shaped
from adapters.push.delivery import DeliveryLockedError
from adapters.push.outbox import Outbox
from adapters.quarantine_commands import quarantine_app

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
app.add_typer(quarantine_app, name="quarantine")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

ConfigOption = Annotated[
    Path,
    typer.Option("--config", "-c", envvar="HR_ADAPTER_CONFIG", help="The hospital's adapter YAML configuration."),
]


def _config(path: Path, *, need_registry: bool = True) -> AdapterConfig:
    try:
        return load_config(path, need_registry=need_registry)
    except ConfigError as exc:
        err.print(f"[red]{path}: {len(exc.problems)} problem(s):[/red]")
        for p in exc.problems:
            err.print(f"  ✗ {p}")
        err.print("Run [bold]hr-adapter check-config[/bold] for the full check.")
        raise typer.Exit(2) from None


def _setup_logging(verbose: bool) -> None:
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


def _adapter(config: AdapterConfig) -> Any:
    from adapters.service import Adapter

    try:
        return Adapter(config)
    except AdapterError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


# ---------------------------------------------------------------------------------------------------- check-config
@app.command("check-config")
def check_config(
    config_path: ConfigOption,
    offline: Annotated[bool, typer.Option(help="Do not contact the registry or the PACS.")] = False,
) -> None:
    """Check the configuration and explain every problem found (exit 1 if any)."""
    problems: list[str] = []
    oks: list[str] = []
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        for p in exc.problems:
            err.print(f"  ✗ {p}")
        err.print(f"[red]{len(exc.problems)} problem(s) in {config_path}[/red]")
        raise typer.Exit(1) from None
    oks.append(f"{config_path}: the settings are well-formed")
    try:
        catalog = load_catalog(config.codes.catalog)
        oks.append(f"catalog: {len(catalog.items)} items")
        if config.codes.map_file:
            rows = read_code_map(config.codes.map_file, catalog)
            mapped = sum(r.item is not None for r in rows)
            oks.append(
                f"code map {config.codes.map_file.name}: {mapped} code(s) mapped, {len(rows) - mapped} declared "
                "not recognized items"
            )
            foreign = sorted({r.system for r in rows} - {config.local_code_system})
            if foreign:
                oks.append(
                    f"code map also covers systems {', '.join(foreign)} (the local system is "
                    f"{config.local_code_system})"
                )
        else:
            oks.append("no code map: only LOINC and catalog codes will map to recognized items")
    except ConfigError as exc:
        problems += exc.problems
    try:
        Outbox(config.outbox.path).close()
        oks.append(f"outbox {config.outbox.path} is writable")
    except AdapterError as exc:
        problems.append(str(exc))
    if config.hl7.drop is not None:
        folder = config.hl7.drop.folder
        if folder.exists() and not folder.is_dir():
            problems.append(f"hl7.drop.folder {folder} exists and is not a folder")
    listeners = [("hl7.listen", config.hl7.listen), ("dicom.listen", config.dicom.listen)]
    if all(listen is None for _, listen in listeners) and config.hl7.drop is None and config.dicom.pull is None:
        problems.append("nothing to do: configure at least one of hl7.listen, hl7.drop, dicom.listen, dicom.pull")
    for name, listen in listeners:
        if listen is None or listen.port == 0:
            continue
        with socket.socket() as s:
            try:
                s.bind((listen.host, listen.port))
                oks.append(f"{name} {listen.host}:{listen.port} is free")
            except OSError as exc:
                problems.append(
                    f"{name} {listen.host}:{listen.port} cannot be bound ({exc.strerror}); is another "
                    "program (or a running hr-adapter) using it?"
                )
    if config.dicom.listen is not None and not config.dicom.wado_rs:
        oks.append("note: dicom.wado_rs is not set, so studies will carry no viewer Endpoint")
    if not offline:
        problems += _check_registry(config, oks)
        if config.dicom.pull is not None:
            problems += _check_pacs(config, oks)
    for line in oks:
        out.print(f"  ✓ {line}")
    for p in problems:
        err.print(f"  ✗ {p}")
    if problems:
        err.print(f"[red]{len(problems)} problem(s)[/red]")
        raise typer.Exit(1)
    out.print("[green]configuration OK[/green]")


def _check_registry(config: AdapterConfig, oks: list[str]) -> list[str]:
    from adapters.push.client import RegistryClient

    client = RegistryClient(config.registry)
    try:
        try:
            client.token(force=True)
        except AdapterError as exc:
            return [f"registry: {exc}"]
        oks.append(f"registry {config.registry.url}: client {config.registry.client_id} authenticated")
        org = config.hospital.organization
        r = client.read(f"/Organization/{org}")
        if r.status_code != 200:
            return [
                f"registry: Organization/{org} answered {r.status_code}: the hospital must be registered first "
                "(hr-registry demo load, or PUT /fhir/Organization/<id> by an administrator)"
            ]
        oks.append(f"registry knows Organization/{org}")
        return []
    except AdapterError as exc:
        return [f"registry: {exc}"]
    finally:
        client.close()


def _check_pacs(config: AdapterConfig, oks: list[str]) -> list[str]:
    pull = config.dicom.pull
    if pull is None:
        return []
    auth = (pull.username, pull.password or "") if pull.username else None
    try:
        r = httpx.get(
            f"{pull.qido_rs.rstrip('/')}/studies",
            params={"limit": 1},
            auth=auth,
            timeout=15,
            headers={"Accept": "application/dicom+json"},
        )
    except httpx.HTTPError as exc:
        return [f"dicom.pull: the PACS at {pull.qido_rs} cannot be reached: {exc}"]
    if r.status_code not in (200, 204):
        return [f"dicom.pull: QIDO-RS {pull.qido_rs}/studies answered {r.status_code}"]
    oks.append(f"PACS {pull.qido_rs} answers QIDO-RS")
    return []


# ---------------------------------------------------------------------------------------------------- run
@app.command()
def run(
    config_path: ConfigOption,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the configured listeners and deliver to the registry until stopped (SIGTERM / Ctrl-C)."""
    _setup_logging(verbose)
    config = _config(config_path)
    adapter = _adapter(config)
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
    config = _config(config_path)
    adapter = _adapter(config)
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
    config = _config(config_path, need_registry=False)
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

    config = _config(config_path)
    adapter = _adapter(config)
    try:
        files = adapter.dicom.files(paths)
        with Progress(console=out, transient=not out.is_terminal) as progress:
            task = progress.add_task("reading DICOM headers", total=len(files))
            report = adapter.dicom.scan(files, progress=lambda n: progress.advance(task, n))
    finally:
        adapter.close()
    _intake_summary(report)


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

    config = _config(config_path)
    day: date | None = None
    if since:
        try:
            day = datetime.strptime(since.replace("-", ""), "%Y%m%d").date()  # noqa: DTZ007 - a calendar date
        except ValueError:
            err.print(f"[red]--since {since!r} is not a date (YYYY-MM-DD)[/red]")
            raise typer.Exit(2) from None
    adapter = _adapter(config)
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
    _intake_summary(report)


def _intake_summary(report: Any) -> None:
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


# ---------------------------------------------------------------------------------------------------- outbox
def _age(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@outbox_app.command("status")
def outbox_status(config_path: ConfigOption, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Counts of waiting, retrying, dead-lettered and delivered messages, and the dead letters."""
    config = _config(config_path, need_registry=False)
    outbox = Outbox(config.outbox.path)
    try:
        st = outbox.status()
        dead = outbox.dead_letters()
        quarantined = Quarantine(outbox).count()
    finally:
        outbox.close()
    if as_json:
        doc = {
            "pending": st.pending,
            "waiting_for_references": st.waiting,
            "retrying": st.retrying,
            "dead": st.dead,
            "delivered": st.delivered,
            "delivered_in_requests": st.requests,
            "accepted": st.accepted,
            "duplicates": st.duplicates,
            "quarantined_studies": quarantined,
            "oldest_pending_seconds": st.oldest_pending_age,
            "dead_letters": [
                {
                    "id": d.id,
                    "source": d.source,
                    "summary": mask_id_shaped(d.summary),
                    "status": d.status,
                    "outcome": mask_id_shaped(d.outcome),
                    "attempts": d.attempts,
                }
                for d in dead
            ],
        }
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    out.print(f"outbox {config.outbox.path}")
    out.print(
        f"  pending {st.pending} (retrying {st.retrying}, waiting for a patient/study {st.waiting}); "
        f"oldest {_age(st.oldest_pending_age)}; next attempt in {_age(st.next_attempt_in)}"
    )
    out.print(
        f"  delivered {st.delivered} (in {st.requests} requests), accepted {st.accepted}, "
        f"duplicates ignored {st.duplicates}, "
        f"dead letters {st.dead}"
    )
    for mid, summary, error in st.last_errors:
        out.print(mask_id_shaped(f"  retrying #{mid} {summary}: {error}"), highlight=False)
    if quarantined:
        out.print(f"  DICOM studies held in the quarantine {quarantined}: [bold]hr-adapter quarantine list[/bold]")
    if dead:
        out.print("dead letters (refused by the registry for good):")
        for d in dead:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(d.failed_at))
            out.print(mask_id_shaped(f"  #{d.id} {when} from {d.source}: {d.summary}"), highlight=False)
            out.print(
                mask_id_shaped(f"      HTTP {d.status or '—'} after {d.attempts} attempt(s): {d.outcome}"),
                highlight=False,
            )
        out.print("Fix the cause, then [bold]hr-adapter outbox retry[/bold] (all) or [bold]retry ID…[/bold].")


@outbox_app.command("retry")
def outbox_retry(
    config_path: ConfigOption,
    ids: Annotated[list[int] | None, typer.Argument(help="Dead-letter ids (default: all).")] = None,
) -> None:
    """Put dead letters back in the queue, and make every waiting message due now."""
    config = _config(config_path, need_registry=False)
    outbox = Outbox(config.outbox.path)
    try:
        moved = outbox.retry_dead(ids or None)
        due = outbox.retry_now()
    finally:
        outbox.close()
    out.print(f"{moved} dead letter(s) queued again; {due} waiting message(s) due now")


@outbox_app.command("drain")
def outbox_drain(config_path: ConfigOption, verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    """Deliver everything that can be delivered now, then exit (1 if messages remain)."""
    from adapters.push.client import RegistryClient
    from adapters.push.delivery import Deliverer

    _setup_logging(verbose)
    config = _config(config_path)
    outbox = Outbox(config.outbox.path)
    client = RegistryClient(config.registry)
    deliverer = Deliverer(outbox, client, config.outbox)
    try:
        deliverer.acquire()
    except DeliveryLockedError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    try:
        outbox.retry_now()
        with out.status(f"delivering {outbox.pending_count()} message(s) …"):
            result = deliverer.run(threading.Event(), until_empty=True)
    finally:
        deliverer.release()
        client.close()
        outbox.close()
    out.print(f"delivered {result.delivered}, dead-lettered {result.dead}, still pending {result.pending}")
    if result.pending:
        raise typer.Exit(1)


@outbox_app.command("show")
def outbox_show(config_path: ConfigOption, dead_id: int) -> None:
    """Print a dead letter's Bundle (to see what the registry refused), national identifiers masked."""
    config = _config(config_path, need_registry=False)
    outbox = Outbox(config.outbox.path)
    try:
        body = outbox.dead_body(dead_id)
    finally:
        outbox.close()
    if body is None:
        err.print(f"no dead letter {dead_id}")
        raise typer.Exit(1)
    shown = mask_document(orjson.loads(body))
    sys.stdout.write(orjson.dumps(shown, option=orjson.OPT_INDENT_2).decode() + "\n")


# ---------------------------------------------------------------------------------------------------- codes
@codes_app.command("unmapped")
def codes_unmapped(config_path: ConfigOption) -> None:
    """Local codes this adapter has seen that its code map does not cover, most frequent first."""
    config = _config(config_path, need_registry=False)
    outbox = Outbox(config.outbox.path)
    try:
        rows = outbox.unmapped()
    finally:
        outbox.close()
    if not rows:
        out.print("no unmapped codes seen")
        return
    table = Table("system", "code", "display", "where", "count", "last seen")
    for system, code, display, place, count, last in rows:
        table.add_row(system, code, display, place, str(count), time.strftime("%Y-%m-%d %H:%M", time.localtime(last)))
    out.print(table)
    out.print(
        f"Add rows to {config.codes.map_file or 'a code map file (codes.map_file)'}: system,code,item "
        "(item '-' for a test that is not a recognized item)."
    )


def main() -> None:
    if logging.lastResort is not None:  # commands that set up no logging still write warnings through it
        logging.lastResort.addFilter(MaskingFilter())
    app()
