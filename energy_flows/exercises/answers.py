"""Finding a learner's answer on the server, whatever shape it has.

A learner may answer with Prefect's own objects or with the package's: a
flow run as the ``State`` a flow returned with ``return_state=True``, a
``FlowRun`` (``run_deployment``), a run id (text or UUID), a run's name, or
the package's ``RunInfo`` / ``RunResult``; a deployment as the id ``.deploy()``
returned, its ``"flow/deployment"`` name or Prefect's deployment object; a
work queue by name or object. :func:`find_on_server` knows all those shapes.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from energy_flows.exercises.verdict import CheckResult
from energy_flows.vocabulary import DEFAULT_POOL

__all__ = [
    "FLOW_NAME",
    "MY_FLOW_NAME",
    "Unanswerable",
    "find_on_server",
    "flow_name_of",
    "server_client",
    "state_name",
    "task_runs_of",
]

#: The course's own flow.
FLOW_NAME = "energy-usage-pipeline"
#: The flow the learner writes in lesson 02 (``my_energy_flow.py``).
MY_FLOW_NAME = "my-energy-flow"


class Unanswerable(Exception):
    """An answer that names nothing this server holds; the message says what to give instead."""


def server_client() -> Any:
    """A synchronous client of this kernel's server (the orchestration layer's)."""
    from energy_flows.orchestration.common import client

    return client()


def _as_uuid(value: Any) -> uuid.UUID | None:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value).strip())
    except ValueError:
        return None


def _run_id_of(answer: Any) -> uuid.UUID | str | None:
    """The flow-run id (or a name to look up) an answer carries, from any shape it may have."""
    import pandas as pd

    state_details = getattr(answer, "state_details", None)
    if state_details is not None:  # a Prefect State (return_state=True, flow_run.state)
        return getattr(state_details, "flow_run_id", None)
    if isinstance(answer, pd.DataFrame):  # a table a flow returned (the batch)
        return _as_uuid(answer.attrs.get("flow_run_id") or "")
    if hasattr(answer, "flow_run_id"):  # the energy flow's PipelineResult
        return _as_uuid(answer.flow_run_id or "")
    if hasattr(answer, "id"):  # Prefect's FlowRun, the package's RunInfo and RunResult
        return _as_uuid(answer.id)
    if isinstance(answer, uuid.UUID | str):
        return _as_uuid(answer) or (str(answer).strip() or None)
    return None


def _latest_run_of(c: Any, flow_name: str) -> Any:
    """The run of ``flow_name`` that started last (scheduled runs that never started aside)."""
    from prefect.client.schemas import filters
    from prefect.client.schemas.sorting import FlowRunSort

    runs = c.read_flow_runs(
        flow_filter=filters.FlowFilter(name=filters.FlowFilterName(any_=[flow_name])),
        flow_run_filter=filters.FlowRunFilter(
            start_time=filters.FlowRunFilterStartTime(is_null_=False)
        ),
        sort=FlowRunSort.START_TIME_DESC,
        limit=1,
    )
    return runs[0] if runs else None


def _find_flow_run(c: Any, answer: Any, variable: str, flow_name: str | None) -> Any:
    from prefect import Flow

    if isinstance(answer, Flow):  # the flow itself: judge its latest run
        run = _latest_run_of(c, answer.name)
        if run is None:
            raise Unanswerable(f"the flow {answer.name!r} has no run on this server yet: run it.")
        return run
    key = _run_id_of(answer)
    if key is None:
        if flow_name is not None:  # what a flow returned, without its run's id
            run = _latest_run_of(c, flow_name)
            if run is not None:
                return run
        raise Unanswerable(
            f"`{variable}` is a {type(answer).__name__}, which names no flow run: give the run "
            "itself (the State a flow returns with return_state=True, a FlowRun, or the run's id)."
        )
    return _run_by_key(c, key, variable, flow_name)


def _run_by_key(c: Any, key: uuid.UUID | str, variable: str, flow_name: str | None) -> Any:
    """The flow run with this id, or the latest with this name (the flow's, for its name)."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
    from prefect.exceptions import ObjectNotFound

    if isinstance(key, uuid.UUID):
        try:
            return c.read_flow_run(key)
        except ObjectNotFound:
            raise Unanswerable(
                f"this server has no flow run with the id in `{variable}` (was it made against "
                "another server?): run the lesson's first cell, then your cell again."
            ) from None
    runs = c.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[key])))
    if not runs and flow_name is not None and key == flow_name:
        run = _latest_run_of(c, flow_name)
        if run is not None:
            return run
    if not runs:
        raise Unanswerable(f"this server has no flow run named {key!r}.")
    return max(runs, key=lambda r: r.created or dt.datetime.min.replace(tzinfo=dt.UTC))


def _find_deployment(c: Any, answer: Any, variable: str) -> Any:
    from energy_flows.errors import OrchestrationError
    from energy_flows.orchestration.deployments import resolve_deployment

    if type(answer).__name__ == "DeploymentBuilder":
        raise Unanswerable(
            f"`{variable}` is the form itself: keep what deploying returned (the deployment)."
        )
    if isinstance(answer, list) and len(answer) == 1:  # prefect.deploy() returns a list of ids
        answer = answer[0]
    if not isinstance(answer, str | uuid.UUID) and not hasattr(answer, "id"):
        raise Unanswerable(
            f"`{variable}` is a {type(answer).__name__}, which names no deployment: give the "
            "deployment's id (what .deploy() returns), its 'flow/deployment' name, or the object."
        )
    try:
        return resolve_deployment(c, answer)
    except OrchestrationError as exc:
        raise Unanswerable(str(exc)) from None


def _find_work_queue(c: Any, answer: Any, variable: str, pool: str) -> Any:
    from prefect.exceptions import ObjectNotFound

    key = getattr(answer, "name", answer)  # Prefect's WorkQueue, the package's QueueInfo
    if isinstance(key, uuid.UUID) or (isinstance(key, str) and _as_uuid(key)):
        try:
            return c.read_work_queue(_as_uuid(key))
        except ObjectNotFound:
            raise Unanswerable(
                f"this server has no work queue with the id in `{variable}`."
            ) from None
    if not isinstance(key, str) or not key.strip():
        raise Unanswerable(
            f"`{variable}` is a {type(answer).__name__}: give the queue's name (text) or the "
            "queue object."
        )
    queue_pool = getattr(answer, "work_pool_name", None) or getattr(answer, "pool", None) or pool
    try:
        return c.read_work_queue_by_name(key.strip(), work_pool_name=queue_pool)
    except ObjectNotFound:
        names = sorted(q.name for q in c.read_work_queues(work_pool_name=queue_pool))
        raise Unanswerable(
            f"the pool {queue_pool!r} has no queue {key.strip()!r} (its queues: "
            f"{', '.join(names) or 'none'})."
        ) from None


def find_on_server(
    answer: Any,
    kind: str,
    *,
    variable: str = "the answer",
    flow_name: str | None = None,
    pool: str = DEFAULT_POOL,
) -> Any:
    """The object on the server that a learner's ``answer`` stands for, as Prefect returns it.

    ``kind`` is ``"flow run"`` (a Prefect ``FlowRun``), ``"deployment"``
    (a ``DeploymentResponse``) or ``"work queue"`` (a ``WorkQueue`` of
    ``pool``). Every shape a learner may hold is accepted: Prefect's objects
    (``State``, ``FlowRun``, deployment and queue objects, the ``Flow``
    itself for its latest run), the package's (``RunInfo``, ``RunResult``,
    ``DeploymentInfo``, ``QueueInfo``, a flow's result that remembers its
    run), ids as text or UUID, and names. ``flow_name``: for a flow run, the
    flow whose latest run an answer without a run id (a returned value, the
    flow's name) stands for.

    Raises :class:`Unanswerable` with the sentence to show when the answer
    names nothing on this server.
    """
    finders = {
        "flow run": lambda c: _find_flow_run(c, answer, variable, flow_name),
        "deployment": lambda c: _find_deployment(c, answer, variable),
        "work queue": lambda c: _find_work_queue(c, answer, variable, pool),
    }
    if kind not in finders:
        raise ValueError(f"kind is one of {', '.join(finders)}; got {kind!r}.")
    with server_client() as c:
        return finders[kind](c)


def found_on_server(
    check: CheckResult,
    answer: Any,
    kind: str,
    *,
    variable: str,
    expected: str = "your answer",
    **options: Any,
) -> Any:
    """What :func:`find_on_server` finds for ``answer``, or None with the reason added to ``check``.

    The reason is "``variable`` is still None" with the ``expected`` kind of
    answer, or the sentence saying the answer names nothing on this server.
    """
    from energy_flows.exercises.verdict import not_answered

    if answer is None:
        not_answered(check, variable, expected)
        return None
    try:
        return find_on_server(answer, kind, variable=variable, **options)
    except Unanswerable as exc:
        check.missing.append(str(exc))
        return None


def deployment_name_of(run: Any) -> str | None:
    """The name of the deployment a flow run came from (None: it was called, not deployed)."""
    if not run.deployment_id:
        return None
    with server_client() as c:
        return str(c.read_deployment(run.deployment_id).name)


def flow_name_of(flow_id: Any) -> str:
    """The name of the flow with id ``flow_id``."""
    with server_client() as c:
        return str(c.read_flow(flow_id).name)


def state_name(run: Any) -> str:
    """A run's state name (\"unknown\" without a state)."""
    return run.state.name if run.state is not None else "unknown"


def task_runs_of(flow_run_id: Any) -> list[Any]:
    """The task runs of one flow run."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with server_client() as c:
        return list(
            c.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        )
