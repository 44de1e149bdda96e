"""The server logs a refused SQLite write as one line, not a traceback (services/serverlog.py)."""

from __future__ import annotations

import io
import logging
import sqlite3

import pytest
import sqlalchemy.exc

from energy_flows.services.serverlog import (
    is_busy_database_error,
    shorten_busy_database_tracebacks,
)


def _locked() -> sqlalchemy.exc.OperationalError:
    """A real "database is locked": two connections, the first holding the write lock."""
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp()) / "busy.db"
    first = sqlite3.connect(path, timeout=0, isolation_level=None)
    second = sqlite3.connect(path, timeout=0, isolation_level=None)
    first.execute("CREATE TABLE t (x)")
    first.execute("BEGIN IMMEDIATE")
    try:
        second.execute("INSERT INTO t VALUES (1)")
    except sqlite3.OperationalError as orig:
        return sqlalchemy.exc.OperationalError("INSERT INTO t VALUES (1)", {}, orig)
    finally:
        first.close()
        second.close()
    pytest.fail("the second connection was not refused")


@pytest.fixture
def server_log():
    saved = logging.getLogRecordFactory()
    shorten_busy_database_tracebacks()
    shorten_busy_database_tracebacks()  # twice: installed once
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    logger = logging.getLogger("prefect.server.test-serverlog")
    logger.addHandler(handler)
    logger.propagate = False
    yield logger, out
    logger.removeHandler(handler)
    logging.setLogRecordFactory(saved)


def test_a_busy_database_is_one_line(server_log):
    logger, out = server_log
    try:
        raise _locked()
    except Exception:
        logger.exception("Encountered error during state validation")
    text = out.getvalue()
    assert "Traceback" not in text
    assert text.count("\n") == 1, text
    assert "Encountered error during state validation [SQLite was busy (" in text
    assert "database is locked" in text and "the client retries" in text


def test_other_errors_keep_their_traceback(server_log):
    logger, out = server_log
    try:
        raise ValueError("a real bug, 100% visible")
    except ValueError:
        logger.exception("Encountered exception in request: %s", "POST /x")
    text = out.getvalue()
    assert "Traceback" in text and "a real bug, 100% visible" in text


def test_the_cause_is_found_through_the_chain():
    locked = _locked()
    try:
        try:
            raise locked
        except Exception as exc:
            raise RuntimeError("state validation failed") from exc
    except RuntimeError as outer:
        assert is_busy_database_error(outer)
    assert not is_busy_database_error(sqlite3.OperationalError("no such table: t"))
    assert not is_busy_database_error(None)
