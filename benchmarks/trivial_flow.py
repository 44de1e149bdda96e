"""A flow that does nothing: what is left to measure is orchestration overhead."""

from prefect import flow


@flow(log_prints=False)
def noop() -> int:
    return 1
