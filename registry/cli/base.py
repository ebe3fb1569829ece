"""What every ``hr-registry`` command shares: the typer apps, the consoles, the CLI's own admin principal, and how
a command gets the registry's context (``_context``, the one seam tests replace)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from registry.auth import Principal, PrincipalKind, parse_scopes
from registry.context import AppContext
from registry.errors import CatalogUnavailableError, RegistryError
from registry.settings import Settings

app = typer.Typer(help="HR Registry — cross-hospital result mutual-recognition registry.", no_args_is_help=True)
catalog_app = typer.Typer(help="Inspect and validate the recognized-item catalog.", no_args_is_help=True)
app.add_typer(catalog_app, name="catalog")

out = Console()
err = Console(stderr=True)

CatalogOption = Annotated[
    Path | None, typer.Option("--file", "-f", help="Catalog YAML (default: REGISTRY_CATALOG_PATH or data/…)")
]

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


def fail(exc: RegistryError) -> typer.Exit:
    err.print(f"[red]{exc.diagnostics}[/red]")
    return typer.Exit(1)


def safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
