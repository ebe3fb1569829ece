"""The registry benchmark's baselines over the same data: PostgreSQL ``COPY … FROM STDIN`` of exactly the rows an ingest
stored (every table it wrote into, into empty copies with the same indexes), and fhir.resources validation alone of
the same resources."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import orjson
import psycopg


def _tables(cur: psycopg.Cursor[Any]) -> list[str]:
    """The schema's tables, a partitioned one as itself (its partitions' rows are its rows, not counted again)."""
    cur.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' "
        "AND c.relkind IN ('r', 'p') AND NOT c.relispartition ORDER BY c.relname"
    )
    return [r[0] for r in cur.fetchall()]


def _columns(cur: psycopg.Cursor[Any], table: str) -> str:
    """The table's columns that COPY can write (generated ones left out), quoted, in order."""
    cur.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' AND table_name = %s "
        "AND is_generated = 'NEVER' ORDER BY ordinal_position",
        (table,),
    )
    return ", ".join(f'"{r[0]}"' for r in cur.fetchall())


def _dump(cur: psycopg.Cursor[Any], table: str, columns: str) -> list[bytes]:
    """Every row of ``table`` in COPY's text format, one line each."""
    with cur.copy(f'COPY (SELECT {columns} FROM "{table}") TO STDOUT') as copy:
        data = b"".join(bytes(chunk) for chunk in copy)
    return data.splitlines(keepends=True)


def snapshot(raw_url: str) -> dict[str, Counter[bytes]]:
    """Every table's rows before the ingest (the set-up's few), to tell the run's rows from them afterwards."""
    with psycopg.connect(raw_url) as pg, pg.cursor() as cur:
        return {t: Counter(_dump(cur, t, _columns(cur, t))) for t in _tables(cur)}


def stored_rows(raw_url: str, before: dict[str, Counter[bytes]]) -> dict[str, tuple[str, bytes, int]]:
    """The rows the ingest stored: for every table whose row count grew, its rows now less the rows it had before,
    as (columns, COPY text, rows)."""
    out: dict[str, tuple[str, bytes, int]] = {}
    with psycopg.connect(raw_url) as pg, pg.cursor() as cur:
        for table in _tables(cur):
            cur.execute(f'SELECT count(*) FROM "{table}"')
            count = cur.fetchone()[0]  # type: ignore[index]
            old = before.get(table, Counter())
            if count <= sum(old.values()):
                continue
            columns = _columns(cur, table)
            left = Counter(old)
            kept: list[bytes] = []
            for line in _dump(cur, table, columns):
                if left[line] > 0:
                    left[line] -= 1
                else:
                    kept.append(line)
            out[table] = (columns, b"".join(kept), len(kept))
    return out


def copy_baseline(raw_url: str, stored: dict[str, tuple[str, bytes, int]]) -> float:
    """Seconds for ``COPY … FROM STDIN`` of ``stored`` into empty copies of its tables (``LIKE … INCLUDING ALL``:
    defaults, constraints and indexes) in the same database, in one transaction, committed, after a CHECKPOINT; the
    copies are dropped afterwards."""
    chunk = 1 << 20
    with psycopg.connect(raw_url) as pg:
        with pg.cursor() as cur:
            for table in stored:
                cur.execute(f'CREATE TABLE "bench_copy_{table}" (LIKE "{table}" INCLUDING ALL)')
        pg.commit()
        # start from clean shared buffers, as the ingest did on its fresh database: the ingest's dirty pages are not
        # the COPY's to write out
        pg.execute("CHECKPOINT")
        started = time.perf_counter()
        with pg.cursor() as cur:
            for table, (columns, data, _rows) in stored.items():
                with cur.copy(f'COPY "bench_copy_{table}" ({columns}) FROM STDIN') as copy:
                    view = memoryview(data)
                    for at in range(0, len(view), chunk):
                        copy.write(view[at : at + chunk])
        pg.commit()
        seconds = time.perf_counter() - started
        with pg.cursor() as cur:
            for table in stored:
                cur.execute(f'DROP TABLE "bench_copy_{table}"')
        pg.commit()
    return seconds


def validation_seconds(bodies: list[bytes]) -> tuple[float, int]:
    """Wall seconds (one thread) for the fhir.resources R4B model's ``model_validate`` of every resource in
    ``bodies`` — what the registry's structural validation calls — and how many resources."""
    from registry.fhir.models import model_class

    resources = [(model_class(e["resource"]["resourceType"]), e["resource"]) for b in bodies
                 for e in orjson.loads(b)["entry"]]  # fmt: skip
    started = time.perf_counter()
    for model, resource in resources:
        model.model_validate(resource)
    return time.perf_counter() - started, len(resources)
