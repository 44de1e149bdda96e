"""Errors that speak to a learner.

Every error the package raises on purpose derives from :class:`EnergyFlowsError`
and says what went wrong, what state things are in, and the one thing to do next.
"""

from __future__ import annotations


class EnergyFlowsError(Exception):
    """Base class of every error this package raises on purpose."""


class HomeNotWritableError(EnergyFlowsError, PermissionError):
    """The home folder (``ENERGY_FLOWS_HOME``) cannot be created or written."""


class DataError(EnergyFlowsError, ValueError):
    """Meter data that cannot be used: empty, wrong columns, wrong types."""


class ServiceError(EnergyFlowsError, RuntimeError):
    """A server or worker that could not start, or stopped unexpectedly."""


class PortTakenError(ServiceError):
    """A service could not listen: another program took its port after it was checked free.

    Starting again on another free port fixes it; the services retry by themselves.
    """

    def __init__(self, message: str, port: int | None = None) -> None:
        super().__init__(message)
        self.port = port


class OrchestrationError(EnergyFlowsError, ValueError):
    """Invalid deployment, schedule, pool or queue input, checked before Prefect sees it."""


class WaitTimeout(EnergyFlowsError, TimeoutError):
    """A condition was not met in time; the message says what is still missing."""
