"""``hr-registry codes|qualifications|index …``: code maps, quality-control qualifications, the result index."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from registry.cli import base
from registry.errors import RegistryError


@base.codes_app.command("import")
def codes_import(
    file: Annotated[Path, typer.Argument(help="CSV: system,code,item[,display] (item: id, regional code or LOINC)")],
    org: Annotated[str, typer.Option(help="the hospital (Organization id) whose codes these are")],
) -> None:
    """Import a hospital's local code map from CSV as its ConceptMap (replacing the previous one)."""
    import orjson

    from registry.services.audit import AuditContext
    from registry.services.code_maps import concept_map_from_csv

    ctx = base._context()
    try:
        text = file.read_text(encoding="utf-8-sig")
    except OSError as exc:
        base.err.print(f"[red]cannot read {file}: {exc.strerror}[/red]")
        raise typer.Exit(2) from None
    try:
        concept_map = concept_map_from_csv(text, org, ctx.catalog)
        result = ctx.ingest.update(
            base.CLI_PRINCIPAL,
            AuditContext("cli", base.CLI_PRINCIPAL, "update"),
            "ConceptMap",
            concept_map["id"],
            orjson.dumps(concept_map).decode(),
            None,
        )
    except RegistryError as exc:
        raise base.fail(exc) from None
    n = sum(len(g["element"]) for g in concept_map["group"])
    base.out.print(f"ConceptMap/{result.stored.id} version {result.stored.version}: {n} local codes of {org} mapped")


@base.codes_app.command("unmapped")
def codes_unmapped(
    org: Annotated[str | None, typer.Option(help="one hospital (default: all)")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 100,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Incoming result codes that map to no catalog item, most frequent first — what to map next."""
    ctx = base._context()
    rows = ctx.administration.unmapped(org, limit)
    if as_json:
        for r in rows:
            typer.echo(json.dumps(r, ensure_ascii=False))
        return
    table = Table(title=f"unmapped codes{' of ' + org if org else ''}")
    for col in ("org", "system", "code", "display", "type", "count", "last seen"):
        table.add_column(col, overflow="fold")
    for r in rows:
        table.add_row(
            r["org"],
            r["system"],
            r["code"],
            r["display"] or "",
            r["resource_type"],
            str(r["count"]),
            r["last_seen"][:19],
        )
    base.out.print(table if rows else "no unmapped codes")


@base.quals_app.command("add")
def qualifications_add(
    org: Annotated[str, typer.Option(help="Organization id")],
    scope: Annotated[str, typer.Option(help="recognition scope: beijing, jjjl, alliance")],
    valid_from: Annotated[str, typer.Option("--from", help="YYYY-MM-DD")],
    item: Annotated[str | None, typer.Option(help="an item id (or use --group)")] = None,
    group: Annotated[str | None, typer.Option(help="a catalog group, e.g. hematology, ct")] = None,
    valid_to: Annotated[str | None, typer.Option("--to", help="YYYY-MM-DD (inclusive)")] = None,
    note: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Record that an organization passed EQA for an item or group, in a scope, over dates."""
    ctx = base._context()
    try:
        q = ctx.administration.add(
            base.CLI_PRINCIPAL,
            {
                "org": org,
                "item": item,
                "group": group,
                "scope": scope,
                "valid_from": valid_from,
                "valid_to": valid_to,
                "note": note,
            },
        )
    except RegistryError as exc:
        raise base.fail(exc) from None
    base.out.print(
        f"qualification {q['id']}: {org} {item or group} in {scope} from {q['valid_from']}"
        f"{' to ' + q['valid_to'] if q['valid_to'] else ''}"
    )


@base.quals_app.command("list")
def qualifications_list(org: Annotated[str | None, typer.Option()] = None) -> None:
    """Qualifications (revoked ones marked)."""
    ctx = base._context()
    table = Table(title="qualifications")
    table.add_column("id", no_wrap=True)
    for col in ("org", "item/group", "scope", "from", "to", "revoked"):
        table.add_column(col, overflow="fold")
    for q in ctx.administration.qualifications(base.CLI_PRINCIPAL, org):
        table.add_row(
            q["id"],
            q["org"],
            q["item"] or q["group"],
            q["scope"],
            q["valid_from"],
            q["valid_to"] or "",
            (q["revoked"] or "")[:10],
        )
    base.out.print(table)


@base.quals_app.command("revoke")
def qualifications_revoke(qual_id: Annotated[str, typer.Argument()]) -> None:
    """Revoke a qualification (kept in the list as revoked)."""
    ctx = base._context()
    try:
        ctx.administration.revoke(base.CLI_PRINCIPAL, qual_id)
    except RegistryError as exc:
        raise base.fail(exc) from None
    base.out.print(f"revoked {qual_id}")


@base.index_app.command("rebuild")
def index_rebuild(batch: Annotated[int, typer.Option(min=1, max=10_000)] = 500) -> None:
    """Recompute the whole result index from the stored resources (with a progress bar)."""
    from rich.progress import Progress

    ctx = base._context()
    total = ctx.administration.count_indexable()
    with Progress(console=base.out) as progress:
        task = progress.add_task("rebuilding the result index", total=total)
        done = ctx.administration.rebuild(batch, lambda n: progress.advance(task, n))
    base.out.print(f"result index rebuilt from {done} resources")


@base.index_app.command("check")
def index_check(batch: Annotated[int, typer.Option(min=1, max=10_000)] = 500) -> None:
    """Compare the result index with a recomputation; exit 1 and list the differences if any."""
    from rich.progress import Progress

    ctx = base._context()
    total = ctx.administration.count_indexable()
    with Progress(console=base.out) as progress:
        task = progress.add_task("checking the result index", total=total)
        diff = ctx.administration.check(batch, lambda n: progress.advance(task, n))
    if diff.clean:
        base.out.print("[green]the result index matches a recomputation from the stored resources[/green]")
        return
    base.err.print(f"[red]{len(diff.missing)} row(s) missing, {len(diff.extra)} row(s) extra[/red]")
    for row in diff.missing[:20]:
        base.err.print(f"  missing {row['res_type']}/{row['res_id']} item {row['item_id']}")
    for row in diff.extra[:20]:
        base.err.print(f"  extra   {row['res_type']}/{row['res_id']} item {row['item_id']}")
    raise typer.Exit(1)
