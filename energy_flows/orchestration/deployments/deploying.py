"""Deployments: a flow, registered on the server with its parameters, schedule, pool and queue.

In the 2022 walkthrough this was `prefect deployment create orchestration.py`
with a ``DeploymentSpec``. Today it is
``flow.from_source(folder, "file.py:flow_function").deploy(...)``. The code is
already on this machine (the installed package), so nothing is built or pushed:
the worker runs the flow from the same folder.

Everything is checked here, before Prefect sees it, so a typo gives one
clear sentence instead of a server traceback.
"""

from __future__ import annotations

import datetime as dt
import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from energy_flows.errors import OrchestrationError
from energy_flows.names import check_prefect_name
from energy_flows.orchestration.common import client, disk_full_behind, http_status
from energy_flows.orchestration.deployments.listing import DeploymentInfo, deployment_info
from energy_flows.orchestration.deployments.parameters import check_flow_rules, validate_parameters
from energy_flows.orchestration.deployments.schedules import build_schedule
from energy_flows.orchestration.pools import read_pool
from energy_flows.vocabulary import DEFAULT_DEPLOYMENT, DEFAULT_POOL, DEFAULT_QUEUE

if TYPE_CHECKING:
    from prefect import Flow

__all__ = ["DeployOptions", "deploy", "deploy_energy_flow", "deployment_problems"]


def _source_of(flow: Flow) -> tuple[Path, str]:
    """The folder a worker starts in and the entrypoint it loads the flow from.

    Prefer a module path ("energy_flows.flows.energy_usage_pipeline", loaded from the
    folder that holds the package) over a file path ("flows.py:energy_usage_pipeline"):
    a file is loaded as a loose script module named "flows", and any class it defines
    (a result type, say) would be pickled under that name, which the notebook cannot
    import when it reads the result back. The file form is the fall-back for a flow
    whose module is not importable by its name.
    """
    from prefect import Flow as PrefectFlow

    if not isinstance(flow, PrefectFlow):
        raise OrchestrationError(
            f"deploy() needs a Prefect flow (a function decorated with @flow); got {flow!r}."
        )
    try:
        source = inspect.getsourcefile(flow.fn)
    except TypeError:
        source = None
    if not source or source.startswith("<") or "ipykernel" in source or not Path(source).is_file():
        raise OrchestrationError(
            f"The flow {flow.name!r} was defined in a notebook cell, and a worker in another "
            "process cannot import a notebook. Move the function to a .py file (for example "
            "my_flows.py next to the notebook), import it, and deploy that."
        )
    path = Path(source).resolve()
    function = flow.fn.__name__
    module = getattr(flow.fn, "__module__", "") or ""
    parts = module.split(".")
    if module and module != "__main__" and all(p.isidentifier() for p in parts):
        root = path.parents[len(parts) - 1]
        if path.stem != "__init__" and root.joinpath(*parts).with_suffix(".py") == path:
            return root, f"{module}.{function}"
    return path.parent, f"{path.name}:{function}"


def _snapshot(info: DeploymentInfo) -> dict[str, Any]:
    return {
        "schedule": info.schedule,
        "parameters": info.parameters,
        "work_pool": info.work_pool,
        "work_queue": info.work_queue,
        "paused": info.paused,
    }


class DeployOptions(TypedDict, total=False):
    """The keyword arguments of :func:`deploy` (and :func:`deploy_energy_flow`): see there."""

    parameters: dict[str, Any] | None
    interval: int | float | dt.timedelta | None
    cron: str | None
    rrule: str | None
    work_pool: str
    work_queue: str
    paused: bool
    timezone: str | None
    description: str | None
    tags: list[str] | None
    job_variables: dict[str, Any] | None


def deployment_problems(
    flow: Flow, name: str, **options: Unpack[DeployOptions]
) -> dict[str, OrchestrationError]:
    """Every reason :func:`deploy` would refuse these arguments, found without the server.

    Returns ``{}`` when there is none, else one error per argument to fix,
    keyed ``"name"``, ``"flow"``, ``"schedule"``, ``"parameters"``,
    ``"paused"``, ``"work_pool"`` or ``"work_queue"``, in that order.
    :func:`deploy` raises the first; the ``DeploymentBuilder`` form shows
    them all while you type. What only the server knows (does the pool
    exist?) is checked when deploying.
    """
    paused = options.get("paused", False)
    problems: dict[str, OrchestrationError] = {}

    def check(key: str, step: Any) -> None:
        try:
            step()
        except OrchestrationError as exc:
            problems[key] = exc

    def parameters_step() -> None:
        check_flow_rules(flow, validate_parameters(flow, options.get("parameters")))

    def paused_step() -> None:
        if not isinstance(paused, bool):
            raise OrchestrationError(f"paused must be True or False; got {paused!r}.")

    work_pool = options.get("work_pool", DEFAULT_POOL)
    work_queue = options.get("work_queue", DEFAULT_QUEUE)
    check("name", lambda: check_prefect_name(name, "deployment"))
    check("flow", lambda: _source_of(flow))
    schedule = (options.get("interval"), options.get("cron"), options.get("rrule"))
    check("schedule", lambda: build_schedule(*schedule, options.get("timezone")))
    if "flow" not in problems:  # a flow's parameters can only be read from a flow
        check("parameters", parameters_step)
    check("paused", paused_step)
    check("work_pool", lambda: check_prefect_name(work_pool, "work pool"))
    check("work_queue", lambda: check_prefect_name(work_queue, "work queue"))
    return problems


def deploy(
    flow: Flow,
    name: str,
    *,
    parameters: dict[str, Any] | None = None,
    interval: int | float | dt.timedelta | None = None,
    cron: str | None = None,
    rrule: str | None = None,
    work_pool: str = DEFAULT_POOL,
    work_queue: str = DEFAULT_QUEUE,
    paused: bool = False,
    timezone: str | None = None,
    description: str | None = None,
    tags: list[str] | None = None,
    job_variables: dict[str, Any] | None = None,
) -> DeploymentInfo:
    """Register ``flow`` on the server as the deployment ``name``; return it.

    Replaces `prefect deployment create orchestration.py` (2022). Today's code
    is ``flow.from_source(folder, "file.py:function").deploy(name, work_pool_name=...)``;
    this function does exactly that, but synchronously (safe in a notebook) and
    after checking every argument.

    Args:
        flow: a ``@flow`` function from an importable .py file.
        name: the deployment's name; deploying the same name again updates it.
        parameters: default parameter values for its runs, checked against the flow's
            signature and, for the package's flows, against the flow's own rules
            (:func:`check_flow_rules`): values every run would refuse are refused now.
        interval: run every N seconds (int/float) or every ``timedelta``.
        cron: run on a cron string, e.g. ``"*/5 * * * *"``.
        rrule: run on an RFC 5545 rule with a DTSTART.
        work_pool: the pool whose workers run it (must exist: :func:`ensure_work_pool`).
        work_queue: the queue in that pool its runs go to (created if missing).
        paused: register it with its schedule switched off.
        timezone: IANA timezone of the schedule (default UTC).
        description: shown in the UI.
        tags: labels shown in the UI.
        job_variables: per-deployment overrides of the pool's job template.

    Returns:
        A :class:`DeploymentInfo`; ``changes`` says what this call did.

    Raises:
        OrchestrationError: the first of :func:`deployment_problems`, or what the
            server refuses (a work pool that does not exist).
    """
    checks: DeployOptions = {"parameters": parameters, "paused": paused, "timezone": timezone}
    checks |= {"interval": interval, "cron": cron, "rrule": rrule}
    checks |= {"work_pool": work_pool, "work_queue": work_queue}
    problems = deployment_problems(flow, name, **checks)
    if problems:
        raise next(iter(problems.values())).with_traceback(None)
    folder, entrypoint = _source_of(flow)
    schedule = build_schedule(interval, cron, rrule, timezone)
    checked = validate_parameters(flow, parameters)
    variables = dict(job_variables or {})

    from prefect import Flow as PrefectFlow
    from prefect.exceptions import ObjectNotFound

    with client() as c:
        read_pool(c, work_pool)
        try:
            before = deployment_info(c, c.read_deployment_by_name(f"{flow.name}/{name}"))
        except ObjectNotFound:
            before = None
        try:
            c.read_work_queue_by_name(work_queue, work_pool_name=work_pool)
            new_queue = False
        except ObjectNotFound:
            new_queue = True

    # `_sync=True`: Prefect would return an un-awaited coroutine inside a notebook's loop.
    # Prefect's "dual" functions are typed as async only; `_sync=True` runs them here.
    dual: Any = PrefectFlow
    remote = dual.from_source(str(folder), entrypoint, _sync=True)
    runner_deployment = remote.to_deployment(
        name,
        schedule=schedule,
        paused=paused,
        parameters=checked,
        description=description,
        tags=tags,
        work_pool_name=work_pool,
        work_queue_name=work_queue,
        job_variables=variables,
        _sync=True,
    )
    deployment_id = _apply(runner_deployment, f"the deployment {flow.name}/{name}")

    with client() as c:
        current = c.read_deployment(deployment_id)
        if schedule is None and current.schedules:
            # Re-deploying without a schedule means "no schedule", as in a fresh deploy.
            for item in current.schedules:
                c.delete_deployment_schedule(current.id, item.id)
            current = c.read_deployment(deployment_id)
        if bool(current.paused) != paused:
            (c.pause_deployment if paused else c.resume_deployment)(current.id)
            current = c.read_deployment(deployment_id)
        after = deployment_info(c, current)
    changes: list[str] = []
    if before is None:
        changes.append("created")
    else:
        old, new = _snapshot(before), _snapshot(after)
        changes.extend(f"{k} {old[k]} → {new[k]}" for k in old if old[k] != new[k])
    if new_queue:
        changes.append(f"work queue {work_queue!r} created in pool {work_pool!r}")
    return DeploymentInfo(**{**after.__dict__, "changes": tuple(changes)})


def _energy_pipeline() -> Flow:
    try:
        from energy_flows.flows import energy_usage_pipeline
    except ImportError as exc:
        raise OrchestrationError(
            f"The energy flow cannot be imported ({exc}). Is the package installed completely? "
            "Run `make setup` and restart the kernel."
        ) from exc
    return energy_usage_pipeline


def _apply(runner_deployment: Any, what: str) -> Any:
    """Send the deployment to the server; a server whose disk is full says so plainly."""
    try:
        return runner_deployment.apply(_sync=True)
    except Exception as exc:
        full = disk_full_behind(http_status(exc), str(exc), what)
        if full is not None:
            raise full from None
        raise


def deploy_energy_flow(
    name: str = DEFAULT_DEPLOYMENT, **options: Unpack[DeployOptions]
) -> DeploymentInfo:
    """Deploy the energy usage pipeline (:func:`energy_flows.flows.energy_usage_pipeline`).

    The lesson's deployment: :func:`deploy` with the package's flow, and the
    same keyword arguments (``parameters``, ``interval``, ``cron``, ``rrule``,
    ``work_pool``, ``work_queue``, ``paused``, ``timezone``, ``description``...).
    Example: ``deploy_energy_flow(interval=30, parameters={"meter_id": "house-2"})``.

    The parameters go through the flow's own checks
    (:func:`energy_flows.data.check_pipeline_parameters`) before anything is created:
    ``parameters={"days": 10}`` is refused here with the sentence a run would
    fail with (10 days leave no 3 weeks of training before the 28 test days).
    """
    description = "Forecast a household's electricity use (energy-flows lesson deployment)."
    options["description"] = options.get("description") or description
    return deploy(_energy_pipeline(), name, **options)
