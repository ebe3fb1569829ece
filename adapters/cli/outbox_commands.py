"""``hr-adapter outbox status|retry|drain|show`` and ``codes unmapped``: what waits, what failed for good, and the
local codes the code map does not cover."""

from __future__ import annotations

import sys
import threading
import time
from typing import Annotated

import orjson
import typer
from rich.table import Table

from adapters.cli.base import (
    ConfigOption,
    codes_app,
    config_of,
    err,
    out,
    outbox_app,
    setup_logging,
)
from adapters.dicom.quarantine import Quarantine
from adapters.masking import mask_document, mask_id_shaped
from adapters.push.delivery import DeliveryLockedError
from adapters.push.outbox import Outbox


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
    config = config_of(config_path, need_registry=False)
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
    config = config_of(config_path, need_registry=False)
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

    setup_logging(verbose)
    config = config_of(config_path)
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
    config = config_of(config_path, need_registry=False)
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
    config = config_of(config_path, need_registry=False)
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
