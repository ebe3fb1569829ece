#!/usr/bin/env python3
"""Search-cost benchmark (not a test): a search of many AND-ed parameters on PostgreSQL — what a patient token can
send up to the ``REGISTRY_SEARCH_MAX_PARAMS`` cap — in the two SQL shapes side by side, in one run on one database:

- ``semi-joins``: one ``pk IN (SELECT …)`` per parameter, AND-ed (the registry's shape until 2026-12);
- ``intersect``: one ``pk IN (SELECT … INTERSECT SELECT …)`` (the registry's shape now).

    .venv/bin/python scripts/bench_search_cost.py --patients 1500 --write-docs

Each shape runs the same parsed search through the registry's own search SQL (``name=张`` repeated k times, a
prefix match every patient's family name shares), first page of the default size, best of 3; a shape that exceeds
--timeout seconds is cancelled and shown as such.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import ColumnElement, text  # noqa: E402
from sqlalchemy.exc import OperationalError  # noqa: E402

from registry.app import build_context  # noqa: E402
from registry.auth import PrincipalKind  # noqa: E402
from registry.services.audit import AuditContext  # noqa: E402
from registry.settings import Settings  # noqa: E402
from registry.store.query import Query  # noqa: E402
from registry.store.records import R  # noqa: E402
from registry.store.search_sql import SearchSql  # noqa: E402
from scripts.bench_check import NATIONAL, national_id  # noqa: E402
from scripts.bench_common import create_database, finish, machine, record  # noqa: E402

MRN = "https://bench.example.cn/mrn"


class SemiJoinSql(SearchSql):
    """The registry's search with the earlier shape of its predicates: one ``pk IN (SELECT …)`` per clause."""

    def _where(self, query: Query) -> list[ColumnElement[bool]]:
        conds: list[ColumnElement[bool]] = [R.c.type == query.type, R.c.deleted.is_(False)]
        return conds + [self._clause(query.type, c) for c in query.clauses]


def timed(sql: SearchSql, query: Query, timeout: float) -> float | None:
    """Best of 3 in seconds for the first page, or None when PostgreSQL cancelled it after ``timeout``."""
    conn = sql.conn
    best = float("inf")
    for _ in range(3):
        conn.execute(text(f"SET statement_timeout = {int(timeout * 1000)}"))
        start = time.perf_counter()
        try:
            sql.search(query)
        except OperationalError:
            conn.rollback()
            return None
        best = min(best, time.perf_counter() - start)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=1500)
    ap.add_argument("--params", default="10,20,40,80,160", help="numbers of AND-ed name= parameters")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds before a statement is cancelled")
    ap.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args()
    counts = [int(k) for k in args.params.split(",")]

    db, url = create_database(args.pg, "hr_bench_search")
    settings = Settings(var_dir=Path(tempfile.mkdtemp(prefix="hr-bench-search-")), database_url=url,
                        identity_secret="bench", rate_limit_per_second=0, search_max_params=max(counts))  # fmt: skip
    rows: list[tuple[int, float | None, float | None]] = []
    try:
        ctx = build_context(settings)
        admin = ctx.principals.add(PrincipalKind.ADMIN, "bench-admin", "bench").principal
        audit = AuditContext("bench", admin, "create")
        for n in range(args.patients):
            body = {"resourceType": "Patient", "identifier": [{"system": MRN, "value": f"P{n}"},
                                                       {"system": NATIONAL, "value": national_id(n)}],
                    "name": [{"family": f"张{n % 97}", "given": [f"三{n % 13}"]}]}  # fmt: skip
            ctx.ingest.create(admin, audit, "Patient", orjson.dumps(body).decode(), None)
        with ctx.engine.connect() as conn:
            for k in counts:
                query = ctx.reads.parse("Patient", [("name", "张")] * k, lenient=False).query
                before = timed(SemiJoinSql(conn), query, args.timeout)
                rows.append((k, before, timed(SearchSql(conn), query, args.timeout)))
                print(f"{k:>4} AND-ed name=: semi-joins {show(rows[-1][1], args.timeout)}, "
                      f"intersect {show(rows[-1][2], args.timeout)}", flush=True)  # fmt: skip
        ctx.engine.dispose()
    finally:
        finish(None, args.pg, db)
    if args.write_docs:
        lines = [f"### {time.strftime('%Y-%m-%d')} — {args.patients} patients, PostgreSQL", "",
                 f"Machine: {machine()}", "", "Command: `.venv/bin/python scripts/bench_search_cost.py "
                 f"--patients {args.patients} --params {args.params} --write-docs`", "",
                 "| AND-ed `name=` | semi-joins (before) | intersect (now) | ratio |", "|---|---|---|---|"]  # fmt: skip
        for k, semi_s, inter_s in rows:
            ratio = f"{semi_s / inter_s:.1f}×" if semi_s and inter_s else "—"
            lines.append(f"| {k} | {show(semi_s, args.timeout)} | {show(inter_s, args.timeout)} | {ratio} |")
        record("## Search cost: many AND-ed parameters (scripts/bench_search_cost.py)", "\n".join(lines) + "\n")
    return 0


def show(seconds: float | None, timeout: float) -> str:
    return f"cancelled after {timeout:.0f} s" if seconds is None else f"{seconds * 1000:.0f} ms"


if __name__ == "__main__":
    raise SystemExit(main())
