"""``hr-registry subscriptions status|retry``: the FHIR Subscriptions, their notification queue and dead letters."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from registry.cli import base
from registry.services.subscriptions.queue import NotificationQueue

subscriptions_app = typer.Typer(help="FHIR R4 Subscriptions (rest-hook): notifications and dead letters.",
                                no_args_is_help=True)  # fmt: skip
base.app.add_typer(subscriptions_app, name="subscriptions")


def _queue() -> NotificationQueue:
    ctx = base._context()
    return NotificationQueue(ctx.uow, ctx.clock)


@subscriptions_app.command("status")
def subscriptions_status(
    dead: Annotated[bool, typer.Option("--dead", help="List the dead letters too")] = False,
) -> None:
    """Every Subscription with its status, last error and how many notifications are pending, delivered, dead."""
    queue = _queue()
    table = Table("subscription", "status", "subscriber", "criteria", "pending", "delivered", "dead", "withheld",
                  "error")  # fmt: skip
    states = queue.status()
    for s in states:
        table.add_row(s.id, s.status, s.client_id, s.criteria, *(str(s.counts.get(k, 0)) for k in
                      ("pending", "delivered", "dead", "withheld")), s.error or "")  # fmt: skip
    base.out.print(table)
    base.out.print(f"{len(states)} subscriptions, {sum(s.counts.get('dead', 0) for s in states)} dead letters")
    if dead:
        letters = Table("#", "subscription", "resource", "attempts", "last error")
        for row in queue.dead_letters():
            letters.add_row(str(row.pk), row.subscription_id,
                            f"{row.resource_type}/{row.resource_id}/_history/{row.version}", str(row.attempts),
                            row.last_error or "")  # fmt: skip
        base.out.print(letters)


@subscriptions_app.command("retry")
def subscriptions_retry(
    subscription: Annotated[str | None, typer.Option("--subscription", help="Only this Subscription's")] = None,
    delivery: Annotated[int | None, typer.Option("--delivery", help="Only this dead letter (status --dead)")] = None,
) -> None:
    """Put dead letters back in the queue, due now, with their attempts counted afresh."""
    count = _queue().retry(subscription, delivery)
    base.out.print(f"{count} dead letters queued again")
