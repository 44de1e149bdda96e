"""Figures and tables that show what the orchestrator did.

Every plotting function here takes plain DataFrames (or a flow result) and
returns a :class:`matplotlib.figure.Figure`; none of them talks to the Prefect
API, so they work on saved data, in tests, and without a server. The one
function that reads the API, :func:`runs_with_workers`, is kept apart and
says so.

* :func:`plot_run_timeline` (:mod:`.timeline`): one row per worker, labelled
  with its name, one bar per flow run, coloured by state, on an axis of
  clock times. Runs that overlap on one worker get extra rows, so a queue's
  concurrency limit becomes visible: with a limit of 1 the bars never overlap.
* :func:`runs_with_workers` (:mod:`.timeline`): which worker ran each run,
  from the label ``prefect.worker.name`` a worker puts on the runs it takes.
* :func:`plot_forecast` (:mod:`.plots`): actual vs predicted energy use of
  one pipeline run, with the forecast horizon shaded.
* :func:`plot_queue_counts` (:mod:`.plots`): how many runs sat in each state
  over time, from :attr:`energy_flows.widgets.QueueMonitor.history`.
* :func:`style_runs` (:mod:`.plots`): a runs table with Late rows highlighted.

Figures are closed before they are returned: a notebook shows the figure a
cell returns, once, instead of once more from pyplot's list of open figures.
State colours come from :mod:`energy_flows.vocabulary`.
"""

from energy_flows.views.plots import plot_forecast, plot_queue_counts, style_runs
from energy_flows.views.timeline import (
    WORKER_LABEL,
    assign_lanes,
    attach_workers,
    plot_run_timeline,
    read_flow_runs,
    runs_with_workers,
    worker_of,
    workers_from_logs,
    workers_from_run_logs,
)

__all__ = [
    "WORKER_LABEL",
    "assign_lanes",
    "attach_workers",
    "plot_forecast",
    "plot_queue_counts",
    "plot_run_timeline",
    "read_flow_runs",
    "runs_with_workers",
    "style_runs",
    "worker_of",
    "workers_from_logs",
    "workers_from_run_logs",
]
