"""Lesson 07: many workers on one queue, one flow's tasks on Dask."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from energy_flows.exercises.answers import (
    flow_name_of,
    found_on_server,
    server_client,
    state_name,
)
from energy_flows.exercises.verdict import CheckResult, not_answered
from energy_flows.vocabulary import DEFAULT_POOL

__all__ = ["check_burst_workers", "check_dask_batch"]


def check_dask_batch(
    scaled: Any, meters: int = 6, dask_workers: int = 3, flow_name: str = "energy-usage-batch"
) -> CheckResult:
    """Lesson 07: ``scaled`` is the table ``energy_usage_batch`` returned from a run on Dask.

    Judges that table and the flow run it came from (by the id in its
    ``attrs``): one row per meter, ``meters`` of them; its tasks ran on a Dask
    cluster of ``dask_workers`` worker processes (the package's
    ``dask_runner`` or prefect-dask's own ``DaskTaskRunner``), not on
    Prefect's default threads; and its flow run is Completed on the server.
    """
    import pandas as pd

    check = CheckResult(f"Exercise: {meters} meters on a Dask cluster of {dask_workers} workers")
    if scaled is None:
        return not_answered(check, "scaled", "the table the batch flow returns")
    if not isinstance(scaled, pd.DataFrame) or "task_runner" not in scaled.attrs:
        check.missing.append(
            f"`scaled` is a {type(scaled).__name__}; keep the table the batch flow returns."
        )
        return check
    if len(scaled) == meters:
        check.right.append(f"one row per meter, {meters} meters")
    else:
        check.missing.append(f"`scaled` has {len(scaled)} row(s), one per meter: ask for {meters}.")
    runner = str(scaled.attrs.get("task_runner"))
    processes = [
        p for p in scaled.attrs.get("task_processes", []) if p != scaled.attrs.get("flow_process")
    ]
    workers = scaled.attrs.get("dask_workers") or len(processes)
    if "Dask" not in runner:
        check.missing.append(
            f"its tasks ran on {runner}, Prefect's default threads inside this kernel's process: "
            "give the flow a Dask task runner (with_options)."
        )
    elif workers != dask_workers:
        check.missing.append(
            f"its tasks ran on Dask, on {workers} worker process(es); the exercise asks for "
            f"{dask_workers}."
        )
    else:
        check.right.append(f"its tasks ran on a Dask cluster of {workers} worker processes")
    run = found_on_server(check, scaled, "flow run", variable="scaled")
    if run is None:
        return check
    if flow_name_of(run.flow_id) != flow_name:
        check.missing.append(f"`scaled` comes from a run of {flow_name_of(run.flow_id)!r}.")
    elif state_name(run) != "Completed":
        check.missing.append(f"its flow run {run.name!r} is {state_name(run)}, not Completed.")
    else:
        check.right.append(f"its flow run {run.name!r} is Completed on the server")
    return check


def check_burst_workers(answer: Any, queue: str = "burst", pool: str = DEFAULT_POOL) -> CheckResult:
    """Lesson 07: how many Completed runs of ``queue`` each worker ran, as the learner counted.

    ``answer``: a mapping worker name -> count (a dict, a ``Counter``, a
    pandas Series, or a one-column table indexed by worker). The server's
    count comes from the label ``prefect.worker.name`` that a worker puts on
    every run it takes.
    """
    import pandas as pd

    from energy_flows.orchestration.runs import read_queue_runs

    check = CheckResult(f"Exercise: who ran the runs of {queue!r}")
    if answer is None:
        return not_answered(check, "my_counts", "worker name -> number of runs")
    if isinstance(answer, pd.DataFrame) and answer.shape[1] == 1:
        answer = answer.iloc[:, 0]
    if isinstance(answer, pd.Series):
        answer = answer.to_dict()
    if not isinstance(answer, Mapping):
        check.missing.append(
            f"`my_counts` is a {type(answer).__name__}: give worker name -> number of runs "
            "(a dict, or a pandas Series)."
        )
        return check
    with server_client() as c:
        runs = read_queue_runs(c, queue, pool, ["Completed"], limit=500)
    truth: dict[str, int] = {}
    for run in runs:
        worker = (run.labels or {}).get("prefect.worker.name", "unknown")
        truth[str(worker)] = truth.get(str(worker), 0) + 1
    given = {str(k): int(v) for k, v in answer.items()}
    total = sum(truth.values())
    if sum(given.values()) != total:
        check.missing.append(
            f"your counts add up to {sum(given.values())}; the queue {queue!r} has {total} "
            "Completed run(s): count only Completed runs of that queue."
        )
    wrong = sorted(w for w in set(given) | set(truth) if given.get(w, 0) != truth.get(w, 0))
    if wrong and not check.missing:
        check.missing.append(
            f"the numbers for {', '.join(map(repr, wrong))} differ from the server's: each run "
            "says which worker took it in its labels."
        )
    if not check.missing:
        check.right.append(
            "the same as the server's: "
            + ", ".join(f"{w} ran {n}" for w, n in sorted(truth.items()))
        )
    return check
