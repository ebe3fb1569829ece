"""Where the machine's CPU goes during a benchmark: py-spy profiles of the registry's workers (collapsed stacks and
their top entries), the CPU time of a process tree (uvicorn's workers, a postmaster's backends) read from ``/proc``,
and the machine's busy time split into the benchmark's own processes, everything else, and the hypervisor's steal —
steadier figures than latency on a machine others share."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def profiled(pid: int, out: Path | None, *, rate: int = 400) -> Iterator[None]:
    """py-spy sampling ``pid`` and its children (the uvicorn workers) while the block runs, collapsed stacks written to
    ``out``; nothing when ``out`` is None or py-spy is not installed."""
    binary = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if out is None or not Path(binary).exists():
        yield
        return
    argv = [binary, "record", "--pid", str(pid), "--subprocesses", "--format", "raw", "--rate", str(rate),
            "--nonblocking", "-o", str(out)]  # fmt: skip
    spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603
    time.sleep(1.0)
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(60)


def top_entries(raw: Path, n: int = 15) -> list[tuple[str, float, float]]:
    """The ``n`` functions with the most samples on the stack in py-spy's collapsed output: (function, share of the
    samples with it anywhere on the stack, share with it on top), idle event-loop waits left out."""
    total_samples = 0
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [re.sub(r":\d+\)$", ")", f.strip()) for f in stack.split(";") if not f.startswith("process ")]
        if not frames or frames[-1].startswith(("select (selectors.py", "run_once (asyncio", "wait (threading.py")):
            continue
        weight = int(count)
        total_samples += weight
        for f in set(frames):
            inclusive[f] += weight
        own[frames[-1]] += weight
    if not total_samples:
        return []
    ranked = sorted(inclusive, key=lambda f: (-own[f], -inclusive[f]))[:n]
    return [(f, inclusive[f] / total_samples, own[f] / total_samples) for f in ranked]


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and every live descendant (uvicorn's workers, a
    postmaster's backends) — per call, a steadier figure than latency on a machine others share."""
    ticks = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    used: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        used[int(entry.name)] = (int(fields[11]) + int(fields[12])) / ticks
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += used.get(current, 0.0)
        todo += [child for child, parent in parents.items() if parent == current]
    return total


def peak_rss_mib(pid: int) -> float:
    """The largest peak resident set (``VmHWM``, MiB) of ``pid`` and its live descendants — uvicorn's master and each
    worker is its own process: the issue's "≤ 300 MB per worker" is the largest of them."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
    peak, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) / 1024)
        except OSError:
            pass  # gone meanwhile
        todo += [child for child, parent in parents.items() if parent == current]
    return peak


def _busy_ticks() -> tuple[int, int]:
    """Clock ticks the machine's cores spent busy since boot (``/proc/stat``: user, nice, system, irq, softirq; not
    idle, iowait, nor guest, which user already holds), and the ticks the hypervisor took from them (steal)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return fields[0] + fields[1] + fields[2] + sum(fields[5:7]), fields[7] if len(fields) > 7 else 0


def _tree_ticks(roots: list[int]) -> int:
    """CPU ticks of the processes under ``roots`` (the roots too): each live one's own time plus what its reaped
    children used, so a child that ended meanwhile still counts (in its parent's)."""
    stats: dict[int, tuple[int, int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        rest = raw[raw.rindex(")") + 2 :].split()
        # after the command: state ppid ... utime(14) stime(15) cutime(16) cstime(17) — fields 3… of ``rest``
        stats[int(entry.name)] = (int(rest[1]), int(rest[11]) + int(rest[12]) + int(rest[13]) + int(rest[14]))
    children: dict[int, list[int]] = {}
    for pid, (ppid, _ticks) in stats.items():
        children.setdefault(ppid, []).append(pid)
    seen: set[int] = set()
    todo = [r for r in roots if r in stats]
    while todo:
        pid = todo.pop()
        if pid not in seen:
            seen.add(pid)
            todo.extend(children.get(pid, []))
    return sum(stats[p][1] for p in seen)


@contextmanager
def cpu_split(roots: list[int], parts: dict[str, list[int]] | None = None) -> Iterator[dict[str, float]]:
    """How busy the machine was while the block ran, split into the processes under ``roots`` (the server, the
    database, the load generator) and everything else on the machine: ``ours`` and ``others`` in cores (CPU seconds
    per second), ``steal`` the cores' time a virtual machine's hypervisor gave to others outside it, ``cores`` the
    machine has, and for each of ``parts`` (a name: its roots) ``<name>_cpu_s``, the CPU seconds of the processes
    under them (children that ended meanwhile included); filled in when the block ends."""
    hz = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    parts = parts or {}
    (busy, steal), ours, t = _busy_ticks(), _tree_ticks(roots), time.monotonic()
    before = {name: _tree_ticks(r) for name, r in parts.items()}
    try:
        yield out
    finally:
        wall = max(1e-6, time.monotonic() - t)
        (busy_now, steal_now), ours = _busy_ticks(), _tree_ticks(roots) - ours
        busy, steal = busy_now - busy, steal_now - steal
        out.update(ours=ours / hz / wall, others=max(0, busy - ours) / hz / wall, steal=steal / hz / wall,
                   cores=float(os.cpu_count() or 1))  # fmt: skip
        for name, r in parts.items():
            out[f"{name}_cpu_s"] = (_tree_ticks(r) - before[name]) / hz
