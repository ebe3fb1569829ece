"""The routes an app serves, read from its own route table — so every one of them can be held against the access
policy (``registry.services.policy.routes``): at start-up, and by the access-matrix test."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from fastapi import FastAPI
from starlette.routing import Mount

from registry.services import policy


def _contexts(router: Any) -> Iterable[Any]:
    found = router.effective_route_contexts
    return found() if callable(found) else found  # type: ignore[no-any-return]


def served_routes(app: FastAPI) -> Iterator[tuple[str, str]]:
    """(method, path template) of every route, ``MOUNT`` for mounted apps; ``HEAD`` folded into ``GET``."""
    for route in app.routes:
        if isinstance(route, Mount):
            yield "MOUNT", route.path
            continue
        if hasattr(route, "path"):
            for method in sorted(getattr(route, "methods", None) or ()):
                if method != "HEAD":
                    yield method, route.path
            continue
        for context in _contexts(route):
            for method in sorted(context.methods or ()):
                if method != "HEAD":
                    yield method, context.path


def unguarded_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Routes that have no entry in the access policy (there must be none)."""
    return [r for r in served_routes(app) if policy.route_for(*r) is None]
