"""``hr-registry namespaces add|list|remove``: the identifier systems each organization owns."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from registry.cli import base
from registry.errors import RegistryError


@base.namespaces_app.command("add")
def namespaces_add(
    patterns: Annotated[list[str], typer.Argument(help="identifier systems: exact, or a prefix ending in /*, :*, .*")],
    org: Annotated[str, typer.Option(help="the Organization id that owns them")],
) -> None:
    """Declare identifier systems an organization owns (its MRNs, report, accession and order numbers): only it may
    write identifiers in them."""
    ctx = base._context()
    try:
        added = ctx.namespaces.declare(base.CLI_PRINCIPAL, org, patterns)
    except RegistryError as exc:
        raise base.fail(exc) from None
    for ns in added:
        base.out.print(f"{ns.pattern}  →  Organization/{ns.org_id}")
    if len(added) < len(set(patterns)):
        base.out.print(f"{len(set(patterns)) - len(added)} already declared for {org}")


@base.namespaces_app.command("list")
def namespaces_list(org: Annotated[str | None, typer.Option(help="one organization (default: all)")] = None) -> None:
    """Every declared identifier namespace and its owner."""
    ctx = base._context()
    table = Table(title="identifier namespaces")
    for col in ("namespace", "organization", "declared"):
        table.add_column(col, overflow="fold")
    for ns in ctx.namespaces.list(org):
        table.add_row(ns.pattern, ns.org_id, ns.created.isoformat()[:19])
    base.out.print(table)


@base.namespaces_app.command("remove")
def namespaces_remove(pattern: Annotated[str, typer.Argument()]) -> None:
    """Withdraw a namespace (identifiers already written stay; new writes in it are refused)."""
    ctx = base._context()
    try:
        ctx.namespaces.remove(base.CLI_PRINCIPAL, pattern)
    except RegistryError as exc:
        raise base.fail(exc) from None
    base.out.print(f"removed {pattern}")
