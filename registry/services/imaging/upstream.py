"""The HTTP client side of the gateway: one request to a configured PACS, bounded in time, streamed.

- **Bounded**: connecting (a pooled connection or a new one) may take ``connect_timeout``; the PACS's answer must have
  begun (status and headers) within ``timeout`` of the request, else 504; once a body streams, no more than
  ``read_timeout`` may pass between two reads. A PACS that refuses the connection, resets it or answers with a server
  error is a 502. Either way the client gets an OperationOutcome saying so — never the PACS's address, which is the
  operator's, not the caller's.
- **Streaming**: bodies are passed on chunk by chunk, so a whole study never sits in the registry's memory; every
  upstream response is released when its answer ends, and its connection closed when it fails or the client goes
  away.
- **Kept alive**: one ``aiohttp.ClientSession`` (a connection pool) per event loop, so consecutive frames reuse their
  connections to the PACS; idle connections are dropped after 0.5 s (Orthanc closes its idle ones after a second),
  and a kept-alive connection the PACS closed just as it was reused is retried once by aiohttp (every request here
  is a GET).

The client is aiohttp's, not httpx's as elsewhere in the registry: passing a rendered frame through the gateway is
the hot path of a viewer, and aiohttp's (C) HTTP parser costs about a third of httpx's CPU per request (0.6 vs 1.6 ms
measured side by side against Orthanc; docs/benchmarks.md "Images").
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import urlencode

import aiohttp
import anyio
import orjson
from multidict import CIMultiDictProxy
from yarl import URL

from registry.errors import BadGatewayError, BadRequestError, GatewayTimeoutError, NotAcceptableError, NotFoundError
from registry.services.imaging.pacs import Pacs
from registry.services.imaging.parameters import Forward, Kind

log = logging.getLogger("registry.imaging")
HOSPITAL_PACS = "the PACS of the study's hospital"
KEEPALIVE_SECONDS = 0.5
"""An idle connection to a PACS is not reused after this long: Orthanc closes its idle ones after 1 s, and reusing
one just as it closes fails the request (retried once, but better not raced at all)."""
CHUNK = 64 * 1024


class StreamBrokenError(Exception):
    """The PACS failed while a body was already being passed on: the answer cannot be replaced by an error any more,
    so the response ends incomplete (the client sees a truncated transfer, not a complete-looking one)."""


_BROKEN = (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, asyncio.TimeoutError)


@dataclass(slots=True)
class Answer:
    """A PACS's successful answer whose body has not been read yet."""

    response: aiohttp.ClientResponse
    pacs: Pacs
    _done: bool = field(default=False, init=False)

    @property
    def status(self) -> int:
        return self.response.status

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        return self.response.headers

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.response.content.iter_chunked(CHUNK):
                yield chunk
            self._done = True
        except _BROKEN as exc:
            log.warning("PACS %s broke off while its answer streamed: %s", self.pacs.key, type(exc).__name__)
            raise StreamBrokenError(type(exc).__name__) from None

    async def read(self, limit: int) -> bytes:
        """The whole body (at most ``limit`` bytes, else 502), within the PACS's ``timeout``."""
        encoded = self.response.headers.get("Content-Encoding", "identity").lower() != "identity"
        declared = None if encoded else self.response.content_length  # decoded bodies are longer than declared
        if declared is not None and declared > limit:
            await self.close()
            raise BadGatewayError(f"{HOSPITAL_PACS} answered more than {limit} bytes for one image")
        parts: list[bytes] = []
        size = 0
        try:
            with anyio.fail_after(self.pacs.timeout):
                if declared is not None:
                    parts.append(await self.response.content.readexactly(declared) if declared else b"")
                else:
                    async for chunk in self.response.content.iter_chunked(CHUNK):
                        size += len(chunk)
                        if size > limit:
                            raise BadGatewayError(f"{HOSPITAL_PACS} answered more than {limit} bytes for one image")
                        parts.append(chunk)
            self._done = True
        except aiohttp.SocketTimeoutError:
            raise GatewayTimeoutError(f"{HOSPITAL_PACS} stopped answering for {self.pacs.read_timeout:g} s") from None
        except TimeoutError:
            raise GatewayTimeoutError(
                f"{HOSPITAL_PACS} did not finish its answer within {self.pacs.timeout:g} s"
            ) from None
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, asyncio.IncompleteReadError) as exc:
            raise BadGatewayError(f"{HOSPITAL_PACS} broke off its answer ({type(exc).__name__})") from None
        finally:
            await self.close()
        return b"".join(parts)

    async def close(self) -> None:
        """Give the connection back to the pool when the body was read whole; close it otherwise (what is left of
        an answer must not be read as the next one's)."""
        if self._done:
            self.response.release()
        else:
            self.response.close()


def _refusal(status: int, body: bytes, what: str) -> Exception:
    """The PACS's own error, as the registry's (its details when it gives some; never its address)."""
    details = ""
    try:
        doc = orjson.loads(body)
        if isinstance(doc, dict) and isinstance(doc.get("Details") or doc.get("Message"), str):
            details = str(doc.get("Details") or doc.get("Message"))
    except orjson.JSONDecodeError:
        pass
    details = " ".join(w for w in details.split() if "://" not in w)[:300]
    said = f": {details}" if details else ""
    if status == 404:
        return NotFoundError(f"{what} was not found in {HOSPITAL_PACS}{said}")
    if status in (400, 413, 414, 422):
        return BadRequestError(f"{HOSPITAL_PACS} refused the request ({status}){said}")
    if status == 406:
        return NotAcceptableError(f"{HOSPITAL_PACS} cannot answer in the media type asked for{said}")
    if status in (401, 403):
        return BadGatewayError(f"{HOSPITAL_PACS} refused the registry's credentials ({status}); tell the operator")
    if status == 504:
        return GatewayTimeoutError(f"{HOSPITAL_PACS} timed out behind its own gateway ({status})")
    return BadGatewayError(f"{HOSPITAL_PACS} answered with an error ({status}){said}")


class Upstream:
    """Requests to the configured PACS (module docstring)."""

    def __init__(self, *, max_connections: int = 64) -> None:
        self.max_connections = max_connections
        self._sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def _session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        with self._lock:
            session = self._sessions.get(loop)
            if session is None or session.closed:
                for other, old in list(self._sessions.items()):
                    if other.is_closed():  # a loop that ended without closing its pool (a test's): no warning
                        old.detach()
                        del self._sessions[other]
                connector = aiohttp.TCPConnector(limit=self.max_connections, keepalive_timeout=KEEPALIVE_SECONDS)
                session = aiohttp.ClientSession(connector=connector, trust_env=False, auto_decompress=True,
                                                skip_auto_headers=("User-Agent",))  # fmt: skip
                self._sessions[loop] = session
            return session

    async def aclose(self) -> None:
        """Close the pool of the running event loop (at the end of the app's lifespan)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            session = self._sessions.pop(loop, None)
        if session is not None:
            await session.close()

    async def get(self, pacs: Pacs, forward: Forward, what: str) -> Answer:
        """Send ``forward`` to ``pacs``; the answer once its status and headers are in (2xx only; a PACS error is
        raised as the registry's)."""
        timeout = aiohttp.ClientTimeout(total=None, connect=pacs.connect_timeout, sock_read=pacs.read_timeout)
        headers = {"Accept": forward.accept, **dict(pacs.headers)}
        if forward.kind in (Kind.RENDERED, Kind.RETRIEVE):  # JPEG/PNG and DICOM: compressing again costs both ends
            headers["Accept-Encoding"] = "identity"
        url = pacs.url(forward.path)
        if forward.params:  # commas as such: Orthanc 1.10 does not decode %2C in window=, viewport=, UID lists
            url += "?" + urlencode(forward.params, safe=",")
        session = self._session()
        try:
            with anyio.fail_after(pacs.timeout):
                response = await session.get(URL(url, encoded=True), headers=headers, timeout=timeout,
                                             allow_redirects=False)  # fmt: skip
        except aiohttp.ConnectionTimeoutError:
            raise GatewayTimeoutError(
                f"{HOSPITAL_PACS} did not accept a connection within {pacs.connect_timeout:g} s"
            ) from None
        except TimeoutError:  # the whole bound, or no byte of the answer for read_timeout
            raise GatewayTimeoutError(f"{HOSPITAL_PACS} did not answer within {pacs.timeout:g} s") from None
        except aiohttp.ClientConnectorError:
            raise BadGatewayError(f"{HOSPITAL_PACS} cannot be reached (the connection was refused or failed)") from None
        except aiohttp.ClientError as exc:
            raise BadGatewayError(f"{HOSPITAL_PACS} broke off the exchange ({type(exc).__name__})") from None
        if 200 <= response.status < 300:
            return Answer(response, pacs)
        body = b""
        try:
            with anyio.move_on_after(min(pacs.timeout, 5)):
                async for chunk in response.content.iter_chunked(4096):
                    body += chunk
                    if len(body) >= 4096:
                        break
        except _BROKEN:
            body = b""
        finally:
            response.close()
        if response.status >= 400:
            log.info("PACS %s answered %s to %s", pacs.key, response.status, forward.kind.value)
        raise _refusal(response.status, body, what)
