"""SQLite transactions that wait for the write lock instead of failing at once.

Prefect's server opens its transactions on SQLite with ``BEGIN DEFERRED``: the
transaction takes no lock until its first write. When two requests each read,
then write (a worker's ``PATCH /flow_runs/<id>/labels`` at submission, a new
flow run, a state change), the second one to write cannot wait for the first:
its snapshot of the database is already stale, so SQLite refuses it at once
with "database is locked", whatever ``busy_timeout`` says. Prefect answers
HTTP 503, the client backs off and retries, and in a burst of 100 runs on two
cores some requests lose every retry: their runs end Crashed at submission.

``BEGIN IMMEDIATE`` takes the write lock when the transaction starts. A second
writer then waits in ``busy_timeout`` (Prefect sets 60 s) until the first
commits, and no snapshot goes stale. Writers take turns, as SQLite makes them
do anyway; reads outside transactions are untouched (WAL mode lets them run
beside a writer).

:func:`begin_sqlite_transactions_immediately` makes that change in the server
process (``services/launch.py`` calls it before Prefect is imported). It uses
SQLAlchemy's public event API: a ``before_cursor_execute`` listener on every
engine rewrites exactly ``BEGIN DEFERRED`` on a SQLite connection to ``BEGIN
IMMEDIATE``. On PostgreSQL, or should Prefect stop issuing that statement, it
changes nothing and Prefect behaves as it does without this package.
``ENERGY_FLOWS_SQLITE_IMMEDIATE=0`` turns it off (the burst benchmark's
"before" side does, to measure the difference).
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["begin_sqlite_transactions_immediately", "immediate_begin"]

#: Set to ``0`` to leave Prefect's ``BEGIN DEFERRED`` as it is.
SWITCH = "ENERGY_FLOWS_SQLITE_IMMEDIATE"

_installed = False


def immediate_begin(dialect: str, statement: str) -> str:
    """The statement to run instead of ``statement`` on a connection of ``dialect``.

    >>> immediate_begin("sqlite", "BEGIN DEFERRED")
    'BEGIN IMMEDIATE'
    >>> immediate_begin("postgresql", "BEGIN DEFERRED")
    'BEGIN DEFERRED'
    >>> immediate_begin("sqlite", "SELECT 1")
    'SELECT 1'
    """
    if dialect == "sqlite" and statement.strip().upper() == "BEGIN DEFERRED":
        return "BEGIN IMMEDIATE"
    return statement


def begin_sqlite_transactions_immediately() -> bool:
    """Install the rewrite in this process (idempotent); False when switched off."""
    global _installed
    if os.environ.get(SWITCH, "1").strip() == "0":
        return False
    if _installed:
        return True
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    def rewrite(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> tuple[str, Any]:
        return immediate_begin(conn.dialect.name, statement), parameters

    event.listen(Engine, "before_cursor_execute", rewrite, retval=True)
    _installed = True
    return True
