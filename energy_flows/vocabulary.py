"""The words every layer shares: default names, run states, their colours.

One place, no Prefect import: the orchestration functions, the tables, the
plots and the live widgets all read their names, state lists and colours
from here, so they can never disagree.
"""

from __future__ import annotations

#: The work pool every lesson uses (a "process" pool: runs start as local processes).
DEFAULT_POOL = "energy-pool"
#: The work queue of the original walkthrough (`prefect work-queue create energy_usage`).
DEFAULT_QUEUE = "energy_usage"
#: The deployment name :func:`~energy_flows.orchestration.deploy_energy_flow` uses.
DEFAULT_DEPLOYMENT = "energy-usage"

#: The run states a learner meets, in the order a run goes through them.
RUN_STATES = (
    "Scheduled",
    "Late",
    "Pending",
    "Running",
    "Completed",
    "Failed",
    "Crashed",
    "Cancelled",
)
#: States of runs that still wait for (or use) a worker.
WAITING_STATES = ("Scheduled", "Late", "Pending", "Running")
#: States after which a run never changes again.
FINAL_STATES = ("Completed", "Failed", "Crashed", "Cancelled")

#: The count columns of ``queue_status()``: one per run state, lower case, in order.
COUNT_COLUMNS = tuple(state.lower() for state in RUN_STATES)

#: One colour per Prefect state name, close to the Prefect UI's palette.
STATE_COLOURS: dict[str, str] = {
    "Scheduled": "#f5c542",
    "Late": "#e8710a",
    "Pending": "#a3a3a3",
    "Running": "#1e88e5",
    "Completed": "#2e7d32",
    "Failed": "#d32f2f",
    "Crashed": "#8e24aa",
    "Cancelled": "#616161",
    "Cancelling": "#9e9e9e",
    "Paused": "#fbc02d",
}

#: The colour of a state this module does not know.
UNKNOWN_COLOUR = "#bdbdbd"

#: The background that marks Late counts in tables (light orange) and its text colour.
LATE_BACKGROUND = "#fde0c5"
LATE_TEXT = "#8a3b00"

#: Text colours for "fine" and "needs attention" in the widgets and tables.
OK_COLOUR = "#1b5e20"
BAD_COLOUR = "#b71c1c"
#: The text colour of something that is neither fine nor wrong ("stopped").
MUTED_COLOUR = "#616161"

#: The colours of a service's status (server, worker, PostgreSQL) in its HTML table,
#: by the status's text (``services.base.Status`` values equal these strings).
SERVICE_STATUS_COLOURS: dict[str, str] = {
    "running": "#2e7d32",
    "not answering": "#e65100",
    "stopped": "#9e9e9e",
}


def state_colour(state: str) -> str:
    """The colour of a state name (grey for a state this module does not know)."""
    return STATE_COLOURS.get(str(state), UNKNOWN_COLOUR)
