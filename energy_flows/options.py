"""Options of the services, checked once for Python and the command line: ports, seconds, queues.

``PrefectServer(port=70000)`` and ``energy-flows up --port 70000`` are the
same mistake and get the same sentence, from the same function: the
services call these checks first thing, and the ``energy-flows`` command
uses them as its argument types, so a bad value stops the command before
anything starts. Standard library only: the command answers without
importing Prefect.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

from energy_flows.errors import OrchestrationError, ServiceError
from energy_flows.names import check_prefect_name
from energy_flows.settings import check_auth_string

__all__ = [
    "check_count",
    "check_port",
    "check_queues",
    "check_seconds",
    "server_options",
    "split_worker_spec",
    "worker_options",
]

#: The highest TCP port number.
MAX_PORT = 65535


def _number(value: object) -> float | None:
    """``value`` as a number if it is one (text such as "4200" from a command line too)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def check_port(value: object, name: str = "port", example: int = 4200) -> int:
    """A TCP port number, 1 to 65535 (``"4200"`` from a command line is read as 4200)."""
    number = _number(value)
    if number is None or not number.is_integer() or not 1 <= number <= MAX_PORT:
        raise ServiceError(
            f"{name} must be a port number from 1 to {MAX_PORT}, got {value!r}. "
            f"Example: {name}={example} (or leave it out to take a free port)."
        )
    return int(number)


def check_seconds(value: object, name: str = "timeout") -> float:
    """A finite number of seconds above 0: how long to wait for something."""
    number = _number(value)
    if number is None or not math.isfinite(number) or number <= 0:
        raise ServiceError(
            f"{name} is a number of seconds above 0, got {value!r}. Example: {name}=90."
        )
    return number


def check_count(value: object, name: str, example: int) -> int:
    """A whole number of at least 1, e.g. how many log lines to show."""
    number = _number(value)
    if number is None or not number.is_integer() or number < 1:
        raise ServiceError(
            f"{name} must be a whole number of at least 1, got {value!r}. "
            f"Example: {name}={example}."
        )
    return int(number)


def check_queues(queues: object) -> list[str]:
    """The queues a worker polls: a name or a list of names, at least one, each one Prefect takes."""
    if isinstance(queues, str):
        queues = [queues]
    if not isinstance(queues, Sequence) or not queues:
        raise OrchestrationError(
            "A worker needs at least one queue to poll, e.g. queues=['energy_usage'] (a list "
            f"of queue names, or one name as text); got {queues!r}."
        )
    for queue in queues:
        check_prefect_name(queue, "work queue")
    return list(queues)


def split_worker_spec(spec: str) -> tuple[str, str]:
    """``"energy-pool/energy_usage"`` → ``("energy-pool", "energy_usage")``: a worker's pool and queue."""
    example = "e.g. --worker energy-pool/energy_usage"
    if not isinstance(spec, str) or spec.count("/") != 1:
        raise OrchestrationError(
            f"--worker expects POOL/QUEUE, with one '/' between them, {example} (got {spec!r})."
        )
    pool, queue = spec.split("/")
    if not pool or not queue:
        raise OrchestrationError(f"--worker expects POOL/QUEUE, {example} (got {spec!r}).")
    check_prefect_name(pool, "work pool")
    check_prefect_name(queue, "work queue")
    return pool, queue


def server_options(
    port: object, postgres_port: object, timeout: object
) -> tuple[int | None, int | None, float]:
    """``PrefectServer``'s ``port``, ``postgres_port`` (None: a free one) and ``timeout``, checked."""
    return (
        None if port is None else check_port(port, "port"),
        None if postgres_port is None else check_port(postgres_port, "postgres_port", 5432),
        check_seconds(timeout, "timeout"),
    )


def worker_options(
    pool: object, queues: object, limit: object, timeout: object, server: object, auth: object
) -> tuple[list[str], int | None, float]:
    """Check ``Worker``'s arguments (``server`` and ``auth``: a server this home does not run);
    return its ``queues`` as a list, its ``limit`` (None: no limit) and its ``timeout``."""
    queue_list, seconds = check_queues(queues), check_seconds(timeout, "timeout")
    check_prefect_name(pool, "work pool")
    if server is not None and not (
        isinstance(server, str) and server.startswith(("http://", "https://"))
    ):
        raise OrchestrationError(
            "server is the API address of a Prefect server, e.g. "
            f"'http://127.0.0.1:4200/api' (server.api_url); got {server!r}."
        )
    if auth is not None:
        if server is None:
            raise OrchestrationError(
                "auth goes with server=: the password of a server this home does not run. "
                "This home's own server gets one with PrefectServer(auth=True)."
            )
        check_auth_string(auth)
    if limit is None or (isinstance(limit, int) and not isinstance(limit, bool) and limit >= 1):
        return queue_list, limit, seconds
    raise OrchestrationError(
        f"limit is the most runs the worker takes at once: a whole number ≥ 1, "
        f"or None for no limit; got {limit!r}."
    )
