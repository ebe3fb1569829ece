"""``hr-registry``: the registry's command line (typer + rich).

``hr-registry serve`` runs the server; ``hr-registry catalog list|show|search|validate`` works on the catalog.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from catalog import Catalog, InvalidCatalogError, Item, Kind, parse_catalog
from catalog.codes import LOINC
from registry.auth import Principal, PrincipalKind, parse_scopes
from registry.catalog_file import read_document
from registry.context import AppContext
from registry.errors import CatalogUnavailableError, RegistryError
from registry.reference_tables import USABLE_STATUSES, load_loinc_reference
from registry.services.principals import NewClient
from registry.settings import Settings

app = typer.Typer(help="HR Registry — cross-hospital result mutual-recognition registry.", no_args_is_help=True)
catalog_app = typer.Typer(help="Inspect and validate the recognized-item catalog.", no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")

out = Console()
err = Console(stderr=True)

CatalogOption = Annotated[
    Path | None, typer.Option("--file", "-f", help="Catalog YAML (default: REGISTRY_CATALOG_PATH or data/…)")
]


def _load(path: Path | None) -> Catalog:
    path = path or Settings.from_env().catalog_path
    try:
        return parse_catalog(read_document(path))
    except (InvalidCatalogError, CatalogUnavailableError) as exc:
        err.print(f"[red]{exc}[/red]")
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


@catalog_app.command("list")
def catalog_list(
    kind: Annotated[Kind | None, typer.Option(help="lab or imaging")] = None,
    group: Annotated[str | None, typer.Option(help="group code, e.g. hematology, ct")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines instead of a table")] = False,
    file: CatalogOption = None,
) -> None:
    """List catalog items, optionally of one kind or group."""
    catalog = _load(file)
    if group is not None and group not in catalog.groups:
        err.print(f"[red]unknown group {group!r}; groups: {', '.join(catalog.groups)}[/red]")
        raise typer.Exit(2)
    items = [i for i in catalog if (kind is None or i.kind is kind) and (group is None or i.group == group)]
    if as_json:
        for i in items:
            typer.echo(json.dumps(_item_row(i), ensure_ascii=False))
        return
    out.print(_table(items, f"{catalog.title_zh} — {len(items)} item(s)"))


@catalog_app.command("show")
def catalog_show(
    item_id: Annotated[str, typer.Argument(help="item id such as L004 or I010")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    file: CatalogOption = None,
) -> None:
    """Show one item with every field."""
    catalog = _load(file)
    item = catalog.get(item_id.strip().upper())
    if item is None:
        hits = catalog.search(item_id, limit=5)
        hint = f" — did you mean {', '.join(h.item.id for h in hits)}?" if hits else ""
        err.print(f"[red]no item {item_id!r}{hint}[/red]")
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
    out.print(table)


@catalog_app.command("search")
def catalog_search(
    text: Annotated[str, typer.Argument(help="Chinese or English name, abbreviation, code or system|code")],
    kind: Annotated[Kind | None, typer.Option(help="lab or imaging")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 20,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    file: CatalogOption = None,
) -> None:
    """Search items by name (中文 or English), abbreviation, LOINC or regional code, best match first."""
    catalog = _load(file)
    hits = catalog.search(text, kind=kind, limit=limit)
    if as_json:
        for h in hits:
            typer.echo(json.dumps(_item_row(h.item), ensure_ascii=False))
        return
    if not hits:
        err.print(f"no item matches {text!r}")
        raise typer.Exit(1)
    out.print(_table([h.item for h in hits], f"{len(hits)} match(es) for {text!r}"))


@catalog_app.command("validate")
def catalog_validate(file: Annotated[Path, typer.Argument(help="catalog YAML to check")]) -> None:
    """Check a catalog file: structure, ids, codes, validity provenance, and every LOINC code against the
    shipped verified tables (status V or V1). Exit 0 when valid, 1 when not."""
    try:
        catalog = parse_catalog(read_document(file))
    except CatalogUnavailableError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    except InvalidCatalogError as exc:
        err.print(f"[red]{file}: {len(exc.problems)} problem(s)[/red]")
        for p in exc.problems:
            err.print(f"  [bold]{p.where}[/bold] {p.field}: {p.message}")
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
        err.print(f"[red]{file}: {len(unverified)} problem(s)[/red]")
        for line in unverified:
            err.print(f"  {line}")
        raise typer.Exit(1)

    lab, imaging = catalog.of_kind(Kind.LAB), catalog.of_kind(Kind.IMAGING)
    with_loinc = sum(1 for i in catalog if i.loinc)
    assumed = sum(1 for i in catalog if i.validity.assumed)
    out.print(f"[green]{file}: valid[/green] — edition {catalog.edition}, effective {catalog.effective}")
    out.print(
        f"  {len(lab)} lab + {len(imaging)} imaging = {len(catalog)} items; {with_loinc} with verified LOINC codes"
    )
    out.print(f"  validity: {len(catalog) - assumed} published, {assumed} assumed")
    for code, scope in catalog.scopes.items():
        n = sum(1 for i in catalog if code in i.scopes)
        out.print(f"  scope {code} ({scope.name_zh}): {n} items")


# ====================================================================================== database, clients, tokens
db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)
clients_app = typer.Typer(help="Principals that may obtain tokens.", no_args_is_help=True)
demo_app = typer.Typer(help="The synthetic demo region.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(clients_app, name="clients")
app.add_typer(demo_app, name="demo")
codes_app = typer.Typer(help="Hospitals' local code maps and unmapped codes.", no_args_is_help=True)
quals_app = typer.Typer(help="Quality-control (EQA) qualifications per organization and item.", no_args_is_help=True)
index_app = typer.Typer(help="The result index (recognition's hot path).", no_args_is_help=True)
app.add_typer(codes_app, name="codes")
app.add_typer(quals_app, name="qualifications")
app.add_typer(index_app, name="index")
namespaces_app = typer.Typer(help="Identifier systems each organization owns.", no_args_is_help=True)
app.add_typer(namespaces_app, name="namespaces")

CLI_PRINCIPAL = Principal("cli", PrincipalKind.ADMIN, parse_scopes("system/*.*"), name="hr-registry CLI")


def _context(settings: Settings | None = None) -> AppContext:
    from registry.app import build_context

    try:
        return build_context(settings or Settings.from_env())
    except (CatalogUnavailableError, RegistryError) as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None


def _fail(exc: RegistryError) -> typer.Exit:
    err.print(f"[red]{exc.diagnostics}[/red]")
    return typer.Exit(1)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration to REGISTRY_DATABASE_URL (default: the SQLite file under var/)."""
    from registry.store import migrate
    from registry.store.db import make_engine

    settings = Settings.from_env()
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.effective_database_url, pool_size=1)
    before = migrate.current_revision(engine)
    migrate.upgrade(settings.effective_database_url, engine)
    after = migrate.current_revision(engine)
    out.print(f"database {_safe_url(settings.effective_database_url)}: {before or 'empty'} → {after}")


@db_app.command("current")
def db_current() -> None:
    """Show the schema revision of the database and the newest one this code knows."""
    from registry.store import migrate
    from registry.store.db import make_engine

    settings = Settings.from_env()
    engine = make_engine(settings.effective_database_url, pool_size=1)
    out.print(f"current {migrate.current_revision(engine) or 'none'}, head {migrate.head_revision()}")


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _print_client(new: NewClient) -> None:
    out.print(f"[green]client {new.client_id}[/green] ({new.principal.kind.value})")
    out.print(f"  client_id      {new.client_id}")
    out.print(f"  client_secret  {new.secret}    [dim](shown once; keep it safe)[/dim]")
    out.print(f"  scopes         {' '.join(str(s) for s in new.principal.scopes)}")


@clients_app.command("add-hospital")
def clients_add_hospital(
    org_id: Annotated[str, typer.Argument(help="Organization id, e.g. hosp-a")],
    name: Annotated[str, typer.Option(help="The hospital's name")],
    client_id: Annotated[str | None, typer.Option(help="default: <org-id>-system")] = None,
    region: Annotated[
        list[str] | None, typer.Option(help="recognition region(s), e.g. beijing, jjjl, alliance:x")
    ] = None,
    code: Annotated[str | None, typer.Option(help="organization code (统一社会信用代码)")] = None,
    namespace: Annotated[
        list[str] | None,
        typer.Option(help="identifier system(s) it owns: exact, or a prefix such as http://hosp-a.example.cn/*"),
    ] = None,
) -> None:
    """Register a hospital: its Organization resource, the identifier namespaces it owns, and a system client that
    writes as it."""
    import orjson

    from registry.services.audit import AuditContext
    from registry.services.demo import ORG_CODE, REGION_EXT

    ctx = _context()
    org: dict[str, object] = {"resourceType": "Organization", "id": org_id, "active": True, "name": name}
    if code:
        org["identifier"] = [{"system": ORG_CODE, "value": code}]
    if region:
        org["extension"] = [{"url": REGION_EXT, "valueCode": r} for r in region]
    try:
        ctx.ingest.update(
            CLI_PRINCIPAL,
            AuditContext("cli", CLI_PRINCIPAL, "update"),
            "Organization",
            org_id,
            orjson.dumps(org).decode(),
            None,
        )
        declared = ctx.namespaces.declare(CLI_PRINCIPAL, org_id, namespace or [])
        new = ctx.principals.add(
            PrincipalKind.HOSPITAL, client_id or f"{org_id}-system", f"{name} 信息系统", org_id=org_id
        )
    except RegistryError as exc:
        raise _fail(exc) from None
    out.print(f"Organization/{org_id} {name}")
    for ns in declared:
        out.print(f"  namespace      {ns.pattern}")
    if not namespace:
        out.print(
            "  [yellow]no identifier namespace yet: its pushes are refused until `hr-registry namespaces add "
            f"--org {org_id} <system>` declares the systems of its MRNs and report numbers[/yellow]"
        )
    _print_client(new)


@namespaces_app.command("add")
def namespaces_add(
    patterns: Annotated[list[str], typer.Argument(help="identifier systems: exact, or a prefix ending in /*, :*, .*")],
    org: Annotated[str, typer.Option(help="the Organization id that owns them")],
) -> None:
    """Declare identifier systems an organization owns (its MRNs, report, accession and order numbers): only it may
    write identifiers in them."""
    ctx = _context()
    try:
        added = ctx.namespaces.declare(CLI_PRINCIPAL, org, patterns)
    except RegistryError as exc:
        raise _fail(exc) from None
    for ns in added:
        out.print(f"{ns.pattern}  →  Organization/{ns.org_id}")
    if len(added) < len(set(patterns)):
        out.print(f"{len(set(patterns)) - len(added)} already declared for {org}")


@namespaces_app.command("list")
def namespaces_list(org: Annotated[str | None, typer.Option(help="one organization (default: all)")] = None) -> None:
    """Every declared identifier namespace and its owner."""
    ctx = _context()
    table = Table(title="identifier namespaces")
    for col in ("namespace", "organization", "declared"):
        table.add_column(col, overflow="fold")
    for ns in ctx.namespaces.list(org):
        table.add_row(ns.pattern, ns.org_id, ns.created.isoformat()[:19])
    out.print(table)


@namespaces_app.command("remove")
def namespaces_remove(pattern: Annotated[str, typer.Argument()]) -> None:
    """Withdraw a namespace (identifiers already written stay; new writes in it are refused)."""
    ctx = _context()
    try:
        ctx.namespaces.remove(CLI_PRINCIPAL, pattern)
    except RegistryError as exc:
        raise _fail(exc) from None
    out.print(f"removed {pattern}")


@clients_app.command("add-clinician")
def clients_add_clinician(
    client_id: Annotated[str, typer.Argument(help="e.g. dr-li")],
    org: Annotated[str, typer.Option(help="the clinician's hospital (Organization id)")],
    name: Annotated[str, typer.Option(help="display name")],
) -> None:
    """A clinician: reads patients in the care context of their hospital (user/*.read)."""
    ctx = _context()
    try:
        new = ctx.principals.add(PrincipalKind.CLINICIAN, client_id, name, org_id=org)
    except RegistryError as exc:
        raise _fail(exc) from None
    _print_client(new)


@clients_app.command("add-patient")
def clients_add_patient(
    client_id: Annotated[str, typer.Argument(help="e.g. patient-zhang")],
    national_id: Annotated[
        str, typer.Option(help="the patient's national identifier (never stored)", prompt=True, hide_input=True)
    ],
    id_type: Annotated[str, typer.Option(help="ID type: resident-id, passport, …")] = "resident-id",
    name: Annotated[str, typer.Option(help="display name (not the full legal name)")] = "patient",
) -> None:
    """A patient: reads only their own records (patient/*.read), found by the keyed hash of their national ID."""
    ctx = _context()
    systems = {v: k for k, v in ctx.identity.systems.items()}
    if id_type not in systems:
        err.print(f"[red]unknown ID type {id_type!r}; known: {', '.join(systems)}[/red]")
        raise typer.Exit(2)
    from registry.services.identity import NationalIdError

    try:
        key = ctx.identity.master_key(systems[id_type], national_id)
        new = ctx.principals.add(PrincipalKind.PATIENT, client_id, name, patient_key=key)
    except NationalIdError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    except RegistryError as exc:
        raise _fail(exc) from None
    _print_client(new)


@clients_app.command("add-admin")
def clients_add_admin(
    client_id: Annotated[str, typer.Argument()], name: Annotated[str, typer.Option()] = "admin"
) -> None:
    """A regional platform administrator (system/*.*, reads the audit trail)."""
    ctx = _context()
    try:
        new = ctx.principals.add(PrincipalKind.ADMIN, client_id, name)
    except RegistryError as exc:
        raise _fail(exc) from None
    _print_client(new)


@clients_app.command("list")
def clients_list() -> None:
    """Every client with its kind, organization, scopes, whether it is disabled and since when its tokens count
    (never secrets)."""
    from datetime import UTC, datetime

    ctx = _context()
    table = Table(title="clients")
    table.add_column("client_id", no_wrap=True)
    for col in ("kind", "name", "organization", "scopes", "disabled", "tokens issued after (UTC)"):
        table.add_column(col, overflow="fold")
    for row in ctx.principals.list():
        after = row.tokens_valid_after
        since = "" if after is None else datetime.fromtimestamp(after, UTC).strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(
            row.client_id, row.kind, row.name, row.org_id or "", row.scopes, "yes" if row.disabled else "", since
        )
    out.print(table)


ClientIdArgument = Annotated[str, typer.Argument(help="the client id (see `hr-registry clients list`)")]
TAKES_EFFECT = "on running servers within REGISTRY_CLIENT_CACHE_SECONDS (5 s by default)"


@clients_app.command("disable")
def clients_disable(client_id: ClientIdArgument) -> None:
    """Disable a client: it gets no new token or sign-in, and its tokens and page sessions are refused from now on
    (also after `enable`, which lets it obtain new ones)."""
    ctx = _context()
    try:
        ctx.principals.disable(client_id)
    except RegistryError as exc:
        raise _fail(exc) from None
    out.print(f"client {client_id} disabled: its tokens and page sessions are refused {TAKES_EFFECT}")


@clients_app.command("enable")
def clients_enable(client_id: ClientIdArgument) -> None:
    """Enable a disabled client again: it may obtain new tokens (those from before `disable` stay refused)."""
    ctx = _context()
    try:
        ctx.principals.enable(client_id)
    except RegistryError as exc:
        raise _fail(exc) from None
    out.print(f"client {client_id} enabled: it may obtain new tokens and sign in again")


@clients_app.command("remove")
def clients_remove(
    client_id: ClientIdArgument,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="remove without asking")] = False,
) -> None:
    """Remove a client for good. The audit trail keeps its entries (they name the client id)."""
    ctx = _context()
    if ctx.principals.current(client_id) is None:
        err.print(f"[red]no client {client_id!r}[/red]")
        raise typer.Exit(1)
    if not yes and not typer.confirm(f"Remove client {client_id}? Its tokens stop working", default=False):
        err.print("nothing removed")
        raise typer.Exit(1)
    try:
        ctx.principals.remove(client_id)
    except RegistryError as exc:
        raise _fail(exc) from None
    out.print(f"client {client_id} removed: its tokens and page sessions are refused {TAKES_EFFECT}")


@clients_app.command("rotate-secret")
def clients_rotate_secret(client_id: ClientIdArgument) -> None:
    """Give a client a new secret (printed once). The old secret stops working at once; tokens and page sessions
    obtained before are refused too."""
    ctx = _context()
    try:
        secret = ctx.principals.rotate_secret(client_id)
    except RegistryError as exc:
        raise _fail(exc) from None
    out.print(f"[green]client {client_id}[/green]: new secret")
    out.print(f"  client_id      {client_id}")
    out.print(f"  client_secret  {secret}    [dim](shown once; keep it safe)[/dim]")
    out.print(f"  the old secret no longer works; tokens and page sessions from before are refused {TAKES_EFFECT}")


@app.command()
def token(
    client_id: Annotated[str, typer.Argument(help="the client to mint a token for")],
    ttl: Annotated[int | None, typer.Option(help="lifetime in seconds (default REGISTRY_TOKEN_TTL_SECONDS)")] = None,
    scope: Annotated[str | None, typer.Option(help="narrow to these scopes")] = None,
) -> None:
    """Mint an access token directly with the registry's key (for demos and tests); prints only the token."""
    ctx = _context()
    principal = ctx.principals.get(client_id)
    if principal is None:
        err.print(f"[red]no enabled client {client_id!r}[/red]")
        raise typer.Exit(1)
    try:
        issued = ctx.principals.token(principal, requested=scope, ttl_seconds=ttl)
    except RegistryError as exc:
        raise _fail(exc) from None
    typer.echo(issued.access_token)


@codes_app.command("import")
def codes_import(
    file: Annotated[Path, typer.Argument(help="CSV: system,code,item[,display] (item: id, regional code or LOINC)")],
    org: Annotated[str, typer.Option(help="the hospital (Organization id) whose codes these are")],
) -> None:
    """Import a hospital's local code map from CSV as its ConceptMap (replacing the previous one)."""
    import orjson

    from registry.services.audit import AuditContext
    from registry.services.code_maps import concept_map_from_csv

    ctx = _context()
    try:
        text = file.read_text(encoding="utf-8-sig")
    except OSError as exc:
        err.print(f"[red]cannot read {file}: {exc.strerror}[/red]")
        raise typer.Exit(2) from None
    try:
        concept_map = concept_map_from_csv(text, org, ctx.catalog)
        result = ctx.ingest.update(
            CLI_PRINCIPAL,
            AuditContext("cli", CLI_PRINCIPAL, "update"),
            "ConceptMap",
            concept_map["id"],
            orjson.dumps(concept_map).decode(),
            None,
        )
    except RegistryError as exc:
        raise _fail(exc) from None
    n = sum(len(g["element"]) for g in concept_map["group"])
    out.print(f"ConceptMap/{result.stored.id} version {result.stored.version}: {n} local codes of {org} mapped")


@codes_app.command("unmapped")
def codes_unmapped(
    org: Annotated[str | None, typer.Option(help="one hospital (default: all)")] = None,
    limit: Annotated[int, typer.Option(min=1)] = 100,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Incoming result codes that map to no catalog item, most frequent first — what to map next."""
    ctx = _context()
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
    out.print(table if rows else "no unmapped codes")


@quals_app.command("add")
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
    ctx = _context()
    try:
        q = ctx.administration.add(
            CLI_PRINCIPAL,
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
        raise _fail(exc) from None
    out.print(
        f"qualification {q['id']}: {org} {item or group} in {scope} from {q['valid_from']}"
        f"{' to ' + q['valid_to'] if q['valid_to'] else ''}"
    )


@quals_app.command("list")
def qualifications_list(org: Annotated[str | None, typer.Option()] = None) -> None:
    """Qualifications (revoked ones marked)."""
    ctx = _context()
    table = Table(title="qualifications")
    table.add_column("id", no_wrap=True)
    for col in ("org", "item/group", "scope", "from", "to", "revoked"):
        table.add_column(col, overflow="fold")
    for q in ctx.administration.qualifications(CLI_PRINCIPAL, org):
        table.add_row(
            q["id"],
            q["org"],
            q["item"] or q["group"],
            q["scope"],
            q["valid_from"],
            q["valid_to"] or "",
            (q["revoked"] or "")[:10],
        )
    out.print(table)


@quals_app.command("revoke")
def qualifications_revoke(qual_id: Annotated[str, typer.Argument()]) -> None:
    """Revoke a qualification (kept in the list as revoked)."""
    ctx = _context()
    try:
        ctx.administration.revoke(CLI_PRINCIPAL, qual_id)
    except RegistryError as exc:
        raise _fail(exc) from None
    out.print(f"revoked {qual_id}")


@index_app.command("rebuild")
def index_rebuild(batch: Annotated[int, typer.Option(min=1, max=10_000)] = 500) -> None:
    """Recompute the whole result index from the stored resources (with a progress bar)."""
    from rich.progress import Progress

    ctx = _context()
    total = ctx.administration.count_indexable()
    with Progress(console=out) as progress:
        task = progress.add_task("rebuilding the result index", total=total)
        done = ctx.administration.rebuild(batch, lambda n: progress.advance(task, n))
    out.print(f"result index rebuilt from {done} resources")


@index_app.command("check")
def index_check(batch: Annotated[int, typer.Option(min=1, max=10_000)] = 500) -> None:
    """Compare the result index with a recomputation; exit 1 and list the differences if any."""
    from rich.progress import Progress

    ctx = _context()
    total = ctx.administration.count_indexable()
    with Progress(console=out) as progress:
        task = progress.add_task("checking the result index", total=total)
        diff = ctx.administration.check(batch, lambda n: progress.advance(task, n))
    if diff.clean:
        out.print("[green]the result index matches a recomputation from the stored resources[/green]")
        return
    err.print(f"[red]{len(diff.missing)} row(s) missing, {len(diff.extra)} row(s) extra[/red]")
    for row in diff.missing[:20]:
        err.print(f"  missing {row['res_type']}/{row['res_id']} item {row['item_id']}")
    for row in diff.extra[:20]:
        err.print(f"  extra   {row['res_type']}/{row['res_id']} item {row['item_id']}")
    raise typer.Exit(1)


@demo_app.command("load")
def demo_load(patients: Annotated[int, typer.Option(min=1, max=5000)] = 50) -> None:
    """Load the synthetic demo region (idempotent: loading again changes nothing)."""
    ctx = _context()
    counts = _load_demo(ctx, patients, force=True)
    out.print(f"demo region: {counts}")


@demo_app.command("patient")
def demo_patient() -> None:
    """Print the scripted demo patient's synthetic resident ID number (MRN A-123 at hosp-a, B-9 at hosp-b)."""
    from registry.services.demo import NATIONAL_ID, first_patient_national_id

    typer.echo(f"{NATIONAL_ID}|{first_patient_national_id()}")


def _load_demo(ctx: AppContext, patients: int, *, force: bool) -> dict[str, int] | None:
    from registry.services.demo import DEMO_STATE_KEY, DemoRegion

    if not force and ctx.principals.state(DEMO_STATE_KEY):
        return None
    with out.status(f"loading the demo region ({patients} synthetic patients)…"):
        region = DemoRegion(
            ctx.ingest, ctx.catalog, ctx.clock, administration=ctx.administration, namespaces=ctx.namespaces
        )
        counts = region.load(CLI_PRINCIPAL, patients=patients)
    import orjson

    ctx.principals.set_state(DEMO_STATE_KEY, orjson.dumps(counts).decode())
    return counts


def _demo_credentials(ctx: AppContext) -> list[tuple[str, str, str]]:
    """(client id, secret, description) of the demo clients, creating them on first use; the secrets live in
    var/demo-credentials.json (mode 0600) so they can be shown at every start."""
    import json
    import os

    from registry.services.demo import demo_principals, first_patient_national_id

    path = ctx.settings.var_dir / "demo-credentials.json"
    saved: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    rows: list[tuple[str, str, str]] = []
    wanted = demo_principals()
    patient_key = ctx.identity.master_key(
        next(s for s, t in ctx.identity.systems.items() if t == "resident-id"), first_patient_national_id()
    )
    wanted.append((PrincipalKind.PATIENT, "demo-patient", "演示患者", {"patient_key": patient_key}))
    for kind, cid, label, extra in wanted:
        secret = saved.get(cid)
        existing = ctx.principals.get(cid)
        if existing is None:
            secret = ctx.principals.add(
                kind, cid, label, org_id=extra.get("org_id"), patient_key=extra.get("patient_key"), secret=secret
            ).secret
        elif secret is None:
            secret = ctx.principals.rotate_secret(cid)
        saved[cid] = secret
        rows.append((cid, secret, f"{kind.value}: {label}"))
    path.write_text(json.dumps(saved, indent=2))
    os.chmod(path, 0o600)
    return rows


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="interface to bind (default REGISTRY_HOST or 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default REGISTRY_PORT or 8000)")] = None,
    demo: Annotated[bool, typer.Option(help="load the synthetic demo region once and print demo credentials")] = True,
) -> None:
    """Run the registry server: migrate the database, load the demo region once, print the URLs and demo tokens."""
    import uvicorn

    from registry.app import create_app

    settings = Settings.from_env()
    updates: dict[str, object] = {}
    if host is not None:
        updates["host"] = host
    if port is not None:
        updates["port"] = port
    if updates:
        settings = settings.model_copy(update=updates)
    if "public_base_url" not in settings.model_fields_set:
        shown_host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host  # noqa: S104
        settings = settings.model_copy(update={"public_base_url": f"http://{shown_host}:{settings.port}"})
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    try:
        application = create_app(settings)
    except (CatalogUnavailableError, RegistryError) as exc:
        err.print(f"[red]cannot start: {exc}[/red]")
        raise typer.Exit(2) from None
    ctx: AppContext = application.state.ctx

    base = settings.public_base_url
    credentials: list[tuple[str, str, str]] = []
    if demo:
        counts = _load_demo(ctx, 50, force=False)
        if counts:
            out.print(f"demo region loaded: {counts}")
        credentials = _demo_credentials(ctx)

    out.print("[bold]HR Registry is starting[/bold]")
    for label, path in (
        ("Registry", ""),
        ("Patient portal", "/portal"),
        ("Clinician order screen", "/clinician"),
        ("Statistics", "/stats"),
        ("FHIR base (R4)", "/fhir"),
        ("CapabilityStatement", "/fhir/metadata"),
        ("Recognized items (481)", "/fhir/CodeSystem/recognized-items"),
        ("Non-recognition reasons", "/fhir/CodeSystem/nonrecognition-reasons"),
        ("Token endpoint", "/auth/token"),
        ("SMART configuration", "/.well-known/smart-configuration"),
        ("API docs (OpenAPI)", "/docs"),
        ("Health", "/healthz"),
    ):
        out.print(f"  {label:<26} {base}{path}", soft_wrap=True, highlight=False)
    out.print(f"  {'Database':<26} {_safe_url(settings.effective_database_url)}", soft_wrap=True, highlight=False)
    out.print(f"  {'Local state':<26} {settings.var_dir.resolve()}", soft_wrap=True, highlight=False)
    if credentials:
        out.print(
            "\n[bold]Demo credentials[/bold] (synthetic data; POST /auth/token with grant_type=client_credentials)"
        )
        for cid, secret, label in credentials:
            out.print(f"  {cid:<18} {secret}   {label}", soft_wrap=True, highlight=False)
        out.print("\n[bold]Demo tokens[/bold] (valid 8 hours; send as 'Authorization: Bearer <token>')")
        for cid, _secret, _label in credentials:
            principal = ctx.principals.get(cid)
            if principal is not None:
                tok = ctx.principals.token(principal, ttl_seconds=8 * 3600).access_token
                out.print(f"  {cid:<18} {tok}", soft_wrap=True, highlight=False)
        out.print(
            "\nPages: sign in to /portal as demo-patient, to /clinician as dr-li-hosp-b (find MRN B-9, order 血常规), "
            "to /stats as demo-admin, each with the secret above.",
            soft_wrap=True,
            highlight=False,
        )
        out.print(
            "The scripted demo patient is MRN A-123 at hosp-a and B-9 at hosp-b; `hr-registry demo patient` prints "
            "the synthetic resident ID that links them (it is never stored).",
            soft_wrap=True,
            highlight=False,
        )
    uvicorn.run(application, host=settings.host, port=settings.port, log_level="info")


def main() -> None:
    app()
