"""The ``energy-flows`` command: the same code paths as the notebooks, for terminals.

Learner and instructor commands only; the developers' tools (screenshots,
re-executing the lessons) live in ``tools/`` of the checkout (``make screenshots``,
``make notebooks``).

Each sub-command is implemented in the module that owns the behaviour and
imported only when used, so ``energy-flows status`` answers without paying
for ``import prefect``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

from energy_flows import options
from energy_flows.errors import EnergyFlowsError

# sub-command -> (module, function, help). The function takes the parsed args
# and returns an exit code.
_COMMANDS: dict[str, tuple[str, str, str]] = {
    "lab": (
        "energy_flows.lab",
        "run_lab",
        "start JupyterLab on your copy of the lessons (Ctrl-C stops everything)",
    ),
    "up": (
        "energy_flows.services.commands",
        "up",
        "start the Prefect server (and workers) for this home",
    ),
    "down": (
        "energy_flows.services.commands",
        "down",
        "stop every worker, then the server (then its PostgreSQL), of this home",
    ),
    "status": ("energy_flows.services.commands", "status", "show what runs for this home"),
    "logs": (
        "energy_flows.services.commands",
        "logs",
        "show the last lines of the server's or a worker's log",
    ),
    "reset": (
        "energy_flows.services.commands",
        "reset",
        "stop everything and delete this home's state",
    ),
    "tour": (
        "energy_flows.tour",
        "run_tour",
        "run the original walkthrough headless (instructor check)",
    ),
    "check": ("energy_flows.check", "run_check", "check this machine is ready for the lessons"),
    "student": (
        "energy_flows.student",
        "run_student",
        "write the lessons without their solutions into DIR, to hand out (instructors)",
    ),
}


def _checked(check: Callable[[str], Any], name: str) -> Callable[[str], Any]:
    """An argparse type from one of :mod:`energy_flows.options`' checks: its sentence, as usage error.

    argparse then prints the usage and the sentence and exits with status 2,
    before the command starts anything.
    """

    def convert(text: str) -> Any:
        try:
            return check(text)
        except EnergyFlowsError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = name  # argparse names the type in its own messages
    return convert


def _port(flag: str, example: int) -> Callable[[str], Any]:
    return _checked(lambda text: options.check_port(text, flag, example), "port")


_SECONDS = _checked(lambda text: options.check_seconds(text, "--timeout"), "seconds")
_LINES = _checked(lambda text: options.check_count(text, "--tail", 40), "lines")


def _worker_spec(text: str) -> str:
    """``POOL/QUEUE`` checked, kept as written (``up`` splits it)."""
    options.split_worker_spec(text)
    return text


_WORKER = _checked(_worker_spec, "POOL/QUEUE")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="energy-flows",
        description="Prefect orchestration lessons on energy data. All commands honour ENERGY_FLOWS_HOME.",
    )
    parser.add_argument(
        "--home",
        help="state folder (default: $ENERGY_FLOWS_HOME, else .energy_flows/ of this checkout, "
        "else ~/.energy_flows)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_module, _func, help_text) in _COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        _add_arguments(name, p)
    return parser


def _add_arguments(name: str, p: argparse.ArgumentParser) -> None:
    if name == "lab":
        p.add_argument(
            "--port",
            type=_port("--port", 8888),
            default=8888,
            help="JupyterLab port (default 8888, or the next free one)",
        )
        p.add_argument("--no-browser", action="store_true", help="do not open a browser")
        p.add_argument(
            "--notebook-dir",
            default=None,
            help="folder to open as it is (default: your working copy my-lessons/)",
        )
        p.add_argument(
            "--reset",
            nargs="+",
            metavar="LESSON",
            help="put the original of these lessons back in my-lessons/ and exit, e.g. "
            "--reset 05 (your copy is kept in my-lessons/backups/)",
        )
    elif name == "up":
        p.add_argument(
            "--port",
            type=_port("--port", 4200),
            default=None,
            help="server port (default 4200, or a free one)",
        )
        p.add_argument(
            "--worker",
            action="append",
            type=_WORKER,
            default=[],
            metavar="POOL/QUEUE",
            help="also start a worker for this pool and queue (repeatable)",
        )
        p.add_argument("--timeout", type=_SECONDS, default=90.0, help="seconds to wait for health")
        p.add_argument(
            "--database",
            default=None,
            metavar="sqlite|postgres|URL",
            help="the server's database: sqlite (default), postgres (a PostgreSQL started for "
            "this home), or the postgresql+asyncpg:// URL of an existing one (default: "
            "$ENERGY_FLOWS_DATABASE_URL, else sqlite)",
        )
        p.add_argument(
            "--auth",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="the server asks every API call for the home's password (user:password, "
            "made once and kept in <home>/state/auth): for a server a class shares. "
            "Default: on under JupyterHub (other users share the machine), off on a "
            "laptop, or as $ENERGY_FLOWS_AUTH (on/off) says",
        )
        p.add_argument(
            "--server",
            default=None,
            metavar="API_URL",
            help="start no server: the --worker's join the server at this address (e.g. "
            "http://10.0.0.5:4200/api), with the password in $PREFECT_API_AUTH_STRING if it asks "
            "for one",
        )
        p.add_argument(
            "--postgres-port",
            type=_port("--postgres-port", 5432),
            default=None,
            help="port of the PostgreSQL started with --database postgres (default: a free one)",
        )
    elif name == "logs":
        p.add_argument(
            "which",
            nargs="?",
            default="server",
            help="'server', 'postgres' or a worker's name (default: server)",
        )
        p.add_argument("-n", "--tail", type=_LINES, default=40, help="number of lines (default 40)")
    elif name == "reset":
        p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    elif name == "tour":
        p.add_argument("--timeout", type=_SECONDS, default=120.0, help="overall limit in seconds")
    elif name == "student":
        p.add_argument(
            "folder",
            metavar="DIR",
            help="folder to write the lessons into (new, empty, or an earlier student edition)",
        )
        p.add_argument(
            "--force",
            action="store_true",
            help="write into a folder that is not empty anyway (only the lessons' files are "
            "replaced; nothing is deleted)",
        )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.home:
        import os

        os.environ["ENERGY_FLOWS_HOME"] = args.home
    module, func, _help = _COMMANDS[args.command]
    try:
        return int(getattr(importlib.import_module(module), func)(args) or 0)
    except EnergyFlowsError as exc:
        print(f"energy-flows {args.command}: {exc}", file=sys.stderr)
        return 1
    except EOFError:  # a question, and no terminal (or an empty pipe) to answer it
        confirm = " Pass --yes to confirm without a question." if "yes" in args else ""
        print(
            f"\nenergy-flows {args.command}: it asks for a confirmation, but nothing answered "
            f"(no terminal).{confirm} Nothing was changed.",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
