"""Self-checks for the lessons' exercises.

Each ``check_...()`` judges the answer it is given, and finds on the server
the very thing that answer stands for. A learner may answer with Prefect's
own objects or with the package's: a flow run as the ``State`` a flow returned
with ``return_state=True``, a ``FlowRun`` (``run_deployment``), a run id (text
or UUID), a run's name, or the package's ``RunInfo`` / ``RunResult``; a
deployment as the id ``.deploy()`` returned, its ``"flow/deployment"`` name or
Prefect's deployment object; a work queue by name or object. One function,
:func:`find_on_server`, knows all those shapes.

A check never settles for "something of that name exists" when the answer
names one thing, and never gives the answer away: what is missing comes with
a hint (what the server holds, what the task asked for), not with the call
to type. It returns a :class:`CheckResult`, shown as a short list in a
notebook and truthy when the exercise is done::

    my_state = my_energy_flow(flaky=0.5, return_state=True)
    check_flaky_run(my_state)

"Predict the outcome" questions take the learner's choice (``"b"``) and
explain, for the choice made, why it is right or what it misses.

A check never changes anything on the server.
"""

from energy_flows.exercises.answers import Unanswerable, find_on_server
from energy_flows.exercises.flows_and_deployments import (
    check_cron_deployment,
    check_flaky_run,
    check_yaml_deployment,
)
from energy_flows.exercises.predictions import (
    check_await_prediction,
    check_concurrency_prediction,
    check_kill_prediction,
    check_retry_prediction,
)
from energy_flows.exercises.queues_and_runs import (
    check_deployment_run,
    check_late_run,
    check_no_late_runs,
    check_work_queue,
)
from energy_flows.exercises.scaling import check_burst_workers, check_dask_batch
from energy_flows.exercises.verdict import CheckResult

__all__ = [
    "CheckResult",
    "Unanswerable",
    "check_await_prediction",
    "check_burst_workers",
    "check_concurrency_prediction",
    "check_cron_deployment",
    "check_dask_batch",
    "check_deployment_run",
    "check_flaky_run",
    "check_kill_prediction",
    "check_late_run",
    "check_no_late_runs",
    "check_retry_prediction",
    "check_work_queue",
    "check_yaml_deployment",
    "find_on_server",
]
