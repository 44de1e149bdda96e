"""energy-flows: learn workflow orchestration with Prefect on household energy data.

The public API is listed in ``_EXPORTS`` and imported lazily, so that
``import energy_flows`` (and the ``energy-flows`` command) stays fast: Prefect
takes seconds to import and only the parts that need it pay that.

Layers (imports go one way; ``make lint`` checks it, see docs/architecture.md):

* lessons: :mod:`~energy_flows.lessons`, :mod:`~energy_flows.exercises`,
  :mod:`~energy_flows.walkthrough`, :mod:`~energy_flows.terminals`,
  :mod:`~energy_flows.tour`, :mod:`~energy_flows.check`, :mod:`~energy_flows.lab`
* views and widgets: :mod:`energy_flows.views`, :mod:`energy_flows.widgets`
* classroom services: :mod:`energy_flows.services`
* Prefect layer: :mod:`energy_flows.flows`, :mod:`energy_flows.orchestration`
* energy core: :mod:`energy_flows.data`, :mod:`energy_flows.forecasting` (numpy + pandas)
* shared by all: settings, waiting, names, vocabulary, errors (standard library)
"""

from __future__ import annotations

import importlib
from typing import Any

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
    # prefect layer: flows
    "energy_usage_pipeline": "energy_flows.flows",
    "energy_usage_batch": "energy_flows.flows",
    "read_report": "energy_flows.flows",
    "artifact_keys": "energy_flows.flows",
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
    "run_result": "energy_flows.orchestration",
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
