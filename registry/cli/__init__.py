"""``hr-registry``: the registry's command line (typer + rich), one module per group of commands.

``hr-registry serve`` runs the server; ``catalog``, ``db``, ``clients``, ``namespaces``, ``codes``, ``qualifications``,
``index``, ``subscriptions``, ``notifications`` and ``demo`` manage the rest.
"""

from __future__ import annotations

from registry.cli import (  # noqa: F401 - each module registers its commands on the app
    catalog_commands,
    client_commands,
    namespace_commands,
    notification_commands,
    pacs_commands,
    recognition_commands,
    server_commands,
    subscription_commands,
)
from registry.cli.base import app


def main() -> None:
    app()


__all__ = ["app", "main"]
