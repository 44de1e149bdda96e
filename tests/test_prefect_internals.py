"""The guarded uses of Prefect's internals work on the installed Prefect (``make compat`` too)."""

from __future__ import annotations

import asyncio
import gc
import warnings
from typing import Any

import pytest

from energy_flows.prefect_internals import flush_to_server

pytestmark = pytest.mark.server


def test_flush_to_server_works_where_an_event_loop_runs_as_in_a_kernel(prefect_server: Any):
    """In a notebook kernel a loop runs in the main thread: the flush must still happen."""
    from energy_flows.flows import energy_usage_pipeline

    energy_usage_pipeline(meter_id="flush-probe", days=49, test_days=7)

    async def in_a_kernel_cell() -> bool:
        return flush_to_server(timeout=10)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert asyncio.run(in_a_kernel_cell()) is True
        gc.collect()  # a coroutine never awaited warns when it is collected
    assert not [w for w in caught if "never awaited" in str(w.message)], caught
    assert flush_to_server(timeout=10) is True  # and without a loop
