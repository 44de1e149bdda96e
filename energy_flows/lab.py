"""`energy-flows lab` (and `make lab`): JupyterLab on the lessons, with the classroom environment.

JupyterLab is started by the package's one spawn function, tied to this
command: Ctrl-C (or SIGTERM) here stops JupyterLab, JupyterLab stops its
kernels, and each kernel's end stops the servers and workers its lessons
started (their watchdogs see the kernel go). Whatever a kernel-owned
service still runs after that is stopped here too, so nothing is left.
A server started in a terminal with `energy-flows up` is left alone: it
runs until `energy-flows down`.

Learners work on their own copy of the lessons. JupyterLab opens
``my-lessons/`` at the top of the repository (``$ENERGY_FLOWS_MY_LESSONS`` if
set), never ``notebooks/``: autosave and half-run lessons stay out of the
tracked files, so ``git pull`` and the notebook tests keep working. The copy
is made on the first start; a lesson added to ``notebooks/`` later is copied
in on the next start; a lesson already in the copy is never overwritten.
``python -m energy_flows.lab --reset 05`` (or :func:`reset_lesson`) puts the
original of one lesson back and keeps the learner's copy in
``my-lessons/backups/``. ``--notebook-dir DIR`` opens ``DIR`` as it is.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from energy_flows import settings, terminals
from energy_flows.errors import EnergyFlowsError
from energy_flows.jupyter import proxy_auth
from energy_flows.services import database, process
from energy_flows.services.server import port_is_free
from energy_flows.waiting import wait_until

#: Seconds JupyterLab gets to shut its kernels down before it is killed.
LAB_STOP_GRACE = 20.0


#: The learner's working copy of the lessons, next to ``notebooks/`` (untracked: .gitignore).
WORKING_COPY_NAME = "my-lessons"
#: Set to keep the working copy somewhere else (a test, a shared read-only install).
WORKING_COPY_VARIABLE = "ENERGY_FLOWS_MY_LESSONS"
#: The folder of the working copy that keeps the copies :func:`reset_lesson` replaced.
BACKUPS_NAME = "backups"


def lessons_dir() -> Path:
    """The original lessons: ``notebooks/`` next to the package in a checkout, else the cwd's.

    The one place the package looks for the lessons (``energy-flows lab``, the
    working copy, ``energy-flows student``).
    """
    here = Path(__file__).resolve().parents[1] / "notebooks"
    return here if here.is_dir() else Path.cwd() / "notebooks"


def working_copy_dir(source: Path | None = None) -> Path:
    """Where the learner's copy of the lessons lives.

    ``$ENERGY_FLOWS_MY_LESSONS`` if set, else ``my-lessons/`` next to the
    original lessons (``source``, default ``notebooks/``): the top of the repository.
    """
    configured = os.environ.get(WORKING_COPY_VARIABLE, "").strip()
    if configured:
        return Path(configured).expanduser().resolve()
    return (source or lessons_dir()).resolve().parent / WORKING_COPY_NAME


def _originals(source: Path) -> list[Path]:
    """What the working copy mirrors: ``source``'s files and folders.

    Hidden ones aside, and what the lessons' cells write there when they run in
    ``source`` itself (the notebook tests do): that is a learner's work, not a lesson.
    """
    if not source.is_dir():
        raise EnergyFlowsError(
            f"The lessons are not where they should be ({source}). Run this from the top "
            "of the energy-flows repository, or pass --notebook-dir."
        )
    from energy_flows.lessons import WRITTEN_BY_LESSONS

    return sorted(
        p
        for p in source.iterdir()
        if not p.name.startswith(".") and p.name not in WRITTEN_BY_LESSONS
    )


def sync_working_copy(
    source: Path, copy: Path, say: Callable[[str], object] | None = print
) -> list[Path]:
    """Copy into ``copy`` each lesson of ``source`` that it lacks; return what was copied.

    Makes the working copy on the first call. Later calls copy only what is new
    in ``source`` (a lesson added by ``git pull``); a file already in ``copy``
    is never touched, however it was edited. ``say`` reports what was done.
    """
    first_time = not copy.exists()
    copy.mkdir(parents=True, exist_ok=True)
    added = []
    for original in _originals(source):
        target = copy / original.name
        if target.exists():
            continue
        if original.is_dir():
            shutil.copytree(original, target, copy_function=shutil.copyfile)
        else:
            # copyfile, not copy2: the copy is the learner's, writable even
            # when the originals are read-only.
            shutil.copyfile(original, target)
        added.append(target)
    if say is not None:
        if first_time:
            say(
                f"Made your copy of the lessons in {copy} (the originals in {source} stay as they are)."
            )
        elif added:
            names = ", ".join(p.name for p in added)
            say(f"Copied the new lesson(s) {names} into {copy}; your other lessons are untouched.")
    return added


def reset_lesson(
    lesson: str | int,
    copy: Path | None = None,
    source: Path | None = None,
    say: Callable[[str], object] | None = print,
) -> Path:
    """Put the original of one lesson back in the working copy; return its path.

    ``lesson`` is a number or name (``"05"``, ``5``, ``"05_agents_and_workers"``).
    The learner's copy is not lost: it moves to ``backups/`` in the working
    copy, named with the time, e.g. ``backups/05_agents_and_workers.20250301-142501.ipynb``.
    ``say`` reports what was done. A lesson that is open in JupyterLab shows
    the old text until its tab is closed and opened again.
    """
    from energy_flows.lessons import lesson_number

    source = (source or lessons_dir()).resolve()
    copy = (copy or working_copy_dir(source)).resolve()
    number = lesson_number(lesson)
    matches = [p for p in _originals(source) if p.suffix == ".ipynb" and p.name[:2] == number]
    if not matches:
        known = ", ".join(p.name[:2] for p in _originals(source) if p.suffix == ".ipynb")
        raise EnergyFlowsError(f"There is no lesson {number} in {source} (lessons: {known}).")
    original = matches[0]
    target = copy / original.name
    copy.mkdir(parents=True, exist_ok=True)
    if target.exists() and target.read_bytes() == original.read_bytes():
        if say is not None:
            say(f"{target} is the original already: nothing to reset.")
        return target
    if target.exists():
        backups = copy / BACKUPS_NAME
        backups.mkdir(exist_ok=True)
        backup = process.timestamped_path(backups, target.stem, target.suffix)
        target.replace(backup)
        if say is not None:
            say(f"Kept your copy of lesson {number} as {backup}.")
    shutil.copyfile(original, target)
    if say is not None:
        say(
            f"{target} is the original lesson again. If it is open in JupyterLab, "
            "close its tab and open it again."
        )
    return target


def free_port(preferred: int, host: str = "127.0.0.1") -> int:
    """``preferred`` if nothing listens there, else the next free port above it."""
    for port in range(preferred, preferred + 100):
        if port_is_free(port, host):
            return port
    raise OSError(f"No free port between {preferred} and {preferred + 99}.")


#: JupyterLab's own defaults that ``energy-flows lab`` changes, per plugin (the schemas are in
#: ``share/jupyter/lab/schemas/``). JupyterLab 4 asks "Would you like to get notified about
#: official Jupyter news?" on the first start while ``fetchNews`` is ``"none"`` (its default);
#: ``"false"`` is the "No" answer. ``--LabApp.news_url=None`` alone stops the fetching,
#: not the question.
LAB_DEFAULTS: dict[str, dict[str, object]] = {
    "@jupyterlab/apputils-extension:notification": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}

#: The folder of the home that holds JupyterLab's application settings for ``energy-flows lab``.
LAB_SETTINGS_NAME = "jupyterlab-settings"
#: The file in that folder's ``overrides.d/`` with :data:`LAB_DEFAULTS`.
LAB_DEFAULTS_FILE = "energy-flows.json"


def lab_settings_dir(home: Path) -> Path:
    """Make the application settings folder ``energy-flows lab`` gives JupyterLab; return it.

    JupyterLab reads *overrides* of its settings' defaults from its application
    settings folder (``--LabApp.app_settings_dir``). This one is a fresh copy of
    the installation's (``$JUPYTERLAB_DIR/settings``, else
    ``<environment>/share/jupyter/lab/settings``; usually absent) with
    :data:`LAB_DEFAULTS` added as ``overrides.d/energy-flows.json``; an
    ``overrides.json`` of the installation is read after it and wins. The
    learner's own settings (``~/.jupyter/lab/user-settings``) are never
    touched, and win over both: a learner can still turn the news on.
    """
    # JupyterLab's rule (jupyterlab.commands.get_app_dir), for a virtualenv or
    # conda environment; importing jupyterlab here would cost seconds.
    app_dir = os.environ.get("JUPYTERLAB_DIR") or str(Path(sys.prefix, "share", "jupyter", "lab"))
    installed = Path(app_dir) / "settings"
    target = home / LAB_SETTINGS_NAME
    if target.exists():
        shutil.rmtree(target)
    if installed.is_dir():
        shutil.copytree(installed, target, copy_function=shutil.copyfile)
    overrides = target / "overrides.d"
    overrides.mkdir(parents=True, exist_ok=True)
    (overrides / LAB_DEFAULTS_FILE).write_text(json.dumps(LAB_DEFAULTS, indent=2) + "\n")
    return target


def lab_command(
    port: int,
    notebook_dir: Path,
    open_browser: bool,
    token: str | None = None,
    settings_dir: Path | None = None,
) -> list[str]:
    """The ``jupyter lab`` command line: loopback only, offline, ``notebook_dir`` as root.

    Its terminals open through :func:`energy_flows.terminals.shell_command`:
    plain Prefect, in the course's Prefect home for lesson 08 (the kernels
    are not affected: they set their own Prefect environment).

    ``token`` fixes the access token (a browser test needs to know it);
    otherwise JupyterLab makes one (or takes ``JUPYTER_TOKEN``).
    ``settings_dir`` is the application settings folder (:func:`lab_settings_dir`).
    """
    argv = [
        sys.executable,
        "-m",
        "jupyterlab",
        f"--ServerApp.port={port}",
        "--ServerApp.ip=127.0.0.1",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={notebook_dir}",
        # Offline classroom: no update checks, no news feed, no PyPI lookups.
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.news_url=None",
        "--LabApp.extension_manager=readonly",
    ]
    if settings_dir is not None:
        argv.append(f"--LabApp.app_settings_dir={settings_dir}")
    # The owner's Prefect UI through JupyterLab's proxy opens without a password (proxy_auth.py).
    argv.append(proxy_auth.JUPYTER_ARGUMENT)
    if os.name != "nt":
        # Lesson 08's terminals: plain Prefect in a Prefect home of the course's (terminals.py).
        # (Windows terminals run PowerShell; there the lesson says what to type instead.)
        shell = json.dumps(terminals.shell_command())
        argv.append(f"--ServerApp.terminado_settings=shell_command={shell}")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # Containers and CI machines often run as root; Jupyter refuses that by default.
        argv.append("--allow-root")
    if not open_browser:
        argv.append("--no-browser")
    if token is not None:
        argv.append(f"--IdentityProvider.token={token}")
    return argv


def lab_url(port: int, token: str) -> str:
    """The address a learner opens: JupyterLab on loopback, logged in by its token."""
    return f"http://127.0.0.1:{port}/lab?token={token}"


def lab_answers(port: int, token: str) -> bool | None:
    """Whether JupyterLab on ``port`` has started, and takes ``token``.

    ``True``: it answers and the token works. ``None``: it answers, but not
    to this token (a token or password set in the learner's own Jupyter
    configuration wins). ``False``: not yet (still starting).

    JupyterLab answers only once it has written its start-up messages, but for
    one: jupyter-lsp looks for language servers in the background and says what
    it skipped in one more line. Its ``/lsp/status`` answers once that is done,
    so this waits for it too (up to 30 s; a JupyterLab without it answers 404).
    """
    # No proxy: a classroom's http_proxy must not catch a loopback address.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    headers = {"Authorization": f"token {token}"}

    def get(path: str, timeout: float) -> int:
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)
        try:
            with opener.open(request, timeout=timeout) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code
        except OSError:
            return 0

    status = get("/api/status", 2)
    if status in (401, 403):
        return None
    if status != 200:
        return False
    get("/lsp/status", 30)
    return True


def ready_message(port: int, token: str, token_works: bool = True) -> list[str]:
    """What ``energy-flows lab`` prints once JupyterLab answers; the address is the last line."""
    lines = [
        "",
        "JupyterLab is ready. Ctrl-C here stops it and everything the lessons started.",
    ]
    if token_works:
        lines += ["Open your lessons in a browser (copy the whole line, token included):", ""]
        lines.append("    " + lab_url(port, token))
    else:
        lines += [
            "Your Jupyter configuration sets its own token or password; log in with it at:",
            "",
            f"    http://127.0.0.1:{port}/lab",
        ]
    return lines


def stop_kernel_services(home: Path) -> list[str]:
    """Stop what kernels of this home still run (CLI-started services stay), workers first."""
    from energy_flows.services.control import stop_all

    return stop_all(home, quiet=True, owners=("kernel",))


def run_lab(args: argparse.Namespace) -> int:
    """Start JupyterLab, wait for Ctrl-C or SIGTERM, then stop everything it started."""
    home = settings.ensure_home()
    notebook_dir = _lesson_folder(args)
    if notebook_dir is None:
        return 0
    port = free_port(args.port)
    if port != args.port:
        print(f"Port {args.port} is taken by another program; JupyterLab uses {port}.")
    # Kernels inherit this environment: they find the home, stay offline and
    # write no colour codes into the logs of what they start. The token goes
    # to JupyterLab in its environment (not on its command line, which every
    # user of the machine can read), so this command can print the address.
    token = os.environ.get("JUPYTER_TOKEN") or secrets.token_hex(24)
    env = settings.classroom_env(home, extra={"JUPYTER_TOKEN": token})
    argv = lab_command(
        port,
        notebook_dir,
        open_browser=not args.no_browser,
        settings_dir=lab_settings_dir(home),
    )
    print(f"Starting JupyterLab on http://127.0.0.1:{port}/lab (home: {home}) ...")
    sys.stdout.flush()

    # SIGTERM (e.g. from a process manager) means the same as Ctrl-C. Ctrl-C
    # is set explicitly too: a shell that starts a command in the background
    # hands it SIGINT ignored, and Python then never raises KeyboardInterrupt.
    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)
    options = process.SpawnOptions(grace=LAB_STOP_GRACE, cwd=str(notebook_dir))
    lab = process.spawn(argv, env, None, options)
    try:
        return _serve(lab, port, token)
    finally:
        _stop_everything(lab, home)


def _lesson_folder(args: argparse.Namespace) -> Path | None:
    """The folder JupyterLab opens: the learner's copy, kept in step; None after ``--reset``."""
    if args.notebook_dir:
        return Path(args.notebook_dir).resolve()
    source = lessons_dir()
    notebook_dir = working_copy_dir(source)
    sync_working_copy(source, notebook_dir)
    reset = getattr(args, "reset", None)  # `energy-flows lab --reset 05`, where offered
    if not reset:
        return notebook_dir
    for lesson in [reset] if isinstance(reset, str | int) else reset:
        reset_lesson(lesson, notebook_dir, source)
    return None


def _serve(lab: process.Spawned, port: int, token: str) -> int:
    """Print the address once JupyterLab answers; return when it ends (1) or on Ctrl-C (0)."""
    try:
        # While JupyterLab opens: the empty database new homes copy (once per
        # Prefect version; `make setup` has usually built it already).
        database.ensure_template(say=print)
        announced = False
        while lab.alive():
            if not announced:
                # JupyterLab serves requests only after its own start-up messages:
                # the address printed now is the last thing in the terminal.
                answer = lab_answers(port, token)
                if answer is not False:
                    print("\n".join(ready_message(port, token, token_works=bool(answer))))
                    sys.stdout.flush()
                    announced = True
                    continue
            time.sleep(0.5)
        print("JupyterLab stopped by itself; see its messages above.")
        return 1
    except KeyboardInterrupt:
        print("\nStopping JupyterLab and its kernels ...", flush=True)
        return 0


def _stop_everything(lab: process.Spawned, home: Path) -> None:
    """JupyterLab, then what its kernels still run (workers before servers)."""
    # Ignore a second Ctrl-C while cleaning up: half a clean-up is worse.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    lab.stop(timeout=LAB_STOP_GRACE + 5)
    # Give the kernels' watchdogs a moment, then stop what is left.
    with contextlib.suppress(Exception):
        wait_until(lambda: not _kernel_services_alive(home), 5, what="the lessons' services")
    for line in stop_kernel_services(home):
        print(line)
    print("Everything is stopped.")


def _kernel_services_alive(home: Path) -> bool:
    from energy_flows.services.registry import live_records

    return any(r.owner != "cli" for r in live_records(home))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m energy_flows.lab [--reset NN ...] [energy-flows lab options]``.

    ``--reset 05`` puts the original of lesson 05 back in the working copy
    (keeping the learner's as a backup) and exits; without it, this is
    ``energy-flows lab``.
    """
    parser = argparse.ArgumentParser(
        prog="python -m energy_flows.lab",
        description="JupyterLab on your copy of the lessons; --reset puts a lesson's original back.",
    )
    parser.add_argument(
        "--reset",
        nargs="+",
        metavar="LESSON",
        help="lesson number(s) to reset to the original, e.g. --reset 05 (your copy is kept "
        "in my-lessons/backups/)",
    )
    args, rest = parser.parse_known_args(argv)
    if args.reset:
        try:
            for lesson in args.reset:
                reset_lesson(lesson)
        except (EnergyFlowsError, ValueError) as exc:
            print(f"energy-flows lab: {exc}", file=sys.stderr)
            return 1
        return 0
    os.environ.setdefault("ENERGY_FLOWS_HOME", str(settings.home_dir()))
    from energy_flows.cli import main as cli_main

    return cli_main(["lab", *rest])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
