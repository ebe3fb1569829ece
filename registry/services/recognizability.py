"""Stored results as the recognition rule sees them, and how long they stay recognizable by other hospitals.

The order check and the pages decide recognizability the same way, from the same facts: a result-index row (its
status, effective range, issuer and the HR mark as the index holds it) becomes a ``catalog.PriorResult``
(:func:`prior_of`), and ``catalog.assess`` applies docs/design.md §5 rules 4–6 to it. The portal's and the report
page's "互认有效期至" is shown only for a result ``assess`` calls recognizable now — never for one without the HR mark,
not final, expired, or from an issuer without the qualification — with its last valid day (``catalog.last_valid_day``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from typing import Any

from catalog import (
    FINAL_STATUSES,
    Catalog,
    Coding,
    OrgFacts,
    PriorResult,
    Qualification,
    ResultStatus,
    Standing,
    Status,
    assess,
    last_valid_day,
)
from catalog.codes import RECOGNIZED_ITEMS
from registry.fhir.extract import from_us
from registry.store.recognition import RecognitionStore


@dataclass(frozen=True, slots=True)
class Recognizability:
    """How a stored result stands for other hospitals now, for people to read."""

    hr_mark: str | None  # the mark as the result index holds it (the one that counts)
    valid_until: datetime | None = None  # the window's end, only while the result is recognizable now
    valid_through: date | None = None  # the last valid day of that window, in the catalog's time zone
    expired: bool = False  # it was recognizable, and its window has ended


def prior_of(row: Any, issuer: OrgFacts, contains: frozenset[str] = frozenset()) -> PriorResult:
    """A result-index row as the rule takes it (a row written before migration 0004 has no latest instant: its
    effective is read as precise, the old behaviour, until ``hr-registry index rebuild``)."""
    try:
        status = ResultStatus(row.status)
    except ValueError:
        status = ResultStatus.UNKNOWN
    latest = row.effective_high_us if row.effective_high_us is not None else row.effective_us
    return PriorResult(
        f"{row.res_type}/{row.res_id}",
        row.patient_key,
        (Coding(RECOGNIZED_ITEMS, row.item_id),),
        status,
        from_us(row.effective_us),
        issuer,
        row.hr_mark is not None,
        effective_latest=from_us(latest),
        contains=contains,
    )


def panel_prior(
    catalog: Catalog, row: Any, facts: Mapping[str, OrgFacts], members: Mapping[str, Sequence[Any]]
) -> PriorResult:
    """An index row as the rule sees it (:func:`prior_of`), a panel's with the analytes its report holds."""
    issuer = facts.get(row.org_id or "", OrgFacts(row.org_id or ""))
    contains: frozenset[str] = frozenset()
    if row.item_id in catalog and catalog.item(row.item_id).is_panel:
        # rule 2: the analytes this panel result carries a final value for (its report's other rows)
        contains = frozenset(
            m.item_id
            for m in members.get(row.report_id or "", ())
            if m.res_pk != row.res_pk and m.value_text is not None and m.status in FINAL_STATUSES
        )
    return prior_of(row, issuer, contains)


def qualification_facts(store: RecognitionStore, issuers: Iterable[str]) -> list[Qualification]:
    """The active qualifications of these issuers, as the rule takes them."""
    return [
        Qualification(q.org_id, q.scope, q.valid_from, q.valid_to, q.item_id, q.group)
        for q in store.qualifications(issuers)
    ]


def recognizability(
    refs: Sequence[tuple[str, str]],
    rows: Sequence[Any],
    catalog: Catalog,
    qualifications: Sequence[Qualification],
    tz: tzinfo,
    *,
    now: datetime,
) -> dict[tuple[str, str], Recognizability]:
    """For each result ``(type, id)``: judged by its own index row, or — a DiagnosticReport whose own code maps to no
    item (a hospital's uncoded panel) — by the rows of the results it lists, recognizable as long as the shortest of
    their windows. ``rows`` are ``RecognitionStore.rows_of_results(refs)``."""
    own: dict[tuple[str, str], list[Any]] = {}
    listed: dict[str, list[Any]] = {}
    for row in rows:
        own.setdefault((row.res_type, row.res_id), []).append(row)
        if row.res_type != "DiagnosticReport" and row.report_id:
            listed.setdefault(row.report_id, []).append(row)
    out: dict[tuple[str, str], Recognizability] = {}
    for ref in refs:
        judged = own.get(ref) or (listed.get(ref[1], []) if ref[0] == "DiagnosticReport" else [])
        out[ref] = _judge(judged, catalog, qualifications, tz, now)
    return out


def _judge(
    rows: Sequence[Any], catalog: Catalog, qualifications: Sequence[Qualification], tz: tzinfo, now: datetime
) -> Recognizability:
    mark = next((r.hr_mark for r in rows if r.hr_mark), None)
    standings: list[tuple[PriorResult, Standing]] = []
    for row in rows:
        item = catalog.get(row.item_id)
        if item is None:
            continue
        prior = prior_of(row, OrgFacts(row.org_id or ""))
        standings.append((prior, assess(prior, item, catalog, qualifications, now=now)))
    recognizable = [s.valid_until for _p, s in standings if s.recognizable]
    if recognizable:
        until = min(recognizable)
        return Recognizability(mark, until, last_valid_day(until, tz))
    expired = any(
        s.status is Status.EXPIRED
        and now >= s.valid_until
        and assess(p, catalog.item(p.codes[0].code), catalog, qualifications, now=p.latest).recognizable
        for p, s in standings
    )
    return Recognizability(mark, expired=expired)
