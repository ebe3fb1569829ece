"""What a DICOMweb request asks for, checked before anything is forwarded (DICOM PS3.18; the Orthanc facts are in the
project's standards notes, checked against Orthanc 1.10.1 with its DICOMweb plugin 1.7): a bad value is a clear 400
from the registry, not whatever the PACS makes of it — Orthanc 1.7 drops the connection on ``viewport=0,0``, takes a
window width of 0 and answers 400 to ``Accept: image/*``.

- **UIDs** (PS3.5 §9.1): digits and dots, at most 64 characters.
- **Frames** count from 1 in DICOMweb (PS3.18 §8.3.5.1: the frame list of a multi-frame instance); Orthanc's own REST
  API (``/instances/{id}/frames/{n}``) counts from 0. This gateway speaks DICOMweb only: ``frames/0`` is a 400 that
  says so. A rendered or thumbnail request takes one frame (JPEG and PNG hold one image).
- **window** (PS3.18 §8.3.5.1.3, the Retrieve Rendered query parameters): ``center,width,function`` — all three, the
  function ``linear``, ``linear-exact`` or ``sigmoid`` (PS3.3 C.11.2.1.2, VOI LUT Function); the width at least 1
  for ``linear``, above 0 for the others.
- **viewport**: ``vw,vh`` or ``vw,vh,sx,sy,sw,sh`` — 2 or 6 whole numbers; ``vw``/``vh`` 1…4096 pixels, ``sx``/``sy``
  not negative, ``sw``/``sh`` not 0 (a negative one flips the image, as Orthanc does).
- **quality**: 1…100 (JPEG; Orthanc's default 90).
- **media type** of rendered frames: ``image/jpeg`` (the default, as in Orthanc and PS3.18) or ``image/png``, chosen
  from the request's ``Accept`` (``*/*`` and ``image/*`` mean JPEG) and sent to the PACS as exactly one type; no
  acceptable type is a 406. ``annotation``, ``charset`` and ``iccprofile`` are not supported (Orthanc ignores them):
  400.
- **QIDO-RS** (PS3.18 §10.6): ``limit``, ``offset``, ``fuzzymatching``, ``includefield`` and match keys named by
  keyword or tag; below the study level the study (and below the series, the series) is fixed by the path — a
  ``StudyInstanceUID`` or ``SeriesInstanceUID`` match key there is refused, so no key can widen a query past the
  study the registry decided on.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

from registry.errors import BadRequestError, NotAcceptableError

MAX_UID = 64
MAX_VIEWPORT = 4096
MAX_QIDO_LIMIT = 1000
MAX_VALUE = 256
THUMBNAIL_SIDE = 128
THUMBNAIL_VIEWPORT = f"{THUMBNAIL_SIDE},{THUMBNAIL_SIDE}"
"""The size of a thumbnail made from ``/rendered`` (the origin server chooses a thumbnail's size: Supplement 203)."""
WINDOW_FUNCTIONS = ("linear", "linear-exact", "sigmoid")
RENDERED_TYPES = ("image/jpeg", "image/png")
DICOM_JSON = "application/dicom+json"
MULTIPART_DICOM = 'multipart/related; type="application/dicom"'

_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
_KEYWORD = re.compile(r"[A-Za-z][A-Za-z0-9]{0,63}")
_TAG = re.compile(r"[0-9A-Fa-f]{8}")
_STUDY_KEYS = frozenset({"studyinstanceuid", "0020000d"})
_SERIES_KEYS = frozenset({"seriesinstanceuid", "0020000e"})


class Kind(StrEnum):
    QIDO = "qido"
    METADATA = "metadata"
    RETRIEVE = "retrieve"
    RENDERED = "rendered"


@dataclass(frozen=True, slots=True)
class Target:
    """The DICOM hierarchy a request names: a study, optionally a series of it, an instance of that, one frame."""

    study: str
    series: str | None = None
    instance: str | None = None
    frame: int | None = None

    @property
    def path(self) -> str:
        out = f"studies/{self.study}"
        if self.series is not None:
            out += f"/series/{self.series}"
            if self.instance is not None:
                out += f"/instances/{self.instance}"
                if self.frame is not None:
                    out += f"/frames/{self.frame}"
        return out


@dataclass(frozen=True, slots=True)
class Forward:
    """What the gateway sends to the PACS: a path under its DICOMweb root, query parameters and one ``Accept``."""

    kind: Kind
    target: Target | None  # None: the studies level of QIDO-RS
    path: str
    params: tuple[tuple[str, str], ...]
    accept: str
    thumbnail: bool = False  # a thumbnail, asked as ``/rendered`` at a small viewport unless the PACS has its own
    sized: bool = True  # False: a thumbnail at the gateway's default size, to be shaped like the image

    def native_thumbnail(self) -> Forward:
        """The same thumbnail asked of the PACS's own ``/thumbnail`` (its size then the PACS's, unless given)."""
        if not self.thumbnail or self.target is None:
            return self
        params = self.params if self.sized else tuple(p for p in self.params if p[0] != "viewport")
        return replace(self, path=f"{self.target.path}/thumbnail", params=params, sized=True)


def uid(value: str, what: str) -> str:
    if len(value) > MAX_UID or not _UID.fullmatch(value):
        raise BadRequestError(f"{what} {value[:70]!r} is not a DICOM UID (digits and dots, at most 64 characters)")
    return value


def frame_number(value: str) -> int:
    """One frame number, counted from 1 (DICOMweb; Orthanc's own REST API counts from 0)."""
    if "," in value:
        raise BadRequestError("a rendered frame or thumbnail is one frame: give one frame number, not a list")
    if not value.isdigit() or len(value) > 9:
        raise BadRequestError(f"frame {value[:20]!r} is not a frame number (DICOMweb frames count from 1)")
    number = int(value)
    if number < 1:
        raise BadRequestError(
            "DICOMweb frames count from 1 (PS3.18): frame 0 does not exist; the first frame is frames/1 (Orthanc's "
            "own REST API counts from 0, its DICOMweb from 1 like this gateway)"
        )
    return number


def target(study: str, series: str | None = None, instance: str | None = None, frame: str | None = None) -> Target:
    return Target(
        uid(study, "study"),
        uid(series, "series") if series is not None else None,
        uid(instance, "instance") if instance is not None else None,
        frame_number(frame) if frame is not None else None,
    )


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def window(value: str) -> str:
    parts = [p.strip() for p in value.split(",")]
    if len(parts) != 3:
        raise BadRequestError(
            "window takes three values: center,width,function (function linear, linear-exact or sigmoid), "
            f"e.g. window=40,400,linear; got {len(parts)}"
        )
    center, width, function = _number(parts[0]), _number(parts[1]), parts[2]
    if center is None or width is None:
        raise BadRequestError("window center and width must be numbers, e.g. window=40,400,linear")
    if function not in WINDOW_FUNCTIONS:
        raise BadRequestError(f"window function {function[:30]!r} is not one of {', '.join(WINDOW_FUNCTIONS)}")
    if (function == "linear" and width < 1) or width <= 0:
        least = "at least 1" if function == "linear" else "above 0"
        raise BadRequestError(f"window width must be {least} for the {function} function (PS3.3 C.11.2.1.2)")
    return ",".join(parts)


def viewport(value: str) -> str:
    parts = [p.strip() for p in value.split(",")]
    if len(parts) not in (2, 6):
        raise BadRequestError(f"viewport takes 2 or 6 values (vw,vh or vw,vh,sx,sy,sw,sh); got {len(parts)}")
    if not all(re.fullmatch(r"-?[0-9]{1,6}", p) for p in parts):
        raise BadRequestError("viewport values must be whole numbers")
    numbers = [int(p) for p in parts]
    if not all(1 <= n <= MAX_VIEWPORT for n in numbers[:2]):
        raise BadRequestError(f"viewport width and height must be between 1 and {MAX_VIEWPORT} pixels")
    if len(numbers) == 6 and (numbers[2] < 0 or numbers[3] < 0 or numbers[4] == 0 or numbers[5] == 0):
        raise BadRequestError("viewport sx and sy must not be negative, and sw and sh not 0")
    return ",".join(str(n) for n in numbers)


def quality(value: str) -> str:
    if not value.isdigit() or not 1 <= int(value) <= 100:
        raise BadRequestError("quality must be a whole number from 1 to 100")
    return str(int(value))


def _media_ranges(accept: str | None) -> list[tuple[str, float, str]]:
    """(type/subtype lower-cased, q, the whole range as sent) in the order sent (RFC 9110 §12.5.1)."""
    out: list[tuple[str, float, str]] = []
    for raw in (accept or "").split(","):
        if not raw.strip():
            continue
        media, *params = [p.strip() for p in raw.split(";")]
        q = 1.0
        for p in params:
            name, _, val = p.partition("=")
            if name.strip().lower() == "q":
                q = _number(val.strip()) or 0.0
        out.append((media.lower(), q, raw.strip()))
    return out


def rendered_type(accept: str | None) -> str:
    """The rendered media type to ask the PACS for (one of :data:`RENDERED_TYPES`)."""
    ranges = _media_ranges(accept)
    if not ranges:
        return "image/jpeg"
    best: tuple[float, str] | None = None
    for media, q, _raw in ranges:
        chosen = "image/jpeg" if media in ("*/*", "image/*") else media if media in RENDERED_TYPES else None
        if chosen is not None and q > 0 and (best is None or q > best[0]):
            best = (q, chosen)
    if best is None:
        raise NotAcceptableError(f"rendered images are {' or '.join(RENDERED_TYPES)} (Accept: {(accept or '')[:100]})")
    return best[1]


def _json_accept(accept: str | None) -> str:
    ranges = _media_ranges(accept)
    if not ranges or any(m in (DICOM_JSON, "application/json", "application/*", "*/*") and q > 0 for m, q, _ in ranges):
        return DICOM_JSON
    raise NotAcceptableError(f"this resource is served as {DICOM_JSON} only (Accept: {(accept or '')[:100]})")


def _retrieve_accept(accept: str | None) -> str:
    """``multipart/related; type="application/dicom"`` — with the ``transfer-syntax`` the client names, passed on."""
    ranges = _media_ranges(accept)
    if not ranges:
        return MULTIPART_DICOM
    for media, q, raw in ranges:
        if q <= 0:
            continue
        if media in ("*/*", "multipart/*"):
            return MULTIPART_DICOM
        if media != "multipart/related":
            continue
        params = [p.strip() for p in raw.split(";")[1:]]
        named = {n.strip().lower(): v.strip().strip('"') for n, _, v in (p.partition("=") for p in params)}
        if named.get("type", "application/dicom").lower() != "application/dicom":
            continue
        syntax = named.get("transfer-syntax")
        if syntax is not None and syntax != "*" and not _UID.fullmatch(syntax):
            raise BadRequestError(f"transfer-syntax {syntax[:70]!r} is not a UID or *")
        return MULTIPART_DICOM + (f"; transfer-syntax={syntax}" if syntax else "")
    raise NotAcceptableError(f"instances are served as {MULTIPART_DICOM} (Accept: {(accept or '')[:100]})")


def _no_params(params: Sequence[tuple[str, str]], what: str) -> None:
    if params:
        names = ", ".join(sorted({k for k, _ in params}))[:200]
        raise BadRequestError(f"{what} takes no query parameters (got {names})")


def rendered(where: Target, params: Sequence[tuple[str, str]], accept: str | None, *, thumbnail: bool) -> Forward:
    """A rendered frame or instance (``…/rendered``), or a thumbnail (``…/thumbnail``: asked as ``/rendered`` at
    :data:`THUMBNAIL_VIEWPORT` unless the caller gives a viewport; :meth:`Forward.native_thumbnail` for a PACS with its
    own)."""
    checks = {"window": window, "viewport": viewport, "quality": quality}
    out: dict[str, str] = {}
    for name, value in params:
        check = checks.get(name)
        if check is None:
            supported = ", ".join(checks)
            raise BadRequestError(f"{name[:40]!r} is not a rendered-image parameter of this gateway ({supported})")
        if name in out:
            raise BadRequestError(f"{name} is given more than once")
        out[name] = check(value)
    media = rendered_type(accept)
    sized = "viewport" in out
    if thumbnail:
        out.setdefault("viewport", THUMBNAIL_VIEWPORT)
    path = f"{where.path}/rendered"
    return Forward(Kind.RENDERED, where, path, tuple(sorted(out.items())), media, thumbnail, sized or not thumbnail)


def shaped(forward: Forward, rows: int, columns: int) -> Forward:
    """A default-sized thumbnail with the image's own shape: its longer side :data:`THUMBNAIL_SIDE`, as PS3.18 leaves
    a thumbnail's size to the origin server (Orthanc stretches an image to the viewport it is given)."""
    if forward.sized or rows < 1 or columns < 1:
        return forward
    scale = THUMBNAIL_SIDE / max(rows, columns)
    size = f"{max(1, round(columns * scale))},{max(1, round(rows * scale))}"
    params = tuple((k, size if k == "viewport" else v) for k, v in forward.params)
    return replace(forward, params=params, sized=True)


def metadata(where: Target, params: Sequence[tuple[str, str]], accept: str | None) -> Forward:
    _no_params(params, "WADO-RS metadata")
    return Forward(Kind.METADATA, where, f"{where.path}/metadata", (), _json_accept(accept))


def retrieve(where: Target, params: Sequence[tuple[str, str]], accept: str | None) -> Forward:
    _no_params(params, "WADO-RS retrieve")
    return Forward(Kind.RETRIEVE, where, where.path, (), _retrieve_accept(accept))


def qido(where: Target | None, params: Sequence[tuple[str, str]], accept: str | None) -> Forward:
    """QIDO-RS at the level below ``where``: studies (``where`` None), the series of a study, the instances of a
    series. At the studies level the caller's ``StudyInstanceUID`` is kept for the gateway to intersect with the
    studies the caller may read."""
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    fixed = _STUDY_KEYS | (_SERIES_KEYS if where is not None and where.series is not None else frozenset())
    for name, value in params:
        lower = name.lower()
        if len(value) > MAX_VALUE * (MAX_UID if lower in _STUDY_KEYS else 1):
            raise BadRequestError(f"the value of {name[:40]} is longer than this gateway accepts")
        if lower in ("limit", "offset"):
            if not value.isdigit() or len(value) > 9 or (lower == "limit" and not 1 <= int(value) <= MAX_QIDO_LIMIT):
                bound = f"1…{MAX_QIDO_LIMIT}" if lower == "limit" else "0 or more"
                raise BadRequestError(f"{lower} must be a whole number ({bound})")
            if lower in seen:
                raise BadRequestError(f"{lower} is given more than once")
            seen.add(lower)
            out.append((lower, str(int(value))))
        elif lower == "fuzzymatching":
            if value not in ("true", "false"):
                raise BadRequestError("fuzzymatching is true or false")
            out.append((lower, value))
        elif lower == "includefield":
            fields = [f.strip() for f in value.split(",")]
            if not all(f == "all" or _KEYWORD.fullmatch(f) or _TAG.fullmatch(f) for f in fields):
                raise BadRequestError("includefield takes DICOM keywords or tags (comma-separated), or all")
            out.append((lower, ",".join(fields)))
        elif all(_KEYWORD.fullmatch(p) or _TAG.fullmatch(p) for p in name.split(".")):
            if where is not None and lower in fixed:
                raise BadRequestError(f"{name} is fixed by the path here; ask under the study (or series) itself")
            if where is None and lower in _STUDY_KEYS:
                for one in value.split(","):
                    uid(one.strip(), "StudyInstanceUID")
            out.append((name, value))
        else:
            raise BadRequestError(
                f"{name[:40]!r} is not a QIDO-RS parameter (limit, offset, fuzzymatching, includefield, or a match "
                "key named by DICOM keyword or tag)"
            )
    level = "studies" if where is None else f"{where.path}/{'instances' if where.series is not None else 'series'}"
    return Forward(Kind.QIDO, where, level, tuple(out), _json_accept(accept))
