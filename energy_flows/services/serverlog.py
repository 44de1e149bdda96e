"""One log line, not a traceback, for each "database is locked" the server retries.

The launcher installs it in the server process before Prefect is imported
(the standard library only); docs/architecture.md.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

__all__ = ["is_busy_database_error", "shorten_busy_database_tracebacks"]

#: What SQLite says when another connection holds the lock.
_BUSY_MESSAGES = ("database is locked", "database is busy", "database table is locked")
_SUFFIX = " [SQLite was busy ({}); the client retries the request, nothing is lost]"


def is_busy_database_error(exc: BaseException | None) -> bool:
    """True when ``exc`` is, or was caused by, SQLite refusing a write because it was busy.

    Follows SQLAlchemy's ``orig`` and Python's ``__cause__``/``__context__``.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, sqlite3.OperationalError) and any(
            text in str(exc) for text in _BUSY_MESSAGES
        ):
            return True
        orig = getattr(exc, "orig", None)
        if isinstance(orig, BaseException) and is_busy_database_error(orig):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def shorten_busy_database_tracebacks() -> None:
    """Log busy-database errors of this process as one line each (idempotent)."""
    current = logging.getLogRecordFactory()
    if getattr(current, "energy_flows_busy_database", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = current(*args, **kwargs)
        if record.exc_info and is_busy_database_error(record.exc_info[1]):
            cause = (str(record.exc_info[1]).splitlines() or ["?"])[0][:120]
            if record.args:  # the message is formatted with % later: keep a % a %
                cause = cause.replace("%", "%%")
            record.msg = f"{record.msg}{_SUFFIX.format(cause)}"
            record.exc_info = None
            record.exc_text = None
        return record

    factory.energy_flows_busy_database = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)
