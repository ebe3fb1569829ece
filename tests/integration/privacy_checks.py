"""Where a national identifier or a name could be left behind, read back in every spelling (docs/design.md §6): every
row of every table, the audit trail as an admin reads it, and log records formatted as uvicorn writes them."""

from __future__ import annotations

import base64
import contextlib
import html
import logging
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote, unquote_plus

import orjson
from sqlalchemy import Engine, text
from uvicorn.logging import AccessFormatter
from uvicorn.protocols.utils import get_path_with_query_string

from registry.services.identity import normalize

_JSON_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")
ACCESS_FORMAT = AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False)
PLAIN_FORMAT = logging.Formatter("%(name)s %(levelname)s %(message)s")


def decodings(value: str) -> str:
    """``value`` followed by what it says once its JSON escapes, percent-encoding and XHTML references are read."""
    out = [value]
    layer = value
    for _ in range(3):
        layer = html.unescape(_JSON_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), unquote_plus(layer)))
        out.append(layer)
    with contextlib.suppress(orjson.JSONDecodeError):
        out.append(orjson.dumps(orjson.loads(value)).decode())
    return "\n".join(out)


def database_text(engine: Engine) -> str:
    """Every column of every row of every table, bytes and JSON decoded, each value in all its decodings."""
    out: list[str] = []
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            tables = [r[0] for r in conn.execute(text("select name from sqlite_master where type='table'"))]
        else:
            tables = [r[0] for r in conn.execute(text("select tablename from pg_tables where schemaname='public'"))]
        for table in tables:
            for row in conn.execute(text(f'select * from "{table}"')):
                for value in row:
                    if value is None:
                        continue
                    if isinstance(value, (bytes, memoryview)):
                        value = bytes(value).decode("utf-8", "replace")
                    elif not isinstance(value, str):
                        value = orjson.dumps(value, default=str).decode()
                    out.append(decodings(value))
    return "\n".join(out)


def audit_text(events: Iterable[dict[str, Any]]) -> str:
    """AuditEvents as served, with their base64 ``entity.query`` read."""
    parts = []
    for event in events:
        parts.append(decodings(orjson.dumps(event).decode()))
        for entity in event.get("entity", []):
            if "query" in entity:
                parts.append(decodings(base64.b64decode(entity["query"]).decode()))
    return "\n".join(parts)


CLIENT_LOGGERS = ("httpx", "httpcore", "hpack")
"""The test's own HTTP client (httpx, through Starlette's TestClient): its records are not the registry's."""


def log_text(records: Iterable[logging.LogRecord]) -> str:
    """The server's records as its handlers would write them (uvicorn's access format for the access log); the test
    client's own records are left out."""
    lines = []
    for record in records:
        if record.name.startswith(CLIENT_LOGGERS):
            continue
        formatter = ACCESS_FORMAT if record.name == "uvicorn.access" else PLAIN_FORMAT
        lines.append(decodings(formatter.format(record)))
    return "\n".join(lines)


def access_record(method: str, raw_target: str, status: int = 200) -> None:
    """Log the access-log record uvicorn writes for a request line (its path decoded and re-quoted, its query
    string exactly as the client sent it)."""
    path, _, query = raw_target.partition("?")
    scope: Any = {"path": unquote(path), "query_string": query.encode("ascii")}
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1:50000", method, get_path_with_query_string(scope), "1.1", status
    )


def leaks(haystack: str, secrets: Iterable[str]) -> list[str]:
    """The secrets (national identifiers, names) found in ``haystack``: as given, normalized, any letter case."""
    folded = haystack.upper()
    found = []
    for secret in secrets:
        forms = {secret.strip().upper(), normalize(secret)}
        if any(form and form in folded for form in forms):
            found.append(secret)
    return found
