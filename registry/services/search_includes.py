"""``_include`` and ``_revinclude`` of a search page (R4 search.html §3.1.1.5.4): what the matches refer to, and what
refers to them, each limited as a search of its type would be (care context, sharing consent, break-glass) and
checked like a read by the caller's ``visible``."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from registry.auth import Principal
from registry.errors import ForbiddenError
from registry.fhir.search_params import INCLUDES
from registry.services import policy
from registry.services.policy import BreakGlass
from registry.store.query import Clause, PatientKeyClause, Query, ReferenceClause
from registry.store.records import Stored
from registry.store.repository import Repository

Visible = Callable[[Repository, Principal, Stored, BreakGlass | None], None]
"""Raises ForbiddenError when the principal may not read the stored resource (as a read would)."""


def includes(
    repo: Repository,
    principal: Principal,
    rows: list[Stored],
    asked: list[tuple[str, str]],
    visible: Visible,
    break_glass: BreakGlass | None = None,
) -> list[Stored]:
    """The resources the page's matches refer to (R4 search.html §3.1.1.5.4 ``_include``), each checked like a
    read; one the principal may not see is left out, not an error."""
    if not asked or not rows:
        return []
    params = [p for source, p in asked if p in INCLUDES.get(source, frozenset())]
    targets = repo.referenced([s.pk for s in rows], params)
    found = repo.get_many(targets)
    seen = {(s.type, s.id) for s in rows}
    out: list[Stored] = []
    for key in targets:
        stored = found.get(key)
        if stored is None or key in seen:
            continue
        seen.add(key)
        try:
            visible(repo, principal, stored, break_glass)
        except ForbiddenError:
            continue  # an included resource the principal may not see is left out, not an error
        out.append(stored)
    return out


def revincludes(
    repo: Repository,
    principal: Principal,
    rows: list[Stored],
    asked: list[tuple[str, str]],
    seen: set[tuple[str, str]],
    visible: Visible,
    *,
    cap: int,
    sensitive: frozenset[str],
    break_glass: BreakGlass | None = None,
) -> tuple[list[Stored], int]:
    """Resources referring to the page's matches (R4 search.html §3.1.1.5.4 ``_revinclude``), each limited as a
    search of its type would be and checked like a read; at most a page's worth (the cap is returned when
    reached, else 0)."""
    if not asked or not rows:
        return [], 0
    targets = tuple((s.type, s.id) for s in rows)
    out: list[Stored] = []
    for source, param in asked:
        if len(out) >= cap:
            break
        try:
            policy.require_scope(principal, source, "read")
            limits = _patient_scoped_limits(principal, source, rows, break_glass, sensitive)
        except ForbiddenError:
            continue  # a type the principal may not read is left out, as an include would be
        clauses: tuple[Clause, ...] = (ReferenceClause(param, targets), *limits)
        found, _last = repo.search(Query(source, clauses, count=cap - len(out)))
        for stored in found:
            if (stored.type, stored.id) in seen:
                continue
            try:
                visible(repo, principal, stored, break_glass)
            except ForbiddenError:
                continue
            seen.add((stored.type, stored.id))
            out.append(stored)
    return out, cap if len(out) >= cap else 0


def _patient_scoped_limits(
    principal: Principal, rtype: str, rows: Sequence[Stored], break_glass: BreakGlass | None, sensitive: frozenset[str]
) -> tuple[Clause, ...]:
    """What a ``_revinclude`` of ``rtype`` may show: what a search of it would (the care context and the patients'
    sharing consent, the patient's own records); under break-glass, only the records of the patients the search
    itself opened."""
    keys = tuple(sorted({s.patient_key for s in rows if s.patient_key}))
    if break_glass is not None and keys and policy.needs_care_context(principal, rtype):
        return (PatientKeyClause(keys),)
    found = (policy.read_filter(principal, rtype), policy.sharing_filter(principal, rtype, sensitive, break_glass=None))
    return tuple(c for c in found if c is not None)
