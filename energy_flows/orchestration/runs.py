"""Flow runs in a queue: look at them, start one, wait for them, cancel the late ones.

Looking never changes anything. Prefect has two ways to list a queue's runs
that *count as a worker's poll* (``get_runs_in_work_queue``,
``get_scheduled_flow_runs_for_work_pool``): they would flip the queue to READY
and hide the very thing a lesson wants to show ("nobody polls this queue").
Everything here reads with ``read_flow_runs`` and filters instead.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from energy_flows.errors import OrchestrationError
from energy_flows.orchestration import housekeeping
from energy_flows.orchestration.common import (
    BUSY_STATUSES,
    client,
    disk_full_behind,
    html_table,
    seconds,
    timestamp,
)
from energy_flows.orchestration.deployments import check_parameters_dict, resolve_deployment
from energy_flows.orchestration.pools import read_pool, read_queue, status_name
from energy_flows.vocabulary import DEFAULT_POOL, DEFAULT_QUEUE, FINAL_STATES, RUN_STATES

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.objects import FlowRun, State


@dataclass(frozen=True)
class RunInfo:
    """One flow run: its name, state and times (what `prefect flow-run inspect` shows, in short)."""

    name: str
    id: str
    state: str
    deployment: str | None
    scheduled: pd.Timestamp
    started: pd.Timestamp = pd.NaT
    ended: pd.Timestamp = pd.NaT
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def is_final(self) -> bool:
        """True once the run is Completed, Failed, Crashed or Cancelled."""
        return self.state in FINAL_STATES

    def _repr_html_(self) -> str:
        return html_table(
            f"Flow run {self.name!r}",
            {
                "state": self.state,
                "deployment": self.deployment,
                "scheduled": self.scheduled,
                "started": None if pd.isna(self.started) else self.started,
                "ended": None if pd.isna(self.ended) else self.ended,
                "parameters": json.dumps(self.parameters, sort_keys=True, default=str),
            },
        )


def _state_name(run: FlowRun) -> str:
    if run.state is not None and run.state.name:
        return run.state.name
    return run.state_name or "Unknown"


def deployment_names(c: SyncPrefectClient, runs: Iterable[FlowRun]) -> dict[Any, str]:
    """The name of each deployment these runs come from, by deployment id (one request)."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    ids = {r.deployment_id for r in runs if r.deployment_id}
    if not ids:
        return {}
    found = c.read_deployments(
        deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=list(ids)))
    )
    return {d.id: d.name for d in found}


def run_info(run: FlowRun, deployment: str | None) -> RunInfo:
    """A Prefect flow run as a :class:`RunInfo` (``deployment`` is the deployment's name)."""
    return RunInfo(
        name=run.name,
        id=str(run.id),
        state=_state_name(run),
        deployment=deployment,
        scheduled=timestamp(run.expected_start_time),
        started=timestamp(run.start_time),
        ended=timestamp(run.end_time),
        parameters=dict(run.parameters or {}),
    )


#: Each state a learner filters by, as the server's state types. Prefect has more state
#: *names* than these (Submitting and AwaitingRetry are Pending and Scheduled types,
#: Retrying is Running, Cancelling ends as Cancelled): grouping by type counts them too.
_TYPES = {
    "Scheduled": ("SCHEDULED",),
    "Late": ("SCHEDULED",),
    "Pending": ("PENDING",),
    "Running": ("RUNNING",),
    "Completed": ("COMPLETED",),
    "Failed": ("FAILED",),
    "Crashed": ("CRASHED",),
    "Cancelled": ("CANCELLED", "CANCELLING"),
}


def state_group(run: FlowRun) -> str | None:
    """Which of :data:`RUN_STATES` a run is in (Late is a Scheduled run past its time)."""
    if run.state is None:
        return None
    if run.state.name == "Late":
        return "Late"
    kind = run.state.type.value
    for group, types in _TYPES.items():
        if kind in types:
            return group
    return None


def _check_states(states: Iterable[str] | str | None) -> list[str] | None:
    if states is None:
        return None
    if isinstance(states, str):
        states = [states]
    wanted = []
    by_lower = {s.lower(): s for s in RUN_STATES}
    for s in states:
        name = by_lower.get(str(s).lower())
        if name is None:
            raise OrchestrationError(
                f"Unknown run state {s!r}. Run states are: {', '.join(RUN_STATES)}."
            )
        wanted.append(name)
    return wanted


_PAGE = 200


def _in_queue(pool: str, queue: str) -> dict[str, Any]:
    """Filter arguments of ``read_flow_runs``/``count_flow_runs`` for one queue of one pool."""
    from prefect.client.schemas.filters import (
        WorkPoolFilter,
        WorkPoolFilterName,
        WorkQueueFilter,
        WorkQueueFilterName,
    )

    return {
        "work_pool_filter": WorkPoolFilter(name=WorkPoolFilterName(any_=[pool])),
        "work_queue_filter": WorkQueueFilter(name=WorkQueueFilterName(any_=[queue])),
    }


def read_queue_runs(
    c: SyncPrefectClient,
    queue: str,
    pool: str,
    states: list[str] | None = None,
    limit: int = 200,
    scheduled_before: dt.datetime | None = None,
) -> list[FlowRun]:
    """Runs of one queue of one pool, by state, earliest first. Not a poll."""
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterExpectedStartTime,
        FlowRunFilterState,
        FlowRunFilterStateName,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    run_filter = FlowRunFilter()
    if states:
        types = sorted({t for s in states for t in _TYPES[s]})
        from prefect.client.schemas.objects import StateType

        state_types = [StateType(t) for t in types]
        run_filter.state = FlowRunFilterState(type=FlowRunFilterStateType(any_=state_types))
        if set(states) & {"Scheduled", "Late"} == {"Late"} and types == ["SCHEDULED"]:
            run_filter.state.name = FlowRunFilterStateName(any_=["Late"])
    if scheduled_before is not None:
        run_filter.expected_start_time = FlowRunFilterExpectedStartTime(
            before_=scheduled_before  # type: ignore[arg-type]  # Prefect's DateTime is a datetime
        )
    runs: list[FlowRun] = []
    while len(runs) < limit:  # the server answers at most 200 runs per request
        page = c.read_flow_runs(
            flow_run_filter=run_filter,
            **_in_queue(pool, queue),
            # Newest first, so a long-lived queue shows its latest runs, not its oldest.
            sort=FlowRunSort.EXPECTED_START_TIME_DESC,
            limit=min(_PAGE, limit - len(runs)),
            offset=len(runs),
        )
        runs.extend(page)
        if len(page) < _PAGE:
            break
    if states:
        runs = [r for r in runs if state_group(r) in states]
    return runs


RUN_COLUMNS = [
    "name",
    "state",
    "deployment",
    "scheduled",
    "lateness_s",
    "started",
    "ended",
    "duration_s",
    "id",
]


def runs_frame(runs: list[FlowRun], deployments: dict[Any, str]) -> pd.DataFrame:
    """Flow runs as a table with :data:`RUN_COLUMNS`, earliest scheduled first.

    ``deployments`` maps deployment ids to names (see :func:`deployment_names`).
    """
    rows = []
    for r in runs:
        started, ended = r.start_time, r.end_time
        rows.append(
            {
                "name": r.name,
                "state": _state_name(r),
                "deployment": deployments.get(r.deployment_id),
                "scheduled": timestamp(r.expected_start_time),
                # How long after its scheduled time the run started (or, still waiting, is now).
                "lateness_s": max(0.0, seconds(r.estimated_start_time_delta) or 0.0),
                "started": timestamp(started),
                "ended": timestamp(ended),
                "duration_s": seconds(ended - started) if started and ended else None,
                "id": str(r.id),
            }
        )
    frame = pd.DataFrame(rows, columns=RUN_COLUMNS)
    for col in ("scheduled", "started", "ended"):
        frame[col] = pd.to_datetime(frame[col], utc=True)
    frame["lateness_s"] = frame["lateness_s"].astype(float)
    frame["duration_s"] = frame["duration_s"].astype(float)
    return frame.sort_values(["scheduled", "name"], ignore_index=True, na_position="last")


def queue_runs(
    queue: str = DEFAULT_QUEUE,
    pool: str = DEFAULT_POOL,
    states: Iterable[str] | str | None = None,
    limit: int = 200,
) -> pd.DataFrame:
    """The flow runs in one work queue (the queue's Runs tab): the latest ``limit`` runs by
    scheduled time, shown earliest first. A schedule keeps a stock of future runs, so they
    appear at the end.

    Columns: ``name, state, deployment, scheduled, lateness_s, started, ended,
    duration_s, id``. ``lateness_s`` is how long after its scheduled time a run
    started, or has been waiting so far. Filter with ``states=["Late"]`` or
    any of :data:`RUN_STATES`.

    Looking does not count as a poll: the queue stays NOT_READY when no worker runs.
    """
    wanted = _check_states(states)
    housekeeping.run()
    with client() as c:
        read_queue(c, queue, pool)
        runs = read_queue_runs(c, queue, pool, wanted, limit)
        return runs_frame(runs, deployment_names(c, runs))


STATUS_COLUMNS = [
    "queue",
    "pool",
    "status",
    "paused",
    "concurrency_limit",
    "priority",
    *(s.lower() for s in RUN_STATES),
    "last_polled",
    "workers_online",
]


def _counts(c: SyncPrefectClient, queue: str, pool: str) -> dict[str, int]:
    """Runs of one queue per state of :data:`RUN_STATES` (server-side counts, not a poll)."""
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateName,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    def count(state: FlowRunFilterState) -> int:
        return c.count_flow_runs(
            flow_run_filter=FlowRunFilter(state=state),
            **_in_queue(pool, queue),
        )

    result = {
        group: count(
            FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType(t) for t in types]))
        )
        for group, types in _TYPES.items()
        if group != "Late"
    }
    result["Late"] = count(FlowRunFilterState(name=FlowRunFilterStateName(any_=["Late"])))
    result["Scheduled"] -= result["Late"]
    return result


def _online_workers(c: SyncPrefectClient, pool: str) -> int:
    return sum(status_name(w.status) == "ONLINE" for w in c.read_workers_for_work_pool(pool))


def queue_status(
    pool: str = DEFAULT_POOL, queues: Iterable[str] | str | None = None
) -> pd.DataFrame:
    """One row per work queue of ``pool``: is anyone serving it, and what waits in it.

    Columns: ``queue, pool, status, paused, concurrency_limit, priority,
    scheduled, late, pending, running, completed, failed, crashed, cancelled,
    last_polled, workers_online``.

    ``status`` is NOT_READY until a worker polls the queue, READY while one does
    (a poll in the last 60 s), PAUSED when paused. ``scheduled`` counts future
    runs too (an interval schedule keeps a stock of them); ``late`` counts runs
    past their start that nobody picked up. ``workers_online`` is per pool.
    These are the numbers the 2022 walkthrough asked learners to find in the UI.
    Reading them does not count as a poll.
    """
    if isinstance(queues, str):
        queues = [queues]
    housekeeping.run()
    with client() as c:
        read_pool(c, pool)
        found = {q.name: q for q in c.read_work_queues(work_pool_name=pool)}
        names = sorted(found) if queues is None else list(queues)
        missing = [n for n in names if n not in found]
        if missing:
            raise OrchestrationError(
                f"Pool {pool!r} has no queue {', '.join(map(repr, missing))} (its queues: "
                f"{', '.join(sorted(found)) or 'none'}). Create it with "
                f"ensure_work_queue({missing[0]!r}, pool={pool!r})."
            )
        online = _online_workers(c, pool)
        rows = []
        for name in names:
            q = found[name]
            row: dict[str, Any] = {
                "queue": name,
                "pool": pool,
                "status": "PAUSED" if q.is_paused else status_name(q.status),
                "paused": bool(q.is_paused),
                "concurrency_limit": q.concurrency_limit,
                "priority": q.priority,
            }
            counts = _counts(c, name, pool)
            for state in RUN_STATES:
                row[state.lower()] = counts[state]
            row["last_polled"] = timestamp(q.last_polled)
            row["workers_online"] = online
            rows.append(row)
    frame = pd.DataFrame(rows, columns=STATUS_COLUMNS)
    frame["last_polled"] = pd.to_datetime(frame["last_polled"], utc=True)
    frame["concurrency_limit"] = frame["concurrency_limit"].astype("Int64")
    return frame.sort_values(["priority", "queue"], ignore_index=True)


# --------------------------------------------------------------------------- starting runs


def _check_parameters_against_schema(
    parameters: dict[str, Any], schema: dict[str, Any] | None, full_name: str
) -> None:
    properties = (schema or {}).get("properties") or {}
    if not properties:
        return
    unknown = sorted(set(parameters) - set(properties))
    if unknown:
        raise OrchestrationError(
            f"The deployment {full_name!r} has no parameter {', '.join(map(repr, unknown))}. "
            f"It takes: {', '.join(properties)}."
        )


def _check_run_name(name: object) -> None:
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise OrchestrationError(
            f"flow_run_name is the name the run gets, as text, e.g. flow_run_name='first-try'; "
            f"got {name!r}."
        )


def _check_scheduled_time(when: object) -> None:
    """A datetime, or an error with one to copy (text such as "tomorrow" is not read)."""
    if when is None or isinstance(when, dt.datetime):
        return
    raise OrchestrationError(
        f"scheduled_time must be a datetime, got {when!r} ({type(when).__name__}). For a run "
        "in 5 minutes: import datetime as dt, then scheduled_time=dt.datetime.now(dt.timezone.utc) "
        "+ dt.timedelta(minutes=5); leave it out to run now."
    )


#: trigger() creates the runs of this process one at a time. SQLite takes one writer at a
#: time and refuses the others at once (HTTP 503): runs created from many threads at once only
#: made it refuse each other, and every refused call slept through Prefect's growing retry waits.
_ONE_CREATION_AT_A_TIME = threading.Lock()
#: How long trigger() keeps asking a server that refuses to write (HTTP 429/502/503).
CREATE_PATIENCE_SECONDS = 300.0


def _create_run(
    c: SyncPrefectClient,
    deployment_id: Any,
    parameters: dict[str, Any],
    name: str | None,
    state: State | None,
) -> FlowRun:
    """Create one run of a deployment, one creation at a time in this process.

    ``c`` asks again soon while the server is too busy (``client(busy_patience=...)``);
    Prefect's own retries are off here, as they would wait 2 s and more after each
    refusal. Raises Prefect's ``PrefectHTTPStatusError`` when the server still refuses
    after :data:`CREATE_PATIENCE_SECONDS`, or refuses for another reason.
    """
    from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings

    # the settings first: making them takes a moment, which need not hold the others
    with temporary_settings({PREFECT_CLIENT_MAX_RETRIES: 0}), _ONE_CREATION_AT_A_TIME:
        return c.create_flow_run_from_deployment(
            deployment_id, parameters=parameters, name=name, state=state
        )


def trigger(
    deployment: Any = "energy-usage-pipeline/energy-usage",
    parameters: dict[str, Any] | None = None,
    flow_run_name: str | None = None,
    scheduled_time: dt.datetime | None = None,
) -> RunInfo:
    """Ask for one run of a deployment now; do not wait for it. Returns the new run.

    Replaces `prefect deployment run 'flow/deployment'` (and a click on
    "Quick run" in the UI). The run goes to the deployment's queue as Scheduled;
    a worker polling that queue starts it. Use :func:`wait_for` to wait.

    Args:
        deployment: "flow/deployment", the bare deployment name, its id, or a DeploymentInfo.
        parameters: values that override the deployment's defaults for this run.
        flow_run_name: a stable name for the run while it waits in the queue (handy in
            notebooks compared under test). A flow with its own ``flow_run_name``
            template, like the energy flows ("energy-<meter>-<start>"), renames the
            run when it starts: match runs by ``RunInfo.id``, not by name.
        scheduled_time: when the run should start (default: now). A time in the past
            makes it Late a few seconds later if no worker picks it up.
    """
    from prefect.client.schemas.objects import StateType
    from prefect.exceptions import PrefectHTTPStatusError
    from prefect.states import Scheduled

    parameters = check_parameters_dict(parameters)
    _check_run_name(flow_run_name)
    _check_scheduled_time(scheduled_time)
    with client(busy_patience=CREATE_PATIENCE_SECONDS) as c:
        target = resolve_deployment(c, deployment)
        flow = c.read_flow(target.flow_id)
        full_name = f"{flow.name}/{target.name}"
        _check_parameters_against_schema(parameters, target.parameter_openapi_schema, full_name)
        state: State | None = Scheduled(scheduled_time=scheduled_time) if scheduled_time else None
        try:
            run = _create_run(c, target.id, parameters, flow_run_name, state)
        except PrefectHTTPStatusError as exc:
            detail = _detail(exc)
            full = disk_full_behind(exc.response.status_code, detail, f"a run of {full_name!r}")
            if full is not None:
                raise full from None
            if exc.response.status_code in BUSY_STATUSES:
                # Not the request's fault: the server could not write it, even after
                # retrying (on SQLite: "database is locked" in a burst).
                raise OrchestrationError(
                    f"The server could not record a run of {full_name!r} "
                    f"(HTTP {exc.response.status_code}: {detail}), even after retrying for "
                    f"{CREATE_PATIENCE_SECONDS:g} s: it is too busy. Run the cell again; for "
                    "many runs at once, run the server on PostgreSQL (lesson 07)."
                ) from None
            if exc.response.status_code >= 500:
                raise OrchestrationError(
                    f"The server failed to record a run of {full_name!r} "
                    f"(HTTP {exc.response.status_code}: {detail}). Its log says why: "
                    "`energy-flows logs server` in a terminal."
                ) from None
            hint = (
                "Check the parameter values against the flow's signature."
                if "parameter" in detail.lower()
                else "Change what it names, then run the cell again."
            )
            raise OrchestrationError(
                f"The server refused a run of {full_name!r}: {detail}. {hint}"
            ) from None
        if run.state is not None and run.state.type != StateType.SCHEDULED:
            run = c.read_flow_run(run.id)
        return run_info(run, target.name)


def _detail(exc: Exception) -> str:
    try:
        body = exc.response.json()  # type: ignore[attr-defined]
        return str(body.get("detail") or body)
    except Exception:
        return str(exc)


# --------------------------------------------------------------------------- waiting


def run_uuid(run: Any) -> uuid.UUID:
    """The id of a run given as a RunInfo, a FlowRun, a UUID or its text; else say how to name one."""
    if isinstance(run, RunInfo):
        return uuid.UUID(run.id)
    if isinstance(run, uuid.UUID):
        return run
    run_id = getattr(run, "id", run)
    try:
        return uuid.UUID(str(run_id))
    except ValueError:
        raise OrchestrationError(
            f"Name a run by the RunInfo trigger() returned or its id; got {run!r}."
        ) from None


def read_run(run: Any) -> RunInfo:
    """The current state of one flow run (by RunInfo, id or FlowRun)."""
    from prefect.exceptions import ObjectNotFound

    housekeeping.run()
    with client() as c:
        try:
            flow_run = c.read_flow_run(run_uuid(run))
        except ObjectNotFound:
            raise OrchestrationError(f"There is no flow run with id {run_uuid(run)}.") from None
        return run_info(flow_run, deployment_names(c, [flow_run]).get(flow_run.deployment_id))


def cancel_late_runs(queue: str = DEFAULT_QUEUE, pool: str = DEFAULT_POOL) -> pd.DataFrame:
    """Cancel every Late run of a queue; return what was cancelled (``len()`` is the count).

    A queue nobody served for a while fills up with Late runs; a worker that
    comes back would run all of them, one after the other. Cancelling them
    first is what an operator does. Columns as in :func:`queue_runs`.
    """
    from prefect.states import Cancelled

    housekeeping.run()
    with client() as c:
        read_queue(c, queue, pool)
        late = read_queue_runs(c, queue, pool, ["Late"], limit=500)
        names = deployment_names(c, late)
        for run in late:
            c.set_flow_run_state(
                run.id,
                Cancelled(message="Cancelled by energy_flows.cancel_late_runs()"),
                force=True,
            )
        return runs_frame(late, names)
