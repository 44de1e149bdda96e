"""The lessons: what their first cell prepares, and the helpers their cells call.

* :func:`lesson_setup` is what a lesson's first cell calls. It starts (or
  reuses) the classroom Prefect server and creates, idempotently, what the
  earlier lessons would have created (the work pool, the ``energy_usage``
  queue, the deployment), so a learner can start at any lesson.
* :func:`use_prefect_command` (called by :func:`lesson_setup`): ``!prefect ...``
  in a cell runs Prefect's own command of this environment.
* :func:`wait_until_late`, :func:`ui_tour` and :func:`ui_link`,
  :func:`leftovers`: what the lessons' cells show.

Re-executing the lessons and storing their outputs (``make notebooks``) is a
development tool of the checkout: ``tools/execute_lessons.py``.
"""

from __future__ import annotations

import contextlib
import html
import importlib
import logging
import os
import re
import shlex
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from energy_flows import kernel_server
from energy_flows.errors import EnergyFlowsError

if TYPE_CHECKING:
    from energy_flows.services.server import PrefectServer

#: What the lessons' cells write next to the notebooks (lesson 02's flow, lesson 03's
#: prefect.yaml, Python's cache of the flow): the learner's work, not part of the
#: lessons. The working copy (``energy-flows lab``) and the student edition leave them out.
WRITTEN_BY_LESSONS = ("my_energy_flow.py", "prefect.yaml", "__pycache__")

#: What each lesson needs from the lessons before it. Later lessons need
#: everything the earlier ones needed.
_NEEDS: dict[str, tuple[str, ...]] = {
    "00": (),
    "01": ("server",),
    "02": ("server",),
    "03": ("server",),
    "04": ("server", "pool", "deployment"),
    "05": ("server", "pool", "queue", "deployment"),
    "06": ("server", "pool", "queue", "deployment"),
    "07": ("server", "pool", "queue", "deployment", "postgres", "auth"),
}


def lesson_number(name: str | int) -> str:
    """``"04"`` from ``"04"``, ``4``, ``"04_work_queues"`` or ``"04_work_queues.ipynb"``."""
    m = re.match(r"\s*(\d+)", str(name))
    if not m:
        raise ValueError(f"{name!r} is not a lesson: lessons are named NN_topic, e.g. '04'.")
    return f"{int(m.group(1)):02d}"


# --------------------------------------------------------------------------
# The first cell of every lesson
# --------------------------------------------------------------------------


def lesson_setup(lesson: str | int) -> PrefectServer | None:
    """Prepare everything lesson ``lesson`` needs, and return the server.

    Starts the classroom Prefect server for this home, or reuses the one
    already running, and points this kernel at it. Then it creates what
    the earlier lessons would have created, each only if it is missing:

    * from lesson 04 on, the process work pool ``energy-pool`` (lesson 03
      creates it with ``prefect work-pool create``: a deployment names the
      pool its runs go to);
    * from lesson 04 on, the deployment ``energy-usage`` of lesson 03 (which
      also creates the queue ``energy_usage``);
    * from lesson 05 on, the queue ``energy_usage`` explicitly (lesson 04);
    * from lesson 05 on (the lessons that start workers), the automation that
      marks Crashed the runs of a worker that died, whoever started it
      (:func:`~energy_flows.orchestration.ensure_zombie_automation`, lesson 06).

    Lesson 07 runs the server as a class would share it: on PostgreSQL (a
    PostgreSQL started for this home, or the instructor's when
    ``ENERGY_FLOWS_DATABASE_URL`` names one), and with a password
    (``server.auth_string``). If this home's server still runs on SQLite or
    without a password (lesson 06 was not finished), it is stopped, with its
    workers, and started again as lesson 07 needs it; the SQLite database
    stays in the home for the earlier lessons.

    It also makes ``!prefect ...`` in the lesson's cells run Prefect's own
    command against this server (:func:`use_prefect_command`).

    Running it twice, or after the earlier lessons, changes nothing.
    Lesson 00 needs no server and gets ``None``.
    """
    number = lesson_number(lesson)
    if number not in _NEEDS:
        raise EnergyFlowsError(
            f"There is no lesson {number} (lessons: {', '.join(_NEEDS)}). Pass the number at "
            "the start of this notebook's name, e.g. lesson_setup('05') in "
            "05_agents_and_workers.ipynb."
        )
    needs = _NEEDS[number]
    if "server" not in needs:
        return None

    importing = _import_while_server_starts()
    try:
        server = _server_for(needs, number)
    finally:
        importing.join()
    use_prefect_command(server.home)
    # Before each later cell, check the home's server is still this one (kernel_server.py).
    kernel_server.follow(server.home, number)

    from energy_flows import orchestration as orch

    if number in _NEEDS_LATE_RUNS:
        _stop_workers_of_queue(server.home, orch.DEFAULT_POOL, orch.DEFAULT_QUEUE)

    if "pool" in needs:
        orch.ensure_work_pool(orch.DEFAULT_POOL)
    if "queue" in needs:
        orch.ensure_work_queue(orch.DEFAULT_QUEUE, pool=orch.DEFAULT_POOL)
    if "deployment" in needs:
        orch.deploy_energy_flow(orch.DEFAULT_DEPLOYMENT, **LESSON_DEPLOYMENT)
    if number >= "05":
        orch.ensure_zombie_automation()
    return server


#: What the rest of a lesson's first cell imports: Prefect, and the package's modules
#: that talk to the server (pandas with them) and hold the flow it deploys.
_FIRST_CELL_IMPORTS = ("energy_flows.orchestration", "energy_flows.flows")


def _import_while_server_starts() -> threading.Thread:
    """Import Prefect and the package's modules in the background; join the thread returned.

    A server starting in a fresh home keeps one core busy for seconds, while
    this kernel only polls it; then this kernel would import Prefect (about a
    second) and the package's modules before the lesson goes on. Done on the
    other core meanwhile, those seconds are not waited for. The classroom
    settings go into this process's environment first: Prefect reads them
    when it is imported (its home folder among them), and the server's start
    adds its address (``PREFECT_API_URL``) when it answers.
    """
    from energy_flows import settings
    from energy_flows.services import launch

    settings.apply_to_current_process()

    def work() -> None:
        # Only a head start: whatever fails here fails again, with its message, where
        # the cell imports it.
        with contextlib.suppress(Exception):
            launch.prepare_kernel()
            for name in _FIRST_CELL_IMPORTS:
                importlib.import_module(name)

    thread = threading.Thread(target=work, name="energy-flows-imports", daemon=True)
    thread.start()
    return thread


def _server_for(needs: tuple[str, ...], number: str) -> PrefectServer:
    """This home's server, started (again) as a lesson with ``needs`` wants it.

    Lesson 07 wants PostgreSQL and a password: a server that runs on SQLite or
    without one is stopped, with its workers, and started again that way. The
    message says so once, and names the lessons open in other tabs: their next
    cell says their server was stopped, and re-running their first cell
    continues on the new one.
    """
    from energy_flows.services import registry
    from energy_flows.services.postgres import DATABASE_VARIABLE
    from energy_flows.services.server import PrefectServer
    from energy_flows.settings import home_dir

    database = None
    if "postgres" in needs and not os.environ.get(DATABASE_VARIABLE):
        database = "postgres"
    auth = True if "auth" in needs else None
    running = registry.live_server(home_dir())
    now, wanted = [], []
    if running is not None and "postgres" in needs and running.database == "sqlite":
        now, wanted = ["on SQLite"], ["on PostgreSQL"]
    if running is not None and auth and not running.auth:
        now, wanted = [*now, "without a password"], [*wanted, "with a password"]
    if running is not None and now:
        print(
            f"This home's Prefect server runs {' and '.join(now)}: stopping it (and its "
            f"workers) to start it again {' and '.join(wanted)}.{_affected(running.home)}"
        )
        kernel_server.note_stopped(running.home, running.pid, f"lesson {number}")
        PrefectServer(quiet=True).stop()
    return PrefectServer(database=database, auth=auth).start()


def _affected(home: str | os.PathLike[str]) -> str:
    """The sentence for the lessons open in other tabs, which lose their server."""
    others = sorted({o.lesson for o in kernel_server.open_lessons(home)})
    if not others:
        return ""
    names = _and([f"lesson {n}" for n in others])
    return (
        f" Open in other tabs: {names}. Their next cell says their server was stopped; "
        "run their first cell again to continue on this one (their earlier runs stay in "
        "the SQLite database, for when lesson 02-06 starts the server on it again)."
    )


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


#: The lessons that show runs waiting Late in the queue ``energy_usage`` before a
#: worker of their own takes them: a worker left running by another lesson would
#: take those runs at once.
_NEEDS_LATE_RUNS = ("04", "05", "06")


def _stop_workers_of_queue(home: str | os.PathLike[str], pool: str, queue: str) -> list[str]:
    """Stop this home's workers that serve ``queue`` of ``pool``, saying whose they were.

    The lessons of :data:`_NEEDS_LATE_RUNS` start their own workers later; one
    left by another lesson (lesson 05's ``agent-1`` and ``agent-2`` when lesson
    05 was not finished) would take the runs they need to see Late. Returns the
    stopped workers' names.
    """
    from energy_flows.services import control, registry

    serving = [
        rec
        for rec in registry.worker_records(home)
        if rec.alive()
        and not rec.remote
        and rec.pool == pool
        and (not rec.queues or queue in rec.queues)
    ]
    if not serving:
        return []
    lessons = {o.pid: o.lesson for o in kernel_server.open_lessons(home, exclude_self=False)}
    groups: dict[str, list[str]] = {}
    for rec in serving:
        if rec.owner_pid == os.getpid():
            whose = "this notebook"
        elif rec.owner_pid in lessons:
            whose = f"lesson {lessons[rec.owner_pid]}"
        elif str(rec.owner) == "cli":
            whose = "a terminal (energy-flows up)"
        else:
            whose = f"process {rec.owner_pid}"
        groups.setdefault(whose, []).append(rec.name)
    for rec in serving:
        control.stop(rec, quiet=True)
    for whose, names in groups.items():
        they = "they" if len(names) > 1 else "it"
        again = (
            f"{whose.capitalize()} starts {'them' if len(names) > 1 else 'it'} again with its "
            "Worker(...) cell, when you go back to it."
            if whose.startswith("lesson")
            else "This lesson starts a worker of its own further on."
        )
        print(
            f"Stopped {whose}'s worker{'s' if len(names) > 1 else ''} "
            f"{_and([repr(n) for n in names])}: {they} served the queue {queue!r} and would "
            f"take the runs this lesson needs to see Late. {again}"
        )
    return [rec.name for rec in serving]


#: How wide Prefect's tables are in a cell (rich draws them for 80 columns when it
#: writes to a pipe, which cuts the deployments' names short).
PREFECT_COMMAND_COLUMNS = "120"


def use_prefect_command(home: str | os.PathLike[str]) -> Path:
    """Make ``!prefect ...`` in this kernel run Prefect's command of this environment, quickly.

    A notebook cell runs ``!prefect ...`` in a shell, which looks ``prefect``
    up on ``PATH``: a kernel started by JupyterLab may find none there, or
    another environment's. This writes ``<home>/bin/prefect``, which runs
    Prefect's own command-line tool with this kernel's Python through the
    course's launcher (``python -m energy_flows.services.launch prefect``:
    the same command, about a second faster to start, as it skips an
    optional import Prefect does not need), and puts that folder first on
    the kernel's ``PATH``. ``!{sys.executable} -m prefect ...`` is the same
    command without the launcher. The command finds the lesson's server
    through ``PREFECT_API_URL``, which the kernel's environment holds.

    Also sets ``COLUMNS`` so that Prefect's tables are drawn
    :data:`PREFECT_COMMAND_COLUMNS` characters wide, whatever terminal started
    the kernel, and keeps a headless
    widget warning out of the cells (see below). Returns the script's path.
    """
    folder = Path(home) / "bin"
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "prefect"
    text = (
        "#!/bin/sh\n"
        "# Prefect's command-line tool of the course's environment (energy_flows.lessons).\n"
        f'exec {shlex.quote(sys.executable)} -m energy_flows.services.launch prefect "$@"\n'
    )
    if not script.is_file() or script.read_text() != text:
        partial = folder / f".prefect.{os.getpid()}.tmp"
        partial.write_text(text)
        partial.chmod(0o755)
        os.replace(partial, script)
    entries = os.environ.get("PATH", "").split(os.pathsep)
    if entries[:1] != [str(folder)]:
        os.environ["PATH"] = os.pathsep.join(
            [str(folder), *(e for e in entries if e != str(folder))]
        )
    os.environ["COLUMNS"] = PREFECT_COMMAND_COLUMNS
    # Prefect's .deploy() shows a progress spinner as a widget; when it closes, ipykernel
    # may log "No such comm" for a message that arrives after it: noise a learner cannot act on.
    logging.getLogger("Comm").setLevel(logging.ERROR)
    return script


#: The deployment lesson 03 makes, and that later lessons rely on: every
#: minute, 120 days of data per run, on the ``energy_usage`` queue of ``energy-pool``.
LESSON_DEPLOYMENT: dict[str, Any] = {"interval": 60, "parameters": {"days": 120}}


# --------------------------------------------------------------------------
# Waiting for runs to turn Late (lessons 04 and 05)
# --------------------------------------------------------------------------


def wait_until_late(runs: Any, timeout: float = 60.0) -> Any:
    """Wait until each of ``runs`` is Late; return their states.

    A run is given as what made it (the ``RunInfo`` of ``trigger()``,
    Prefect's ``FlowRun`` from ``run_deployment``), its id, or its name (a run
    asked for with ``prefect deployment run ... --flow-run-name NAME``; the
    latest run of that name). The lessons' name for ``wait_for(runs,
    until="late")``: a run that a worker picks up meanwhile never turns Late,
    and stops the wait for that run too. Returns a DataFrame with the runs'
    ``name`` and ``state`` in the order given; on timeout the ``WaitTimeout``
    says which runs are still Scheduled, and why (``diagnose()``).
    """
    from energy_flows.orchestration import wait_for

    runs = list(runs) if isinstance(runs, list | tuple) else [runs]
    found = [_run_by_name(r) for r in runs]
    table = wait_for(found, until="late", timeout=timeout, progress=False)
    for run, state in zip(found, table["state"], strict=False):
        if state != "Late":
            print(_taken_instead(run, state))
    return table


def _taken_instead(run: Any, state: str) -> str:
    """Why ``run`` is not Late: the worker that took it, and what to do about it."""
    import uuid

    from energy_flows.errors import WaitTimeout
    from energy_flows.orchestration.common import client
    from energy_flows.orchestration.diagnosis import WORKER_LABEL
    from energy_flows.services import registry
    from energy_flows.settings import home_dir
    from energy_flows.waiting import wait_until

    run_id = uuid.UUID(str(getattr(run, "id", run)))
    with client() as c:
        flow_run = c.read_flow_run(run_id)

        def labelled() -> Any:
            current = c.read_flow_run(run_id)
            return current if WORKER_LABEL in (current.labels or {}) else None

        # A worker labels a run with its name just after setting it Pending.
        with contextlib.suppress(WaitTimeout):
            flow_run = wait_until(labelled, 10, what="the worker's label on the run")
    worker = (flow_run.labels or {}).get(WORKER_LABEL)
    if not worker:
        return f"{flow_run.name!r} is {state}, not Late: something took it before it turned Late."
    home = home_dir()
    rec = registry.worker_record(home, str(worker))
    lessons = {o.pid: o.lesson for o in kernel_server.open_lessons(home, exclude_self=False)}
    whose = ""
    if rec is not None and rec.owner_pid in lessons and rec.owner_pid != os.getpid():
        whose = f" (lesson {lessons[rec.owner_pid]}'s)"
    return (
        f"{flow_run.name!r} is {state}, not Late: the worker {worker!r}{whose} took it. Stop "
        f"that worker (Worker(name={str(worker)!r}).stop(), or `energy-flows down` in a "
        "terminal), then run this cell again."
    )


def _run_by_name(run: Any) -> Any:
    """``run`` itself, or for a run's name (not an id), the latest flow run of that name."""
    import uuid

    if not isinstance(run, str):
        return run
    try:
        uuid.UUID(run)
        return run
    except ValueError:
        pass
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    from energy_flows.errors import OrchestrationError
    from energy_flows.orchestration.common import client

    with client() as c:
        found = c.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[run])),
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=1,
        )
    if not found:
        raise OrchestrationError(f"There is no flow run named {run!r} on this server.")
    return found[0]


# --------------------------------------------------------------------------
# A tour of the Prefect UI (lesson 01 and later lessons' links)
# --------------------------------------------------------------------------

#: (page, path, what a learner sees there)
UI_PAGES: tuple[tuple[str, str, str], ...] = (
    ("Dashboard", "/dashboard", "recent flow runs, failures and late runs at a glance"),
    ("Runs", "/runs", "every flow run and its state: Scheduled, Late, Running, Completed ..."),
    ("Flows", "/flows", "the flows the server has seen, e.g. energy-usage-pipeline"),
    ("Deployments", "/deployments", "deployments, their schedules and parameters (lesson 03)"),
    ("Work pools", "/work-pools", "pools, their queues and workers (lessons 04 and 05)"),
    ("Artifacts", "/artifacts", "tables and reports the flows publish (lesson 02)"),
    ("Concurrency", "/concurrency-limits", "global and tag concurrency limits"),
)


@dataclass(frozen=True)
class Links:
    """Named links into the Prefect UI: clickable in a notebook, plain lines as text."""

    rows: tuple[tuple[str, str, str], ...]

    def __repr__(self) -> str:
        width = max((len(name) for name, _, _ in self.rows), default=0)
        return "\n".join(f"{name:<{width}}  {url}  ({what})" for name, url, what in self.rows)

    def _repr_html_(self) -> str:
        body = "".join(
            f"<tr><td style='text-align:left'><b>{html.escape(name)}</b></td>"
            f"<td style='text-align:left'><a href='{html.escape(url)}' target='_blank'>"
            f"{html.escape(url)}</a></td><td style='text-align:left'>{html.escape(what)}</td></tr>"
            for name, url, what in self.rows
        )
        return f"<table>{body}</table>"


def _ui_base(server: Any = None) -> str:
    if server is not None and getattr(server, "ui_url", None):
        return str(server.ui_url).rstrip("/")
    from prefect.settings import get_current_settings

    url = get_current_settings().ui_url
    if not url:
        raise RuntimeError(
            "No Prefect server is configured for this kernel. "
            "Run the lesson's first cell (it starts the server), then this cell again."
        )
    return str(url).rstrip("/")


def ui_tour(server: Any = None) -> Links:
    """Links to the main pages of the Prefect UI of ``server`` (default: this kernel's server)."""
    base = _ui_base(server)
    return Links(tuple((name, base + path, what) for name, path, what in UI_PAGES))


def ui_link(page: str, name: str = "", server: Any = None) -> Links:
    """One link into the UI: ``ui_link("work-pool", "energy-pool")``, ``ui_link("runs")``.

    Pages: the paths of :data:`UI_PAGES` without their slash, plus ``work-pool``
    (one pool and its queues) and ``deployment`` (by id).
    """
    base = _ui_base(server)
    special = {
        "work-pool": (
            "Work pool " + name,
            f"/work-pools/work-pool/{name}",
            "its queues and workers",
        ),
        "deployment": ("Deployment", f"/deployments/deployment/{name}", "its runs and schedule"),
        "flow-run": ("Flow run", f"/runs/flow-run/{name}", "its state, logs and artifacts"),
    }
    if page in special:
        title, path, what = special[page]
    else:
        match = [row for row in UI_PAGES if row[1].strip("/") == page.strip("/")]
        if not match:
            known = ", ".join([*(p.strip("/") for _, p, _ in UI_PAGES), *special])
            raise ValueError(f"Unknown UI page {page!r}; known pages: {known}.")
        title, path, what = match[0]
    return Links(((title, base + path, what),))


# --------------------------------------------------------------------------
# What the lessons leave running (lesson 06, the notebook tests, the executor)
# --------------------------------------------------------------------------

#: What the command line of a process the lessons started contains: the package's
#: launcher (servers, workers, flow runs; a watchdog's command line holds the
#: command it watches, so the watchdogs of those match too) and Prefect's engine
#: (a flow run started without the launcher). JupyterLab, its kernels, and the
#: watchdog ``energy-flows lab`` keeps over JupyterLab are the learner's, not
#: the lessons': they do not match.
LESSON_PROCESS_MARKERS = ("energy_flows.services.launch", "prefect.engine")

#: The columns of :func:`leftovers`.
LEFTOVER_COLUMNS = ["seen in", "what", "pid", "command"]


def _belongs_to(env: dict[str, str], home: str) -> bool:
    return env.get("ENERGY_FLOWS_HOME") == home or env.get("PREFECT_HOME", "").startswith(
        home + os.sep
    )


def leftover_processes(home: str | os.PathLike[str]) -> list[Any]:
    """The processes the lessons started for ``home`` that still run (psutil.Process objects).

    Counts what the package started: Prefect servers, workers and flow runs,
    and the watchdogs over them (see :data:`LESSON_PROCESS_MARKERS`), whose
    environment names ``home``. Not JupyterLab or the notebooks' kernels,
    though they share the home under ``make lab``. It reads the real process
    table rather than the package's own records, so it also finds what a
    broken lesson forgot.
    """
    import psutil

    home = str(Path(home).resolve())
    found = []
    me = os.getpid()
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        if proc.pid == me or proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        command = " ".join(proc.info["cmdline"] or [])
        if not any(marker in command for marker in LESSON_PROCESS_MARKERS):
            continue
        try:
            env = proc.environ()
        except (psutil.Error, OSError):
            continue
        if _belongs_to(env, home):
            found.append(proc)
    return found


def _what(command: str) -> str:
    """A process's role, from its command line: server, worker, flow run; "watchdog of ..."."""
    watchdog = "watchdog.py" in command and " -- " in command
    watched = command.split(" -- ", 1)[1] if watchdog else command
    if " server start" in watched:
        role = "Prefect server"
    elif " worker start" in watched:
        role = "Prefect worker"
    elif "launch engine" in watched or "prefect.engine" in watched:
        role = "flow run"
    else:
        role = "Prefect command"
    return f"watchdog of a {role}" if watchdog else role


def leftovers(home: str | os.PathLike[str] | None = None) -> Any:
    """What the lessons still run for ``home`` (default: this kernel's home), as a table.

    Looks in two places: :func:`running` (the home's state files, what
    ``energy-flows status`` lists) and the operating system's process table
    (:func:`leftover_processes`: servers, workers, flow runs and their
    watchdogs; JupyterLab and the kernels do not count). One row per thing
    found; columns ``seen in, what, pid, command``. Empty when everything
    stopped.
    """
    import pandas as pd
    import psutil

    from energy_flows import settings
    from energy_flows.services.control import running

    home = settings.home_dir(home)
    rows: list[dict[str, Any]] = [
        {
            "seen in": "running()",
            "what": f"{rec['kind']} {rec['name']}",
            "pid": int(rec["pid"]),
            "command": "",
        }
        for _, rec in running(home).iterrows()
    ]
    for proc in leftover_processes(home):
        try:
            command = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        rows.append(
            {
                "seen in": "process table",
                "what": _what(command),
                "pid": proc.pid,
                "command": command,
            }
        )
    return pd.DataFrame(rows, columns=LEFTOVER_COLUMNS)
