"""``hr-registry db|demo|serve``: the schema, the synthetic demo region, and the server itself."""

from __future__ import annotations

import copy
import json
from typing import Annotated, Any

import typer

from registry.auth import PrincipalKind
from registry.cli import base
from registry.context import AppContext
from registry.errors import CatalogUnavailableError, RegistryError
from registry.settings import Settings


@base.db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply every pending migration to REGISTRY_DATABASE_URL (default: the SQLite file under var/)."""
    from registry.store import migrate
    from registry.store.db import make_engine

    settings = Settings.from_env()
    settings.var_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    engine = make_engine(settings.effective_database_url, pool_size=1)
    before = migrate.current_revision(engine)
    migrate.upgrade(settings.effective_database_url, engine)
    after = migrate.current_revision(engine)
    base.out.print(f"database {base.safe_url(settings.effective_database_url)}: {before or 'empty'} → {after}")


@base.db_app.command("current")
def db_current() -> None:
    """Show the schema revision of the database and the newest one this code knows."""
    from registry.store import migrate
    from registry.store.db import make_engine

    settings = Settings.from_env()
    engine = make_engine(settings.effective_database_url, pool_size=1)
    base.out.print(f"current {migrate.current_revision(engine) or 'none'}, head {migrate.head_revision()}")


@base.demo_app.command("load")
def demo_load(patients: Annotated[int, typer.Option(min=1, max=5000)] = 50) -> None:
    """Load the synthetic demo region (idempotent: loading again changes nothing)."""
    ctx = base._context()
    counts = _load_demo(ctx, patients, force=True)
    base.out.print(f"demo region: {counts}")


@base.demo_app.command("patient")
def demo_patient() -> None:
    """Print the scripted demo patient's synthetic resident ID number (MRN A-123 at hosp-a, B-9 at hosp-b)."""
    from registry.services.demo import NATIONAL_ID, first_patient_national_id

    typer.echo(f"{NATIONAL_ID}|{first_patient_national_id()}")


def _load_demo(ctx: AppContext, patients: int, *, force: bool) -> dict[str, int] | None:
    from registry.services.demo import DEMO_STATE_KEY, DemoActivity, DemoRegion

    first = not ctx.principals.state(DEMO_STATE_KEY)
    if not force and not first:
        return None
    with base.out.status(f"loading the demo region ({patients} synthetic patients)…"):
        region = DemoRegion(
            ctx.ingest, ctx.catalog, ctx.clock, administration=ctx.administration, namespaces=ctx.namespaces
        )
        counts = region.load(base.CLI_PRINCIPAL, patients=patients)
    if first:  # decisions are append-only: months of them only with the first load
        with base.out.status("recording months of demo order checks and decisions…"):
            activity = DemoActivity(ctx.uow, ctx.catalog, ctx.identity, ctx.indexer)
            counts |= {
                f"demo_{k}": v for k, v in activity.run(region.people(patients), ctx.clock(), ctx.local_tz).items()
            }
    import orjson

    ctx.principals.set_state(DEMO_STATE_KEY, orjson.dumps(counts).decode())
    return counts


def _demo_credentials(ctx: AppContext) -> list[tuple[str, str, str]]:
    """(client id, secret, description) of the demo clients, creating them on first use; the secrets live in
    var/demo-credentials.json (mode 0600) so they can be shown at every start."""
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


@base.app.command()
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
    if demo and "subscription_allow_http_loopback" not in settings.model_fields_set:
        # the demo's Subscriptions may notify a receiver on this machine over plain http (README "Subscriptions")
        settings = settings.model_copy(update={"subscription_allow_http_loopback": True})
    settings.var_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        application = create_app(settings)
    except (CatalogUnavailableError, RegistryError) as exc:
        base.err.print(f"[red]cannot start: {exc}[/red]")
        raise typer.Exit(2) from None
    ctx: AppContext = application.state.ctx

    url_base = settings.public_base_url
    credentials: list[tuple[str, str, str]] = []
    if demo:
        counts = _load_demo(ctx, 50, force=False)
        if counts:
            base.out.print(f"demo region loaded: {counts}")
        credentials = _demo_credentials(ctx)

    base.out.print("[bold]HR Registry is starting[/bold]")
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
        ("Liveness", "/livez"),
        ("Readiness (database)", "/readyz"),
    ):
        base.out.print(f"  {label:<26} {url_base}{path}", soft_wrap=True, highlight=False)
    base.out.print(
        f"  {'Database':<26} {base.safe_url(settings.effective_database_url)}", soft_wrap=True, highlight=False
    )
    base.out.print(f"  {'Local state':<26} {settings.var_dir.resolve()}", soft_wrap=True, highlight=False)
    if credentials:
        base.out.print(
            "\n[bold]Demo credentials[/bold] (synthetic data; POST /auth/token with grant_type=client_credentials)"
        )
        for cid, secret, label in credentials:
            base.out.print(f"  {cid:<18} {secret}   {label}", soft_wrap=True, highlight=False)
        base.out.print("\n[bold]Demo tokens[/bold] (valid 8 hours; send as 'Authorization: Bearer <token>')")
        for cid, _secret, _label in credentials:
            principal = ctx.principals.get(cid)
            if principal is not None:
                tok = ctx.principals.token(principal, ttl_seconds=8 * 3600).access_token
                base.out.print(f"  {cid:<18} {tok}", soft_wrap=True, highlight=False)
        base.out.print(
            "\nPages: sign in to /portal as demo-patient, to /clinician as dr-li-hosp-b (find MRN B-9, order 血常规), "
            "to /stats as demo-admin, each with the secret above.",
            soft_wrap=True,
            highlight=False,
        )
        base.out.print(
            "The scripted demo patient is MRN A-123 at hosp-a and B-9 at hosp-b; `hr-registry demo patient` prints "
            "the synthetic resident ID that links them (it is never stored).",
            soft_wrap=True,
            highlight=False,
        )
    uvicorn.run(application, host=settings.host, port=settings.port, log_level="info", log_config=server_log_config())


def server_log_config() -> dict[str, Any]:
    """uvicorn's own logging configuration, with the registry's logger writing through uvicorn's handler: one line
    per request (uvicorn's access line, or the registry's own info line where uvicorn writes none — a client that
    closed the connection), warnings and errors of the registry in the same stream and format."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["registry"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config
