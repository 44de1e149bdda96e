"""The Prefect server ("Orion" in the original walkthrough) as a managed process.

``PrefectServer().start()`` starts ``prefect server start`` for the home, on SQLite,
a PostgreSQL of the home's or an instructor's. The life cycle: docs/architecture.md.
"""

from __future__ import annotations

import os

from energy_flows import settings
from energy_flows.markup import Markup, element
from energy_flows.options import server_options  # the same checks as `energy-flows up`
from energy_flows.prefect_internals import flush_to_server, restart_senders
from energy_flows.services import api, control, database, launch, postgres, process, registry, urls
from energy_flows.services.base import LogText, ManagedService
from energy_flows.services.postgres import PostgresServer
from energy_flows.services.process import SpawnOptions, free_port, listens_on, port_is_free
from energy_flows.services.registry import Kind, Owner, ServerRecord

__all__ = ["DEFAULT_PORT", "LogText", "PostgresServer", "PrefectServer", "port_is_free"]

#: The port Prefect documents; used whenever it is free.
DEFAULT_PORT = 4200

#: The setting that points Prefect's server at a database other than its SQLite file.
DATABASE_URL_SETTING = "PREFECT_API_DATABASE_CONNECTION_URL"

#: The setting that makes Prefect's server ask every API call for ``user:password``.
AUTH_SETTING = "PREFECT_SERVER_API_AUTH_STRING"


def _describe(database: str) -> str:
    """A server's database label (``ServerRecord.database``) in words."""
    if database == "sqlite":
        return "SQLite"
    managed = f"{urls.ASYNCPG_SCHEME}://{urls.POSTGRES_USER}@127.0.0.1:"
    if database == "postgres" or database.startswith(managed):
        return "this home's PostgreSQL"
    return f"the PostgreSQL at {database}"


def server_argv(port: int) -> list[str]:
    """The command that runs the server (through the launcher, see ``launch.py``).

    No ``--no-prompt``: ``PREFECT_CLI_PROMPT=false`` in its environment says the
    same to every Prefect 3, while ``server start`` refuses the option before 3.9.
    """
    return launch.prefect_argv("server", "start", "--host", "127.0.0.1", "--port", str(port))


class PrefectServer(ManagedService[ServerRecord]):
    """A Prefect server for one home folder, started (or reused) on demand.

    Args:
        home: the state folder; default :func:`energy_flows.settings.home_dir`
            (``$ENERGY_FLOWS_HOME``, else ``.energy_flows/`` of this checkout).
        port: preferred port; default 4200. When it is taken by another
            program, a free port is used and the message says which.
        timeout: seconds to wait for the server to become healthy.
        quiet: no progress lines (errors are still raised).
        detached: terminal mode (``energy-flows up``): the server keeps
            running after this process ends, until ``energy-flows down``.
        database: ``"sqlite"`` (the default: a file in the home),
            ``"postgres"`` (a PostgreSQL started for this home, see
            :class:`~energy_flows.services.postgres.PostgresServer`), or the
            URL of an existing PostgreSQL, e.g.
            ``"postgresql+asyncpg://user:password@host:5432/prefect"``.
            Default: ``$ENERGY_FLOWS_DATABASE_URL`` when set, else SQLite.
        postgres_port: the managed PostgreSQL's port (default: a free one).
        auth: ``True`` to ask every API call for the home's password (made
            once, then kept: see :attr:`auth_string`), a ``"user:password"`` of
            your choice, or ``False`` for none. Health checks stay open; the UI
            asks for it at its own address, not through JupyterLab's proxy
            (``energy_flows/jupyter/proxy_auth.py``). ``None`` (the default): yes on a machine
            several users share (a JupyterHub), no on a laptop, or as
            ``$ENERGY_FLOWS_AUTH`` says (:func:`energy_flows.settings.auth_by_default`).

    After :meth:`start`: ``api_url``, ``ui_url``, ``pid``, ``port``, ``database``,
    ``postgres``, ``auth_string``, ``reused``, ``started_here`` and ``messages``.
    """

    kind = Kind.SERVER
    record_class = ServerRecord
    start_hint = "server = PrefectServer().start()"
    poll_interval = 0.1

    def __init__(
        self,
        home: str | os.PathLike[str] | None = None,
        port: int | None = None,
        timeout: float = 90.0,
        quiet: bool = False,
        detached: bool = False,
        database: str | None = None,
        postgres_port: int | None = None,
        auth: bool | str | None = None,
    ) -> None:
        port, postgres_port, timeout = server_options(port, postgres_port, timeout)
        super().__init__("server", home, quiet, detached, timeout)
        if auth is not None and not isinstance(auth, bool):
            settings.check_auth_string(auth)  # a bad one fails here, before anything starts
        self.title = "Prefect server (Orion)"
        self.noun = "the Prefect server"
        #: Whether ``auth`` was left to the machine (:func:`settings.auth_by_default`).
        self.auth_by_default = auth is None
        self.wanted_auth = settings.auth_by_default() if auth is None else auth
        self.requested_port = port
        #: "sqlite", "postgres" or a PostgreSQL URL (see :func:`postgres.choose_database`).
        self.wanted_database = postgres.choose_database(database)
        #: Whether the database was asked for (argument or variable), not the default.
        self.database_asked = database is not None or self.wanted_database != "sqlite"
        self.postgres_port = postgres_port
        self._postgres_started_here = False
        self._database: tuple[dict[str, str], registry.PostgresRecord | None] | None = None

    # -- hooks of the life cycle (base.py) --------------------------------------------------
    def _prepare(self) -> None:
        self._database = None  # made ready once per start, not again when the port is retried
        if self.wanted_auth:
            password = None if self.wanted_auth is True else self.wanted_auth
            settings.save_auth_string(password, self.home)

    def _spawn(self, retry: bool) -> ServerRecord:
        self._database = self._database or self._prepare_database()
        extra, depends_on = dict(self._database[0]), self._database[1]
        port = free_port() if retry else self._choose_port()
        prefix = urls.hub_prefix(port)
        # The UI asks the API at PREFECT_SERVER_UI_API_URL, which Prefect builds
        # from PREFECT_SERVER_API_PORT (default 4200), not from --port: without
        # this, a server on another port shows the data of whatever runs on 4200.
        extra["PREFECT_SERVER_API_PORT"] = str(port)
        if prefix:
            extra |= urls.hub_settings(prefix)
        secret = settings.auth_string(self.home) if self.wanted_auth else None
        if secret:
            extra[AUTH_SETTING] = secret
        # On a managed PostgreSQL the server's watchdog is one of its owners (PostgreSQL
        # stops after the server, whatever ends the kernel), and the server stops
        # should PostgreSQL end (it could do nothing without it).
        options = SpawnOptions(
            watch_pid=depends_on.pid if depends_on else None,
            hold=depends_on.socket if depends_on else None,
        )
        return self._launch(
            server_argv(port),
            settings.classroom_env(self.home, extra=extra),
            options,
            port=port,
            api_url=urls.api_url_for(port, prefix),
            ui_url=urls.ui_url_for(port, prefix),
            database=self._database_label(),
            auth=bool(secret),
        )

    def _ready(self, rec: ServerRecord) -> bool:
        return listens_on(rec.pid, rec.port) and api.healthy(rec.api_url)

    def _fix_hint(self, log_lines: str) -> str | None:
        return database.remedy(log_lines, self.home)  # a database it failed on

    def _answers(self, rec: ServerRecord) -> bool:
        return api.healthy(rec.api_url)

    def waiting_for(self, rec: ServerRecord) -> str:
        return f"the Prefect server to answer on {rec.api_url}/health"

    def _adopting(self, rec: ServerRecord) -> list[str]:
        if rec.owner_pid == os.getpid():
            who = "this kernel"
        elif rec.owner == Owner.CLI:
            who = "a terminal (energy-flows up)"
        else:
            who = f"process {rec.owner_pid}"
        lines = [f"Reusing the Prefect server started by {who}: {rec.ui_url} (pid {rec.pid})."]
        wanted = self._database_label()
        if self.database_asked and rec.database != wanted:
            lines.append(
                f"Note: it runs on {_describe(rec.database)}, not on {_describe(wanted)} "
                "as asked. To switch, stop it first (`energy-flows down`, or server.stop()), "
                "then start it again."
            )
        if self.wanted_auth and not rec.auth:
            why = (
                f"although other users can reach it on this machine ({settings.shared_host()})"
                if self.auth_by_default and settings.shared_host()
                else "not with one as asked"
            )
            lines.append(
                f"Note: it runs without a password, {why}. To add one, stop it first "
                "(`energy-flows down`, or server.stop()), then start it again."
            )
        return lines

    def _started(self, rec: ServerRecord) -> None:
        settings.apply_to_current_process(self.home, rec.api_url)
        # Prefect's event and log senders keep the address they started with: restart them.
        restart_senders()
        for line in control.reconcile(self.home, quiet=True):
            self._say(line)  # now that the server answers, ended workers' runs can be finished
        if not self.detached:
            # A kernel's next cells import Prefect anyway: do it now, the fast
            # way. (`energy-flows up` returns at once and needs no Prefect.)
            launch.prepare_kernel()
            from energy_flows.orchestration import housekeeping

            # Ended workers' runs are finished before the orchestration layer reads a queue.
            home = self.home
            housekeeping.register(str(home), lambda: control.reconcile(home))

    def _undo(self) -> None:
        """After a failed start: stop the PostgreSQL this start started (nothing is left)."""
        if self._postgres_started_here and registry.live_server(self.home) is None:
            pg = registry.live_postgres(self.home)
            if pg is not None:
                control.stop(pg, quiet=True)
        self._postgres_started_here = False

    # -- its database and port ------------------------------------------------------------
    def _prepare_database(self) -> tuple[dict[str, str], registry.PostgresRecord | None]:
        """Get the database ready: the server's settings for it, and the PostgreSQL it needs."""
        if self.wanted_database == "sqlite":
            db = database.home_database(self.home)  # the server would fail every write
            process.refuse_read_only(
                (db, db.parent), "The Prefect database", "the server could not save anything"
            )
            database.check_home(self.home)  # a damaged or lost database is never served
            # A new home starts from a copy of a migrated empty database (database.py).
            database.seed_home(self.home, say=self._say)
            return {}, None
        if self.wanted_database == "postgres":
            pg = PostgresServer(
                self.home,
                port=self.postgres_port,
                timeout=self.timeout,
                quiet=self.quiet,
                detached=self.detached,
            ).start()
            self.messages += pg.messages
            self._postgres_started_here = self._postgres_started_here or pg.started_here
            return {DATABASE_URL_SETTING: pg.url}, pg.record
        postgres.check_reachable(self.wanted_database)
        return {DATABASE_URL_SETTING: self.wanted_database}, None

    def _database_label(self) -> str:
        """What the server's record says it runs on: "sqlite" or a URL without password."""
        if self.wanted_database == "sqlite":
            return "sqlite"
        if self.wanted_database == "postgres":
            pg = registry.live_postgres(self.home)
            return pg.address if pg else "postgres"
        return urls.redact(self.wanted_database)

    def _choose_port(self) -> int:
        wanted = self.requested_port or DEFAULT_PORT
        if port_is_free(wanted):
            return wanted
        port = free_port()
        self._say(f"Port {wanted} is taken by another program; using port {port} instead.")
        return port

    # -- stopping ---------------------------------------------------------------------------
    def stop(self) -> list[str]:
        """Stop this home's workers, then its server (then its PostgreSQL); returns what stopped.

        Safe to call twice. Another notebook reusing the same server loses it
        too. The run logs and events this process has not sent yet (a flow run
        in this kernel) are sent first, while the server still answers.
        """
        rec = registry.live_server(self.home)
        if rec is not None and api.healthy(rec.api_url):
            flush_to_server(timeout=5)
        return super().stop()

    # -- information ------------------------------------------------------------------------
    @property
    def api_url(self) -> str:
        """The API address for Prefect clients, e.g. ``http://127.0.0.1:4200/api``."""
        return self._info().api_url

    @property
    def ui_url(self) -> str:
        """The address of Prefect's web UI (the JupyterHub proxy URL under a hub)."""
        return self._info().ui_url

    @property
    def port(self) -> int:
        return self._info().port

    @property
    def database(self) -> str:
        """What the server runs on: ``"sqlite"``, or a PostgreSQL URL without its password."""
        return self._info().database

    @property
    def auth_string(self) -> str | None:
        """The ``user:password`` this server asks for, or None (a password: keep it out of
        notebooks' outputs; it lives in the home, readable by you only)."""
        return settings.auth_string(self.home) if self._info().auth else None

    @property
    def postgres(self) -> PostgresServer | None:
        """This home's managed PostgreSQL (``.query(sql)``, ``.address``), or None."""
        if registry.live_postgres(self.home) is None:
            return None
        return PostgresServer(self.home, quiet=True)

    def _where(self, rec: ServerRecord) -> str:
        return f"ui={rec.ui_url} api={rec.api_url}"

    @property
    def command(self) -> str | None:
        """The Prefect command this server stands for, as you would type it in a terminal (None
        when it does not run; why the variable: :meth:`_spawn`). The course starts it through
        its launcher, with the classroom settings."""
        rec = self.record
        if rec is None:
            return None
        argv = server_argv(rec.port)[3:]  # what follows `python -m energy_flows.services.launch`
        return f"PREFECT_SERVER_API_PORT={rec.port} {' '.join(argv)}"

    def _rows(self, rec: ServerRecord | None) -> list[tuple[str, str | Markup]]:
        rows: list[tuple[str, str | Markup]] = []
        if rec is not None:
            rows += [
                ("UI", element("a", rec.ui_url, href=rec.ui_url, target="_blank")),
                ("API", rec.api_url),
                ("PID", str(rec.pid)),
                ("Uptime", rec.uptime()),
                (
                    "Owner",
                    "this terminal's `energy-flows up`" if rec.owner == Owner.CLI else "kernel",
                ),
            ]
            if rec.database != "sqlite":  # (SQLite's table stays as it was)
                rows.append(("Database", rec.database))
            if rec.auth:
                code = element("code", "server.auth_string")
                rows.append(("Password", Markup(f"required: {code} (user:password)")))
            if self.command:
                rows.append(("Command", element("code", self.command)))
        return [*rows, ("Home", str(self.home))]
