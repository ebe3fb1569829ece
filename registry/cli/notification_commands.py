"""``hr-registry notifications status|retry`` (the queue of patient notifications, its dead letters) and
``hr-registry notify-gateway`` (the local gateway for the demo and tests; docs/notifications.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from registry.cli import base
from registry.errors import RegistryError

notifications_app = typer.Typer(help="Patient notifications: the queue and its dead letters.", no_args_is_help=True)
base.app.add_typer(notifications_app, name="notifications")


@notifications_app.command("status")
def notifications_status(limit: Annotated[int, typer.Option(min=1, max=1000)] = 50) -> None:
    """Messages queued, sent and dead, the oldest still queued, and the dead letters with their last error."""
    ctx = base._context()
    state = ctx.notifications.state(base.CLI_PRINCIPAL, limit)
    counts = state.counts
    base.out.print(
        f"queued {counts.get('queued', 0)}  sent {counts.get('sent', 0)}  dead {counts.get('dead', 0)}"
        + (f"  oldest queued {state.oldest_queued.isoformat()[:19]}" if state.oldest_queued else ""),
        highlight=False,
    )
    if state.dead:
        table = Table(title="dead letters (hr-registry notifications retry)")
        for col in ("#", "resource", "channel", "attempts", "last error", "queued"):
            table.add_column(col, overflow="fold")
        for m in state.dead:  # no text, no recipient: an operator needs neither to retry
            table.add_row(str(m.pk), f"{m.resource_type}/{m.resource_id}/_history/{m.version}", m.channel,
                          str(m.attempts), m.last_error or "", m.created.isoformat()[:19])  # fmt: skip
        base.out.print(table)


@notifications_app.command("retry")
def notifications_retry(
    ids: Annotated[list[int] | None, typer.Argument(help="dead letters by # (default: every one)")] = None,
) -> None:
    """Put dead letters back in the queue (attempts reset); the gateway dedupes any it already had."""
    ctx = base._context()
    try:
        n = ctx.notifications.retry(base.CLI_PRINCIPAL, ids or None)
    except RegistryError as exc:
        raise base.fail(exc) from None
    base.out.print(f"{n} dead letter(s) queued again")


@base.app.command("notify-gateway")
def notify_gateway(
    port: Annotated[int, typer.Option(help="port to listen on")] = 8025,
    host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
    file: Annotated[Path, typer.Option(help="JSON lines file of what it received")] = Path("var/notify-gateway.jsonl"),
    secret: Annotated[str | None, typer.Option(envvar="REGISTRY_NOTIFY_GATEWAY_SECRET", help="bearer secret")] = None,
) -> None:
    """Run the local notification gateway: it records what the registry sends (POST /messages) and lists it
    (GET /messages, GET /). Point the registry at it with REGISTRY_NOTIFY_GATEWAY_URL=http://HOST:PORT/messages."""
    from registry.services.notifications.local_gateway import LocalGateway

    file.parent.mkdir(parents=True, exist_ok=True)
    gateway = LocalGateway(file, host=host, port=port, secret=secret)
    server = gateway.build()
    base.out.print(f"local notification gateway on {gateway.url} (recording to {file})", highlight=False)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
