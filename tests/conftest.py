"""Shared test fixtures."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_uvicorn(port: int, env: dict[str, str], log_path: Path, *, timeout: float = 60) -> subprocess.Popen[bytes]:
    """The registry as the README runs it (uvicorn, the app factory, settings from ``env``); returns once /healthz
    answers, or raises with the end of the server's log."""
    base = f"http://127.0.0.1:{port}"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(  # noqa: S603 - fixed argv
            [
                sys.executable,
                "-m",
                "uvicorn",
                "registry.app:create_app",
                "--factory",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return wait_until_healthy(proc, base, log_path, timeout)


def wait_until_healthy(
    proc: subprocess.Popen[bytes], base: str, log_path: Path, timeout: float
) -> subprocess.Popen[bytes]:
    """Returns ``proc`` once ``base``/healthz answers; kills it and raises with the end of its log otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"the registry did not start:\n{log_path.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 20) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The registry really started as the README says: uvicorn with the app factory, settings from REGISTRY_*."""
    port = free_port()
    var = tmp_path_factory.mktemp("var")
    env = {**os.environ, "REGISTRY_VAR_DIR": str(var), "REGISTRY_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}"}
    proc = start_uvicorn(port, env, var / "server.log", timeout=30)
    yield f"http://127.0.0.1:{port}"
    stop_process(proc, 10)
