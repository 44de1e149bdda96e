"""The classroom environment, in one place.

Every process the package starts (the Prefect server, workers, the flow runs
that workers launch, JupyterLab) receives the environment built by
:func:`classroom_env`, and the notebook kernel adopts the same settings with
:func:`apply_to_current_process`. Each setting below exists for a reason that
a workshop has run into; the comment next to it says which. Where the state
lives is decided here too: :func:`home_dir`, one home per checkout.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import sys
import tempfile
import tomllib
from collections.abc import Mapping
from pathlib import Path

from energy_flows.errors import HomeNotWritableError, OrchestrationError, disk_full, is_disk_full

#: Runs count as Late this many seconds after their scheduled start.
#: Prefect's default is 15 s; 5 s keeps a lesson's wait short.
LATE_AFTER_SECONDS = 5

#: How often a worker asks its queues for runs (Prefect's default is 10 s).
WORKER_QUERY_SECONDS = 1

#: How often a worker reports that it is alive (Prefect's default is 30 s).
WORKER_HEARTBEAT_SECONDS = 5

#: How often a flow run tells the server it is alive (``prefect.flow-run.heartbeat``
#: events; Prefect's default is 180 s). 30 s is the smallest value Prefect accepts:
#: the automation that marks silent runs Crashed (``orchestration/zombies.py``)
#: waits for three missed heartbeats, so this sets how soon a run whose worker
#: died is found (90 s instead of nine minutes).
FLOW_HEARTBEAT_SECONDS = 30

#: Server services a lesson does not need; switching them off makes the
#: server start faster and keeps the SQLite database quiet.
_SERVICES_OFF = (
    "CANCELLATION_CLEANUP",
    "PAUSE_EXPIRATIONS",
    "REPOSSESSOR",
    # TRIGGERS stays on: it runs automations, e.g. the one that marks runs Crashed
    # when a worker the package did not start dies (orchestration/zombies.py).
    "EVENT_LOGGER",
    "CLEANUP_RECONCILER",
)

#: Set to 1 to run the classroom with Prefect's default timings (polling, late
#: threshold, services): the benchmarks use it to measure what the settings save.
PREFECT_DEFAULTS_VARIABLE = "ENERGY_FLOWS_PREFECT_DEFAULTS"

#: The settings that only make things faster (left out with PREFECT_DEFAULTS_VARIABLE).
_SPEED_SETTINGS = (
    "PREFECT_WORKER_QUERY_SECONDS",
    "PREFECT_WORKER_HEARTBEAT_SECONDS",
)

#: Variables that would make a child write colour codes or prompts into its log.
_COLOUR_VARIABLES = ("FORCE_COLOR", "CLICOLOR_FORCE", "PY_COLORS")

#: The Jupyter server's and JupyterHub's credentials (``JUPYTER_TOKEN``, ``JPY_API_TOKEN``,
#: ``JUPYTERHUB_API_TOKEN``, ...): a kernel has them; nothing the package starts needs them.
_JUPYTER_SECRET = re.compile(r"(JUPYTER|JPY)\w*(TOKEN|SECRET|PASSWORD|KEY)\w*")


#: Prefect's logging settings of a notebook kernel (``handlers.console`` of Prefect's
#: ``logging.yml``, overridden by variables): the log lines of a cell read as one block of
#: text, written to stdout with the cell's prints, instead of one HTML block per line
#: (``energy_flows/log_console.py``). Plain Prefect writes them to stderr, through rich.
NOTEBOOK_LOG_SETTINGS = {
    "PREFECT_LOGGING_HANDLERS_CONSOLE_CLASS": "energy_flows.log_console.NotebookConsoleHandler",
    "PREFECT_LOGGING_HANDLERS_CONSOLE_STREAM": "ext://sys.stdout",
}


#: The state folder's name, at the top of a checkout or in the user's home directory.
HOME_FOLDER_NAME = ".energy_flows"

#: The ``[project] name`` in ``pyproject.toml`` that marks a folder as this course's checkout.
PROJECT_NAME = "energy-flows"


def checkout_root(start: str | os.PathLike[str] | None = None) -> Path | None:
    """The course checkout that contains ``start`` (default: the current directory), or None.

    A checkout is a folder that holds a ``notebooks/`` folder and a
    ``pyproject.toml`` naming the project ``energy-flows``. The nearest such
    folder, ``start`` itself included, wins: a kernel whose working directory
    is ``notebooks/`` or ``my-lessons/`` and a terminal at the top of the
    repository find the same one.
    """
    try:
        here = Path(start) if start is not None else Path.cwd()
        here = here.expanduser().resolve()
    except OSError:  # the current directory was deleted under this process
        return None
    for folder in (here, *here.parents):
        if (folder / "notebooks").is_dir() and _names_this_project(folder / "pyproject.toml"):
            return folder
    return None


def user_home_dir() -> Path:
    """``~/.energy_flows``: the home of a process that runs outside any checkout."""
    return Path.home() / HOME_FOLDER_NAME


def home_dir(home: str | os.PathLike[str] | None = None) -> Path:
    """Return the folder that holds all of this package's state: one home per checkout.

    The first of these wins:

    1. the ``home`` argument (``energy-flows --home``);
    2. ``$ENERGY_FLOWS_HOME``;
    3. ``.energy_flows/`` at the top of the checkout that contains the current
       directory (see :func:`checkout_root`), so lessons (whose kernels run in
       ``notebooks/`` or ``my-lessons/``) and a terminal anywhere in the
       repository share one server, one database and one ``energy-flows status``;
    4. ``~/.energy_flows`` (:func:`user_home_dir`) outside any checkout.

    The path is made absolute (child processes run in other directories) but
    not created.
    """
    if home is None:
        home = os.environ.get("ENERGY_FLOWS_HOME") or None
    if home is None:
        root = checkout_root()
        home = root / HOME_FOLDER_NAME if root is not None else user_home_dir()
    return Path(home).expanduser().resolve()


def _names_this_project(pyproject: Path) -> bool:
    """True when ``pyproject`` exists and its ``[project] name`` is this course's."""
    try:
        stat = pyproject.stat()
    except OSError:
        return False
    return _project_name(str(pyproject), stat.st_mtime_ns, stat.st_size) == PROJECT_NAME


@functools.lru_cache(maxsize=16)
def _project_name(path: str, mtime_ns: int, size: int) -> str | None:
    """The normalised project name a ``pyproject.toml`` declares (cached per file version)."""
    try:
        with open(path, "rb") as file:
            project = tomllib.load(file).get("project")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    name = project.get("name") if isinstance(project, dict) else None
    # PEP 503: Energy_Flows, energy.flows and energy-flows are one name.
    return re.sub(r"[-_.]+", "-", name).lower() if isinstance(name, str) else None


def cache_dir() -> Path:
    """Where the empty database templates live: ``$ENERGY_FLOWS_CACHE``, else the user's cache.

    (``$XDG_CACHE_HOME`` or ``~/.cache``, then ``energy-flows``.) Shared by every
    home of the user; deleting it is safe (see ``services/database.py``).
    """
    configured = os.environ.get("ENERGY_FLOWS_CACHE")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "energy-flows"


def ensure_home(home: str | os.PathLike[str] | None = None) -> Path:
    """Create the home folder (and its sub-folders), private to its user, and check it is writable.

    The folders are made readable by their user only (0700): what the
    lessons keep there (the Prefect database, results, logs) is the learner's.

    Raises :class:`~energy_flows.errors.HomeNotWritableError` with the folder
    and what to do when it cannot be written, before any process is started.
    """
    path = home_dir(home)
    try:
        for sub in ("", "prefect", "prefect/ui", "results", "logs", "state", "cache"):
            folder = path / sub
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Private to its user: the database, results and logs hold the learner's work.
            if folder.stat().st_mode & 0o077:
                folder.chmod(0o700)
        # A probe file of our own: two processes may check the same home at once.
        with tempfile.NamedTemporaryFile(dir=path / "state", prefix=".write-test-"):
            pass
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full(path / "state", "a new file") from exc
        raise HomeNotWritableError(
            f"The energy-flows home folder {path} cannot be written ({exc.strerror}). "
            "Set ENERGY_FLOWS_HOME to a folder you can write, e.g. "
            "`export ENERGY_FLOWS_HOME=$HOME/energy_flows_home`, then run the cell again."
        ) from exc
    return path


#: The user name of a password made for a home (``PrefectServer(auth=True)``).
AUTH_USER = "class"


def auth_path(home: str | os.PathLike[str] | None = None) -> Path:
    """``<home>/state/auth``: the password of the server this home talks to (0600)."""
    return home_dir(home) / "state" / "auth"


def auth_string(home: str | os.PathLike[str] | None = None) -> str | None:
    """The home's ``user:password`` for its Prefect server, or None when it has none.

    A server started with ``PrefectServer(auth=True)`` asks every API call for
    it (Prefect's basic auth); a worker that joined another learner's server
    with ``Worker(server=..., auth=...)`` keeps that server's here. Every
    process the package starts for the home sends it (:func:`prefect_settings`).
    """
    try:
        value = auth_path(home).read_text().strip()
    except OSError:
        return None
    return value or None


def check_auth_string(value: object) -> str:
    """``value`` if it is a usable ``user:password``; else an error that says what to change."""
    if (
        not isinstance(value, str)
        or value.count(":") < 1
        or not value.split(":", 1)[0]
        or not value.split(":", 1)[1]
        or any(ch.isspace() for ch in value)
    ):
        shown = "a str" if isinstance(value, str) else repr(value)
        raise OrchestrationError(
            "The auth string is the server's user and password joined by a colon, without "
            f"spaces, e.g. 'class:s3cret-words' (got {shown}; it is not shown, in case it is a "
            "real password). Ask whoever started the server for it."
        )
    return value


def save_auth_string(value: str | None = None, home: str | os.PathLike[str] | None = None) -> str:
    """Keep ``value`` (checked) as the home's password, or make one; returns it.

    Without ``value`` the home keeps the password it has, or gets a new random
    one (user ``class``). The file is readable by its user only.
    """
    if value is None:
        existing = auth_string(home)
        if existing is not None:
            return existing
        import secrets

        value = f"{AUTH_USER}:{secrets.token_hex(12)}"
    value = check_auth_string(value)
    path = auth_path(home)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    partial = path.with_name(f".auth.{os.getpid()}.tmp")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(value + "\n")
    os.replace(partial, path)
    return value


#: ``on`` or ``off``: whether a server asks for the home's password when ``auth`` is not given.
AUTH_VARIABLE = "ENERGY_FLOWS_AUTH"

#: Variables that a JupyterHub's spawner sets for every user's server (``JPY_API_TOKEN``: older
#: hubs). ``JUPYTERHUB_SERVICE_PREFIX`` alone is no sign: the Launcher tile sets it on a laptop.
_HUB_VARIABLES = ("JUPYTERHUB_USER", "JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN")

_ON, _OFF = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def shared_host(environ: Mapping[str, str] | None = None) -> str | None:
    """Why this machine is taken as shared by several users, in words; None for a laptop.

    Every user of a JupyterHub that runs them on one machine (The Littlest
    JupyterHub, for one) shares its loopback address: without a password any
    of them could read or drive another's Prefect server. A hub is known by
    the variables its spawner sets (:data:`_HUB_VARIABLES`), in ``environ``
    (default: this process's environment).
    """
    environ = os.environ if environ is None else environ
    for name in _HUB_VARIABLES:
        if environ.get(name):
            return f"a JupyterHub (${name} is set)"
    return None


def auth_by_default(environ: Mapping[str, str] | None = None) -> bool:
    """Whether a server started without ``auth=`` asks for the home's password.

    ``$ENERGY_FLOWS_AUTH`` decides when set (``on``: a shared machine the package
    cannot recognise, e.g. a server many learners reach by ssh; ``off``: not
    recommended); otherwise yes on a shared machine (:func:`shared_host`), no
    on a laptop, where loopback reaches the learner alone (docs/shared-server.md).
    ``environ``: the environment to judge (default: this process's).
    """
    environ = os.environ if environ is None else environ
    value = environ.get(AUTH_VARIABLE, "").strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    if value:
        raise OrchestrationError(
            f"${AUTH_VARIABLE} is {value!r}: set it to 'on' (the server asks for the home's "
            "password) or 'off' (it does not), or unset it to decide by the machine "
            "(on under JupyterHub)."
        )
    return shared_host(environ) is not None


def prefect_settings(
    home: str | os.PathLike[str] | None = None, api_url: str | None = None
) -> dict[str, str]:
    """The Prefect and tooling variables of the classroom, without ``os.environ``.

    Useful to show a learner exactly what the package changes.
    """
    path = home_dir(home)
    env = {
        "ENERGY_FLOWS_HOME": str(path),
        # All Prefect state (database, profiles, UI bundle) lives in the home.
        "PREFECT_HOME": str(path / "prefect"),
        # The server copies and rewrites its UI bundle on start: keep that out
        # of site-packages (read-only and shared installs break otherwise).
        "PREFECT_UI_STATIC_DIRECTORY": str(path / "prefect" / "ui"),
        # Offline classrooms: no telemetry, no promotional content.
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
        "PREFECT_TELEMETRY_ENABLE_RESOURCE_METRICS": "false",
        "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY": "false",
        # Logs that read well in a file: no prompts, no colour codes.
        "PREFECT_CLI_PROMPT": "false",
        "PREFECT_CLI_COLORS": "false",
        "PREFECT_LOGGING_COLORS": "false",
        "NO_COLOR": "1",
        "PYTHONUNBUFFERED": "1",
        # Loopback only; exposing the server needs an auth string (see README).
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        # Workers pick runs up within a second and show up quickly.
        "PREFECT_WORKER_QUERY_SECONDS": str(WORKER_QUERY_SECONDS),
        "PREFECT_WORKER_HEARTBEAT_SECONDS": str(WORKER_HEARTBEAT_SECONDS),
        # Flow runs send heartbeats, so a run whose worker died is marked Crashed.
        # Kept with ENERGY_FLOWS_PREFECT_DEFAULTS too: that automation's wait
        # is only right for runs that beat this often.
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(FLOW_HEARTBEAT_SECONDS),
        # A short late threshold so lessons do not wait 15 s for "Late". An ISO 8601
        # duration ("PT5S", 5 seconds): every Prefect 3 reads it, while a bare "5" is
        # refused by Prefect before 3.9 with today's pydantic (docs/prefect-versions.md).
        "PREFECT_SERVER_SERVICES_LATE_RUNS_AFTER_SECONDS": f"PT{LATE_AFTER_SECONDS}S",
        # ... and the service that marks them looks every second, not every 5 s.
        "PREFECT_SERVER_SERVICES_LATE_RUNS_LOOP_SECONDS": "1",
        # Results persisted, so a notebook can read what a worker computed.
        "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true",
        "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(path / "results"),
        # Bursts on SQLite answer 503 until writes calm down: retry 8 times (~8 min), not 5 (62 s).
        "PREFECT_CLIENT_MAX_RETRIES": "8",
        # ... with wider jitter, so runs submitted in one poll do not retry in lockstep.
        "PREFECT_CLIENT_RETRY_JITTER_FACTOR": "0.5",
        # ... and events are written 200 at a time (not 20): fewer writes queue for the lock.
        "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE": "200",
    }
    for name in _SERVICES_OFF:
        env[f"PREFECT_SERVER_SERVICES_{name}_ENABLED"] = "false"
    if os.environ.get(PREFECT_DEFAULTS_VARIABLE, "").lower() in ("1", "true", "yes"):
        # Benchmarks only: keep everything else, but leave Prefect's own timings.
        for key in _SPEED_SETTINGS:
            env.pop(key, None)
        env = {k: v for k, v in env.items() if not k.startswith("PREFECT_SERVER_SERVICES_")}
    if api_url:
        env["PREFECT_API_URL"] = api_url
    secret = auth_string(path)
    if secret:
        # The server this home talks to asks for a password (see auth_string()).
        env["PREFECT_API_AUTH_STRING"] = secret
    return env


def flow_run_command() -> str:
    """The command each flow run of a process pool starts with: the fast launcher.

    ``python -m energy_flows.services.launch engine`` runs Prefect's engine in
    one interpreter (Prefect's default starts two) without the slow optional
    import: a run starts about a second sooner. It is the ``command`` default
    of the course's process pools (:func:`with_flow_run_command`), so every
    deployment on them, and every worker that serves them, uses it.
    """
    return f"{shlex.quote(sys.executable)} -m energy_flows.services.launch engine"


def with_flow_run_command(template: dict[str, object]) -> bool:
    """Make :func:`flow_run_command` a process pool's default command, unless it has one.

    ``template`` is the pool's base job template, changed in place; True when
    it was changed (then write it back to the pool).
    """
    variables = template.get("variables")
    properties = variables.get("properties") if isinstance(variables, dict) else None
    command = properties.get("command") if isinstance(properties, dict) else None
    if not isinstance(command, dict) or command.get("default"):
        return False
    command["default"] = flow_run_command()
    return True


def classroom_env(
    home: str | os.PathLike[str] | None = None,
    api_url: str | None = None,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """The complete environment for a process the package starts.

    It is ``os.environ`` with the classroom settings on top (see
    :func:`prefect_settings`), colour-forcing variables removed (ipykernel
    exports ``FORCE_COLOR=1``), and ``extra`` last. ``api_url`` points the
    process's Prefect client at a server.

    The Jupyter server's and JupyterHub's tokens are left out: whoever holds
    them can run code as the learner, and a Prefect server, a worker or a flow
    run needs none (a flow's code could log its environment). What needs one,
    JupyterLab started by ``energy-flows lab``, gets it in ``extra``.
    """
    # ... and a kernel's notebook log settings stay with the kernel.
    skip = {*_COLOUR_VARIABLES, *NOTEBOOK_LOG_SETTINGS}
    env = {
        k: v for k, v in os.environ.items() if k not in skip and not _JUPYTER_SECRET.fullmatch(k)
    }
    if api_url is None:
        env.pop("PREFECT_API_URL", None)
    env.update(prefect_settings(home, api_url))
    # The interpreter running this package, first on PATH, so `prefect` and
    # `python` in children are the ones of this environment.
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    if extra:
        env.update(extra)
    return env


def apply_to_current_process(
    home: str | os.PathLike[str] | None = None, api_url: str | None = None
) -> dict[str, str]:
    """Adopt the classroom settings in this process (the notebook kernel).

    Sets the variables in ``os.environ`` and refreshes Prefect's settings
    context, so that ``get_client()``, ``flow()`` calls and deployments made
    in later cells talk to the classroom server. Returns what was set.
    """
    settings = prefect_settings(home, api_url)
    for name in _COLOUR_VARIABLES:
        os.environ.pop(name, None)
    os.environ.update(settings)
    if "prefect.context" in sys.modules:
        # Prefect reads its settings once at import; make it read them again.
        import prefect.context

        prefect.context.refresh_global_settings_context()
    _use_notebook_log_console()
    return settings


def in_notebook_kernel() -> bool:
    """True in a Jupyter kernel (IPython's ``ZMQInteractiveShell``), as rich tells it."""
    shell = sys.modules.get("IPython")
    get_ipython = getattr(shell, "get_ipython", None)
    return get_ipython is not None and type(get_ipython()).__name__ == "ZMQInteractiveShell"


def _use_notebook_log_console() -> None:
    """In a notebook kernel, print Prefect's log lines as text (:data:`NOTEBOOK_LOG_SETTINGS`).

    Prefect sets its logging up when it is imported; a kernel that imported it
    before the classroom settings has it set up again, with them.
    """
    if not in_notebook_kernel():
        return
    os.environ.update(NOTEBOOK_LOG_SETTINGS)
    if "prefect.logging.configuration" not in sys.modules:
        return  # Prefect reads the variables when it is imported
    import logging

    from prefect.logging.configuration import setup_logging

    wanted = NOTEBOOK_LOG_SETTINGS["PREFECT_LOGGING_HANDLERS_CONSOLE_CLASS"].rsplit(".", 1)[1]
    handlers = logging.getLogger().handlers  # Prefect's console handler is the root's
    if not any(type(handler).__name__ == wanted for handler in handlers):
        setup_logging(incremental=False)
