"""Lesson 08, the walkthrough by hand: the notebook watches, the terminals do.

The learner types the original walkthrough into three terminals, in Prefect
3's words and with nothing but Prefect. The notebook starts, deploys and
runs nothing. Its cells only look:

* :func:`guide`: where the terminals keep their Prefect state (a Prefect
  home of the course's, never ``~/.prefect``: :mod:`energy_flows.terminals`)
  and whether the suggested port is free;
* :func:`check_order`: the Parsons problem before the terminals (:mod:`.parsons`);
* one check per step (:func:`check_server` ... :func:`check_mended`), each
  asking the learner's own server, found by the ``PREFECT_HOME`` its process
  runs with and by the port it listens on;
* :func:`monitor`: the package's QueueMonitor pointed at that server;
* :func:`check_all_stopped`: what the terminals started that still runs,
  and how to stop it.

Each check returns a :class:`~energy_flows.exercises.CheckResult` that says
what is right and, for what is missing, the one thing to do next. A check
never changes anything, on the server or on the machine.
"""

from __future__ import annotations

import html
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from energy_flows import learner_server as ls
from energy_flows import terminals
from energy_flows.exercises import CheckResult
from energy_flows.parsons import BEFORE, COMMANDS, POOL, QUEUE, check_order
from energy_flows.terminals import SUGGESTED_PORT

DEPLOYMENT = "by-hand"

#: Prefect's own defaults the lesson's text relies on (a test keeps them true).
LATE_AFTER_SECONDS = 15
CANCELLING_TIMEOUT_SECONDS = 300


# --------------------------------------------------------------------------- the first cell


@dataclass(frozen=True)
class Guide:
    """What the first cell shows: the terminals' Prefect home and the port to use."""

    prefect_home: Path
    export_line: str
    port: int
    port_free: bool
    alternative: int | None

    def rows(self) -> list[tuple[str, str]]:
        if self.port_free:
            port = f"{self.port} — free right now"
        else:
            port = (
                f"{self.port} — taken by another program right now: use {self.alternative} "
                "in its place in every command"
            )
        return [
            ("Prefect home of the terminals", str(self.prefect_home)),
            ("terminals of `make lab`, Binder", "have it already: `echo $PREFECT_HOME` prints it"),
            ("in any other terminal, type", self.export_line),
            ("port for your server", port),
        ]

    def __repr__(self) -> str:
        width = max(len(k) for k, _ in self.rows())
        return "\n".join(f"{k:<{width}}  {v}" for k, v in self.rows())

    def _repr_html_(self) -> str:
        body = "".join(
            f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(k)}</th>"
            f"<td style='text-align:left'><code>{html.escape(v)}</code></td></tr>"
            for k, v in self.rows()
        )
        return f"<table>{body}</table>"


def _port_free(port: int) -> bool:
    from energy_flows.services.process import port_is_free

    return port_is_free(port)


def guide(port: int = SUGGESTED_PORT) -> Guide:
    """Where the terminals keep their Prefect state, and whether ``port`` is free."""
    free = _port_free(port)
    alternative = None
    if not free:
        alternative = next((p for p in range(port + 1, port + 100) if _port_free(p)), None)
    return Guide(terminals.prefect_home(), terminals.export_line(), port, free, alternative)


def _server_or_say(check: CheckResult) -> ls.LearnerServer | None:
    """The learner's server if it answers; else None, with what to do added to ``check``."""
    server = ls.find_server()
    if server is None:
        check.missing.append(
            "No Prefect server of the terminals runs: step 1 starts it in terminal 1 "
            "(`check_server()` says more)."
        )
        return None
    if not ls.answers(server.api_url):
        check.missing.append(
            f"Your server (pid {server.process.pid}, port {server.port}) is still starting: "
            "run this cell again in a few seconds."
        )
        return None
    return server


def _the_server(check: CheckResult) -> tuple[ls.LearnerServer] | None:
    """The learner's server, as ``_step``'s ``find`` (the default): or None, said why."""
    server = _server_or_say(check)
    return None if server is None else (server,)


def _step(
    title: str, find: Callable[[CheckResult], tuple[Any, ...] | None] = _the_server
) -> Callable[[Callable[..., None]], Callable[[], CheckResult]]:
    """Turn ``judge(check, *found)`` into a step's check of no arguments.

    Every such step opens alike: a :class:`CheckResult` titled ``title``, then
    ``find`` (the learner's server by default) looks for what the step judges;
    when it is not there, ``find`` has said what to do and ``judge`` is not
    called.
    """

    def decorate(judge: Callable[..., None]) -> Callable[[], CheckResult]:
        def check_step() -> CheckResult:
            check = CheckResult(title)
            found = find(check)
            if found is not None:
                judge(check, *found)
            return check

        check_step.__name__ = check_step.__qualname__ = judge.__name__
        check_step.__doc__ = judge.__doc__
        return check_step

    return decorate


# --------------------------------------------------------------------------- step 1


def check_server() -> CheckResult:
    """Step 1: a server of the terminals' home runs, and its dashboard calls its own port."""
    check = CheckResult("Step 1: your Prefect server")
    home = terminals.prefect_home()
    server = ls.find_server()
    profile = terminals.read_profile()
    if server is None:
        port = ls.port_of(profile.api_url)
        strays = ls.servers_of_other_homes()
        if strays:
            where = strays[0].prefect_home or "~/.prefect (PREFECT_HOME unset)"
            check.missing.append(
                f"A Prefect server runs (pid {strays[0].pid}), but with the Prefect home "
                f"{where}, not the course's: its terminal lacks PREFECT_HOME. Stop it (Ctrl-C), "
                f"type `{terminals.export_line()}` there, and start it again."
            )
        elif port is not None and not _port_free(port):
            check.missing.append(
                f"Your profile points at port {port}, and another program listens there, so "
                f"Prefect cannot start your server on it ('Port {port} is already in use'). "
                "Choose a free port (the first cell names one): set PREFECT_API_URL to it with "
                "`prefect config set`, then `prefect server start --port` with the same number."
            )
        else:
            check.missing.append(
                f"No Prefect server runs with the terminals' Prefect home ({home}) yet: type "
                "step 1's commands in terminal 1 (and check that `echo $PREFECT_HOME` "
                "prints that folder)."
            )
        return check
    check.right.append(
        f"a Prefect server runs from the terminals' home: pid {server.process.pid}, "
        f"port {server.port}"
    )
    if not ls.answers(server.api_url):
        check.missing.append("It is still starting: run this cell again in a few seconds.")
        return check
    dashboard = ls.dashboard_api_url(server)
    if dashboard is not None and ls.port_of(dashboard) != server.port:
        check.missing.append(
            f"Its dashboard ({server.ui_url}) asks {dashboard} for its data, another port: "
            "PREFECT_API_URL was not set when the server started. Stop it (Ctrl-C), run "
            f"`prefect config set PREFECT_API_URL={server.api_url}`, and start it again."
        )
    elif dashboard is not None:
        check.right.append(f"its dashboard, {server.ui_url}, calls the API on the same port")
    return check


# --------------------------------------------------------------------------- step 2


def check_profile() -> CheckResult:
    """Step 2: the terminals' profile points ``PREFECT_API_URL`` at the learner's server."""
    check = CheckResult("Step 2: the profile of the terminals")
    profile = terminals.read_profile()
    server = ls.find_server()
    if profile.api_url is None:
        where = f"its profile {profile.name!r}" if profile.name else "no profile yet"
        check.missing.append(
            f"The terminals' Prefect home ({profile.path.parent}) has {where} with "
            "PREFECT_API_URL: `prefect config set PREFECT_API_URL=...` (step 1) writes it there."
        )
        return check
    check.right.append(
        f"profile {profile.name!r} in {profile.path} sets PREFECT_API_URL={profile.api_url}"
    )
    if server is None:
        check.missing.append("No server of the terminals runs to talk to: see step 1.")
        return check
    if ls.port_of(profile.api_url) != server.port:
        check.missing.append(
            f"It points at port {ls.port_of(profile.api_url)}, but your server listens on "
            f"{server.port}: set PREFECT_API_URL again, to {server.api_url}."
        )
        return check
    check.right.append(
        f"every prefect command in the three terminals talks to your server (port {server.port})"
    )
    if ls.own_profile_api_url() == profile.api_url:
        check.missing.append(
            "Your own ~/.prefect profile has that PREFECT_API_URL too: a terminal without the "
            "course's PREFECT_HOME wrote it. Undo it there with `prefect config unset "
            "PREFECT_API_URL` (in that terminal), and set PREFECT_HOME in it first next time."
        )
    return check


# --------------------------------------------------------------------------- step 3


@_step("Step 3: a work pool and its queue")
def check_pool(check: CheckResult, server: ls.LearnerServer) -> None:
    """Step 3: a process work pool with the queue ``energy_usage`` on the learner's server."""
    with ls.client(server.api_url) as c:
        pools = c.read_work_pools()
        queues = {
            p.name: [q.name for q in c.read_work_queues(work_pool_name=p.name)] for p in pools
        }
    if not pools:
        check.missing.append(
            "Your server has no work pool yet: `prefect work-pool create NAME --type process` "
            "makes one (step 3)."
        )
        return
    process = [p for p in pools if p.type == "process"]
    if not process:
        kinds = ", ".join(f"{p.name} ({p.type})" for p in pools)
        check.missing.append(
            f"Your pools ({kinds}) are not process pools; this walkthrough's worker runs each "
            "flow run as a process on this machine: create one with `--type process`."
        )
        return
    with_queue = [p for p in process if QUEUE in queues[p.name]]
    workers = [p for p in terminals.started_by_hand() if p.role == "worker"]
    if not with_queue:
        names = ", ".join(p.name for p in process)
        check.missing.append(
            f"Pool {names} has no queue {QUEUE!r} yet (it has {', '.join(queues[process[0].name])}): "
            f"`prefect work-queue create {QUEUE} --pool {process[0].name}`."
        )
    else:
        pool = with_queue[0]
        check.right.append(f"process work pool {pool.name!r}, with the queue {QUEUE!r}")
    early = [w for w in workers if w.options.get("--pool") in {p.name for p in process}]
    if early:
        check.right.append(
            f"a worker already polls pool {early[0].options['--pool']!r} (pid {early[0].pid}): "
            "started before the pool existed, it made the pool itself ('Work pool ... does not "
            "exist ... Starting a process worker'), so `work-pool create` says it exists "
            "already. Fine: go on with the queue."
        )


# --------------------------------------------------------------------------- step 4


def _yaml_differences(built: ls.Built) -> list[str]:
    """Where the server's deployment and its prefect.yaml entry disagree."""
    entry = built.yaml_entry or {}
    d = built.deployment
    pool = entry.get("work_pool") or {}
    differences = []
    if entry.get("entrypoint") and entry["entrypoint"] != d.entrypoint:
        differences.append(f"entrypoint {entry['entrypoint']!r} (server: {d.entrypoint!r})")
    if pool.get("name") and pool["name"] != d.work_pool_name:
        differences.append(f"pool {pool['name']!r} (server: {d.work_pool_name!r})")
    if pool.get("work_queue_name") and pool["work_queue_name"] != d.work_queue_name:
        differences.append(f"queue {pool['work_queue_name']!r} (server: {d.work_queue_name!r})")
    wanted = sorted(
        float(s["interval"])
        for s in entry.get("schedules") or []
        if isinstance(s, dict) and "interval" in s
    )
    if wanted and wanted != sorted(ls.interval_seconds(d)):
        differences.append(f"interval {wanted} s (server: {sorted(ls.interval_seconds(d))} s)")
    return differences


def _judge_deployment(check: CheckResult, built: ls.Built, pool_types: dict[str, str]) -> None:
    d = built.deployment
    check.right.append(f"deployment {built.full_name!r} on your server")
    if built.folder is None or built.yaml_entry is None:
        check.missing.append(
            f"{built.full_name} was not built from a prefect.yaml in its folder: write "
            "prefect.yaml next to your flow file and run `prefect deploy` in that folder."
        )
        return
    check.right.append(f"built by `prefect deploy` from {built.folder / 'prefect.yaml'}")
    source = built.folder / str(d.entrypoint).split(":", 1)[0]
    if not source.is_file():
        check.missing.append(
            f"Its entrypoint {d.entrypoint!r} names a file that is gone: {source}."
        )
    elif "energy_flows" in source.read_text(errors="replace"):
        check.missing.append(
            f"{source.name} imports energy_flows: the walkthrough is Prefect alone, "
            "so your flow needs only `from prefect import flow, task, get_run_logger`."
        )
    else:
        check.right.append(f"entrypoint {d.entrypoint}: your own flow file, Prefect alone")
    if pool_types.get(d.work_pool_name) != "process":
        check.missing.append(
            f"Its pool {d.work_pool_name!r} is not a process pool of your server (step 3)."
        )
    if d.work_queue_name != QUEUE:
        check.missing.append(
            f"Its runs go to the queue {d.work_queue_name!r}; the walkthrough's worker reads "
            f"{QUEUE!r}: set work_queue_name in prefect.yaml, and deploy again."
        )
    else:
        check.right.append(f"pool {d.work_pool_name!r}, queue {QUEUE!r}")
    intervals = ls.interval_seconds(d)
    if not intervals:
        check.missing.append(
            "It has no interval schedule: add `schedules:` with an `interval:` (in seconds) "
            "to its entry in prefect.yaml, and deploy again."
        )
    else:
        check.right.append(f"an interval schedule: every {intervals[0]:g} s")
    differences = _yaml_differences(built)
    if differences:
        check.missing.append(
            "prefect.yaml and the server disagree on "
            + "; ".join(differences)
            + ": you changed the file after deploying; run `prefect deploy` again."
        )


@_step("Step 4: your deployment")
def check_deployment(check: CheckResult, server: ls.LearnerServer) -> None:
    """Step 4: a deployment built by ``prefect deploy`` from the learner's own flow file and yaml."""
    built = ls.deployments(server.api_url)
    if not built:
        check.missing.append(
            "Your server has no deployment yet: write your flow file and prefect.yaml, then "
            "`prefect --no-prompt deploy --all` in their folder (step 4)."
        )
        return
    with ls.client(server.api_url) as c:
        pool_types = {p.name: p.type for p in c.read_work_pools()}
    chosen = next((b for b in built if b.yaml_entry is not None), built[0])
    _judge_deployment(check, chosen, pool_types)


# --------------------------------------------------------------------------- steps 5 and 6


def _the_deployment(check: CheckResult) -> tuple[ls.LearnerServer, ls.Built] | None:
    server = _server_or_say(check)
    if server is None:
        return None
    built = [b for b in ls.deployments(server.api_url) if b.deployment.work_queue_name == QUEUE]
    if not built:
        check.missing.append(
            f"Your server has no deployment whose runs go to the queue {QUEUE!r}: see step 4."
        )
        return None
    return server, built[0]


@_step("Step 5: Late runs", find=_the_deployment)
def check_late(check: CheckResult, server: ls.LearnerServer, built: ls.Built) -> None:
    """Step 5: runs of the learner's deployment went Late, with no worker to take them."""
    late = [h for h in ls.histories(server.api_url, built.deployment.id) if h.was_late]
    if late:
        names = ", ".join(h.run.name for h in late[:5])
        check.right.append(f"{len(late)} run(s) of {built.full_name} went Late: {names}")
        return
    upcoming = ls.next_scheduled(server.api_url, built.deployment.id)
    when = ""
    if upcoming is not None and upcoming.expected_start_time is not None:
        when = f" The next is due at {upcoming.expected_start_time:%H:%M:%S} UTC."
    check.missing.append(
        f"No run of {built.full_name} has gone Late yet. Prefect marks a run Late "
        f"{LATE_AFTER_SECONDS} s after its start time has passed with no worker to take it.{when} "
        "Not waiting for the schedule: ask for a run now (step 5), then run this cell again."
    )


@_step("Step 6: the worker drains the queue", find=_the_deployment)
def check_drained(check: CheckResult, server: ls.LearnerServer, built: ls.Built) -> None:
    """Step 6: Late runs then Completed, taken by a worker that this package did not start."""
    histories = ls.histories(server.api_url, built.deployment.id)
    done = [h for h in histories if h.was_late and h.states[-1:] == ["Completed"]]
    ours = ls.package_worker_names()
    workers = [p for p in terminals.started_by_hand() if p.role == "worker"]
    if not done:
        still = [h for h in histories if h.run.state and h.run.state.name == "Late"]
        if not workers:
            check.missing.append(
                f"{len(still)} run(s) wait Late and no worker of the terminals runs: step 6 "
                "starts one in terminal 3."
            )
        else:
            wrong = [
                w
                for w in workers
                if w.options.get("--pool") not in (None, built.deployment.work_pool_name)
                or w.options.get("--work-queue") not in (None, QUEUE)
            ]
            if wrong:
                w = wrong[0]
                check.missing.append(
                    f"Your worker (pid {w.pid}) polls pool {w.options.get('--pool')!r}, queue "
                    f"{w.options.get('--work-queue')!r}; the deployment's runs wait in pool "
                    f"{built.deployment.work_pool_name!r}, queue {QUEUE!r}."
                )
            else:
                check.missing.append(
                    "Your worker runs but no Late run has Completed yet: a worker asks for "
                    "runs every 10 s and each run starts a Python process. Run this cell "
                    "again in a few seconds."
                )
        return
    taken_by = {h.worker for h in done}
    if taken_by & ours:
        check.missing.append(
            "Those runs were taken by a worker of this package; step 6's worker is yours: "
            "`prefect worker start` in terminal 3."
        )
        return
    names = ", ".join(h.run.name for h in done[:5])
    check.right.append(f"{len(done)} run(s) went Late, then Completed: {names}")
    by = ", ".join(sorted(str(t) for t in taken_by))
    check.right.append(f"taken by {by}: a worker you started, not this package")
    still_late = [h for h in histories if h.run.state and h.run.state.name == "Late"]
    if still_late:
        check.missing.append(
            f"{len(still_late)} run(s) still wait Late: the worker is on them; run this cell "
            "again in a few seconds."
        )
    else:
        check.right.append("no Late run is left in the queue: drained")


def monitor(interval: float = 2.0) -> Any:
    """The package's QueueMonitor on the learner's server (it only reads); a note if none runs."""
    server = ls.find_server()
    if server is None or not ls.answers(server.api_url):
        return Note(
            "No server of the terminals answers yet: the monitor needs steps 1 to 4. "
            "Run this cell again after them."
        )
    from energy_flows.widgets import QueueMonitor

    pools = [b.deployment.work_pool_name for b in ls.deployments(server.api_url)]
    pool = pools[0] if pools else POOL
    return QueueMonitor(QUEUE, pool=pool, api_url=server.api_url, interval=interval)


@dataclass(frozen=True)
class Note:
    """A line of text for a notebook output."""

    text: str

    def __repr__(self) -> str:
        return self.text


# --------------------------------------------------------------------------- step 7


def _run_id(check: CheckResult, stuck: Any, api_url: str) -> Any:
    """The flow run ``stuck`` names (an id, a FlowRun, or a run's name); None after saying why."""
    candidate = getattr(stuck, "id", stuck)
    if isinstance(candidate, uuid.UUID):
        return candidate
    text = str(candidate).strip()
    try:
        return uuid.UUID(text)
    except ValueError:
        pass
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    with ls.client(api_url) as c:
        runs = c.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[text])))
    if runs:
        return runs[0].id
    check.missing.append(
        f"{text!r} is neither a flow run id nor the name of a run on your server: copy the "
        "ID column of `prefect flow-run ls --state Running` (the whole id: `prefect flow-run "
        "inspect` takes it too)."
    )
    return None


def check_mended(stuck: Any) -> CheckResult:
    """Step 7: the run left Running when the worker stopped, mended the Prefect way.

    ``stuck`` is that run's id (a string or UUID), its name, or Prefect's
    ``FlowRun``. The run must have been Running, no process may run it any
    more, and it must be in a final state now (Cancelled after
    ``prefect flow-run cancel``; Crashed or Failed if set another way).
    """
    check = CheckResult("Step 7: the run the worker left behind")
    if stuck is None:
        check.missing.append(
            "`stuck` is still None: replace None with the id of the run that "
            "`prefect flow-run ls --state Running` lists after you stopped the worker, "
            "and run the cell again."
        )
        return check
    server = _server_or_say(check)
    if server is None:
        return check
    run_id = _run_id(check, stuck, server.api_url)
    if run_id is None:
        return check
    from prefect.exceptions import ObjectNotFound

    with ls.client(server.api_url) as c:
        try:
            run = c.read_flow_run(run_id)
        except ObjectNotFound:
            check.missing.append(f"Your server has no flow run {run_id}: check the id you copied.")
            return check
        states = [s.name for s in c.read_flow_run_states(run_id)]
    state = run.state.name if run.state else "?"
    alive = [p for p in terminals.started_by_hand() if p.flow_run_id == str(run_id)]
    if "Running" not in states:
        check.missing.append(
            f"{run.name} never ran (its states: {', '.join(states)}): give the run that was "
            "Running when you stopped the worker."
        )
        return check
    if state == "Completed":
        check.missing.append(
            f"{run.name} Completed: the worker was stopped after it ended. Ask for a long "
            "run (step 7) and press Ctrl-C in terminal 3 while it is Running."
        )
        return check
    check.right.append(f"{run.name} was Running")
    if alive:
        check.missing.append(
            f"It is still really running (pid {alive[0].pid}): its worker was not stopped. "
            "Press Ctrl-C in terminal 3 while it runs."
        )
        return check
    if state == "Running":
        check.right.append("no process runs it any more, yet the server still says Running")
        check.missing.append(
            "That is what plain Prefect leaves when a worker stops mid-run. Mend it: "
            "`prefect flow-run cancel` with its id."
        )
        return check
    if state == "Cancelling":
        check.right.append("you cancelled it: Prefect asked for its process to be killed")
        check.missing.append(
            "It is Cancelling, and no worker is left to kill it: Prefect's server gives up "
            "after PREFECT_SERVER_SERVICES_CANCELLATION_CLEANUP_CANCELLING_TIMEOUT_SECONDS "
            f"(Prefect's default {CANCELLING_TIMEOUT_SECONDS} s; 30 s in your profile if you "
            "set it in step 1) and marks it Cancelled. Run this cell again then."
        )
        return check
    message = f" ({run.state.message})" if run.state and run.state.message else ""
    check.right.append(f"now {state}{message}: final, nothing left stuck")
    return check


# --------------------------------------------------------------------------- the end


def check_all_stopped() -> CheckResult:
    """The end: nothing the terminals started still runs, and no run of theirs is left stuck."""
    check = CheckResult("The end: everything you started is stopped")
    running = terminals.started_by_hand()
    server = ls.find_server()
    if server is not None and ls.answers(server.api_url):
        stuck = ls.unfinished(server.api_url)
        for run in stuck:
            check.missing.append(
                f"flow run {run.name} ({run.id}) is {run.state.name}: "
                "`prefect flow-run cancel` it before you stop the server."
            )
    # Workers first: a server stopped under its workers leaves them retrying for minutes.
    stop_order = {"worker": 0, "flow run": 1, "command": 2, "server": 3}
    for proc in sorted(running, key=lambda p: stop_order.get(p.role, 2)):
        where = f", port {proc.ports[0]}" if proc.ports else ""
        pool = f", pool {proc.options['--pool']}" if "--pool" in proc.options else ""
        check.missing.append(
            f"a Prefect {proc.role} still runs (pid {proc.pid}{where}{pool}): {proc.how_to_stop}."
        )
    if not check.missing:
        check.right.append(
            f"no Prefect server, worker or flow run of the terminals' home "
            f"({terminals.prefect_home()}) runs"
        )
    return check


__all__ = [
    "BEFORE",
    "COMMANDS",
    "Guide",
    "Note",
    "check_all_stopped",
    "check_deployment",
    "check_drained",
    "check_late",
    "check_mended",
    "check_order",
    "check_pool",
    "check_profile",
    "check_server",
    "guide",
    "monitor",
]
