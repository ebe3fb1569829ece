"""The gateway's client to a PACS (registry.services.imaging.upstream) against a real HTTP server on loopback that
misbehaves as a PACS can: cuts an answer mid-transfer, stalls before or during it, compresses its JSON, refuses with
an error body that names its own address. Orthanc itself is exercised in test_dicomweb_gateway.py; here the failures
that Orthanc cannot be made to show on demand."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from registry.errors import BadGatewayError, GatewayTimeoutError, NotFoundError
from registry.services.imaging import StreamBrokenError
from registry.services.imaging.pacs import Pacs
from registry.services.imaging.parameters import DICOM_JSON, Forward, Kind, Target
from registry.services.imaging.upstream import Upstream

Behaviour = Callable[[socket.socket, bytes], None]


class MisbehavingPacs:
    """A raw TCP server: each connection's request is read, then ``behaviour(conn, request)`` answers it."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self.behaviour: Behaviour = lambda conn, req: None
        self.requests: list[bytes] = []
        self.release = threading.Event()
        self._stop = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            request = b""
            while b"\r\n\r\n" not in request:
                got = conn.recv(65536)
                if not got:
                    return
                request += got
            self.requests.append(request)
            with contextlib.suppress(OSError):
                self.behaviour(conn, request)

    def close(self) -> None:
        self._stop = True
        self.release.set()
        self.sock.close()


@pytest.fixture
def server() -> Iterator[MisbehavingPacs]:
    s = MisbehavingPacs()
    yield s
    s.close()


def _pacs(server: MisbehavingPacs, **bounds: float) -> Pacs:
    return Pacs("test-pacs", "hosp-a", f"http://127.0.0.1:{server.port}/dicom-web", (("Authorization", "Basic eA=="),),
                timeout=bounds.get("timeout", 2.0), connect_timeout=1.0,
                read_timeout=bounds.get("read_timeout", 1.0))  # fmt: skip


WHERE = Target("1.2.3", "1.2.3.4", "1.2.3.4.5", 1)
FRAME = Forward(Kind.RENDERED, WHERE, f"{WHERE.path}/rendered", (("window", "40,400,linear"),), "image/jpeg")
RETRIEVE = Forward(Kind.RETRIEVE, Target("1.2.3"), "studies/1.2.3", (), 'multipart/related; type="application/dicom"')
QIDO = Forward(Kind.QIDO, Target("1.2.3"), "studies/1.2.3/series", (), DICOM_JSON)


def _head(status: str, headers: dict[str, str]) -> bytes:
    return (f"HTTP/1.1 {status}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()


def _run(coro_factory: Callable[[Upstream], object]) -> object:
    async def main() -> object:
        upstream = Upstream()
        try:
            return await coro_factory(upstream)  # type: ignore[misc]
        finally:
            await upstream.aclose()

    return asyncio.run(main())


def test_the_request_carries_the_pacs_credentials_and_the_parameters_as_written(server: MisbehavingPacs) -> None:
    def answer(conn: socket.socket, _req: bytes) -> None:
        conn.sendall(_head("200 OK", {"Content-Type": "image/jpeg", "Content-Length": "4"}) + b"\xff\xd8\xff\xd9")

    server.behaviour = answer

    async def go(up: Upstream) -> bytes:
        return await (await up.get(_pacs(server), FRAME, "frame")).read(1024)

    assert _run(go) == b"\xff\xd8\xff\xd9"
    request = server.requests[0].decode()
    assert request.startswith(f"GET /dicom-web/{WHERE.path}/rendered?window=40,400,linear HTTP/1.1")  # no %2C
    assert "Authorization: Basic eA==" in request and "Accept: image/jpeg" in request
    assert "Accept-Encoding: identity" in request


def test_an_image_cut_mid_transfer_is_a_502_not_half_an_image(server: MisbehavingPacs) -> None:
    def cut(conn: socket.socket, _req: bytes) -> None:
        conn.sendall(_head("200 OK", {"Content-Type": "image/jpeg", "Content-Length": "50000"}) + b"\xff" * 1000)

    server.behaviour = cut

    async def go(up: Upstream) -> bytes:
        return await (await up.get(_pacs(server), FRAME, "frame")).read(1 << 20)

    with pytest.raises(BadGatewayError, match="broke off its answer"):
        _run(go)


def test_a_stream_cut_mid_transfer_raises_after_the_bytes_that_came(server: MisbehavingPacs) -> None:
    def cut(conn: socket.socket, _req: bytes) -> None:
        head = _head("200 OK", {"Content-Type": 'multipart/related; type="application/dicom"; boundary=b',
                                "Content-Length": "900000"})  # fmt: skip
        conn.sendall(head + b"x" * 300_000)

    server.behaviour = cut
    got: list[int] = []

    async def go(up: Upstream) -> None:
        answer = await up.get(_pacs(server), RETRIEVE, "study")
        try:
            async for chunk in answer.chunks():
                got.append(len(chunk))
        finally:
            await answer.close()

    with pytest.raises(StreamBrokenError):
        _run(go)
    assert sum(got) == 300_000  # what came was passed on; then the break, never a clean end


def test_a_pacs_silent_in_the_middle_of_a_stream_breaks_it_after_the_read_bound(server: MisbehavingPacs) -> None:
    def stall(conn: socket.socket, _req: bytes) -> None:
        conn.sendall(_head("200 OK", {"Content-Type": DICOM_JSON, "Transfer-Encoding": "chunked"}) + b"2\r\n[]\r\n")
        server.release.wait(10)

    server.behaviour = stall

    async def go(up: Upstream) -> None:
        answer = await up.get(_pacs(server, read_timeout=0.5, timeout=5), QIDO, "series")
        try:
            async for _chunk in answer.chunks():
                pass
        finally:
            await answer.close()

    started = time.monotonic()
    with pytest.raises(StreamBrokenError):
        _run(go)
    assert time.monotonic() - started < 3


def test_a_pacs_that_never_answers_is_a_504_within_its_bound(server: MisbehavingPacs) -> None:
    server.behaviour = lambda conn, req: server.release.wait(10) and None

    async def go(up: Upstream) -> object:
        return await up.get(_pacs(server, timeout=0.8, read_timeout=5), FRAME, "frame")

    started = time.monotonic()
    with pytest.raises(GatewayTimeoutError, match=r"did not answer within 0\.8 s"):
        _run(go)
    assert time.monotonic() - started < 2.5


def test_compressed_json_is_read_decompressed(server: MisbehavingPacs) -> None:
    doc = b'[{"0020000E": {"vr": "UI", "Value": ["1.2.3.4"]}}]' * 50
    packed = gzip.compress(doc)

    def answer(conn: socket.socket, _req: bytes) -> None:
        conn.sendall(_head("200 OK", {"Content-Type": DICOM_JSON, "Content-Encoding": "gzip",
                                      "Content-Length": str(len(packed))}) + packed)  # fmt: skip

    server.behaviour = answer

    async def go(up: Upstream) -> bytes:
        return await (await up.get(_pacs(server), QIDO, "series")).read(1 << 20)

    assert _run(go) == doc


def test_a_pacs_error_is_the_registrys_without_the_pacs_address(server: MisbehavingPacs) -> None:
    secret = f"http://127.0.0.1:{server.port}/dicom-web"
    body = ('{"Message": "Unknown resource", "Details": "no such study at ' + secret + '"}').encode()
    statuses = iter(["404 Not Found", "401 Unauthorized", "500 Internal Server Error"])

    def refuse(conn: socket.socket, _req: bytes) -> None:
        conn.sendall(_head(next(statuses), {"Content-Type": "application/json", "Content-Length": str(len(body))})
                     + body)  # fmt: skip

    server.behaviour = refuse
    expected: list[tuple[type[Exception], str]] = [
        (NotFoundError, "was not found"),
        (BadGatewayError, "credentials"),
        (BadGatewayError, "answered with an error"),
    ]
    for kind, says in expected:

        async def go(up: Upstream) -> object:
            return await up.get(_pacs(server), QIDO, "study 1.2.3")

        with pytest.raises(kind, match=says) as caught:
            _run(go)
        assert secret not in str(caught.value) and "127.0.0.1" not in str(caught.value)


def test_a_refused_connection_is_a_502(server: MisbehavingPacs) -> None:
    server.close()

    async def go(up: Upstream) -> object:
        return await up.get(_pacs(server), FRAME, "frame")

    with pytest.raises(BadGatewayError, match="cannot be reached"):
        _run(go)


def test_consecutive_frames_reuse_one_connection(server: MisbehavingPacs) -> None:
    peers: set[int] = set()

    def keep(conn: socket.socket, req: bytes) -> None:
        while True:
            peers.add(conn.getpeername()[1])
            conn.sendall(_head("200 OK", {"Content-Type": "image/jpeg", "Content-Length": "2"}) + b"ok")
            nxt = b""
            while b"\r\n\r\n" not in nxt:
                got = conn.recv(65536)
                if not got:
                    return
                nxt += got

    server.behaviour = keep

    async def go(up: Upstream) -> list[bytes]:
        return [await (await up.get(_pacs(server), FRAME, "frame")).read(16) for _ in range(5)]

    assert _run(go) == [b"ok"] * 5
    assert len(peers) == 1
