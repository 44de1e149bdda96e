"""Orchestration: work pools, queues, deployments, runs and results, from a notebook.

Every function here is synchronous and safe in a Jupyter kernel: it never
returns a coroutine and never calls ``asyncio.run`` (see :mod:`~energy_flows.orchestration.common`). Each
returns a small dataclass or a DataFrame with stable columns, so a lesson's
cell shows one readable table.

=====================================  ==========================================
2022 walkthrough (Prefect 2 beta)      here
=====================================  ==========================================
`prefect deployment create ...`        :func:`deploy_energy_flow`, :func:`deploy`
`prefect deployment ls`                :func:`list_deployments`
`prefect work-queue create ...`        :func:`ensure_work_pool`, :func:`ensure_work_queue`
`prefect work-queue inspect/preview`   :func:`queue_status`, :func:`queue_runs`
`prefect deployment run ...`           :func:`trigger`, :func:`wait_for`
(the UI's run page)                    :func:`run_result`, :func:`read_report`
(runs of a worker that died)           :func:`ensure_zombie_automation`
=====================================  ==========================================
"""

from energy_flows.orchestration.common import flow_run_command
from energy_flows.orchestration.deployments import (
    DeploymentInfo,
    deploy,
    deploy_energy_flow,
    list_deployments,
    pause_deployment,
    resume_deployment,
    schedule_text,
)
from energy_flows.orchestration.diagnosis import Diagnosis, diagnose
from energy_flows.orchestration.pools import (
    UNLIMITED,
    PoolInfo,
    QueueInfo,
    ensure_work_pool,
    ensure_work_queue,
    pause_work_pool,
    pause_work_queue,
    resume_work_pool,
    resume_work_queue,
    workers,
)
from energy_flows.orchestration.results import RunResult, read_report, run_result
from energy_flows.orchestration.runs import (
    RunInfo,
    cancel_late_runs,
    queue_runs,
    queue_status,
    read_run,
    trigger,
)
from energy_flows.orchestration.waits import wait_for
from energy_flows.orchestration.zombies import ZombieAutomation, ensure_zombie_automation
from energy_flows.vocabulary import (
    DEFAULT_DEPLOYMENT,
    DEFAULT_POOL,
    DEFAULT_QUEUE,
    FINAL_STATES,
    RUN_STATES,
    WAITING_STATES,
)

__all__ = [
    "DEFAULT_DEPLOYMENT",
    "DEFAULT_POOL",
    "DEFAULT_QUEUE",
    "FINAL_STATES",
    "RUN_STATES",
    "UNLIMITED",
    "WAITING_STATES",
    "DeploymentInfo",
    "Diagnosis",
    "PoolInfo",
    "QueueInfo",
    "RunInfo",
    "RunResult",
    "ZombieAutomation",
    "cancel_late_runs",
    "deploy",
    "deploy_energy_flow",
    "diagnose",
    "ensure_work_pool",
    "ensure_work_queue",
    "ensure_zombie_automation",
    "flow_run_command",
    "list_deployments",
    "pause_deployment",
    "pause_work_pool",
    "pause_work_queue",
    "queue_runs",
    "queue_status",
    "read_report",
    "read_run",
    "resume_deployment",
    "resume_work_pool",
    "resume_work_queue",
    "run_result",
    "schedule_text",
    "trigger",
    "wait_for",
    "workers",
]
