"""The PACS's own URLs in what it answers, replaced by the gateway's as the body streams through.

A DICOMweb server names its resources by absolute URL in its DICOM JSON: RetrieveURL (0008,1190) in QIDO-RS answers,
``BulkDataURI`` in WADO-RS metadata (PS3.18 §F.2.6). Those URLs point at the PACS — an address the client cannot
reach and should not learn — so the gateway replaces the PACS's DICOMweb root with its own (the URL prefix the request
came in on: ``/dicomweb``, ``/portal/dicomweb`` or ``/clinician/dicomweb``) chunk by chunk, never holding more than
one chunk and a prefix's length. Bulk data URIs then name the gateway, which does not serve ``/bulk`` (a client
retrieves the instance instead): said in the README.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence


class PrefixRewriter:
    """Replaces every occurrence of any of ``old`` (byte strings) by ``new`` across chunk boundaries; what it wrote
    is never scanned again (a ``new`` holding an ``old`` is not replaced twice)."""

    def __init__(self, old: Sequence[bytes], new: bytes) -> None:
        self.old = sorted({o for o in old if o}, key=len, reverse=True)
        self.new = new
        self.keep = max((len(o) for o in self.old), default=1) - 1
        self.pending = b""

    def feed(self, chunk: bytes) -> bytes:
        """The rewritten bytes that can be sent now; an end that may start a prefix is held back."""
        data = self.pending + chunk
        out: list[bytes] = []
        at = 0
        while True:
            found = [(i, o) for o in self.old if (i := data.find(o, at)) >= 0]
            if not found:
                break
            index, old = min(found, key=lambda f: (f[0], -len(f[1])))
            out += [data[at:index], self.new]
            at = index + len(old)
        rest = data[at:]
        hold = next(
            (k for k in range(min(len(rest), self.keep), 0, -1) if any(o.startswith(rest[-k:]) for o in self.old)),
            0,
        )
        out.append(rest[: len(rest) - hold])
        self.pending = rest[len(rest) - hold :]
        return b"".join(out)

    def flush(self) -> bytes:
        out, self.pending = self.pending, b""
        return out


async def rewritten(chunks: AsyncIterator[bytes], old: Sequence[bytes], new: bytes) -> AsyncIterator[bytes]:
    rewriter = PrefixRewriter(old, new)
    async for chunk in chunks:
        out = rewriter.feed(chunk)
        if out:
            yield out
    tail = rewriter.flush()
    if tail:
        yield tail
