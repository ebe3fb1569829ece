"""The routes an app serves, read from its own route table — so every one of them can be held against the access
policy (``registry.services.policy.routes``): at start-up, and by the access-matrix test."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import cache
from typing import Any

from fastapi import FastAPI
from starlette.routing import Mount, compile_path

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


def _refuses(method: str, template: str) -> bool:
    """A route that exists only to answer 405 (``/fhir/metadata`` is read-only) does not make its method allowed."""
    rule = policy.route_for(method, template)
    return rule is not None and rule.what.startswith("refused")


@cache
def _pattern(template: str) -> Any:
    return compile_path(template)[0]


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method some route serves at ``path`` — the ``Allow`` header of a 405 (RFC 9110 §15.5.6), which
    Starlette fills from the first route matching the path only (``GET`` and ``PUT`` of a resource are two)."""
    first: dict[str, bool] = {}  # per method, whether the first route matching the path (the one that answers) serves
    for method, template in served_routes(app):
        if method != "MOUNT" and method not in first and _pattern(template).match(path):
            first[method] = not _refuses(method, template)
    methods = {m for m, serves in first.items() if serves}
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)
