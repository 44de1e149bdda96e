"""A flow that sleeps: a run that is in flight for as long as a test needs."""

from __future__ import annotations

import time

from prefect import flow


@flow(name="nap")
def nap(seconds: float = 0.0) -> float:
    """Sleep ``seconds``, then return them."""
    time.sleep(seconds)
    return seconds
