"""Deployments: a flow, registered on the server with its parameters, schedule, pool and queue.

In the 2022 walkthrough this was `prefect deployment create orchestration.py`
with a ``DeploymentSpec``. Today it is
``flow.from_source(folder, "file.py:flow_function").deploy(...)``. The code is
already on this machine (the installed package), so nothing is built or pushed:
the worker runs the flow from the same folder.

Everything is checked before Prefect sees it, so a typo gives one clear
sentence instead of a server traceback. The parts:

* :mod:`.schedules`: ``interval=``, ``cron=``, ``rrule=`` checked, built and said in words;
* :mod:`.parameters`: parameters checked against the flow's signature and its own rules;
* :mod:`.deploying`: :func:`deploy`, :func:`deploy_energy_flow` and every reason to refuse;
* :mod:`.listing`: :class:`DeploymentInfo`, finding, listing, pausing and resuming.
"""

from energy_flows.orchestration.deployments.deploying import (
    deploy,
    deploy_energy_flow,
    deployment_problems,
)
from energy_flows.orchestration.deployments.listing import (
    LIST_COLUMNS,
    DeploymentInfo,
    deployment_info,
    list_deployments,
    pause_deployment,
    resolve_deployment,
    resume_deployment,
)
from energy_flows.orchestration.deployments.parameters import (
    check_flow_rules,
    check_parameters_dict,
    validate_parameters,
)
from energy_flows.orchestration.deployments.schedules import (
    build_schedule,
    interval_text,
    schedule_text,
    validate_cron,
    validate_interval,
    validate_rrule,
    validate_timezone,
)

__all__ = [
    "LIST_COLUMNS",
    "DeploymentInfo",
    "build_schedule",
    "check_flow_rules",
    "check_parameters_dict",
    "deploy",
    "deploy_energy_flow",
    "deployment_info",
    "deployment_problems",
    "interval_text",
    "list_deployments",
    "pause_deployment",
    "resolve_deployment",
    "resume_deployment",
    "schedule_text",
    "validate_cron",
    "validate_interval",
    "validate_parameters",
    "validate_rrule",
    "validate_timezone",
]
