"""An MLLP listener (HL7 v2.5.1 Appendix C.4 MLLP): ``0x0B`` message ``0x1C 0x0D`` on a TCP connection, one ACK
frame back per message, on the same connection, in order.

It never stops for bad input: bytes outside a frame are skipped, an oversized frame is read to its end and answered
``AE`` (an error in the message itself, HL7 v2.5 §2.9.2: sending it again unchanged will not help), an idle
connection is closed after ``idle_timeout_seconds``, and each message is handled on one worker thread (so
messages are queued in the order they arrived and the event loop never blocks on the outbox).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from adapters.hl7v2.processor import Hl7Processor, Result, segment_at

log = logging.getLogger("hr_adapter.mllp")

SB, EB, CR = b"\x0b", b"\x1c", b"\r"


class MllpServer:
    def __init__(
        self,
        processor: Hl7Processor,
        host: str,
        port: int,
        *,
        max_bytes: int,
        idle_timeout: float = 300,
        on_result: Callable[[Result], None] | None = None,
    ) -> None:
        self.processor = processor
        self.host, self.port = host, port
        self.max_bytes = max_bytes
        self.idle_timeout = idle_timeout
        self.on_result = on_result
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="hl7")
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.connections = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._client, self.host, self.port, limit=2**16)
        sock = self._server.sockets[0].getsockname()
        self.port = sock[1]
        log.info("MLLP listening on %s:%s", sock[0], sock[1])

    async def serve_forever(self) -> None:
        if self._server is None:
            raise RuntimeError("start() first")
        async with self._server:
            await self._server.serve_forever()

    async def close(self) -> None:
        """Stop listening and close open connections (an idle LIS connection must not hold up a shutdown; a message
        being handled still gets its ACK first, since the handler finishes before the connection is looked at)."""
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await self._server.wait_closed()
        self._executor.shutdown(wait=True)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        source = f"mllp:{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else "mllp"
        self.connections += 1
        self._writers.add(writer)
        try:
            while True:
                frame = await self._read_frame(reader)
                if frame is None:
                    return
                raw, oversized = frame
                loop = asyncio.get_running_loop()
                if oversized is not None:
                    raw = raw[:4096]  # enough to read MSH for the ACK
                    result = await loop.run_in_executor(
                        self._executor, self.processor.refuse_oversized, raw, source, oversized
                    )
                else:
                    result = await loop.run_in_executor(self._executor, self.processor.handle, raw, source)
                if self.on_result is not None:
                    self.on_result(result)
                writer.write(SB + result.ack + EB + CR)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        except TimeoutError:
            log.info("%s: idle for %.0f s, closing", source, self.idle_timeout)
        except Exception:  # never let one connection take the listener down
            log.exception("%s: unexpected error on the connection", source)
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _read_frame(self, reader: asyncio.StreamReader) -> tuple[bytes, tuple[str, int, int, int] | None] | None:
        """The next frame's content, and — when it was cut at the size limit — the segment where the limit was crossed
        (an ERR location); None at end of connection."""
        # skip to the start block
        while True:
            byte = await asyncio.wait_for(reader.read(1), self.idle_timeout)
            if not byte:
                return None
            if byte == SB:
                break
        buffer = bytearray()
        oversized: tuple[str, int, int, int] | None = None

        def add(chunk: bytes) -> None:
            nonlocal oversized
            buffer.extend(chunk)
            if oversized is None and len(buffer) > self.max_bytes:
                # the whole message up to the limit is still here: name the segment that crossed it
                oversized = segment_at(bytes(buffer), self.max_bytes)
            if oversized is not None:
                del buffer[4096:]

        while True:
            try:
                chunk = await asyncio.wait_for(reader.readuntil(EB + CR), self.idle_timeout)
            except asyncio.LimitOverrunError as exc:
                add(await reader.readexactly(exc.consumed))
                continue
            except asyncio.IncompleteReadError:
                return None  # the peer went away mid-message: nothing was acknowledged, nothing kept
            add(chunk[: -len(EB + CR)])
            return bytes(buffer), oversized
