"""The content hash of a resource: what tells an unchanged update from a new version (and a repeated push from a
conflicting one) — its members without ``id`` and the server's ``meta`` members, in a canonical JSON form."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson


def content_hash(resource: Mapping[str, Any]) -> str:
    stripped = {k: v for k, v in resource.items() if k != "id"}
    meta = stripped.get("meta")
    if isinstance(meta, Mapping):
        rest = {k: v for k, v in meta.items() if k not in ("versionId", "lastUpdated")}
        if rest:
            stripped["meta"] = rest
        else:
            stripped.pop("meta")
    return hashlib.sha256(orjson.dumps(stripped, option=orjson.OPT_SORT_KEYS)).hexdigest()
