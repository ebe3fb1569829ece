"""A small local notification gateway for the demo, the tests and the benchmark (docs/notifications.md §local
gateway): it takes the registry's messages exactly as an SMS provider or the city app's push service would
(``POST /messages``, bearer secret, 2xx = accepted, deduped by ``id``), records each new one as a JSON line, and
lists them (``GET /messages`` as JSON, ``GET /`` as a page). It sends nothing anywhere."""

from __future__ import annotations

import contextlib
import hmac
import html
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REQUIRED = ("id", "channel", "recipient", "language", "text")


class LocalGateway:
    def __init__(self, path: Path, *, host: str = "127.0.0.1", port: int = 0, secret: str | None = None) -> None:
        self.path, self.host, self.port, self.secret = path, host, port, secret
        self.lock = threading.Lock()
        self.messages: list[dict[str, Any]] = []
        self.ids: set[str] = set()
        self.duplicates = 0
        self.connections: set[socket.socket] = set()  # open keep-alive connections, closed by stop()
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    message = json.loads(line)
                    self.messages.append(message)
                    self.ids.add(str(message["id"]))
        self.server: ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/messages"

    def accept(self, message: dict[str, Any]) -> bool:
        """Record a message unless its id was seen; True when it was new."""
        with self.lock:
            if str(message["id"]) in self.ids:
                self.duplicates += 1
                return False
            self.ids.add(str(message["id"]))
            self.messages.append(message)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(message, ensure_ascii=False) + "\n")
            return True

    def received(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.messages)

    # ------------------------------------------------------------------ serving
    def build(self) -> ThreadingHTTPServer:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: the registry's client reuses its connections

            def setup(self) -> None:
                super().setup()
                with gateway.lock:
                    gateway.connections.add(self.connection)

            def finish(self) -> None:
                with gateway.lock:
                    gateway.connections.discard(self.connection)
                super().finish()

            def log_message(self, format: str, *args: Any) -> None:
                return  # no access lines: the texts and recipients are personal data

            def _answer(self, status: int, body: bytes, kind: str = "application/json") -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                if self.path != "/messages":
                    self._answer(404, b'{"error": "not found"}')
                    return
                if gateway.secret is not None:
                    presented = self.headers.get("Authorization", "")
                    if not hmac.compare_digest(presented.encode(), f"Bearer {gateway.secret}".encode()):
                        self._answer(401, b'{"error": "bad secret"}')
                        return
                try:
                    length = int(self.headers.get("Content-Length") or 0)
                    message = json.loads(self.rfile.read(length))
                    if not isinstance(message, dict) or any(not isinstance(message.get(k), str) for k in REQUIRED):
                        raise ValueError("missing members")
                except ValueError:
                    self._answer(400, b'{"error": "a message is a JSON object with id, channel, recipient, '
                                 b'language and text"}')  # fmt: skip
                    return
                new = gateway.accept(message)
                self._answer(201 if new else 200, json.dumps({"id": message["id"], "duplicate": not new}).encode())

            def do_GET(self) -> None:
                messages = gateway.received()
                if self.path == "/messages":
                    self._answer(200, json.dumps(messages, ensure_ascii=False).encode())
                    return
                if self.path != "/":
                    self._answer(404, b'{"error": "not found"}')
                    return
                rows = "".join(
                    f"<tr><td>{html.escape(str(m.get('sent_at')))}</td><td>{html.escape(m['channel'])}</td>"
                    f"<td>{html.escape(m['recipient'])}</td><td>{html.escape(m['text'])}</td></tr>"
                    for m in reversed(messages)
                )
                page = (
                    '<!doctype html><html lang="zh-CN"><meta charset="utf-8"><title>Local notification gateway'
                    f"</title><h1>Local notification gateway: {len(messages)} messages</h1><table><thead><tr>"
                    '<th scope="col">sent</th><th scope="col">channel</th><th scope="col">recipient</th>'
                    f'<th scope="col">text</th></tr></thead><tbody>{rows}</tbody></table></html>'
                )
                self._answer(200, page.encode(), "text/html; charset=utf-8")

        server = ThreadingHTTPServer((self.host, self.port), Handler)
        server.daemon_threads = True
        self.port = server.server_address[1]
        return server

    def start(self) -> LocalGateway:
        """Serve on a background thread (tests, the benchmark)."""
        self.server = self.build()
        self.thread = threading.Thread(target=self.server.serve_forever, name="local-gateway", daemon=True)
        self.thread.start()
        return self

    def __enter__(self) -> LocalGateway:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop listening and drop every open connection (a real outage: kept-alive ones end too)."""
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
        with self.lock:
            open_ones = list(self.connections)
        for conn in open_ones:
            with contextlib.suppress(OSError):  # already closed by the client
                conn.shutdown(socket.SHUT_RDWR)
        if self.thread is not None:
            self.thread.join(10)
            self.thread = None
