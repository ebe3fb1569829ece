"""The HTTP client side of the gateway: one request to a configured PACS, bounded in time, streamed.

- **Bounded**: connecting may take ``connect_timeout``; the PACS's answer must have begun (status and headers)
  within ``timeout`` of the request, else 504; once a body streams, no more than ``read_timeout`` may pass between
  two chunks. A PACS that refuses the connection, resets it or answers with a server error is a 502. Either way the
  client gets an OperationOutcome saying so — never the PACS's address, which is the operator's, not the caller's.
- **Streaming**: bodies are passed on chunk by chunk (``httpx`` ``stream=True``), so a whole study never sits in the
  registry's memory; every upstream response is closed when its answer ends, fails or the client goes away.
- **Kept alive**: one ``httpx.AsyncClient`` (a connection pool) per event loop, so consecutive frames reuse their
  connections to the PACS. A kept-alive connection the PACS closed just as it was reused (Orthanc closes idle ones
  after a second) is retried once — every request here is a GET — and idle connections are dropped after 0.5 s.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import urlencode

import anyio
import httpx
import orjson

from registry.errors import BadGatewayError, BadRequestError, GatewayTimeoutError, NotAcceptableError, NotFoundError
from registry.services.imaging.pacs import Pacs
from registry.services.imaging.parameters import Forward, Kind

log = logging.getLogger("registry.imaging")
HOSPITAL_PACS = "the PACS of the study's hospital"
KEEPALIVE_SECONDS = 0.5
"""An idle connection to a PACS is not reused after this long: Orthanc closes its idle ones after 1 s, and reusing
one just as it closes fails the request (retried once, below, but better not raced at all)."""


class StreamBrokenError(Exception):
    """The PACS failed while a body was already being passed on: the answer cannot be replaced by an error any more,
    so the response ends incomplete (the client sees a truncated transfer, not a complete-looking one)."""


@dataclass(slots=True)
class Answer:
    """A PACS's successful answer whose body has not been read yet."""

    response: httpx.Response
    pacs: Pacs

    @property
    def headers(self) -> httpx.Headers:
        return self.response.headers

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.response.aiter_bytes():
                yield chunk
        except (httpx.TransportError, httpx.StreamError) as exc:
            log.warning("PACS %s broke off while its answer streamed: %s", self.pacs.key, type(exc).__name__)
            raise StreamBrokenError(type(exc).__name__) from None

    async def read(self, limit: int) -> bytes:
        """The whole body (at most ``limit`` bytes, else 502), within the PACS's ``timeout``."""
        parts: list[bytes] = []
        size = 0
        try:
            with anyio.fail_after(self.pacs.timeout):
                async for chunk in self.response.aiter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise BadGatewayError(f"{HOSPITAL_PACS} answered more than {limit} bytes for one image")
                    parts.append(chunk)
        except TimeoutError:
            raise GatewayTimeoutError(
                f"{HOSPITAL_PACS} did not finish its answer within {self.pacs.timeout:g} s"
            ) from None
        except httpx.TimeoutException:
            raise GatewayTimeoutError(f"{HOSPITAL_PACS} stopped answering for {self.pacs.read_timeout:g} s") from None
        except (httpx.TransportError, httpx.StreamError) as exc:
            raise BadGatewayError(f"{HOSPITAL_PACS} broke off its answer ({type(exc).__name__})") from None
        finally:
            await self.close()
        return b"".join(parts)

    async def close(self) -> None:
        with anyio.CancelScope(shield=True):
            await self.response.aclose()


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
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()

    def _client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._clients.get(loop)
            if client is None or client.is_closed:
                limits = httpx.Limits(max_connections=self.max_connections, max_keepalive_connections=32,
                                      keepalive_expiry=KEEPALIVE_SECONDS)  # fmt: skip
                client = httpx.AsyncClient(limits=limits, follow_redirects=False, trust_env=False)
                self._clients[loop] = client
            return client

    async def aclose(self) -> None:
        """Close the pool of the running event loop (at the end of the app's lifespan)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._clients.pop(loop, None)
        if client is not None:
            await client.aclose()

    async def get(self, pacs: Pacs, forward: Forward, what: str) -> Answer:
        """Send ``forward`` to ``pacs``; the answer once its status and headers are in (2xx only; a PACS error is
        raised as the registry's)."""
        timeout = httpx.Timeout(
            connect=pacs.connect_timeout, read=pacs.read_timeout, write=pacs.read_timeout, pool=pacs.timeout
        )
        headers = [("Accept", forward.accept), *pacs.headers]
        if forward.kind in (Kind.RENDERED, Kind.RETRIEVE):  # JPEG/PNG and DICOM: compressing again costs both ends
            headers.append(("Accept-Encoding", "identity"))
        client = self._client()
        url = pacs.url(forward.path)
        if forward.params:  # commas as such: Orthanc 1.10 does not decode %2C in window=, viewport=, UID lists
            url += "?" + urlencode(forward.params, safe=",")
        request = client.build_request("GET", url, headers=headers, timeout=timeout)
        try:
            with anyio.fail_after(pacs.timeout):
                try:
                    response = await client.send(request, stream=True)
                except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
                    response = await client.send(request, stream=True)  # once: a kept-alive connection closed
        except (TimeoutError, httpx.ReadTimeout, httpx.PoolTimeout, httpx.WriteTimeout):
            raise GatewayTimeoutError(f"{HOSPITAL_PACS} did not answer within {pacs.timeout:g} s") from None
        except httpx.ConnectTimeout:
            raise GatewayTimeoutError(
                f"{HOSPITAL_PACS} did not accept a connection within {pacs.connect_timeout:g} s"
            ) from None
        except httpx.ConnectError:
            raise BadGatewayError(f"{HOSPITAL_PACS} cannot be reached (the connection was refused or failed)") from None
        except httpx.TransportError as exc:
            raise BadGatewayError(f"{HOSPITAL_PACS} broke off the exchange ({type(exc).__name__})") from None
        if 200 <= response.status_code < 300:
            return Answer(response, pacs)
        body = b""
        try:
            with anyio.move_on_after(min(pacs.timeout, 5)):
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > 4096:
                        break
        except (httpx.TransportError, httpx.StreamError):
            body = b""
        finally:
            with anyio.CancelScope(shield=True):
                await response.aclose()
        if response.status_code >= 400:
            log.info("PACS %s answered %s to %s", pacs.key, response.status_code, forward.kind.value)
        raise _refusal(response.status_code, body, what)
