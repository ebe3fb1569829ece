"""What the benchmark scripts share: the machine description, percentiles, and recording a dated section in
docs/benchmarks.md (the newest run of each benchmark is appended under its heading)."""

from __future__ import annotations

import os
import platform
import subprocess
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_FIRST_BIRTH = date(1930, 1, 1)
_AREAS = ("110101", "110102", "110105", "110106", "110107", "110108", "110109", "110111", "110112", "110113")
_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def national_id(n: int) -> str:
    """The ``n``-th synthetic resident ID number (GB 11643-1999: area, birth date, sequence, check character), distinct
    for every ``n`` below 10 × 999 × 32,000 ≈ 320 million: sequence ``n % 999 + 1``, then one of ten Beijing area codes,
    then one birth day per step from 1930-01-01 (32,000 days reach 2017)."""
    if not 0 <= n < 10 * 999 * 32_000:
        raise ValueError(f"no distinct synthetic resident ID for {n}")
    seq, rest = n % 999 + 1, n // 999
    area, day = _AREAS[rest % 10], rest // 10
    born = _FIRST_BIRTH + timedelta(days=day)
    body = f"{area}{born:%Y%m%d}{seq:03d}"
    return body + "10X98765432"[sum(int(d) * w for d, w in zip(body, _WEIGHTS, strict=True)) % 11]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    pg = subprocess.run(["psql", "--version"], capture_output=True, text=True, check=False).stdout.strip()  # noqa: S607
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, {pg}"
    )


def record(section: str, body: str) -> None:
    """Append ``body`` (a dated ``###`` run) under the ``## section`` heading of docs/benchmarks.md."""
    path = ROOT / "docs" / "benchmarks.md"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    if section not in text:
        text += f"\n{section}\n"
    head, _, tail = text.partition(section)
    nxt = tail.find("\n## ")
    tail = tail + body if nxt < 0 else tail[:nxt] + body + tail[nxt:]
    path.parent.mkdir(exist_ok=True)
    path.write_text(head + section + tail, encoding="utf-8")


def start_registry(
    *, var: Path, database_url: str, port: int, workers: int = 2, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """The registry under uvicorn (``--workers``), as production runs it, on an already migrated database; returns
    once ``/healthz`` answers."""
    import sys
    import time

    import httpx

    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "REGISTRY_VAR_DIR": str(var),
        "REGISTRY_DATABASE_URL": database_url,
        "REGISTRY_PUBLIC_BASE_URL": base,
        "REGISTRY_IDENTITY_SECRET": "bench",
        "REGISTRY_RATE_LIMIT_PER_SECOND": "0",
        "REGISTRY_AUTO_MIGRATE": "false",
        **(extra_env or {}),
    }
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        "registry.app:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    server = subprocess.Popen(argv, cwd=ROOT, env=env)  # noqa: S603 - fixed argv
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.2)
        if server.poll() is not None:
            break
    server.kill()
    raise RuntimeError("the registry did not start")


def create_database(pg_url: str, prefix: str) -> tuple[str, str]:
    """A fresh PostgreSQL database for one run: (its name, its SQLAlchemy URL)."""
    import uuid

    from sqlalchemy import create_engine, text

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    engine = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return name, pg_url.rsplit("/", 1)[0] + f"/{name}"


def finish(server: subprocess.Popen[bytes] | None, pg_url: str, database: str) -> None:
    """Stop the registry and drop the run's database."""
    from sqlalchemy import create_engine, text

    if server is not None:
        server.terminate()
        server.wait(30)
    engine = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'"))
        conn.execute(text(f'DROP DATABASE IF EXISTS "{database}"'))
    engine.dispose()
