"""The DICOMweb gateway (DICOM PS3.18; docs/design.md §3 "imaging"): QIDO-RS, WADO-RS metadata and instances, rendered
frames and thumbnails of the studies the registry references, forwarded to the issuing hospital's PACS.

A request goes through three steps, each decided where it belongs:

1. **what is asked** (:mod:`.parameters`): UIDs, the frame number (from 1), ``window``, ``viewport``, ``quality``,
   the media type — a clear 400 or 406 before anything else;
2. **whether the caller may open the study** (:meth:`ImagingGateway.open`): the study is found by its
   StudyInstanceUID (``ImagingStudy.identifier`` ``urn:dicom:uid|urn:oid:<uid>``), read through the one access policy
   exactly as a FHIR read of that ImagingStudy (care context, break-glass, the patient's own, consent), then
   ``policy.imaging.check_images`` decides whether its images may be forwarded and to which configured PACS
   (:mod:`.pacs`). The first opening of a study by a principal in an hour is **one AuditEvent** — ``read`` of the
   ``ImagingStudy`` with the study's patient, so the patient sees it under "who viewed my records" — recorded through
   a row of ``imaging_study_open`` inserted with ``ON CONFLICT DO NOTHING`` in the same transaction, so several
   registry processes serving the frames of one viewer still record it once. Refusals are audited each time.
   The decision is kept ``REGISTRY_DICOMWEB_DECISION_SECONDS`` (5 s) per principal and study in this process for the
   next frames; a consent change or withdrawn study reaches an open viewer within that time;
3. **the hierarchy**: a series or instance named under a study must belong to that study, checked against the
   PACS's own QIDO-RS answer for the study (its series) and the series (its instances), kept 5 minutes per process.
   (Orthanc itself answers 404 to a series of another study under a known study UID; the gateway does not rely on
   the PACS for it.) Only then is the request forwarded (:mod:`.upstream`).

Rendered frames and thumbnails are read whole (one image, bounded) so that a PACS failing mid-way is still a clean
502/504; everything else streams. The PACS's own URLs in DICOM JSON are replaced by the gateway's (:mod:`.rewriting`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from cachetools import TTLCache

from registry.auth import Principal
from registry.errors import BadGatewayError, GatewayTimeoutError, NotFoundError, RegistryError
from registry.services.audit import AuditContext, AuditTrail, audit_row
from registry.services.imaging.pacs import Pacs, PacsDirectory
from registry.services.imaging.parameters import DICOM_JSON, Forward, Kind, Target, shaped
from registry.services.imaging.rewriting import rewritten
from registry.services.imaging.upstream import Answer, Upstream
from registry.services.policy import BreakGlass
from registry.services.policy import imaging as policy
from registry.services.search import Reads
from registry.store.imaging_access import StudyOpens
from registry.store.query import Query, TokenClause, TokenValue
from registry.store.records import Stored
from registry.store.repository import Repository, UnitOfWork

DICOM_UID = "urn:dicom:uid"
MAX_IMAGE_BYTES = 32 * 1024 * 1024
QIDO_BATCH = 50  # StudyInstanceUIDs per QIDO-RS request to one PACS (a UID list match, PS3.4 C.2.2.2.2)
MEMBERS_SECONDS = 300.0
OPENED = "DICOMweb: opened the study's images"
PARTIAL = '299 hr-registry "the PACS of one or more hospitals did not answer: their studies are missing"'
TRUNCATED = '299 hr-registry "more studies match than one answer lists: narrow the query (StudyInstanceUID)"'


def study_uid(study: dict[str, Any]) -> str | None:
    for ident in study.get("identifier") or []:
        if isinstance(ident, dict) and ident.get("system") == DICOM_UID and isinstance(ident.get("value"), str):
            return str(ident["value"]).removeprefix("urn:oid:")
    return None


def _values(doc: Any, tag: str) -> list[str]:
    """The first value of ``tag`` in each object of a DICOM JSON array (PS3.18 §F.2)."""
    out: list[str] = []
    for item in doc if isinstance(doc, list) else []:
        values = (item.get(tag) or {}).get("Value") if isinstance(item, dict) else None
        if isinstance(values, list) and values and isinstance(values[0], str):
            out.append(values[0])
    return out


@dataclass(frozen=True, slots=True)
class OpenedStudy:
    """A study the caller may open, and the PACS its images come from."""

    study_id: str  # the ImagingStudy resource id
    uid: str
    patient_key: str | None
    pacs: Pacs
    break_glass: BreakGlass | None


@dataclass(slots=True)
class Forwarded:
    """What the HTTP layer sends back: a whole ``body``, or ``chunks`` to stream (then ``close`` when done)."""

    media_type: str
    headers: dict[str, str]
    body: bytes | None = None
    chunks: AsyncIterator[bytes] | None = None
    answer: Answer | None = None

    async def close(self) -> None:
        if self.answer is not None:
            await self.answer.close()


@dataclass(frozen=True, slots=True)
class Readable:
    uid: str
    pacs: Pacs


@dataclass
class _Members:
    uids: frozenset[str]
    fetched: float


@dataclass
class ImagingGateway:
    reads: Reads
    uow: UnitOfWork
    directory: PacsDirectory
    clock: Callable[[], datetime]
    decision_seconds: float = 5.0
    image_max_age: int = 300
    timer: Callable[[], float] = time.monotonic
    upstream: Upstream = field(default_factory=Upstream)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._decisions: TTLCache[tuple[str, str, str, int], OpenedStudy] | None = (
            TTLCache(maxsize=10_000, ttl=self.decision_seconds, timer=self.timer) if self.decision_seconds else None
        )
        self._members: TTLCache[tuple[str, str, str], _Members] = TTLCache(
            maxsize=20_000, ttl=MEMBERS_SECONDS, timer=self.timer
        )
        self._shapes: TTLCache[tuple[str, str, str, str], tuple[int, int]] = TTLCache(
            maxsize=20_000, ttl=MEMBERS_SECONDS, timer=self.timer
        )

    # ------------------------------------------------------------------------------------------ the decision
    def _key(self, principal: Principal, audit: AuditContext, uid: str, now: datetime) -> tuple[str, str, str, int]:
        purpose = audit.break_glass.code if audit.break_glass else ""
        return (principal.client_id, uid, purpose, int(now.timestamp() // 3600))

    def decided(self, principal: Principal, audit: AuditContext, uid: str) -> OpenedStudy | None:
        """The decision this process took on the study for this principal in the last few seconds, if any (no I/O:
        the event loop may ask it before it hands :meth:`open` to a thread)."""
        if self._decisions is None:
            return None
        key = self._key(principal, audit, uid, self.clock())
        with self._lock:
            return self._decisions.get(key)

    def open(self, principal: Principal, audit: AuditContext, uid: str) -> OpenedStudy:
        """Whether ``principal`` may open the study ``uid`` through the gateway (module docstring, step 2)."""
        now = self.clock()
        key = self._key(principal, audit, uid, now)
        purpose, hour = key[2], key[3]
        if self._decisions is not None:
            with self._lock:
                cached = self._decisions.get(key)
            if cached is not None:
                return cached
        try:
            with self.uow.begin(audit_only=True) as repo:
                opened, study = self._decide(repo, principal, audit, uid)
                if StudyOpens(repo.conn).first_open(principal.client_id, study.id, purpose, hour):
                    repo.add_audit([audit_row(audit, now=now, status=200, patient_key=study.patient_key,
                                              resource_id=study.id, detail=OPENED)])  # fmt: skip
        except RegistryError as exc:
            detail = f"DICOMweb study {uid}: {exc.diagnostics}"
            AuditTrail(self.uow).record([audit_row(audit, now=now, status=exc.status, detail=detail)])
            raise
        if self._decisions is not None:
            with self._lock:
                self._decisions[key] = opened
        return opened

    def _decide(
        self, repo: Repository, principal: Principal, audit: AuditContext, uid: str
    ) -> tuple[OpenedStudy, Stored]:
        clause = TokenClause("identifier", (TokenValue(DICOM_UID, f"urn:oid:{uid}"),))
        rows, _ = repo.search(Query("ImagingStudy", (clause,), count=2))
        if not rows:
            raise NotFoundError(f"no study {uid} is known to the registry")
        stored, _keys = self.reads.read_in(repo, principal, audit, "ImagingStudy", rows[0].id)
        body = orjson.loads(stored.body)
        endpoint, pacs = self._endpoint(repo, body)
        policy.check_images(body, stored.org_id, endpoint, pacs.organization if pacs else None)
        if pacs is None:  # check_images has refused it already
            raise BadGatewayError(policy.NOT_REACHABLE + "no PACS is configured for it")
        return OpenedStudy(stored.id, uid, stored.patient_key, pacs, audit.break_glass), stored

    def _endpoint(self, repo: Repository, study: dict[str, Any]) -> tuple[dict[str, Any] | None, Pacs | None]:
        """The study's first live WADO-RS Endpoint, and the PACS configured for it."""
        ids = policy.study_endpoints(study)
        found = repo.get_many([("Endpoint", i) for i in ids]) if ids else {}
        for endpoint_id in ids:
            stored = found.get(("Endpoint", endpoint_id))
            if stored is None or stored.deleted:
                continue
            endpoint = orjson.loads(stored.body)
            if policy.is_wado_rs(endpoint):
                return endpoint, self.directory.find(endpoint_id, endpoint.get("address"))
        return None, None

    def readable_studies(
        self, principal: Principal, audit: AuditContext, uids: Sequence[str] | None
    ) -> tuple[list[Readable], bool]:
        """The studies the caller may read whose images are reachable (newest first), and whether there were more
        than one search lists; ``uids``: only these. Searched like ``GET /fhir/ImagingStudy`` (and audited so)."""
        params = [("_count", str(self.reads.ctx.max_page_size)), ("_sort", "-started"),
                  ("_include", "ImagingStudy:endpoint")]  # fmt: skip
        if uids is not None:
            params.append(("identifier", ",".join(f"{DICOM_UID}|urn:oid:{u}" for u in uids)))

        def run(repo: Repository) -> tuple[tuple[list[Readable], bool], list[str | None]]:
            outcome, keys = self.reads.search_in(repo, principal, audit, "ImagingStudy", params)
            doc = orjson.loads(outcome.body)
            entries = doc.get("entry") or []
            studies = [e["resource"] for e in entries if (e.get("search") or {}).get("mode") == "match"]
            endpoints = {r["id"]: r for e in entries if (r := e["resource"]).get("resourceType") == "Endpoint"}
            stored = repo.get_many([("ImagingStudy", s["id"]) for s in studies])
            out: list[Readable] = []
            for s in studies:
                uid, row = study_uid(s), stored.get(("ImagingStudy", s["id"]))
                wado = next((endpoints[i] for i in policy.study_endpoints(s)
                             if i in endpoints and policy.is_wado_rs(endpoints[i])), None)  # fmt: skip
                pacs = self.directory.find(str(wado["id"]), wado.get("address")) if wado else None
                try:
                    policy.check_images(s, row.org_id if row else None, wado, pacs.organization if pacs else None)
                except (BadGatewayError, NotFoundError):
                    continue  # not reachable (or withdrawn): not listed
                if uid and pacs is not None:
                    out.append(Readable(uid, pacs))
            more = any(link.get("relation") == "next" for link in doc.get("link") or [])
            return (out, more), keys

        return self.reads.audited(audit, run)

    # ------------------------------------------------------------------------------------------ the hierarchy
    async def _member_uids(self, pacs: Pacs, where: Target, *, fresh: bool) -> frozenset[str]:
        key = (pacs.key, where.study, where.series or "")
        with self._lock:
            cached = self._members.get(key)
        if cached is not None and not (fresh and self.timer() - cached.fetched > 5):
            return cached.uids
        level, tag = ("instances", "00080018") if where.series is not None else ("series", "0020000E")
        path = Target(where.study, where.series).path
        ask = Forward(Kind.QIDO, where, f"{path}/{level}", (), DICOM_JSON)
        try:
            answer = await self.upstream.get(pacs, ask, f"study {where.study}")
        except NotFoundError:
            return frozenset()
        body = await answer.read(MAX_IMAGE_BYTES)
        uids = frozenset(_values(orjson.loads(body) if body.strip() else [], tag))
        with self._lock:
            self._members[key] = _Members(uids, self.timer())
        return uids

    async def _require_members(self, pacs: Pacs, where: Target) -> None:
        if where.series is None:
            return
        for parent, child, what in ((Target(where.study), where.series, "series"),
                                    (Target(where.study, where.series), where.instance, "instance")):  # fmt: skip
            if child is None:
                return
            if child not in await self._member_uids(pacs, parent, fresh=False) and child not in (
                await self._member_uids(pacs, parent, fresh=True)
            ):
                container = "study" if what == "series" else "series"
                raise NotFoundError(f"{what} {child} is not part of {container} {parent.series or parent.study}")

    async def _shape(self, pacs: Pacs, where: Target) -> tuple[int, int] | None:
        """(Rows, Columns) of the instance a thumbnail of ``where`` shows (a series' or study's first), from the
        PACS's QIDO-RS; None when it does not say (the thumbnail is then square)."""
        key = (pacs.key, where.study, where.series or "", where.instance or "")
        with self._lock:
            cached = self._shapes.get(key)
        if cached is not None:
            return cached
        fields = (("includefield", "00280010"), ("includefield", "00280011"))
        if where.series is None:
            path, pick = f"studies/{where.study}/instances", (("limit", "1"),)
        else:
            path = f"{Target(where.study, where.series).path}/instances"
            pick = (("SOPInstanceUID", where.instance),) if where.instance else (("limit", "1"),)
        try:
            answer = await self.upstream.get(pacs, Forward(Kind.QIDO, where, path, pick + fields, DICOM_JSON), "shape")
            doc = orjson.loads(await answer.read(MAX_IMAGE_BYTES) or b"[]")
        except (RegistryError, orjson.JSONDecodeError):
            return None
        first = doc[0] if isinstance(doc, list) and doc and isinstance(doc[0], dict) else {}
        values = [(first.get(tag) or {}).get("Value") for tag in ("00280010", "00280011")]
        if not all(isinstance(v, list) and v and isinstance(v[0], int) for v in values):
            return None
        shape = (int(values[0][0]), int(values[1][0]))  # type: ignore[index]
        with self._lock:
            self._shapes[key] = shape
        return shape

    # ------------------------------------------------------------------------------------------ forwarding
    def _rewrite_roots(self, pacs: Pacs) -> list[bytes]:
        return [f"{root}/".encode() for root in pacs.advertised]

    async def forward(self, opened: OpenedStudy, ask: Forward, gateway_base: str) -> Forwarded:
        """``ask`` sent to the study's PACS (after the hierarchy check); ``gateway_base``: the URL prefix the request
        came in on (for the URLs in DICOM JSON)."""
        where = ask.target
        if where is None or where.study != opened.uid:
            raise ValueError("a forwarded request names the study that was opened")
        await self._require_members(opened.pacs, where)
        if ask.thumbnail and opened.pacs.thumbnail == "native":
            ask = ask.native_thumbnail()
        elif not ask.sized and (shape := await self._shape(opened.pacs, where)) is not None:
            ask = shaped(ask, *shape)
        answer = await self.upstream.get(opened.pacs, ask, f"{ask.kind.value} of {where.path}")
        headers = {"Vary": "Authorization, Cookie", "X-Content-Type-Options": "nosniff"}
        image = ask.kind is Kind.RENDERED
        headers["Cache-Control"] = policy.cache_control(image, opened.break_glass, self.image_max_age)
        if image:
            body = await answer.read(MAX_IMAGE_BYTES)
            media = answer.headers.get("content-type", ask.accept).split(";")[0].strip().lower()
            if media not in ("image/jpeg", "image/png"):
                raise BadGatewayError(f"the PACS of the study's hospital answered {media[:60]} for a rendered image")
            return Forwarded(media, headers, body=body)
        if ask.kind is Kind.RETRIEVE:
            media = answer.headers.get("content-type", "")
            if not media.lower().startswith("multipart/related"):
                await answer.close()
                raise BadGatewayError("the PACS of the study's hospital did not answer with multipart DICOM")
            if "content-length" in answer.headers and "content-encoding" not in answer.headers:
                headers["Content-Length"] = answer.headers["content-length"]
            return Forwarded(media, headers, chunks=answer.chunks(), answer=answer)
        if answer.status == 204:  # QIDO-RS: no match (PS3.18 §10.6.3.2)
            await answer.close()
            return Forwarded(DICOM_JSON, headers, body=b"[]")
        chunks = rewritten(answer.chunks(), self._rewrite_roots(opened.pacs), f"{gateway_base}/".encode())
        return Forwarded(DICOM_JSON, headers, chunks=chunks, answer=answer)

    async def query_studies(self, readable: Sequence[Readable], ask: Forward, gateway_base: str) -> Forwarded:
        """QIDO-RS at the studies level: the caller's query, asked of each PACS for the studies the caller may read
        there only; the answers merged in the registry's order (newest first), then ``offset`` and ``limit``."""
        order = {r.uid: i for i, r in enumerate(readable)}
        params = [(k, v) for k, v in ask.params if k not in ("limit", "offset") and k.lower() not in
                  ("studyinstanceuid", "0020000d")]  # fmt: skip
        limit = next((int(v) for k, v in ask.params if k == "limit"), None)
        offset = next((int(v) for k, v in ask.params if k == "offset"), 0)
        by_pacs: dict[str, list[Readable]] = {}
        for r in readable:
            by_pacs.setdefault(r.pacs.key, []).append(r)
        found: list[tuple[int, Any]] = []
        partial = False
        for group in by_pacs.values():
            pacs = group[0].pacs
            for i in range(0, len(group), QIDO_BATCH):
                uids = [r.uid for r in group[i : i + QIDO_BATCH]]
                batch = Forward(Kind.QIDO, None, "studies", (*params, ("StudyInstanceUID", ",".join(uids))), DICOM_JSON)
                try:
                    answer = await self.upstream.get(pacs, batch, "studies")
                    body = await answer.read(MAX_IMAGE_BYTES)
                except (BadGatewayError, GatewayTimeoutError):
                    partial = True
                    continue
                for old in self._rewrite_roots(pacs):
                    body = body.replace(old, f"{gateway_base}/".encode())
                doc = orjson.loads(body) if body.strip() else []
                for item in doc if isinstance(doc, list) else []:
                    got = _values([item], "0020000D")
                    if got and got[0] in uids:  # only what was asked: a PACS ignoring the UID list adds nothing
                        found.append((order[got[0]], item))
        found.sort(key=lambda f: f[0])
        items = [item for _, item in found][offset:]
        if limit is not None:
            items = items[:limit]
        headers = {"Cache-Control": "no-store", "Vary": "Authorization, Cookie", "X-Content-Type-Options": "nosniff"}
        if partial:
            headers["Warning"] = PARTIAL
        return Forwarded(DICOM_JSON, headers, body=orjson.dumps(items))
