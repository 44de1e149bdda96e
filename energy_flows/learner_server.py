"""Lesson 08: the learner's own Prefect server, found and read; nothing here changes anything.

The learner starts the server in a terminal with plain Prefect. It is found
by its process (a ``prefect server start`` whose ``PREFECT_HOME`` is the
terminals', :mod:`energy_flows.terminals`) and the port it listens on, and
read through Prefect's own sync client pointed at it for the calling thread
(:func:`client`). What :mod:`energy_flows.walkthrough`'s checks ask of it is
here: its deployments with the ``prefect.yaml`` each was built from, the
runs of a deployment with the names of the states they went through, and
the runs left unfinished.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from energy_flows import terminals
from energy_flows.terminals import HandStarted


@dataclass(frozen=True)
class LearnerServer:
    """The Prefect server started in a terminal with the terminals' ``PREFECT_HOME``."""

    process: HandStarted
    port: int

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def port_of(url: str | None) -> int | None:
    match = re.match(r"https?://[^/:]+:(\d+)", url or "")
    return int(match.group(1)) if match else None


def find_server() -> LearnerServer | None:
    """The learner's server: a ``prefect server start`` of the terminals' home that listens."""
    for proc in terminals.started_by_hand():
        if proc.role == "server" and proc.ports:
            return LearnerServer(proc, proc.ports[0])
    return None


def answers(api_url: str) -> bool:
    from energy_flows.widgets.base import server_answers

    return server_answers(api_url)


@contextmanager
def client(api_url: str) -> Iterator[Any]:
    """Prefect's sync client, pointed at the learner's server for this thread only.

    It sends the home's password when there is one: on a shared machine the
    terminals give it to the server started by hand (:func:`terminals.terminal_env`);
    a server without a password ignores it.
    """
    from prefect.settings import PREFECT_API_AUTH_STRING, temporary_settings

    from energy_flows import settings
    from energy_flows.orchestration.common import client
    from energy_flows.widgets.base import prefect_api

    secret = settings.auth_string()
    password = {PREFECT_API_AUTH_STRING: secret} if secret else {}
    with prefect_api(api_url), temporary_settings(password), client() as c:
        yield c


def servers_of_other_homes() -> list[HandStarted]:
    """Servers typed into a JupyterLab terminal of this course with another ``PREFECT_HOME``."""
    from energy_flows import settings

    ours = str(terminals.prefect_home())
    home = str(settings.home_dir())
    return [
        p
        for p in terminals.prefect_processes()
        if p.role == "server"
        and p.in_jupyter_terminal
        and p.course_home in (None, home)
        and p.prefect_home.rstrip(os.sep) != ours
    ]


def dashboard_api_url(server: LearnerServer) -> str | None:
    """The API address the server's dashboard calls (None when it cannot be read)."""
    from energy_flows import prefect_internals

    return prefect_internals.dashboard_api_url(server.ui_url)


def own_profile_api_url() -> str | None:
    """``PREFECT_API_URL`` of the active profile in ``~/.prefect``, the learner's own (or None)."""
    import tomllib

    try:
        data = tomllib.loads((Path.home() / ".prefect" / "profiles.toml").read_text())
        active = data.get("active")
        return str(data.get("profiles", {}).get(active, {}).get("PREFECT_API_URL") or "") or None
    except (OSError, ValueError, AttributeError):
        return None


@dataclass(frozen=True)
class Built:
    """A deployment on the learner's server and the files it was built from."""

    deployment: Any
    flow_name: str
    folder: Path | None
    yaml_entry: dict[str, Any] | None

    @property
    def full_name(self) -> str:
        return f"{self.flow_name}/{self.deployment.name}"


def deploy_folder(deployment: Any) -> Path | None:
    """The folder ``prefect deploy`` ran in: its ``set_working_directory`` pull step."""
    for step in deployment.pull_steps or []:
        for key, value in step.items():
            if key.endswith("set_working_directory") and isinstance(value, dict):
                directory = value.get("directory")
                if directory:
                    return Path(str(directory))
    return None


def yaml_entry(folder: Path | None, name: str) -> dict[str, Any] | None:
    """The entry ``name`` of ``deployments:`` in ``folder/prefect.yaml`` (None if absent)."""
    import yaml

    if folder is None:
        return None
    try:
        data = yaml.safe_load((folder / "prefect.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return None
    entries = data.get("deployments") if isinstance(data, dict) else None
    for entry in entries or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            return entry
    return None


def deployments(api_url: str) -> list[Built]:
    with client(api_url) as c:
        found = []
        for d in c.read_deployments():
            folder = deploy_folder(d)
            found.append(Built(d, c.read_flow(d.flow_id).name, folder, yaml_entry(folder, d.name)))
    return found


def interval_seconds(deployment: Any) -> list[float]:
    seconds = []
    for schedule in deployment.schedules or []:
        interval = getattr(schedule.schedule, "interval", None)
        if interval is not None:
            seconds.append(interval.total_seconds())
    return seconds


@dataclass(frozen=True)
class RunHistory:
    """A flow run of the learner's deployment and the names of the states it went through."""

    run: Any
    states: list[str]

    @property
    def was_late(self) -> bool:
        return "Late" in self.states

    @property
    def worker(self) -> str | None:
        labels = getattr(self.run, "labels", None) or {}
        return labels.get("prefect.worker.name")


def histories(api_url: str, deployment_id: Any) -> list[RunHistory]:
    """The deployment's runs that are not merely waiting for their time, with their states."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with client(api_url) as c:
        runs = c.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
            limit=200,
        )
        started = [
            r
            for r in runs
            if r.state and (r.state.type.value != "SCHEDULED" or r.state.name == "Late")
        ]
        return [RunHistory(r, [s.name for s in c.read_flow_run_states(r.id)]) for r in started]


def next_scheduled(api_url: str, deployment_id: Any) -> Any:
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateName,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    with client(api_url) as c:
        runs = c.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Scheduled"]))
            ),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC,
            limit=1,
        )
    return runs[0] if runs else None


def package_worker_names() -> set[str]:
    """The names of the workers this package started for this home."""
    from energy_flows.services import registry

    try:
        return {rec.name for rec in registry.worker_records(None)}
    except Exception:
        return set()


def unfinished(api_url: str) -> list[Any]:
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    with client(api_url) as c:
        return c.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(
                        any_=[StateType.PENDING, StateType.RUNNING, StateType.CANCELLING]
                    )
                )
            )
        )
