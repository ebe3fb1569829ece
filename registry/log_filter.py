"""No national identifier and no name in any log line (docs/design.md §6).

``create_app`` installs a :class:`MaskingFilter` built from the app's identity policy on the loggers the server
writes to: uvicorn's access log (whose request line carries the raw, percent-encoded query string), uvicorn's error
log, the registry's own logger and SQLAlchemy's engine logger. The filter masks the message and every argument of
each record (query strings decoded and masked parameter by parameter, names replaced by ``***``, national-identifier
tokens and anything ID-shaped masked in any spelling) and replaces the traceback of an exception by one whose
messages carry no data: a database error names only its class and SQLSTATE (never the statement, its parameters or
the server's DETAIL line), a validation error only its locations. Engines are created with ``hide_parameters``
(registry/store/db.py), so SQL parameters are not in the exception either.

Filters are kept per configuration of national-identifier systems: a second app with the same configuration in one
process reuses the filter, an app with another configuration adds its own (both mask; neither unmasks).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Mapping
from typing import Any

from registry.services.identity import IdentityPolicy
from registry.services.redaction import Redactor, redactor_for

LOGGERS = ("uvicorn.access", "uvicorn.error", "uvicorn", "registry", "sqlalchemy.engine.Engine")
_DATABASE_MODULES = frozenset({"sqlalchemy", "psycopg", "psycopg2", "psycopg_pool", "sqlite3"})
_VALIDATION_MODULES = frozenset({"pydantic", "pydantic_core", "fhir"})


def _message(exc: BaseException, redactor: Redactor) -> str:
    root = type(exc).__module__.split(".")[0]
    if root in _DATABASE_MODULES:
        orig = getattr(exc, "orig", None) or exc
        state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
        where = f" ({type(orig).__name__}, SQLSTATE {state})" if state else f" ({type(orig).__name__})"
        return f"database error{where}; the statement, its parameters and details are not logged"
    errors = getattr(exc, "errors", None)
    if root in _VALIDATION_MODULES and callable(errors):
        try:
            found = errors(include_input=False, include_context=False, include_url=False)
        except TypeError:
            found = []
        places = ", ".join(".".join(str(p) for p in e.get("loc", ())) for e in found[:10])
        return f"{len(found)} validation error(s) at {places or '?'}; the values are not logged"
    return redactor.line(str(exc))[:2000]


def exception_text(exc: BaseException, redactor: Redactor) -> str:
    """The traceback of ``exc`` and its causes — frames as usual, messages without data."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    lines: list[str] = []
    for n, e in enumerate(reversed(chain)):
        if n:
            lines.append("\nwhich led to:\n\n")
        lines.append("Traceback (most recent call last):\n")
        lines += traceback.format_tb(e.__traceback__)
        lines.append(f"{type(e).__module__}.{type(e).__qualname__}: {_message(e, redactor)}\n")
    return "".join(lines).rstrip("\n")


class MaskingFilter(logging.Filter):
    """Masks every record of the logger it is attached to (see the module docstring)."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor
        self.key = tuple(sorted(redactor.identity.systems))

    def _arg(self, arg: Any) -> Any:
        if arg is None or isinstance(arg, (bool, int, float)):
            return arg
        text = arg if isinstance(arg, str) else str(arg)
        masked = self.redactor.line(text)
        return arg if masked == text else masked

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = exception_text(record.exc_info[1], self.redactor)
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = self.redactor.line(record.exc_text)
        if isinstance(record.args, Mapping):
            record.args = {k: self._arg(v) for k, v in record.args.items()}
        elif isinstance(record.args, tuple):
            record.args = tuple(self._arg(a) for a in record.args)
        if isinstance(record.msg, str):
            # with arguments the message is a format string: masked as written (decoding could break a '%' spec)
            record.msg = self.redactor.plain(record.msg) if record.args else self.redactor.line(record.msg)
        else:
            record.msg = self._arg(record.msg)
        return True


def install_log_masking(identity: IdentityPolicy) -> MaskingFilter:
    """Attach the masking filter of ``identity``'s configuration to the server's loggers (once per configuration)."""
    wanted = MaskingFilter(redactor_for(identity))
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, MaskingFilter) and f.key == wanted.key for f in logger.filters):
            logger.addFilter(wanted)
    return wanted
