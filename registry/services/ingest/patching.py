"""PATCH in the write engine (R4 http.html §3.1.0.5): a patch becomes the update of its result, decided from then on
like any update."""

from __future__ import annotations

from dataclasses import replace

import orjson

from registry.errors import (
    BadRequestError,
    GoneError,
    NotFoundError,
    NotSupportedPatchError,
    PreconditionFailedError,
    UnprocessableError,
)
from registry.fhir.json_text import with_changed_members
from registry.fhir.patch import PatchFailedError, PatchSyntaxError, PatchUnsupportedError
from registry.services import policy
from registry.services.ingest.entries import Step
from registry.services.ingest.session import SUPPORTED, Session


def patch_step(s: Session, step: Step) -> None:
    """Turn a PATCH into the PUT of the patched resource, decided from then on like any update: the current row
    is locked, the writer must own it (checked before the patch is applied, so a refused patch learns nothing of
    the content), ``If-Match`` is checked, and the members the patch left alone keep their stored bytes."""
    rtype, rid, _query = step.item.target()
    if rtype not in SUPPORTED:
        raise NotFoundError(f"resource type {rtype!r} is not supported")
    policy.require_scope(s.principal, rtype, "write")
    existing = s.repo.get_for_write([(rtype, rid)]).get((rtype, rid))
    if existing is None:
        raise NotFoundError(f"{rtype}/{rid} is not known; a patch changes an existing resource")
    policy.check_change(s.principal, existing)
    if existing.deleted:
        raise GoneError(f"{rtype}/{rid} was deleted (version {existing.version})")
    if_match = step.item.if_match
    if if_match is not None and if_match.strip().removeprefix("W/").strip('"') != str(existing.version):
        raise PreconditionFailedError(f"If-Match {if_match} does not match the current version "
                                      f'(W/"{existing.version}")')  # fmt: skip
    patch = step.item.patch
    assert patch is not None  # noqa: S101 - a PATCH item always carries its document
    text = existing.body.decode()
    before = orjson.loads(text)
    try:
        after = patch.apply(before)
    except PatchSyntaxError as exc:
        raise BadRequestError(str(exc)) from None
    except PatchUnsupportedError as exc:
        raise NotSupportedPatchError(str(exc)) from None
    except PatchFailedError as exc:
        raise UnprocessableError(str(exc)) from None
    patched = with_changed_members(text, before, after)
    step.item = replace(step.item, method="PUT", text=patched, if_match=f'W/"{existing.version}"')
    step.patched = True
