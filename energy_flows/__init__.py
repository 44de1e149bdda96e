"""energy-flows: learn workflow orchestration with Prefect on household energy data.

The public API is listed in ``_EXPORTS`` and imported lazily, so that
``import energy_flows`` (and the ``energy-flows`` command) stays fast: Prefect
takes seconds to import and only the parts that need it pay that. The same
names are imported for type checkers only (``TYPE_CHECKING``), so mypy and
editors see their real types; ``tests/test_packaging.py`` keeps the two lists equal.

Layers (imports go one way; ``make lint`` checks it, see docs/architecture.md):

* lessons: :mod:`~energy_flows.lessons`, :mod:`~energy_flows.exercises`,
  :mod:`~energy_flows.walkthrough`, :mod:`~energy_flows.terminals`,
  :mod:`~energy_flows.tour`, :mod:`~energy_flows.check`, :mod:`~energy_flows.lab`
* views and widgets: :mod:`energy_flows.views`, :mod:`energy_flows.widgets`
* classroom services: :mod:`energy_flows.services`
* Prefect layer: :mod:`energy_flows.flows`, :mod:`energy_flows.orchestration`
* energy core: :mod:`energy_flows.data`, :mod:`energy_flows.forecasting` (numpy + pandas)
* shared by all: options, settings, waiting, names, vocabulary, errors (standard library)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the real types of the lazy exports below, for mypy and editors
    from energy_flows.data import clean_readings as clean_readings
    from energy_flows.data import load_meter_csv as load_meter_csv
    from energy_flows.data import load_readings as load_readings
    from energy_flows.data import load_uci_household as load_uci_household
    from energy_flows.data import meter_statistics as meter_statistics
    from energy_flows.data import meter_traits as meter_traits
    from energy_flows.data import read_meter as read_meter
    from energy_flows.data import simulate_meter as simulate_meter
    from energy_flows.data import validate_readings as validate_readings
    from energy_flows.errors import DataError as DataError
    from energy_flows.errors import EnergyFlowsError as EnergyFlowsError
    from energy_flows.errors import HomeNotWritableError as HomeNotWritableError
    from energy_flows.errors import OrchestrationError as OrchestrationError
    from energy_flows.errors import ServiceError as ServiceError
    from energy_flows.errors import WaitTimeout as WaitTimeout
    from energy_flows.flows import energy_usage_batch as energy_usage_batch
    from energy_flows.flows import energy_usage_pipeline as energy_usage_pipeline
    from energy_flows.forecasting import PipelineResult as PipelineResult
    from energy_flows.forecasting import backtest as backtest
    from energy_flows.forecasting import evaluate as evaluate
    from energy_flows.forecasting import fit as fit
    from energy_flows.forecasting import forecast as forecast
    from energy_flows.forecasting import forecast_next as forecast_next
    from energy_flows.forecasting import mae as mae
    from energy_flows.forecasting import make_features as make_features
    from energy_flows.forecasting import rmse as rmse
    from energy_flows.forecasting import run_core_pipeline as run_core_pipeline
    from energy_flows.forecasting import same_hour_last_week as same_hour_last_week
    from energy_flows.forecasting import same_hour_yesterday as same_hour_yesterday
    from energy_flows.forecasting import split_train_test as split_train_test
    from energy_flows.forecasting import wape as wape
    from energy_flows.orchestration import DEFAULT_DEPLOYMENT as DEFAULT_DEPLOYMENT
    from energy_flows.orchestration import DEFAULT_POOL as DEFAULT_POOL
    from energy_flows.orchestration import DEFAULT_QUEUE as DEFAULT_QUEUE
    from energy_flows.orchestration import RUN_STATES as RUN_STATES
    from energy_flows.orchestration import DeploymentInfo as DeploymentInfo
    from energy_flows.orchestration import PoolInfo as PoolInfo
    from energy_flows.orchestration import QueueInfo as QueueInfo
    from energy_flows.orchestration import RunInfo as RunInfo
    from energy_flows.orchestration import RunResult as RunResult
    from energy_flows.orchestration import cancel_late_runs as cancel_late_runs
    from energy_flows.orchestration import deploy as deploy
    from energy_flows.orchestration import deploy_energy_flow as deploy_energy_flow
    from energy_flows.orchestration import diagnose as diagnose
    from energy_flows.orchestration import ensure_work_pool as ensure_work_pool
    from energy_flows.orchestration import ensure_work_queue as ensure_work_queue
    from energy_flows.orchestration import list_deployments as list_deployments
    from energy_flows.orchestration import pause_deployment as pause_deployment
    from energy_flows.orchestration import pause_work_pool as pause_work_pool
    from energy_flows.orchestration import pause_work_queue as pause_work_queue
    from energy_flows.orchestration import queue_runs as queue_runs
    from energy_flows.orchestration import queue_status as queue_status
    from energy_flows.orchestration import read_report as read_report
    from energy_flows.orchestration import resume_deployment as resume_deployment
    from energy_flows.orchestration import resume_work_pool as resume_work_pool
    from energy_flows.orchestration import resume_work_queue as resume_work_queue
    from energy_flows.orchestration import run_result as run_result
    from energy_flows.orchestration import trigger as trigger
    from energy_flows.orchestration import wait_for as wait_for
    from energy_flows.orchestration import workers as workers
    from energy_flows.reports import artifact_keys as artifact_keys
    from energy_flows.services.control import running as running
    from energy_flows.services.control import stop_all as stop_all
    from energy_flows.services.server import PrefectServer as PrefectServer
    from energy_flows.services.worker import Worker as Worker
    from energy_flows.settings import classroom_env as classroom_env
    from energy_flows.settings import home_dir as home_dir
    from energy_flows.views.plots import plot_forecast as plot_forecast
    from energy_flows.views.plots import plot_queue_counts as plot_queue_counts
    from energy_flows.views.plots import style_runs as style_runs
    from energy_flows.views.timeline import plot_run_timeline as plot_run_timeline
    from energy_flows.views.timeline import runs_with_workers as runs_with_workers
    from energy_flows.widgets.builder import DeploymentBuilder as DeploymentBuilder
    from energy_flows.widgets.log_tail import LogTail as LogTail
    from energy_flows.widgets.queue_monitor import QueueMonitor as QueueMonitor

__version__ = "0.1.0"

# name -> module that defines it. Each module owns its block.
_EXPORTS: dict[str, str] = {
    # errors and settings
    "EnergyFlowsError": "energy_flows.errors",
    "HomeNotWritableError": "energy_flows.errors",
    "DataError": "energy_flows.errors",
    "ServiceError": "energy_flows.errors",
    "OrchestrationError": "energy_flows.errors",
    "WaitTimeout": "energy_flows.errors",
    "home_dir": "energy_flows.settings",
    "classroom_env": "energy_flows.settings",
    # energy core: data
    "simulate_meter": "energy_flows.data",
    "load_meter_csv": "energy_flows.data",
    "load_uci_household": "energy_flows.data",
    "validate_readings": "energy_flows.data",
    "clean_readings": "energy_flows.data",
    "load_readings": "energy_flows.data",
    "meter_statistics": "energy_flows.data",
    "meter_traits": "energy_flows.data",
    "read_meter": "energy_flows.data",
    # energy core: forecasting
    "make_features": "energy_flows.forecasting",
    "fit": "energy_flows.forecasting",
    "forecast": "energy_flows.forecasting",
    "evaluate": "energy_flows.forecasting",
    "backtest": "energy_flows.forecasting",
    "forecast_next": "energy_flows.forecasting",
    "split_train_test": "energy_flows.forecasting",
    "same_hour_yesterday": "energy_flows.forecasting",
    "same_hour_last_week": "energy_flows.forecasting",
    "mae": "energy_flows.forecasting",
    "rmse": "energy_flows.forecasting",
    "wape": "energy_flows.forecasting",
    "run_core_pipeline": "energy_flows.forecasting",
    "PipelineResult": "energy_flows.forecasting",
    "artifact_keys": "energy_flows.reports",
    # prefect layer: flows
    "energy_usage_pipeline": "energy_flows.flows",
    "energy_usage_batch": "energy_flows.flows",
    # prefect layer: orchestration
    "DEFAULT_POOL": "energy_flows.orchestration",
    "DEFAULT_QUEUE": "energy_flows.orchestration",
    "DEFAULT_DEPLOYMENT": "energy_flows.orchestration",
    "RUN_STATES": "energy_flows.orchestration",
    "PoolInfo": "energy_flows.orchestration",
    "QueueInfo": "energy_flows.orchestration",
    "DeploymentInfo": "energy_flows.orchestration",
    "RunInfo": "energy_flows.orchestration",
    "RunResult": "energy_flows.orchestration",
    "ensure_work_pool": "energy_flows.orchestration",
    "ensure_work_queue": "energy_flows.orchestration",
    "pause_work_pool": "energy_flows.orchestration",
    "resume_work_pool": "energy_flows.orchestration",
    "pause_work_queue": "energy_flows.orchestration",
    "resume_work_queue": "energy_flows.orchestration",
    "deploy_energy_flow": "energy_flows.orchestration",
    "deploy": "energy_flows.orchestration",
    "list_deployments": "energy_flows.orchestration",
    "pause_deployment": "energy_flows.orchestration",
    "resume_deployment": "energy_flows.orchestration",
    "queue_runs": "energy_flows.orchestration",
    "queue_status": "energy_flows.orchestration",
    "workers": "energy_flows.orchestration",
    "trigger": "energy_flows.orchestration",
    "wait_for": "energy_flows.orchestration",
    "cancel_late_runs": "energy_flows.orchestration",
    "diagnose": "energy_flows.orchestration",
    "run_result": "energy_flows.orchestration",
    "read_report": "energy_flows.orchestration",
    # classroom layer: services
    "PrefectServer": "energy_flows.services.server",
    "Worker": "energy_flows.services.worker",
    "running": "energy_flows.services.control",
    "stop_all": "energy_flows.services.control",
    # classroom layer: views and widgets
    "DeploymentBuilder": "energy_flows.widgets.builder",
    "QueueMonitor": "energy_flows.widgets.queue_monitor",
    "LogTail": "energy_flows.widgets.log_tail",
    "plot_run_timeline": "energy_flows.views.timeline",
    "plot_forecast": "energy_flows.views.plots",
    "plot_queue_counts": "energy_flows.views.plots",
    "runs_with_workers": "energy_flows.views.timeline",
    "style_runs": "energy_flows.views.plots",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'energy_flows' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = sorted(_EXPORTS)
