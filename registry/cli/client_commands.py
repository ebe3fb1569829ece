"""``hr-registry clients …`` and ``hr-registry token``: principals, their secrets and tokens."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from registry.auth import PrincipalKind
from registry.cli import base
from registry.errors import RegistryError
from registry.services.principals import NewClient

JwksOption = Annotated[
    Path | None,
    typer.Option(help="the client's public keys for private_key_jwt: a JWK Set (JSON) or a PEM public key file"),
]


def _read_keys(path: Path | None) -> str | None:
    """The file's keys, checked before anything is written (SMART client-confidential-asymmetric registration)."""
    if path is None:
        return None
    from registry.services.client_keys import public_jwks

    try:
        return public_jwks(path.read_text(encoding="utf-8"))
    except OSError as exc:
        base.err.print(f"[red]cannot read {path}: {exc.strerror}[/red]")
        raise typer.Exit(2) from None
    except RegistryError as exc:
        raise base.fail(exc) from None


def _kids(jwks: str) -> str:
    import json

    return "kid " + ", ".join(f"{k['kid']} ({k['kty']})" for k in json.loads(jwks)["keys"])


def _print_client(new: NewClient) -> None:
    base.out.print(f"[green]client {new.client_id}[/green] ({new.principal.kind.value})")
    base.out.print(f"  client_id      {new.client_id}")
    base.out.print(f"  client_secret  {new.secret}    [dim](shown once; keep it safe)[/dim]")
    base.out.print(f"  scopes         {' '.join(str(s) for s in new.principal.scopes)}")


@base.clients_app.command("add-hospital")
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
    jwks: JwksOption = None,
) -> None:
    """Register a hospital: its Organization resource, the identifier namespaces it owns, and a system client that
    writes as it (with --jwks, it may also authenticate with private_key_jwt)."""
    import orjson

    from registry.services.audit import AuditContext
    from registry.services.demo import ORG_CODE, REGION_EXT

    keys = _read_keys(jwks)
    ctx = base._context()
    org: dict[str, object] = {"resourceType": "Organization", "id": org_id, "active": True, "name": name}
    if code:
        org["identifier"] = [{"system": ORG_CODE, "value": code}]
    if region:
        org["extension"] = [{"url": REGION_EXT, "valueCode": r} for r in region]
    try:
        ctx.ingest.update(
            base.CLI_PRINCIPAL,
            AuditContext("cli", base.CLI_PRINCIPAL, "update"),
            "Organization",
            org_id,
            orjson.dumps(org).decode(),
            None,
        )
        declared = ctx.namespaces.declare(base.CLI_PRINCIPAL, org_id, namespace or [])
        new = ctx.principals.add(
            PrincipalKind.HOSPITAL, client_id or f"{org_id}-system", f"{name} 信息系统", org_id=org_id
        )
        if keys is not None:
            ctx.principals.set_jwks(new.client_id, keys)
    except RegistryError as exc:
        raise base.fail(exc) from None
    base.out.print(f"Organization/{org_id} {name}")
    for ns in declared:
        base.out.print(f"  namespace      {ns.pattern}")
    if not namespace:
        base.out.print(
            "  [yellow]no identifier namespace yet: its pushes are refused until `hr-registry namespaces add "
            f"--org {org_id} <system>` declares the systems of its MRNs and report numbers[/yellow]"
        )
    _print_client(new)
    if keys is not None:
        base.out.print(f"  private_key_jwt  {_kids(keys)}")


@base.clients_app.command("add-clinician")
def clients_add_clinician(
    client_id: Annotated[str, typer.Argument(help="e.g. dr-li")],
    org: Annotated[str, typer.Option(help="the clinician's hospital (Organization id)")],
    name: Annotated[str, typer.Option(help="display name")],
) -> None:
    """A clinician: reads patients in the care context of their hospital (user/*.read)."""
    ctx = base._context()
    try:
        new = ctx.principals.add(PrincipalKind.CLINICIAN, client_id, name, org_id=org)
    except RegistryError as exc:
        raise base.fail(exc) from None
    _print_client(new)


@base.clients_app.command("add-patient")
def clients_add_patient(
    client_id: Annotated[str, typer.Argument(help="e.g. patient-zhang")],
    national_id: Annotated[
        str, typer.Option(help="the patient's national identifier (never stored)", prompt=True, hide_input=True)
    ],
    id_type: Annotated[str, typer.Option(help="ID type: resident-id, passport, …")] = "resident-id",
    name: Annotated[str, typer.Option(help="display name (not the full legal name)")] = "patient",
) -> None:
    """A patient: reads only their own records (patient/*.read), found by the keyed hash of their national ID."""
    ctx = base._context()
    systems = {v: k for k, v in ctx.identity.systems.items()}
    if id_type not in systems:
        base.err.print(f"[red]unknown ID type {id_type!r}; known: {', '.join(systems)}[/red]")
        raise typer.Exit(2)
    from registry.services.identity import NationalIdError

    try:
        key = ctx.identity.master_key(systems[id_type], national_id)
        new = ctx.principals.add(PrincipalKind.PATIENT, client_id, name, patient_key=key)
    except NationalIdError as exc:
        base.err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    except RegistryError as exc:
        raise base.fail(exc) from None
    _print_client(new)


@base.clients_app.command("add-admin")
def clients_add_admin(
    client_id: Annotated[str, typer.Argument()], name: Annotated[str, typer.Option()] = "admin"
) -> None:
    """A regional platform administrator (system/*.*, reads the audit trail)."""
    ctx = base._context()
    try:
        new = ctx.principals.add(PrincipalKind.ADMIN, client_id, name)
    except RegistryError as exc:
        raise base.fail(exc) from None
    _print_client(new)


@base.clients_app.command("list")
def clients_list() -> None:
    """Every client with its kind, organization, scopes, whether it is disabled and since when its tokens count
    (never secrets)."""
    from datetime import UTC, datetime

    ctx = base._context()
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
    base.out.print(table)


ClientIdArgument = Annotated[str, typer.Argument(help="the client id (see `hr-registry clients list`)")]
TAKES_EFFECT = "on running servers within REGISTRY_CLIENT_CACHE_SECONDS (5 s by default)"


@base.clients_app.command("disable")
def clients_disable(client_id: ClientIdArgument) -> None:
    """Disable a client: it gets no new token or sign-in, and its tokens and page sessions are refused from now on
    (also after `enable`, which lets it obtain new ones)."""
    ctx = base._context()
    try:
        ctx.principals.disable(client_id)
    except RegistryError as exc:
        raise base.fail(exc) from None
    base.out.print(f"client {client_id} disabled: its tokens and page sessions are refused {TAKES_EFFECT}")


@base.clients_app.command("enable")
def clients_enable(client_id: ClientIdArgument) -> None:
    """Enable a disabled client again: it may obtain new tokens (those from before `disable` stay refused)."""
    ctx = base._context()
    try:
        ctx.principals.enable(client_id)
    except RegistryError as exc:
        raise base.fail(exc) from None
    base.out.print(f"client {client_id} enabled: it may obtain new tokens and sign in again")


@base.clients_app.command("remove")
def clients_remove(
    client_id: ClientIdArgument,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="remove without asking")] = False,
) -> None:
    """Remove a client for good. The audit trail keeps its entries (they name the client id)."""
    ctx = base._context()
    if ctx.principals.current(client_id) is None:
        base.err.print(f"[red]no client {client_id!r}[/red]")
        raise typer.Exit(1)
    if not yes and not typer.confirm(f"Remove client {client_id}? Its tokens stop working", default=False):
        base.err.print("nothing removed")
        raise typer.Exit(1)
    try:
        ctx.principals.remove(client_id)
    except RegistryError as exc:
        raise base.fail(exc) from None
    base.out.print(f"client {client_id} removed: its tokens and page sessions are refused {TAKES_EFFECT}")


@base.clients_app.command("rotate-secret")
def clients_rotate_secret(client_id: ClientIdArgument) -> None:
    """Give a client a new secret (printed once). The old secret stops working at once; tokens and page sessions
    obtained before are refused too."""
    ctx = base._context()
    try:
        secret = ctx.principals.rotate_secret(client_id)
    except RegistryError as exc:
        raise base.fail(exc) from None
    base.out.print(f"[green]client {client_id}[/green]: new secret")
    base.out.print(f"  client_id      {client_id}")
    base.out.print(f"  client_secret  {secret}    [dim](shown once; keep it safe)[/dim]")
    base.out.print(f"  the old secret no longer works; tokens and page sessions from before are refused {TAKES_EFFECT}")


@base.clients_app.command("set-key")
def clients_set_key(
    client_id: ClientIdArgument,
    jwks: Annotated[
        Path | None, typer.Argument(help="a JWK Set (JSON) or a PEM public key file; omit with --remove")
    ] = None,
    remove: Annotated[bool, typer.Option("--remove", help="remove the client's keys")] = False,
) -> None:
    """Register (replace) the public keys a client signs its private_key_jwt assertions with (SMART Backend
    Services: RS384 or ES384, each key with a kid), or remove them. Its secret keeps working."""
    if remove == (jwks is not None):
        base.err.print("[red]give a key file, or --remove[/red]")
        raise typer.Exit(2)
    keys = _read_keys(jwks)
    ctx = base._context()
    try:
        stored = ctx.principals.set_jwks(client_id, keys)
    except RegistryError as exc:
        raise base.fail(exc) from None
    if stored is None:
        base.out.print(f"client {client_id}: keys removed; assertions are refused from now on")
    else:
        base.out.print(f"client {client_id}: private_key_jwt with {_kids(stored)}")


@base.app.command()
def token(
    client_id: Annotated[str, typer.Argument(help="the client to mint a token for")],
    ttl: Annotated[int | None, typer.Option(help="lifetime in seconds (default REGISTRY_TOKEN_TTL_SECONDS)")] = None,
    scope: Annotated[str | None, typer.Option(help="narrow to these scopes")] = None,
) -> None:
    """Mint an access token directly with the registry's key (for demos and tests); prints only the token."""
    ctx = base._context()
    principal = ctx.principals.get(client_id)
    if principal is None:
        base.err.print(f"[red]no enabled client {client_id!r}[/red]")
        raise typer.Exit(1)
    try:
        issued = ctx.principals.token(principal, requested=scope, ttl_seconds=ttl)
    except RegistryError as exc:
        raise base.fail(exc) from None
    typer.echo(issued.access_token)
