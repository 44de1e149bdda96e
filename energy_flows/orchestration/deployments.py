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
import json
import math
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from energy_flows.errors import DataError, OrchestrationError
from energy_flows.orchestration._common import (
    DEFAULT_DEPLOYMENT,
    DEFAULT_POOL,
    DEFAULT_QUEUE,
    client,
    flow_run_command,
    html_table,
    timestamp,
    ui_url,
)
from energy_flows.orchestration.pools import _check_name, read_pool

if TYPE_CHECKING:
    from prefect import Flow
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.responses import DeploymentResponse


@dataclass(frozen=True)
class DeploymentInfo:
    """A deployment as a learner sees it (what `prefect deployment inspect` shows, in short).

    ``full_name`` ("flow/deployment") is what `prefect deployment run` and
    :func:`trigger` accept. ``changes`` says what the call did: ``("created",)``,
    ``("schedule every 30 seconds → every 10 seconds",)``, or ``()``.
    """

    name: str
    full_name: str
    id: str
    flow_name: str
    schedule: str
    parameters: dict[str, Any]
    work_pool: str | None
    work_queue: str | None
    paused: bool
    url: str | None = None
    changes: tuple[str, ...] = ()

    def _repr_html_(self) -> str:
        return html_table(
            f"Deployment {self.full_name!r}",
            {
                "schedule": self.schedule,
                "parameters": json.dumps(self.parameters, sort_keys=True, default=str),
                "work pool / queue": f"{self.work_pool} / {self.work_queue}",
                "paused": self.paused,
                "UI": self.url,
                "changes": self.changes or "none (already as asked)",
            },
        )


# --------------------------------------------------------------------------- schedules


def _plural(n: float, unit: str) -> str:
    n = int(n) if float(n).is_integer() else n
    return f"every {unit}" if n == 1 else f"every {n} {unit}s"


def interval_text(interval: dt.timedelta) -> str:
    """``timedelta(seconds=30)`` → ``"every 30 seconds"``."""
    secs = interval.total_seconds()
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if secs >= size and secs % size == 0:
            return _plural(secs / size, unit)
    return _plural(secs, "second")


def schedule_text(schedules: list[Any] | None) -> str:
    """A deployment's schedules in words: "every 30 seconds", "cron '*/5 * * * *' (UTC)", "none"."""
    parts = []
    for item in schedules or []:
        sched = getattr(item, "schedule", item)
        tz = getattr(sched, "timezone", None) or "UTC"
        if hasattr(sched, "interval"):
            text = interval_text(sched.interval)
            if tz != "UTC":
                text += f" ({tz})"
        elif hasattr(sched, "cron"):
            text = f"cron {sched.cron!r} ({tz})"
        elif hasattr(sched, "rrule"):
            text = f"rrule {sched.rrule!r} ({tz})"
        else:
            text = str(sched)
        if getattr(item, "active", True) is False:
            text += " [inactive]"
        parts.append(text)
    return "; ".join(parts) if parts else "none"


_CRON_FIELDS = "minute hour day-of-month month day-of-week"


def validate_cron(cron: str) -> str:
    """Check a cron string the way the server will, and say why it is wrong."""
    from prefect._vendor.croniter import croniter

    if not isinstance(cron, str) or not cron.strip():
        raise OrchestrationError(
            f"cron must be a string like '*/5 * * * *' (fields: {_CRON_FIELDS}); got {cron!r}."
        )
    fields = cron.split()
    if len(fields) != 5:
        raise OrchestrationError(
            f"Invalid cron {cron!r}: a cron string has 5 fields ({_CRON_FIELDS}), "
            f"this one has {len(fields)}. Example: '*/5 * * * *' is every 5 minutes."
        )
    if any(f.casefold() in ("r", "h") for f in fields):
        raise OrchestrationError(
            f"Invalid cron {cron!r}: random (R) and hashed (H) fields are not supported."
        )
    try:
        croniter(cron)
    except Exception as exc:  # croniter's errors name the bad field
        raise OrchestrationError(
            f"Invalid cron {cron!r}: {exc}. The fields are {_CRON_FIELDS}, "
            "e.g. '0 6 * * 1-5' is 06:00 on weekdays."
        ) from None
    if not croniter.is_valid(cron):
        raise OrchestrationError(f"Invalid cron {cron!r} (fields: {_CRON_FIELDS}).")
    return cron


def validate_interval(interval: int | float | dt.timedelta) -> dt.timedelta:
    """Seconds (int/float) or a timedelta: finite and strictly positive.

    ``nan`` and ``inf`` are refused with the rest (a NaN is not even "more
    than 0", and Python cannot make a timedelta of it).
    """
    example = "Example: interval=30 runs the flow every 30 seconds."
    if isinstance(interval, dt.timedelta):
        value = interval
    elif isinstance(interval, int | float) and not isinstance(interval, bool):
        if isinstance(interval, float) and not math.isfinite(interval):
            raise OrchestrationError(
                f"interval must be a finite number of seconds; got {interval!r}. {example}"
            )
        try:
            value = dt.timedelta(seconds=interval)
        except OverflowError:
            raise OrchestrationError(
                f"interval={interval!r} seconds is longer than Python can count "
                f"({dt.timedelta.max.days} days). {example}"
            ) from None
    else:
        raise OrchestrationError(
            "interval must be a number of seconds or a datetime.timedelta, "
            f"e.g. interval=30; got {interval!r}."
        )
    if value.total_seconds() <= 0:
        raise OrchestrationError(
            f"interval must be more than 0 seconds; got {value.total_seconds():g} s. {example}"
        )
    return value


def validate_rrule(rrule: str) -> str:
    """An RFC 5545 rule with a DTSTART (without it, Prefect starts counting in 2020)."""
    import dateutil.rrule

    if not isinstance(rrule, str) or not rrule.strip():
        raise OrchestrationError(f"rrule must be a string; got {rrule!r}.")
    if "DTSTART" not in rrule.upper():
        raise OrchestrationError(
            f"The rrule {rrule!r} has no start (DTSTART). Without one Prefect counts from "
            "2020 and the runs are not where you expect. Start it like "
            "'DTSTART:20250101T060000\\nRRULE:FREQ=DAILY;INTERVAL=1'."
        )
    try:
        dateutil.rrule.rrulestr(rrule, cache=True)
    except (ValueError, TypeError) as exc:
        raise OrchestrationError(f"Invalid rrule {rrule!r}: {exc}.") from None
    return rrule


def validate_timezone(timezone: str | None) -> str | None:
    if timezone is None:
        return None
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise OrchestrationError(
            f"Unknown timezone {timezone!r}: use an IANA name such as 'Europe/Paris' or 'UTC'."
        ) from None
    return timezone


def build_schedule(
    interval: int | float | dt.timedelta | None,
    cron: str | None,
    rrule: str | None,
    timezone: str | None,
) -> Any | None:
    """Validate the schedule arguments and build one Prefect schedule (or None)."""
    from prefect.schedules import Cron, Interval, RRule

    given = [
        n for n, v in (("interval", interval), ("cron", cron), ("rrule", rrule)) if v is not None
    ]
    if len(given) > 1:
        raise OrchestrationError(
            f"Give one schedule, not {' and '.join(given)}: interval=, cron= or rrule=."
        )
    timezone = validate_timezone(timezone)
    if interval is not None:
        return Interval(validate_interval(interval), timezone=timezone)
    if cron is not None:
        return Cron(validate_cron(cron), timezone=timezone)
    if rrule is not None:
        return RRule(validate_rrule(rrule), timezone=timezone)
    if timezone is not None:
        raise OrchestrationError("timezone= only makes sense with interval=, cron= or rrule=.")
    return None


# --------------------------------------------------------------------------- parameters


def _type_name(annotation: Any) -> str:
    if annotation is inspect.Parameter.empty:
        return "any"
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def validate_parameters(flow: Flow, parameters: dict[str, Any] | None) -> dict[str, Any]:
    """Check ``parameters`` against the flow's signature; return them as the server stores them.

    Unknown names and values of the wrong type are refused with the list of
    what the flow accepts. Values are converted the way the run will see them
    ("7" for an ``int`` becomes 7) and made JSON-friendly (dates as ISO text).
    """
    import pydantic
    from pydantic_core import to_jsonable_python

    if parameters is not None and not isinstance(parameters, dict):
        raise OrchestrationError(
            "parameters must be a dict of parameter names and values, e.g. "
            f"parameters={{'days': 120}}; got {parameters!r}."
        )
    parameters = dict(parameters or {})
    signature = inspect.signature(flow.fn)
    accepted = {
        name: p
        for name, p in signature.parameters.items()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }
    described = ", ".join(
        f"{n}: {_type_name(p.annotation)}"
        + ("" if p.default is inspect.Parameter.empty else f" = {p.default!r}")
        for n, p in accepted.items()
    )
    unknown = sorted(set(parameters) - set(accepted))
    if unknown and not any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values()):
        raise OrchestrationError(
            f"The flow {flow.name!r} has no parameter {', '.join(map(repr, unknown))}. "
            f"It takes: {described or 'no parameters'}."
        )
    missing = [
        n
        for n, p in accepted.items()
        if p.default is inspect.Parameter.empty and n not in parameters
    ]
    if missing:
        raise OrchestrationError(
            f"The flow {flow.name!r} needs a value for {', '.join(map(repr, missing))} "
            f"(no default). Pass it in parameters=. It takes: {described}."
        )
    hints = _type_hints(flow.fn)
    checked: dict[str, Any] = {}
    for name, value in parameters.items():
        annotation = hints.get(name, inspect.Parameter.empty)
        if annotation is inspect.Parameter.empty or annotation is Any:
            checked[name] = to_jsonable_python(value, fallback=str)
            continue
        try:
            converted = pydantic.TypeAdapter(annotation).validate_python(value)
        except pydantic.ValidationError:
            raise OrchestrationError(
                f"Parameter {name!r} of flow {flow.name!r} must be {_type_name(annotation)}; "
                f"got {value!r} ({type(value).__name__})."
            ) from None
        except Exception:  # an annotation pydantic cannot check: leave it to the run
            converted = value
        checked[name] = to_jsonable_python(converted, fallback=str)
    return checked


def check_flow_rules(flow: Flow, parameters: dict[str, Any]) -> None:
    """Refuse parameters that every run of ``flow`` would refuse, with the flow's own sentence.

    A deployment stores default parameters for its runs. If a run of the flow
    refuses them (the package's flows check theirs first thing, with
    :func:`energy_flows.flows.check_parameters`), every scheduled run would
    fail, one after the other. So the same function runs here, at deploy time,
    on ``parameters`` as :func:`validate_parameters` returned them (the flow's
    defaults fill in the rest). Flows from elsewhere have no such rules: only
    their signature is checked.

    Raises :class:`~energy_flows.errors.OrchestrationError` (like every other
    deploy-time check, so one ``except`` catches them all) whose message holds
    the flow's :class:`~energy_flows.errors.DataError` sentence; the
    ``DataError`` is its ``__cause__``.
    """
    from energy_flows import flows as energy

    rules = {energy.energy_usage_pipeline.fn, energy.energy_usage_batch.fn}
    if getattr(flow, "fn", None) not in rules:
        return
    judged = set(inspect.signature(energy.check_parameters).parameters) - {"flow"}
    try:
        energy.check_parameters(**{k: v for k, v in parameters.items() if k in judged}, flow=flow)
    except DataError as exc:
        raise OrchestrationError(
            f"The flow {flow.name!r} would refuse every run of this deployment: {exc} "
            "Change that parameter, then deploy again."
        ) from exc


def _type_hints(fn: Any) -> dict[str, Any]:
    import typing

    try:
        return typing.get_type_hints(fn)
    except Exception:
        return {n: p.annotation for n, p in inspect.signature(fn).parameters.items()}


# --------------------------------------------------------------------------- reading


def _info(
    c: SyncPrefectClient, d: DeploymentResponse, changes: tuple[str, ...] = ()
) -> DeploymentInfo:
    flow = c.read_flow(d.flow_id)
    base = ui_url()
    return DeploymentInfo(
        name=d.name,
        full_name=f"{flow.name}/{d.name}",
        id=str(d.id),
        flow_name=flow.name,
        schedule=schedule_text(d.schedules),
        parameters=dict(d.parameters or {}),
        work_pool=d.work_pool_name,
        work_queue=d.work_queue_name,
        paused=bool(d.paused),
        url=f"{base}/deployments/deployment/{d.id}" if base else None,
        changes=changes,
    )


def resolve_deployment(c: SyncPrefectClient, deployment: Any) -> DeploymentResponse:
    """Find a deployment by DeploymentInfo, id, "flow/deployment" or bare deployment name."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
    from prefect.exceptions import ObjectNotFound

    if isinstance(deployment, DeploymentInfo):
        deployment = deployment.id
    if isinstance(deployment, uuid.UUID):
        deployment = str(deployment)
    if not isinstance(deployment, str) or not deployment:
        raise OrchestrationError(
            "Name a deployment as 'flow/deployment' (e.g. 'energy-usage-pipeline/energy-usage'), "
            f"by its name, its id, or the DeploymentInfo deploy() returned; got {deployment!r}."
        )
    try:
        return c.read_deployment(uuid.UUID(deployment))
    except ValueError:
        pass
    except ObjectNotFound:
        raise OrchestrationError(f"No deployment has the id {deployment}.") from None
    if "/" in deployment:
        try:
            return c.read_deployment_by_name(deployment)
        except ObjectNotFound:
            matches = []
    else:
        matches = c.read_deployments(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[deployment]))
        )
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        names = sorted(_full_names(c, matches))
        raise OrchestrationError(
            f"Several flows have a deployment called {deployment!r}: {', '.join(names)}. "
            "Use the full name 'flow/deployment'."
        )
    existing = sorted(_full_names(c, c.read_deployments()))
    raise OrchestrationError(
        f"There is no deployment {deployment!r} on this server (deployments: "
        f"{', '.join(existing) or 'none yet'}). Create it with deploy_energy_flow() or deploy()."
    )


def _full_names(c: SyncPrefectClient, deployments: list[Any]) -> list[str]:
    flows = _flow_names(c, {d.flow_id for d in deployments})
    return [f"{flows.get(d.flow_id, '?')}/{d.name}" for d in deployments]


def _flow_names(c: SyncPrefectClient, ids: set[Any]) -> dict[Any, str]:
    from prefect.client.schemas.filters import FlowFilter, FlowFilterId

    if not ids:
        return {}
    flows = c.read_flows(flow_filter=FlowFilter(id=FlowFilterId(any_=list(ids))))
    return {f.id: f.name for f in flows}


LIST_COLUMNS = ["name", "flow", "schedule", "next_run", "work_pool", "work_queue", "paused", "id"]


def list_deployments() -> pd.DataFrame:
    """Every deployment on the server, one row each (what `prefect deployment ls` showed).

    Columns: ``name, flow, schedule, next_run, work_pool, work_queue, paused, id``,
    sorted by flow and name. ``schedule`` is in words; ``next_run`` is the
    earliest run still waiting in the future (UTC), NaT when there is none.
    """
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterExpectedStartTime,
        FlowRunFilterState,
        FlowRunFilterStateName,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    from energy_flows.orchestration._common import now_utc

    with client() as c:
        deployments = c.read_deployments()
        flows = _flow_names(c, {d.flow_id for d in deployments})
        next_runs: dict[Any, Any] = {}
        if deployments:
            runs = c.read_flow_runs(
                deployment_filter=DeploymentFilter(
                    id=DeploymentFilterId(any_=[d.id for d in deployments])
                ),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Scheduled"])),
                    expected_start_time=FlowRunFilterExpectedStartTime(after_=now_utc()),
                ),
                sort=FlowRunSort.EXPECTED_START_TIME_ASC,
                limit=200,
            )
            for run in runs:
                next_runs.setdefault(run.deployment_id, run.expected_start_time)
    rows = [
        {
            "name": d.name,
            "flow": flows.get(d.flow_id, "?"),
            "schedule": schedule_text(d.schedules),
            "next_run": timestamp(next_runs.get(d.id)),
            "work_pool": d.work_pool_name,
            "work_queue": d.work_queue_name,
            "paused": bool(d.paused),
            "id": str(d.id),
        }
        for d in deployments
    ]
    frame = pd.DataFrame(rows, columns=LIST_COLUMNS)
    frame["next_run"] = pd.to_datetime(frame["next_run"], utc=True)
    return frame.sort_values(["flow", "name"], ignore_index=True)


# --------------------------------------------------------------------------- deploying


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


def deployment_problems(
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
) -> dict[str, OrchestrationError]:
    """Every reason :func:`deploy` would refuse these arguments, found without the server.

    Returns ``{}`` when there is none, else one error per argument to fix,
    keyed ``"name"``, ``"flow"``, ``"schedule"``, ``"parameters"``,
    ``"paused"``, ``"work_pool"`` or ``"work_queue"``, in that order.
    :func:`deploy` raises the first; the ``DeploymentBuilder`` form shows
    them all while you type. What only the server knows (does the pool
    exist?) is checked when deploying.
    """
    problems: dict[str, OrchestrationError] = {}

    def check(key: str, step: Any) -> None:
        try:
            step()
        except OrchestrationError as exc:
            problems[key] = exc

    def parameters_step() -> None:
        check_flow_rules(flow, validate_parameters(flow, parameters))

    def paused_step() -> None:
        if not isinstance(paused, bool):
            raise OrchestrationError(f"paused must be True or False; got {paused!r}.")

    check("name", lambda: _check_name(name, "deployment"))
    check("flow", lambda: _source_of(flow))
    check("schedule", lambda: build_schedule(interval, cron, rrule, timezone))
    if "flow" not in problems:  # a flow's parameters can only be read from a flow
        check("parameters", parameters_step)
    check("paused", paused_step)
    check("work_pool", lambda: _check_name(work_pool, "work pool"))
    check("work_queue", lambda: _check_name(work_queue, "work queue"))
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
    problems = deployment_problems(
        flow,
        name,
        parameters=parameters,
        interval=interval,
        cron=cron,
        rrule=rrule,
        work_pool=work_pool,
        work_queue=work_queue,
        paused=paused,
        timezone=timezone,
    )
    if problems:
        raise next(iter(problems.values())).with_traceback(None)
    folder, entrypoint = _source_of(flow)
    schedule = build_schedule(interval, cron, rrule, timezone)
    checked = validate_parameters(flow, parameters)
    variables = dict(job_variables or {})
    variables.setdefault("command", flow_run_command())

    from prefect import Flow as PrefectFlow
    from prefect.exceptions import ObjectNotFound

    with client() as c:
        pool = read_pool(c, work_pool)
        if pool.type != "process":
            variables.pop("command", None)
        try:
            before = _info(c, c.read_deployment_by_name(f"{flow.name}/{name}"))
        except ObjectNotFound:
            before = None
        try:
            c.read_work_queue_by_name(work_queue, work_pool_name=work_pool)
            new_queue = False
        except ObjectNotFound:
            new_queue = True

    # `_sync=True`: Prefect would return an un-awaited coroutine inside a notebook's loop.
    remote = PrefectFlow.from_source(str(folder), entrypoint, _sync=True)
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
    deployment_id = runner_deployment.apply(_sync=True)

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
        after = _info(c, current)
    changes: list[str] = []
    if before is None:
        changes.append("created")
    else:
        old, new = _snapshot(before), _snapshot(after)
        changes.extend(f"{k} {old[k]} → {new[k]}" for k in old if old[k] != new[k])
    if new_queue:
        changes.append(f"work queue {work_queue!r} created in pool {work_pool!r}")
    return DeploymentInfo(**{**after.__dict__, "changes": tuple(changes)})


def _set_deployment_paused(deployment: Any, paused: bool) -> DeploymentInfo:
    with client() as c:
        target = resolve_deployment(c, deployment)
        if bool(target.paused) == paused:
            return _info(c, target)
        (c.pause_deployment if paused else c.resume_deployment)(target.id)
        return _info(c, c.read_deployment(target.id), ("paused" if paused else "resumed",))


def pause_deployment(deployment: Any = "energy-usage-pipeline/energy-usage") -> DeploymentInfo:
    """Switch a deployment's schedule off (its future scheduled runs are removed).

    Replaces `prefect deployment pause 'flow/deployment'`. Runs can still be
    started by hand with :func:`trigger`.
    """
    return _set_deployment_paused(deployment, True)


def resume_deployment(deployment: Any = "energy-usage-pipeline/energy-usage") -> DeploymentInfo:
    """Switch a deployment's schedule back on. Replaces `prefect deployment resume ...`."""
    return _set_deployment_paused(deployment, False)


def _energy_pipeline() -> Flow:
    try:
        from energy_flows.flows import energy_usage_pipeline
    except ImportError as exc:
        raise OrchestrationError(
            f"The energy flow cannot be imported ({exc}). Is the package installed completely? "
            "Run `make setup` and restart the kernel."
        ) from exc
    return energy_usage_pipeline


def deploy_energy_flow(
    name: str = DEFAULT_DEPLOYMENT,
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
) -> DeploymentInfo:
    """Deploy the energy usage pipeline (:func:`energy_flows.flows.energy_usage_pipeline`).

    The lesson's deployment: the same as :func:`deploy` with the package's flow.
    Example: ``deploy_energy_flow(interval=30, parameters={"meter_id": "house-2"})``.

    The parameters go through the flow's own checks
    (:func:`energy_flows.flows.check_parameters`) before anything is created:
    ``parameters={"days": 10}`` is refused here with the sentence a run would
    fail with (10 days leave no 3 weeks of training before the 28 test days).
    """
    return deploy(
        _energy_pipeline(),
        name,
        parameters=parameters,
        interval=interval,
        cron=cron,
        rrule=rrule,
        work_pool=work_pool,
        work_queue=work_queue,
        paused=paused,
        timezone=timezone,
        description=description
        or "Forecast a household's electricity use (energy-flows lesson deployment).",
    )


__all__ = [
    "DeploymentInfo",
    "build_schedule",
    "check_flow_rules",
    "deploy",
    "deploy_energy_flow",
    "deployment_problems",
    "list_deployments",
    "pause_deployment",
    "resume_deployment",
    "schedule_text",
    "validate_parameters",
]
