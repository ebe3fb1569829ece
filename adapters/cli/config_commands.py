"""``hr-adapter check-config``: every problem of the configuration explained, and the connections to the registry and
the PACS tested."""

from __future__ import annotations

import socket
from typing import Annotated

import httpx
import typer

from adapters.cli.base import (
    ConfigOption,
    app,
    err,
    out,
)
from adapters.codes import load_catalog, read_code_map
from adapters.config import AdapterConfig, load_config
from adapters.errors import AdapterError, ConfigError
from adapters.push.outbox import Outbox


@app.command("check-config")
def check_config(
    config_path: ConfigOption,
    offline: Annotated[bool, typer.Option(help="Do not contact the registry or the PACS.")] = False,
) -> None:
    """Check the configuration and explain every problem found (exit 1 if any)."""
    problems: list[str] = []
    oks: list[str] = []
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        for p in exc.problems:
            err.print(f"  ✗ {p}")
        err.print(f"[red]{len(exc.problems)} problem(s) in {config_path}[/red]")
        raise typer.Exit(1) from None
    oks.append(f"{config_path}: the settings are well-formed")
    try:
        catalog = load_catalog(config.codes.catalog)
        oks.append(f"catalog: {len(catalog.items)} items")
        if config.codes.map_file:
            rows = read_code_map(config.codes.map_file, catalog)
            mapped = sum(r.item is not None for r in rows)
            oks.append(
                f"code map {config.codes.map_file.name}: {mapped} code(s) mapped, {len(rows) - mapped} declared "
                "not recognized items"
            )
            foreign = sorted({r.system for r in rows} - {config.local_code_system})
            if foreign:
                oks.append(
                    f"code map also covers systems {', '.join(foreign)} (the local system is "
                    f"{config.local_code_system})"
                )
        else:
            oks.append("no code map: only LOINC and catalog codes will map to recognized items")
    except ConfigError as exc:
        problems += exc.problems
    try:
        Outbox(config.outbox.path).close()
        oks.append(f"outbox {config.outbox.path} is writable")
    except AdapterError as exc:
        problems.append(str(exc))
    if config.hl7.drop is not None:
        folder = config.hl7.drop.folder
        if folder.exists() and not folder.is_dir():
            problems.append(f"hl7.drop.folder {folder} exists and is not a folder")
    listeners = [("hl7.listen", config.hl7.listen), ("dicom.listen", config.dicom.listen)]
    if all(listen is None for _, listen in listeners) and config.hl7.drop is None and config.dicom.pull is None:
        problems.append("nothing to do: configure at least one of hl7.listen, hl7.drop, dicom.listen, dicom.pull")
    for name, listen in listeners:
        if listen is None or listen.port == 0:
            continue
        with socket.socket() as s:
            try:
                s.bind((listen.host, listen.port))
                oks.append(f"{name} {listen.host}:{listen.port} is free")
            except OSError as exc:
                problems.append(
                    f"{name} {listen.host}:{listen.port} cannot be bound ({exc.strerror}); is another "
                    "program (or a running hr-adapter) using it?"
                )
    if config.dicom.listen is not None and not config.dicom.wado_rs:
        oks.append("note: dicom.wado_rs is not set, so studies will carry no viewer Endpoint")
    if not offline:
        problems += _check_registry(config, oks)
        if config.dicom.pull is not None:
            problems += _check_pacs(config, oks)
    for line in oks:
        out.print(f"  ✓ {line}")
    for p in problems:
        err.print(f"  ✗ {p}")
    if problems:
        err.print(f"[red]{len(problems)} problem(s)[/red]")
        raise typer.Exit(1)
    out.print("[green]configuration OK[/green]")


def _check_registry(config: AdapterConfig, oks: list[str]) -> list[str]:
    from adapters.push.client import RegistryClient

    client = RegistryClient(config.registry)
    try:
        try:
            client.token(force=True)
        except AdapterError as exc:
            return [f"registry: {exc}"]
        oks.append(f"registry {config.registry.url}: client {config.registry.client_id} authenticated")
        org = config.hospital.organization
        r = client.read(f"/Organization/{org}")
        if r.status_code != 200:
            return [
                f"registry: Organization/{org} answered {r.status_code}: the hospital must be registered first "
                "(hr-registry demo load, or PUT /fhir/Organization/<id> by an administrator)"
            ]
        oks.append(f"registry knows Organization/{org}")
        return []
    except AdapterError as exc:
        return [f"registry: {exc}"]
    finally:
        client.close()


def _check_pacs(config: AdapterConfig, oks: list[str]) -> list[str]:
    pull = config.dicom.pull
    if pull is None:
        return []
    auth = (pull.username, pull.password or "") if pull.username else None
    try:
        r = httpx.get(
            f"{pull.qido_rs.rstrip('/')}/studies",
            params={"limit": 1},
            auth=auth,
            timeout=15,
            headers={"Accept": "application/dicom+json"},
        )
    except httpx.HTTPError as exc:
        return [f"dicom.pull: the PACS at {pull.qido_rs} cannot be reached: {exc}"]
    if r.status_code not in (200, 204):
        return [f"dicom.pull: QIDO-RS {pull.qido_rs}/studies answered {r.status_code}"]
    oks.append(f"PACS {pull.qido_rs} answers QIDO-RS")
    return []
