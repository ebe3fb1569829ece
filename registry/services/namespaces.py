"""Declaring which identifier systems each Organization owns (docs/design.md §6 ownership; ``hr-registry namespaces``).

Only admins declare namespaces — a hospital cannot claim a system by writing it, so no hospital can squat another's
MRN or report-number system. A namespace is an exact system or a prefix (``http://hosp-a.example.cn/*``); two
organizations' namespaces never overlap. See :mod:`registry.store.namespaces`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from registry.auth import Principal
from registry.errors import BadRequestError, ConflictError, NotFoundError
from registry.services import policy
from registry.services.config_cache import ConfigCache
from registry.store.namespaces import SEPARATORS, Namespace, NamespaceStore
from registry.store.repository import UnitOfWork

MAX_PATTERN = 255


def check_pattern(pattern: str) -> str:
    """A namespace as written: an exact system, or a prefix ending in a separator and ``*``."""
    text = pattern.strip()
    if not text or len(text) > MAX_PATTERN or any(ch.isspace() for ch in text):
        raise BadRequestError(f"a namespace is an identifier system URI of 1–{MAX_PATTERN} characters, no spaces")
    if "*" in text[:-1] or (text.endswith("*") and (len(text) < 2 or text[-2] not in SEPARATORS)):
        raise BadRequestError(
            f"{text!r}: a prefix namespace ends with one of {' '.join(SEPARATORS)} then '*' "
            "(e.g. http://hosp-a.example.cn/*)"
        )
    return text


class IdentifierNamespaces:
    def __init__(self, uow: UnitOfWork, clock: Callable[[], datetime]) -> None:
        self.uow = uow
        self.clock = clock

    def declare(self, principal: Principal, org_id: str, patterns: Sequence[str]) -> list[Namespace]:
        """Give ``org_id`` these namespaces (all or none); one already its own is kept as it is."""
        policy.require_admin(principal, "declare identifier namespaces")
        wanted = [check_pattern(p) for p in patterns]
        added: list[Namespace] = []
        with self.uow.begin() as repo:
            if not repo.get_many([("Organization", org_id)]):
                raise BadRequestError(f"Organization/{org_id} is not known to the registry")
            store = NamespaceStore(repo.conn)
            for pattern in dict.fromkeys(wanted):
                clash = [n for n in store.overlapping(pattern) if n.org_id != org_id]
                if clash:
                    raise ConflictError(
                        f"{pattern} overlaps {clash[0].pattern}, a namespace of Organization/{clash[0].org_id}"
                    )
                if any(n.pattern == pattern for n in store.overlapping(pattern)):
                    continue
                now = self.clock()
                store.add(pattern, org_id, now)
                added.append(Namespace(pattern, org_id, now))
            if added:
                ConfigCache.changed(repo.conn)  # the order check keeps who owns which system per generation
        return added

    def remove(self, principal: Principal, pattern: str) -> None:
        policy.require_admin(principal, "remove identifier namespaces")
        with self.uow.begin() as repo:
            if not NamespaceStore(repo.conn).remove(pattern.strip()):
                raise NotFoundError(f"no namespace {pattern!r}")
            ConfigCache.changed(repo.conn)

    def list(self, org_id: str | None = None) -> list[Namespace]:
        with self.uow.begin(audit_only=True) as repo:
            return NamespaceStore(repo.conn).all([org_id] if org_id else None)
