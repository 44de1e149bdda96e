"""Live views in the notebook: what a learner looks at instead of switching to the UI.

* :class:`DeploymentBuilder` (:mod:`.builder`): a form that deploys the energy
  flow (name, parameters typed from the flow's signature, schedule, pool,
  queue, paused), checking every field as you type.
* :class:`QueueMonitor` (:mod:`.queue_monitor`): a live view of work queues:
  status, runs per state (Late highlighted), workers and their heartbeats,
  the next runs.
* :class:`LogTail` (:mod:`.log_tail`): the last lines of a server's or
  worker's log file, or of a flow run's Prefect logs.

Each widget works from code as well as with the mouse (set fields, call
``.deploy()``, ``.refresh()``, ``.start()``, ``.stop()``; buttons are
``.click()``-able), and each carries a static snapshot of what it shows: where
widgets cannot run (a notebook rendered on a website, nbval comparing stored
outputs) the ``text/plain`` and ``text/html`` parts of its display show the
same information, as it was when the widget was drawn.

Live widgets refresh in a daemon thread with its own synchronous Prefect
client: the kernel stays free to run cells while they update. ``stop()`` ends
the thread, and every thread is stopped when the kernel exits
(:func:`stop_all_views`).

The parts: :mod:`.base` (the snapshot display and the refresh thread),
:mod:`.markup` (the one HTML helper), :mod:`.cron` (:func:`explain_cron`),
:mod:`.parameters` (form fields from a flow's signature), and one module per
widget. Names, run states and colours come from :mod:`energy_flows.vocabulary`.
"""

from energy_flows.widgets.base import LiveView, SnapshotDisplay, stop_all_views
from energy_flows.widgets.builder import DeploymentBuilder
from energy_flows.widgets.cron import explain_cron
from energy_flows.widgets.log_tail import LogTail, format_log_line
from energy_flows.widgets.parameters import ParameterField, parameter_fields
from energy_flows.widgets.queue_monitor import QueueMonitor, QueueSnapshot

__all__ = [
    "DeploymentBuilder",
    "LiveView",
    "LogTail",
    "ParameterField",
    "QueueMonitor",
    "QueueSnapshot",
    "SnapshotDisplay",
    "explain_cron",
    "format_log_line",
    "parameter_fields",
    "stop_all_views",
]
