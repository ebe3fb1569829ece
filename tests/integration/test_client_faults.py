"""A client's fault is not the server's (docs/design.md §6 logs): a client that drops mid-request leaves at most one
info line — no error, no traceback, neither from the registry's handler nor from the server, which would log whatever
the application lets escape."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from tests.integration.conftest import Api


def _drop_mid_body(api: Api, path: str, request_id: str) -> list[dict[str, Any]]:
    """Call the ASGI app as a server would, with a client that sends half its body and disconnects."""
    token = api.token_for("admin")
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
        "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/json"), (b"content-length", b"100000"),
                    (b"authorization", f"Bearer {token}".encode()), (b"x-request-id", request_id.encode())],
        "client": ("127.0.0.1", 50000), "server": ("testserver", 80),
    }  # fmt: skip
    messages = [{"type": "http.request", "body": b'{"hook": "order-', "more_body": True}, {"type": "http.disconnect"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(api.client.app(scope, receive, send))  # raises if the application let the exception escape
    return sent


@pytest.mark.parametrize(
    "path", ["/cds-services/hr-order-sign", "/cds-services/hr-order-sign/feedback", "/fhir/Patient", "/fhir"]
)
def test_a_client_that_drops_mid_request_is_one_info_line(
    api: Api, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    request_id = f"drop{abs(hash(path)) % 10**8}"
    _drop_mid_body(api, path, request_id)
    records = [r for r in caplog.records if r.name.startswith(("registry", "uvicorn", "starlette", "fastapi"))]
    assert not [r for r in records if r.levelno >= logging.WARNING], [r.getMessage() for r in records]
    assert not [r for r in records if r.exc_info], "no traceback for a client's fault"
    mine = [r for r in records if request_id in r.getMessage()]
    assert len(mine) <= 1 and all(r.levelno == logging.INFO for r in mine), [r.getMessage() for r in mine]


def test_the_server_writes_the_registrys_info_lines_in_its_own_stream() -> None:
    """``hr-registry serve`` configures logging so the registry's one info line (above) is seen, through uvicorn's
    handler and format — before, the ``registry`` logger had no handler and its info lines went nowhere."""
    import subprocess
    import sys

    code = (
        "import logging, logging.config\n"
        "from registry.cli.server_commands import server_log_config\n"
        "logging.config.dictConfig(server_log_config())\n"
        "logging.getLogger('registry').info('client closed the connection (request r-1)')\n"
        "logging.getLogger('registry.app').debug('not shown')\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)  # noqa: S603 - our own interpreter, our own code
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "INFO" in lines[0] and "request r-1" in lines[0], run.stderr
