"""One line, not a traceback, for each "database is locked" the server retries.

On SQLite a burst of runs makes the server refuse many writes with
``sqlite3.OperationalError: database is locked``. Prefect answers such a
request with HTTP 503 and the client retries it: nothing is lost. But the
server logs a full traceback for each refusal (the orchestration rules log
"Encountered error during state validation" whatever
``PREFECT_SERVER_LOG_RETRYABLE_ERRORS`` says), and a burst of 100 runs wrote
over a thousand of them: ``energy-flows logs server`` became unreadable.

:func:`shorten_busy_database_tracebacks` installs a log record factory in the
server process (``services/launch.py`` calls it) that turns such a record into
one line naming the cause. Other errors keep their traceback. A record
factory, not a filter, because Prefect configures its loggers and handlers
after this process starts, and a factory sees every record of every logger.

Only the standard library is used: this runs before Prefect is imported.
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
