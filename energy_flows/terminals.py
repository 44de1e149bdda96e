"""The terminals of lesson 08: plain Prefect, in a Prefect home of the course's.

Lesson 08 has the learner type the walkthrough into three terminals with
nothing but Prefect. Those terminals must not write into the learner's own
``~/.prefect`` (its profiles, its database), and must not inherit the
course's own Prefect settings either: the lesson shows what plain Prefect
does. So a terminal gets:

* ``PREFECT_HOME`` = :func:`prefect_home` (``<home>/walkthrough/prefect``):
  the profile that ``prefect config set`` writes and the server's database
  live there, and nowhere else;
* no other ``PREFECT_*`` variable: the course's (Late after 5 s, workers
  polling every second, results persisted ...) and any the learner exported
  are dropped, so the profile alone decides, as on a laptop;
* for an offline classroom, no telemetry (:data:`KEPT`), and the server's
  copy of its dashboard under that home instead of inside the installed
  package: nothing the lesson shows changes;
* on a machine several users share (a JupyterHub, see
  :func:`energy_flows.settings.auth_by_default`), the home's password as both
  ``PREFECT_SERVER_API_AUTH_STRING`` and ``PREFECT_API_AUTH_STRING``: the
  server a learner starts by hand asks for it, and their ``prefect`` commands
  and workers send it, so no other user of the machine can use that server.

``energy-flows lab`` (and Binder, see ``binder/postBuild``) make JupyterLab
start each terminal through :func:`shell_command`: ``python -m
energy_flows.terminals shell`` sets that environment and *replaces itself*
with the learner's shell, so nothing of this package runs in the terminal
afterwards. Anywhere else (JupyterHub, a laptop) the lesson prints the one
``export`` line that does the same (:func:`export_line`).

:func:`started_by_hand` finds what the terminals started (servers, workers,
flow runs) by the ``PREFECT_HOME`` in each process's environment, and
:func:`read_profile` reads the profile ``prefect config set`` wrote. Only
the standard library and psutil are imported here: a terminal opens at once.
"""

from __future__ import annotations

import json
import os
import sys
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from energy_flows import settings
from energy_flows.errors import EnergyFlowsError

#: The folder of the course home that belongs to the walkthrough by hand.
WALKTHROUGH_NAME = "walkthrough"

#: Variables the terminals keep from the course (an offline classroom; nothing a lesson shows).
KEPT = ("PREFECT_SERVER_ANALYTICS_ENABLED", "DO_NOT_TRACK")

#: Variables of the course's environment that only make its logs plain; a terminal has colours.
_LOG_ONLY = ("NO_COLOR",)

#: The port lesson 08 suggests for the learner's server (the lessons' own server uses 4200).
SUGGESTED_PORT = 4300


def prefect_home(home: str | os.PathLike[str] | None = None) -> Path:
    """The terminals' ``PREFECT_HOME``: ``<course home>/walkthrough/prefect``.

    ``home`` is the course home (default: :func:`energy_flows.settings.home_dir`,
    the same one the lessons' kernels use).
    """
    return settings.home_dir(home) / WALKTHROUGH_NAME / "prefect"


def terminal_env(
    environ: Mapping[str, str], home: str | os.PathLike[str] | None = None
) -> dict[str, str]:
    """The environment of a lesson-08 terminal, made from ``environ`` (JupyterLab's).

    Every ``PREFECT_*`` variable is dropped but :data:`KEPT`; ``PREFECT_HOME``
    points at :func:`prefect_home` and ``PREFECT_UI_STATIC_DIRECTORY`` at a
    folder of it (Prefect copies its dashboard there when the server starts;
    by default it writes into the installed package, which a shared install
    may not allow). ``PATH`` and everything else stay, so ``prefect`` is the
    one of this environment.
    """
    env = {
        key: value
        for key, value in environ.items()
        if not (key.startswith("PREFECT_") and key not in KEPT) and key not in _LOG_ONLY
    }
    # The home is the course's: the one the kernels use, whatever the terminal's cwd.
    env.setdefault("ENERGY_FLOWS_HOME", str(settings.home_dir(home)))
    folder = prefect_home(env["ENERGY_FLOWS_HOME"])
    env["PREFECT_HOME"] = str(folder)
    env["PREFECT_UI_STATIC_DIRECTORY"] = str(folder / "ui")
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.setdefault("DO_NOT_TRACK", "1")
    secret = settings.auth_string(env["ENERGY_FLOWS_HOME"])
    if secret and settings.auth_by_default(environ):
        # Other users share this machine's loopback: the hand-started server asks for it.
        env["PREFECT_SERVER_API_AUTH_STRING"] = secret
        env["PREFECT_API_AUTH_STRING"] = secret
    return env


def shell_command() -> list[str]:
    """What JupyterLab runs for each new terminal (its ``terminado_settings.shell_command``)."""
    return [sys.executable, "-m", "energy_flows.terminals", "shell"]


def jupyter_config() -> dict[str, Any]:
    """The Jupyter server configuration that opens every terminal with :func:`shell_command`."""
    return {"ServerApp": {"terminado_settings": {"shell_command": shell_command()}}}


def export_line(home: str | os.PathLike[str] | None = None) -> str:
    """The line to type in a terminal that ``energy-flows lab`` did not open."""
    folder = prefect_home(home)
    return f'mkdir -p "{folder}" && export PREFECT_HOME="{folder}"'


def _user_shell(environ: Mapping[str, str]) -> str:
    """The learner's shell: ``$SHELL`` if it exists, else bash, else sh."""
    for candidate in (environ.get("SHELL", ""), "/bin/bash", "/bin/sh"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return "sh"


def _make_password(environ: Mapping[str, str]) -> None:
    """On a shared machine, make the home's password (once, 0600) if no lesson has yet.

    A terminal opens whatever happens: a home that cannot be written is said, not raised.
    """
    try:
        if settings.auth_by_default(environ):
            home = settings.ensure_home(environ.get("ENERGY_FLOWS_HOME") or None)
            settings.save_auth_string(home=home)
    except (OSError, EnergyFlowsError) as exc:
        print(
            f"energy-flows: no password for this terminal's Prefect server: {exc}", file=sys.stderr
        )


def exec_shell(environ: Mapping[str, str] | None = None) -> None:
    """Become the learner's interactive shell, in the terminals' environment.

    Not a login shell: a login shell reads ``/etc/profile``, which on some
    systems sets ``PATH`` anew and would hide this environment's ``prefect``.
    The Prefect home is created first (Prefect warns when its parent is missing).
    """
    environ = dict(os.environ if environ is None else environ)
    _make_password(environ)
    env = terminal_env(environ)
    folder = Path(env["PREFECT_HOME"])
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    shell = _user_shell(environ)
    os.execvpe(shell, [shell], env)


# --------------------------------------------------------------------------- the profile


@dataclass(frozen=True)
class Profile:
    """The active Prefect profile of the terminals' home, as ``profiles.toml`` holds it."""

    path: Path
    name: str | None
    settings: dict[str, str] = field(default_factory=dict)

    @property
    def api_url(self) -> str | None:
        """``PREFECT_API_URL`` of the active profile (None when unset)."""
        value = self.settings.get("PREFECT_API_URL")
        return str(value) if value else None


def read_profile(home: str | os.PathLike[str] | None = None) -> Profile:
    """The active profile that ``prefect config set`` wrote in the terminals' home.

    Prefect keeps its profiles in ``$PREFECT_HOME/profiles.toml``: ``active``
    names one, ``[profiles.NAME]`` holds its settings. With no file yet (no
    ``prefect config set`` typed), ``name`` is None and ``settings`` empty.
    """
    path = prefect_home(home) / "profiles.toml"
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return Profile(path, None)
    name = data.get("active")
    profiles = data.get("profiles", {})
    values = profiles.get(name, {}) if isinstance(profiles, dict) and name else {}
    return Profile(path, name, {str(k): str(v) for k, v in dict(values).items()})


# --------------------------------------------------------------------------- the processes


@dataclass(frozen=True)
class HandStarted:
    """One Prefect process started from a terminal: a server, a worker or a flow run."""

    role: str
    pid: int
    command: str
    ports: tuple[int, ...] = ()
    options: dict[str, str] = field(default_factory=dict)
    prefect_home: str = ""
    flow_run_id: str | None = None
    #: The course home in its environment (None: started outside ``energy-flows lab`` and Binder).
    course_home: str | None = None
    #: Whether a JupyterLab terminal started it (terminals set ``JUPYTER_SERVER_ROOT``).
    in_jupyter_terminal: bool = False

    @property
    def how_to_stop(self) -> str:
        """What stops it, in the learner's words."""
        if self.role == "server":
            return "Ctrl-C in the terminal that runs it (terminal 1), after the workers"
        if self.role == "worker":
            return "Ctrl-C in the terminal that runs it (terminal 3)"
        if self.role == "flow run":
            return f"it ends with its run; if its worker is gone: `kill {self.pid}`"
        return f"Ctrl-C in its terminal, or `kill {self.pid}`"


def _role(argv: Sequence[str]) -> str | None:
    """``server``, ``worker``, ``flow run`` or ``command`` for a Prefect process; None otherwise."""
    words = list(argv)
    if "prefect.engine" in words:
        return "flow run"
    prefect_at = [i for i, word in enumerate(words[:4]) if Path(word).name == "prefect"]
    if not prefect_at:
        return None
    rest = words[prefect_at[0] + 1 :]
    rest = [word for word in rest if not word.startswith("--")]
    if rest[:2] == ["server", "start"]:
        return "server"
    if rest[:2] == ["worker", "start"]:
        return "worker"
    if rest[:2] == ["flow-run", "execute"]:
        return "flow run"
    return "command"


def _options(argv: Sequence[str]) -> dict[str, str]:
    """``--pool by-hand`` and ``--pool=by-hand`` (and the short ``-p``, ``-q``) as a dict."""
    short = {"-p": "--pool", "-q": "--work-queue"}
    found: dict[str, str] = {}
    words = list(argv)
    for i, word in enumerate(words):
        if word.startswith("--") and "=" in word:
            key, _, value = word.partition("=")
            found[key] = value
        elif (word.startswith("--") or word in short) and i + 1 < len(words):
            if not words[i + 1].startswith("-"):
                found[short.get(word, word)] = words[i + 1]
    return found


def prefect_processes() -> list[HandStarted]:
    """Every Prefect process of this user that a shell started (not this package's).

    The package starts its own through ``energy_flows.services.launch``; those
    are left out. Each entry carries the ``PREFECT_HOME`` it runs with.
    """
    import psutil

    from energy_flows.services.process import listening_ports

    found = []
    me = os.getpid()
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        argv = proc.info["cmdline"] or []
        if proc.pid == me or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if any("energy_flows" in word for word in argv):
            continue
        role = _role(argv)
        if role is None:
            continue
        try:
            env = proc.environ()
        except (psutil.Error, OSError):
            continue
        found.append(
            HandStarted(
                role=role,
                pid=proc.pid,
                command=" ".join(argv),
                ports=tuple(sorted(listening_ports(proc.pid))) if role == "server" else (),
                options=_options(argv),
                prefect_home=env.get("PREFECT_HOME", ""),
                flow_run_id=env.get("PREFECT__FLOW_RUN_ID"),
                course_home=env.get("ENERGY_FLOWS_HOME"),
                in_jupyter_terminal="JUPYTER_SERVER_ROOT" in env,
            )
        )
    return found


def started_by_hand(home: str | os.PathLike[str] | None = None) -> list[HandStarted]:
    """The Prefect processes that run with the terminals' ``PREFECT_HOME``, servers first."""
    folder = str(prefect_home(home))
    order = {"server": 0, "worker": 1, "flow run": 2, "command": 3}
    mine = [p for p in prefect_processes() if p.prefect_home.rstrip(os.sep) == folder]
    return sorted(mine, key=lambda p: (order.get(p.role, 9), p.pid))


def write_jupyter_config(path: Path) -> None:
    """Add :func:`jupyter_config` to the Jupyter server configuration file ``path`` (JSON).

    What the file already holds is kept; only ``ServerApp.terminado_settings``
    changes. A Jupyter server reads ``jupyter_server_config.json`` from each
    folder of its configuration path, e.g. ``<environment>/etc/jupyter/``
    (the ``.d`` folders beside it are read for enabling extensions only).
    """
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        config = {}
    if not isinstance(config, dict):
        config = {}
    server = config.setdefault("ServerApp", {})
    server.setdefault("terminado_settings", {}).update(
        jupyter_config()["ServerApp"]["terminado_settings"]
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m energy_flows.terminals shell`` (JupyterLab's terminals) or ``jupyter-config [FILE]``.

    ``jupyter-config`` prints the configuration; with ``FILE`` it adds it to
    that ``jupyter_server_config.json`` (Binder's ``postBuild`` does).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["shell"]:
        exec_shell()
        return 0  # pragma: no cover - exec_shell does not return
    if args == ["jupyter-config"]:
        print(json.dumps(jupyter_config(), indent=2))
        return 0
    if len(args) == 2 and args[0] == "jupyter-config":
        write_jupyter_config(Path(args[1]))
        return 0
    print("usage: python -m energy_flows.terminals {shell|jupyter-config [FILE]}", file=sys.stderr)
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
