"""``hr-registry catalog list|show|search|validate``: the recognized-item catalog."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from catalog import Catalog, InvalidCatalogError, Item, Kind, parse_catalog
from catalog.codes import LOINC
from registry.catalog_file import read_document
from registry.cli import base
from registry.errors import CatalogUnavailableError
from registry.reference_tables import USABLE_STATUSES, load_loinc_reference
from registry.settings import Settings


def load_catalog_file(path: Path | None) -> Catalog:
    path = path or Settings.from_env().catalog_path
    try:
        return parse_catalog(read_document(path))
    except (InvalidCatalogError, CatalogUnavailableError) as exc:
        base.err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


def _codes(item: Item) -> str:
    return ", ".join(c.code for c in item.codes if c.system == LOINC) or "—"


def _item_row(item: Item) -> dict[str, object]:
    row: dict[str, object] = {
        "id": item.id,
        "kind": item.kind.value,
        "group": item.group,
        "name_zh": item.name_zh,
        "name_en": item.name_en,
        "abbr": list(item.abbr),
        "regional_code": item.regional_code,
        "loinc": list(item.loinc),
        "validity_days": item.validity.days,
        "validity_source": item.validity.source,
        "fee_cny": str(item.fee.amount),
        "scope": sorted(item.scopes),
    }
    if item.members:
        row["members"] = list(item.members)
    if item.lab:
        row |= {"specimen": item.lab.specimen, "unit": item.lab.unit}
    if item.imaging:
        im = item.imaging
        row |= {"modality": im.modality, "body_part": im.body_part, "contrast": im.contrast.value,
                "technique": im.technique}  # fmt: skip
    return row


def _table(items: list[Item], title: str) -> Table:
    table = Table(title=title, show_lines=False)
    for col in ("id", "group", "名称", "name", "LOINC", "regional", "days"):
        table.add_column(col, overflow="fold")
    for i in items:
        table.add_row(i.id, i.group, i.name_zh, i.name_en, _codes(i), i.regional_code, str(i.validity.days))
    return table


@base.catalog_app.command("list")
def catalog_list(
    kind: Annotated[Kind | None, typer.Option(help="lab or imaging")] = None,
    group: Annotated[str | None, typer.Option(help="group code, e.g. hematology, ct")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table")] = False,
    file: base.CatalogOption = None,
) -> None:
    """List catalog items, optionally of one kind or group."""
    catalog = load_catalog_file(file)
    if group is not None and group not in catalog.groups:
        base.err.print(f"[red]unknown group {group!r}; groups: {', '.join(catalog.groups)}[/red]")
        raise typer.Exit(2)
    items = [i for i in catalog if (kind is None or i.kind is kind) and (group is None or i.group == group)]
    if as_json:
        for i in items:
            typer.echo(json.dumps(_item_row(i), ensure_ascii=False))
        return
    base.out.print(_table(items, f"{catalog.title_zh} — {len(items)} item(s)"))


@base.catalog_app.command("show")
def catalog_show(
    item_id: Annotated[str, typer.Argument(help="item id such as L004 or I010")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    file: base.CatalogOption = None,
) -> None:
    """Show one item with every field."""
    catalog = load_catalog_file(file)
    item = catalog.get(item_id.strip().upper())
    if item is None:
        hits = catalog.search(item_id, limit=5)
        hint = f" — did you mean {', '.join(h.item.id for h in hits)}?" if hits else ""
        base.err.print(f"[red]no item {item_id!r}{hint}[/red]")
        raise typer.Exit(1)
    row = _item_row(item)
    if as_json:
        typer.echo(json.dumps(row, ensure_ascii=False, indent=2))
        return
    table = Table(title=f"{item.id} {item.name_zh}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for key, value in row.items():
        table.add_row(key, ", ".join(map(str, value)) if isinstance(value, list) else str(value))
    if item.members:
        table.add_row("members (names)", ", ".join(catalog.item(m).name_zh for m in item.members))
    panels = catalog.panels_containing(item.id)
    if panels:
        table.add_row("in panels", ", ".join(f"{p} {catalog.item(p).name_zh}" for p in panels))
    for listing in item.listings:
        table.add_row("listing", f"{listing.list_id} ({listing.evidence})")
    if item.note:
        table.add_row("note", item.note)
    base.out.print(table)


@base.catalog_app.command("search")
def catalog_search(
    text: Annotated[str, typer.Argument(help="Chinese or English name, abbreviation, code or system|code")],
    kind: Annotated[Kind | None, typer.Option(help="lab or imaging")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 20,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    file: base.CatalogOption = None,
) -> None:
    """Search items by name (中文 or English), abbreviation, LOINC or regional code, best match first."""
    catalog = load_catalog_file(file)
    hits = catalog.search(text, kind=kind, limit=limit)
    if as_json:
        for h in hits:
            typer.echo(json.dumps(_item_row(h.item), ensure_ascii=False))
        return
    if not hits:
        base.err.print(f"no item matches {text!r}")
        raise typer.Exit(1)
    base.out.print(_table([h.item for h in hits], f"{len(hits)} match(es) for {text!r}"))


@base.catalog_app.command("validate")
def catalog_validate(file: Annotated[Path, typer.Argument(help="catalog YAML to check")]) -> None:
    """Check a catalog file: structure, ids, codes, validity provenance, and every LOINC code against the
    shipped verified tables (status V or V1). Exit 0 when valid, 1 when not."""
    try:
        catalog = parse_catalog(read_document(file))
    except CatalogUnavailableError as exc:
        base.err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    except InvalidCatalogError as exc:
        base.err.print(f"[red]{file}: {len(exc.problems)} problem(s)[/red]")
        for p in exc.problems:
            base.err.print(f"  [bold]{p.where}[/bold] {p.field}: {p.message}")
        raise typer.Exit(1) from None

    reference = load_loinc_reference()
    unverified: list[str] = []
    for item in catalog:
        for code in item.loinc:
            entry = reference.get(code)
            if entry is None:
                unverified.append(f"{item.id} codes: LOINC {code} is not in the shipped verified tables")
            elif entry.status not in USABLE_STATUSES:
                unverified.append(f"{item.id} codes: LOINC {code} has status {entry.status} (conflicting) — not usable")
    if unverified:
        base.err.print(f"[red]{file}: {len(unverified)} problem(s)[/red]")
        for line in unverified:
            base.err.print(f"  {line}")
        raise typer.Exit(1)

    lab, imaging = catalog.of_kind(Kind.LAB), catalog.of_kind(Kind.IMAGING)
    with_loinc = sum(1 for i in catalog if i.loinc)
    assumed = sum(1 for i in catalog if i.validity.assumed)
    base.out.print(f"[green]{file}: valid[/green] — edition {catalog.edition}, effective {catalog.effective}")
    base.out.print(
        f"  {len(lab)} lab + {len(imaging)} imaging = {len(catalog)} items; {with_loinc} with verified LOINC codes"
    )
    base.out.print(f"  validity: {len(catalog) - assumed} published, {assumed} assumed")
    for code, scope in catalog.scopes.items():
        n = sum(1 for i in catalog if code in i.scopes)
        base.out.print(f"  scope {code} ({scope.name_zh}): {n} items")
