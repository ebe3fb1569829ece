"""Load generators the benchmarks share, chosen so that the client is never what is measured: Debian's ``wrk`` (C,
kept-alive connections, a Lua script cycling through prepared bodies) for HTTP saturation, ``pgbench`` for the bare
SQL baseline at the same concurrency, and, where wrk is not installed, keep-alive clients in separate processes.
Each returns the client's own CPU time so that a reader can see how much of the machine the load took."""

from __future__ import annotations

import http.client
import json
import multiprocessing
import os
import queue
import re
import resource
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

_LUA = r"""
local bodies = {}
local i = 0
init = function(args)
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
  i = math.random(#bodies)
end
request = function()
  i = i % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('RESULT {"requests": %d, "duration_us": %d, "errors": %d, "non2xx": %d, '
    .. '"p50_us": %d, "p99_us": %d}\n', summary.requests, summary.duration,
    e.connect + e.read + e.write + e.timeout, e.status, latency:percentile(50), latency:percentile(99)))
end
"""


def wrk_binary() -> str | None:
    return shutil.which("wrk")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def http_load(
    url: str, bodies: list[bytes], headers: dict[str, str], *, clients: int, seconds: float, method: str = "POST"
) -> dict[str, float]:
    """``clients`` kept-alive connections sending ``bodies`` in turn for ``seconds``: calls/s, p50/p99 (ms), errors and
    the load generator's CPU seconds per call (``client_cpu_ms``). wrk where installed, else one process per client."""
    if wrk_binary():
        return _wrk(url, bodies, headers, clients=clients, seconds=seconds, method=method)
    return _processes(url, bodies, headers, clients=clients, seconds=seconds, method=method)


def _wrk(
    url: str, bodies: list[bytes], headers: dict[str, str], *, clients: int, seconds: float, method: str
) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="hr-wrk-") as tmp:
        script = Path(tmp) / "load.lua"
        lua = f"wrk.method = {json.dumps(method)}\n" + "".join(
            f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}\n" for k, v in headers.items()
        )
        script.write_text(lua + _LUA)
        data = Path(tmp) / "bodies.txt"
        data.write_bytes(b"\n".join(b.replace(b"\n", b" ") for b in bodies) + b"\n")
        threads = max(1, min(2, clients))
        argv = [wrk_binary() or "wrk", "-t", str(threads), "-c", str(clients), "-d", f"{seconds:.0f}s",
                "--timeout", "10s", "-s", str(script), url, "--", str(data)]  # fmt: skip
        before = _children_cpu()
        out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout  # noqa: S603 - fixed argv
        cpu = _children_cpu() - before
    found = re.search(r"^RESULT (\{.*\})$", out, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"wrk printed no result:\n{out}")
    r = json.loads(found.group(1))
    calls = max(1, r["requests"])
    return {
        "calls_per_s": r["requests"] / (r["duration_us"] / 1e6),
        "p50_ms": r["p50_us"] / 1000,
        "p99_ms": r["p99_us"] / 1000,
        "errors": float(r["errors"] + r["non2xx"]),
        "client_cpu_ms": cpu / calls * 1000,
        "tool": 0.0,
    }


def _one_client(args: tuple[str, list[bytes], dict[str, str], float, str, int]) -> tuple[int, int, list[float], float]:
    url, bodies, headers, seconds, method, seed = args
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=30)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    done = errors = 0
    latencies: list[float] = []
    cpu = time.process_time()
    stop = time.perf_counter() + seconds
    i = seed
    while time.perf_counter() < stop:
        body = bodies[i % len(bodies)]
        i += 1
        t = time.perf_counter()
        conn.request(method, path, body=body if method != "GET" else None, headers=headers)
        response = conn.getresponse()
        response.read()
        latencies.append(time.perf_counter() - t)
        done += 1
        errors += response.status >= 300
    conn.close()
    return done, errors, latencies, time.process_time() - cpu


def _processes(
    url: str, bodies: list[bytes], headers: dict[str, str], *, clients: int, seconds: float, method: str
) -> dict[str, float]:
    t = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(clients) as pool:
        parts = pool.map(_one_client, [(url, bodies, headers, seconds, method, k * 7919) for k in range(clients)])
    wall = time.perf_counter() - t - 0.0
    done = sum(p[0] for p in parts)
    latencies = sorted(x for p in parts for x in p[2])
    return {
        "calls_per_s": done / min(wall, seconds + 0.5),
        "p50_ms": latencies[len(latencies) // 2] * 1000 if latencies else 0.0,
        "p99_ms": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000 if latencies else 0.0,
        "errors": float(sum(p[1] for p in parts)),
        "client_cpu_ms": sum(p[3] for p in parts) / max(1, done) * 1000,
        "tool": 1.0,
    }


def pgbench(dsn: str, script: str, *, clients: int, seconds: float, variables: dict[str, Any]) -> dict[str, float]:
    """The bare SQL baseline: pgbench running ``script`` (prepared statements, ``clients`` connections and as many
    threads, capped at 2) for ``seconds``: transactions/s, mean latency and pgbench's CPU per transaction."""
    if shutil.which("pgbench") is None:
        raise RuntimeError("pgbench is not installed (Debian: postgresql-client or postgresql)")
    parts = urlsplit(dsn.replace("postgresql+psycopg://", "postgresql://"))
    with tempfile.TemporaryDirectory(prefix="hr-pgbench-") as tmp:
        path = Path(tmp) / "bare.sql"
        path.write_text(script)
        argv = ["pgbench", "-n", "-M", "prepared", "-f", str(path), "-c", str(clients), "-j", str(min(2, clients)),
                "-T", f"{seconds:.0f}", "-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 5432),
                "-U", parts.username or "postgres", *[f"-D{k}={v}" for k, v in variables.items()],
                parts.path.lstrip("/")]  # fmt: skip
        before = _children_cpu()
        out = subprocess.run(argv, capture_output=True, text=True, check=True, env={**os.environ}).stdout  # noqa: S603
        cpu = _children_cpu() - before
    tps = re.search(r"tps = ([\d.]+)", out)
    latency = re.search(r"latency average = ([\d.]+) ms", out)
    done = re.search(r"number of transactions actually processed: (\d+)", out)
    if tps is None or latency is None or done is None:
        raise RuntimeError(f"pgbench printed no result:\n{out}")
    return {
        "calls_per_s": float(tps.group(1)),
        "mean_ms": float(latency.group(1)),
        "client_cpu_ms": cpu / max(1, int(done.group(1))) * 1000,
    }


# ---------------------------------------------------------------------------------------------------------------------
# GET load over many paths (a different URL per request), and pushing a fixed set of bodies exactly once.

_PATHS_LUA = r"""
local paths = {}
local i = 0
init = function(args)
  for line in io.lines(args[1]) do paths[#paths + 1] = line end
  i = math.random(#paths)
end
request = function()
  i = i % #paths + 1
  return wrk.format(nil, paths[i])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('RESULT {"requests": %d, "duration_us": %d, "errors": %d, "non2xx": %d, '
    .. '"p50_us": %d, "p99_us": %d, "mean_us": %d, "max_us": %d}\n', summary.requests, summary.duration,
    e.connect + e.read + e.write + e.timeout, e.status, latency:percentile(50), latency:percentile(99),
    latency.mean, latency.max))
end
"""


def http_load_paths(
    base: str,
    paths: list[str],
    headers: dict[str, str],
    *,
    clients: int,
    seconds: float,
    method: str = "GET",
    tool: str = "auto",
) -> dict[str, float]:
    """Like :func:`http_load` for requests without a body whose path (with its query) changes per request:
    ``clients`` kept-alive connections to ``base`` (``http://host:port``) going through ``paths`` in turn for
    ``seconds``: calls and calls/s, p50/p99/mean/max (ms), errors, the load generator's CPU per call.

    ``tool``: ``"wrk"`` (a Lua script picking the next path), ``"processes"`` (one ``http.client`` process per
    client), ``"auto"`` wrk where installed. They differ in the latency figures, not only in their CPU: wrk corrects
    its latency histogram for coordinated omission (after the run, every request that took at least twice the mean
    interval between one connection's requests adds samples at that latency less one, two… intervals, as if an
    open-loop client had kept sending during the stall), so its percentiles and mean are not those of the requests
    made; the processes time every request as made."""
    if tool not in ("auto", "wrk", "processes"):
        raise ValueError(f"unknown load generator {tool!r}")
    if tool == "wrk" and not wrk_binary():
        raise RuntimeError("wrk is not installed (Debian: wrk)")
    if tool != "processes" and wrk_binary():
        with tempfile.TemporaryDirectory(prefix="hr-wrk-") as tmp:
            script = Path(tmp) / "paths.lua"
            lua = f"wrk.method = {json.dumps(method)}\n" + "".join(
                f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}\n" for k, v in headers.items()
            )
            script.write_text(lua + _PATHS_LUA)
            data = Path(tmp) / "paths.txt"
            data.write_text("\n".join(paths) + "\n")
            threads = max(1, min(2, clients))
            argv = [wrk_binary() or "wrk", "-t", str(threads), "-c", str(clients), "-d", f"{seconds:.0f}s",
                    "--timeout", "10s", "-s", str(script), base.rstrip("/") + "/", "--", str(data)]  # fmt: skip
            before = _children_cpu()
            out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout  # noqa: S603 - fixed argv
            cpu = _children_cpu() - before
        found = re.search(r"^RESULT (\{.*\})$", out, re.MULTILINE)
        if found is None:
            raise RuntimeError(f"wrk printed no result:\n{out}")
        r = json.loads(found.group(1))
        return {
            "calls": float(r["requests"]),
            "calls_per_s": r["requests"] / (r["duration_us"] / 1e6),
            "p50_ms": r["p50_us"] / 1000,
            "p99_ms": r["p99_us"] / 1000,
            "mean_ms": r["mean_us"] / 1000,
            "max_ms": r["max_us"] / 1000,
            "errors": float(r["errors"] + r["non2xx"]),
            "client_cpu_ms": cpu / max(1, r["requests"]) * 1000,
            "tool": 0.0,
        }
    t = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(clients) as pool:
        parts = pool.map(_paths_client, [(base, paths, headers, seconds, method, k * 7919) for k in range(clients)])
    wall = time.perf_counter() - t
    done = sum(p[0] for p in parts)
    latencies = sorted(x for p in parts for x in p[2])
    return {
        "calls": float(done),
        "calls_per_s": done / min(wall, seconds + 0.5),
        "p50_ms": latencies[len(latencies) // 2] * 1000 if latencies else 0.0,
        "p99_ms": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000 if latencies else 0.0,
        "mean_ms": sum(latencies) / len(latencies) * 1000 if latencies else 0.0,
        "max_ms": latencies[-1] * 1000 if latencies else 0.0,
        "errors": float(sum(p[1] for p in parts)),
        "client_cpu_ms": sum(p[3] for p in parts) / max(1, done) * 1000,
        "tool": 1.0,
    }


def _paths_client(args: tuple[str, list[str], dict[str, str], float, str, int]) -> tuple[int, int, list[float], float]:
    base, paths, headers, seconds, method, seed = args
    parts = urlsplit(base)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=30)
    done = errors = 0
    latencies: list[float] = []
    cpu = time.process_time()
    stop = time.perf_counter() + seconds
    i = seed
    while time.perf_counter() < stop:
        path = paths[i % len(paths)]
        i += 1
        t = time.perf_counter()
        conn.request(method, path, headers=headers)
        response = conn.getresponse()
        response.read()
        latencies.append(time.perf_counter() - t)
        done += 1
        errors += response.status >= 300
    conn.close()
    return done, errors, latencies, time.process_time() - cpu


def http_push(
    url: str,
    bodies: list[bytes],
    headers: dict[str, str],
    *,
    clients: int,
    method: str = "POST",
    progress: Callable[[int, float], None] | None = None,
    every: float = 5.0,
    on_start: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Send every one of ``bodies`` exactly once, in order, from ``clients`` processes, each with one kept-alive
    ``http.client`` connection opened before the clock starts; the next body goes to whichever client is free.
    ``on_start()`` is called once every connection is open and the clock has started, ``progress(sent, seconds)``
    about every ``every`` seconds while the push runs. Returns seconds (from
    the start signal to the last answer), calls, errors with the first error's text, p50/p99 (ms) and the clients'
    CPU: ``client_cpu_s`` in the send loops (process_time) and ``children_cpu_s`` of the whole processes
    (RUSAGE_CHILDREN: interpreter start included)."""
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="hr-push-") as tmp:
        data = Path(tmp) / "bodies.bin"
        offsets = [0]
        with data.open("wb") as f:
            for body in bodies:
                f.write(body)
                offsets.append(offsets[-1] + len(body))
        counter = ctx.Value("q", 0)
        ready = ctx.Semaphore(0)
        go = ctx.Event()
        results = ctx.Queue()
        argv = (url, str(data), offsets, headers, method, counter, ready, go, results)
        before = _children_cpu()
        procs = [ctx.Process(target=_push_client, args=argv, daemon=True) for _ in range(clients)]
        for p in procs:
            p.start()
        for _ in procs:
            if not ready.acquire(timeout=120):
                raise RuntimeError("a pushing client did not start")
        started = time.monotonic()
        go.set()
        if on_start is not None:
            on_start()
        parts: list[tuple[int, int, str, list[float], float, float]] = []
        last = started
        while len(parts) < clients:
            try:
                parts.append(results.get(timeout=0.5))
            except queue.Empty:
                if any(p.exitcode not in (None, 0) for p in procs):
                    raise RuntimeError("a pushing client died") from None
            now = time.monotonic()
            if progress is not None and now - last >= every and len(parts) < clients:
                last = now
                progress(min(counter.value, len(bodies)), now - started)
        for p in procs:
            p.join(30)
        children = _children_cpu() - before
    ended = max(p[5] for p in parts)
    latencies = sorted(x for p in parts for x in p[3])
    first_error = next((p[2] for p in parts if p[2]), "")
    return {
        "seconds": ended - started,
        "calls": sum(p[0] for p in parts),
        "errors": sum(p[1] for p in parts),
        "first_error": first_error,
        "p50_ms": latencies[len(latencies) // 2] * 1000 if latencies else 0.0,
        "p99_ms": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1000 if latencies else 0.0,
        "client_cpu_s": sum(p[4] for p in parts),
        "children_cpu_s": children,
    }


def _push_client(
    url: str, data: str, offsets: list[int], headers: dict[str, str], method: str, counter: Any, ready: Any, go: Any,
    results: Any,
) -> None:  # fmt: skip
    import mmap

    parts = urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=600)
    conn.connect()
    done = errors = 0
    first_error = ""
    latencies: list[float] = []
    with open(data, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        ready.release()
        go.wait()
        cpu = time.process_time()
        while True:
            with counter.get_lock():
                n = counter.value
                counter.value = n + 1
            if n >= len(offsets) - 1:
                break
            body = m[offsets[n] : offsets[n + 1]]
            t = time.monotonic()
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            text = response.read()
            latencies.append(time.monotonic() - t)
            done += 1
            if response.status >= 300:
                errors += 1
                first_error = first_error or f"{response.status}: {text[:300].decode(errors='replace')}"
        cpu = time.process_time() - cpu
    ended = time.monotonic()
    conn.close()
    results.put((done, errors, first_error, latencies, cpu, ended))
