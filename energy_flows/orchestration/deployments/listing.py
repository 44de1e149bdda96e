"""Deployments on the server: as a learner sees them, found by name, listed, paused, resumed.

:class:`DeploymentInfo` is what every deployment function returns;
:func:`list_deployments` is `prefect deployment ls`, :func:`pause_deployment`
and :func:`resume_deployment` switch a schedule off and on.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from energy_flows.errors import OrchestrationError
from energy_flows.orchestration.common import client, html_table, now_utc, timestamp, ui_url
from energy_flows.orchestration.deployments.schedules import schedule_text

if TYPE_CHECKING:
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.responses import DeploymentResponse

__all__ = [
    "LIST_COLUMNS",
    "DeploymentInfo",
    "deployment_info",
    "list_deployments",
    "pause_deployment",
    "resolve_deployment",
    "resume_deployment",
]


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


def deployment_info(
    c: SyncPrefectClient, d: DeploymentResponse, changes: tuple[str, ...] = ()
) -> DeploymentInfo:
    """A deployment the server returned, as a :class:`DeploymentInfo` (``changes`` as given)."""
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
    """Find a deployment by DeploymentInfo, Prefect's deployment object, id, "flow/deployment" or name."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
    from prefect.exceptions import ObjectNotFound

    deployment = _deployment_key(deployment)
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


def _deployment_key(deployment: Any) -> str:
    """The id or name in ``deployment`` (ours, Prefect's object, an id or a name), as text."""
    if isinstance(deployment, DeploymentInfo):
        deployment = deployment.id
    elif isinstance(getattr(deployment, "id", None), uuid.UUID):
        deployment = deployment.id  # Prefect's own deployment objects
    if isinstance(deployment, uuid.UUID):
        deployment = str(deployment)
    if not isinstance(deployment, str) or not deployment:
        raise OrchestrationError(
            "Name a deployment as 'flow/deployment' (e.g. 'energy-usage-pipeline/energy-usage'), "
            f"by its name, its id, or the DeploymentInfo deploy() returned; got {deployment!r}."
        )
    return deployment


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
                    expected_start_time=FlowRunFilterExpectedStartTime(
                        after_=now_utc()  # type: ignore[arg-type]  # Prefect's DateTime is a datetime
                    ),
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


def _set_deployment_paused(deployment: Any, paused: bool) -> DeploymentInfo:
    with client() as c:
        target = resolve_deployment(c, deployment)
        if bool(target.paused) == paused:
            return deployment_info(c, target)
        (c.pause_deployment if paused else c.resume_deployment)(target.id)
        return deployment_info(
            c, c.read_deployment(target.id), ("paused" if paused else "resumed",)
        )


def pause_deployment(deployment: Any = "energy-usage-pipeline/energy-usage") -> DeploymentInfo:
    """Switch a deployment's schedule off (its future scheduled runs are removed).

    Replaces `prefect deployment pause 'flow/deployment'`. Runs can still be
    started by hand with :func:`trigger`.
    """
    return _set_deployment_paused(deployment, True)


def resume_deployment(deployment: Any = "energy-usage-pipeline/energy-usage") -> DeploymentInfo:
    """Switch a deployment's schedule back on. Replaces `prefect deployment resume ...`."""
    return _set_deployment_paused(deployment, False)
