"""SQLite transactions in the server take the write lock at BEGIN (services/sqlitelock.py).

Two real SQLite connections, as two requests in Prefect's server: B reads in a
transaction, A writes and commits, then B writes. With Prefect's ``BEGIN
DEFERRED`` B's snapshot is stale and SQLite refuses it at once ("database is
locked", which the server answers with HTTP 503). With the rewrite, B's
transaction holds the write lock from its start, A waits its turn, and both
writes land. Each case runs in its own interpreter: the rewrite is installed
on every SQLAlchemy engine of a process.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from energy_flows.services.sqlitelock import immediate_begin

TWO_WRITERS = r"""
import json, os, sys, tempfile, threading
from sqlalchemy import create_engine, event
if sys.argv[1] == "rewrite":
    from energy_flows.services.sqlitelock import begin_sqlite_transactions_immediately
    begin_sqlite_transactions_immediately()
engine = create_engine("sqlite:///" + os.path.join(tempfile.mkdtemp(), "t.db"))

@event.listens_for(engine, "connect")
def as_prefect_does(dbapi, record):  # Prefect's SQLite set-up: its own BEGIN, WAL, 60 s busy wait
    dbapi.isolation_level = None
    dbapi.execute("PRAGMA journal_mode = WAL")
    dbapi.execute("PRAGMA busy_timeout = 5000")

with engine.connect() as c:
    c.exec_driver_sql("CREATE TABLE t (x INTEGER)")
b_has_read, a_is_done, result = threading.Event(), threading.Event(), {}

def write(c, value):
    try:
        c.exec_driver_sql(f"INSERT INTO t VALUES ({value})")
        c.exec_driver_sql("COMMIT")
        return "ok"
    except Exception as exc:
        c.exec_driver_sql("ROLLBACK")
        return str(getattr(exc, "orig", exc))

def a():
    b_has_read.wait()
    with engine.connect() as c:
        c.exec_driver_sql("BEGIN DEFERRED")
        result["a"] = write(c, 1)
    a_is_done.set()

def b():
    with engine.connect() as c:
        c.exec_driver_sql("BEGIN DEFERRED")
        c.exec_driver_sql("SELECT count(*) FROM t").all()
        b_has_read.set()
        a_is_done.wait(1)
        result["b"] = write(c, 2)

threads = [threading.Thread(target=b), threading.Thread(target=a)]
for t in threads: t.start()
for t in threads: t.join()
with engine.connect() as c:
    result["rows"] = c.exec_driver_sql("SELECT count(*) FROM t").scalar()
print(json.dumps(result))
"""


def _two_writers(mode: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", TWO_WRITERS, mode], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_without_the_rewrite_a_stale_writer_is_refused_at_once():
    assert _two_writers("prefect") == {"a": "ok", "b": "database is locked", "rows": 1}


def test_with_the_rewrite_both_writers_take_turns_and_land():
    assert _two_writers("rewrite") == {"b": "ok", "a": "ok", "rows": 2}


@pytest.mark.parametrize(
    ("dialect", "statement", "expected"),
    [
        ("sqlite", "BEGIN DEFERRED", "BEGIN IMMEDIATE"),
        ("sqlite", "begin deferred", "BEGIN IMMEDIATE"),
        ("sqlite", "BEGIN IMMEDIATE", "BEGIN IMMEDIATE"),
        ("sqlite", "SELECT 'BEGIN DEFERRED'", "SELECT 'BEGIN DEFERRED'"),
        ("postgresql", "BEGIN DEFERRED", "BEGIN DEFERRED"),
    ],
)
def test_only_sqlites_deferred_begin_is_rewritten(dialect, statement, expected):
    assert immediate_begin(dialect, statement) == expected


def test_the_switch_turns_it_off(monkeypatch):
    from energy_flows.services import sqlitelock

    monkeypatch.setenv(sqlitelock.SWITCH, "0")
    assert sqlitelock.begin_sqlite_transactions_immediately() is False
