"""explain_cron: why a cron expression is refused, said field by field."""

from __future__ import annotations

from energy_flows.cron import cron_problem
from energy_flows.errors import OrchestrationError

__all__ = ["explain_cron"]


def explain_cron(expression: str) -> str | None:
    """Why a cron expression is not valid, in words; ``None`` when it is valid.

    A cron has five fields: minute, hour, day of month, month, day of week
    (``"*/5 * * * *"`` is every five minutes). Whether it is valid is decided
    by :func:`energy_flows.orchestration.deployments.validate_cron`, the check
    a deployment runs; when it refuses, this names the field that is wrong
    and its allowed range (``"the hour field is 25, outside its range
    0-23."``), or, when no single field is to blame, gives that check's own
    sentence.
    """
    from energy_flows.orchestration.deployments import validate_cron

    text = (expression or "").strip()
    try:
        validate_cron(text)
    except OrchestrationError as exc:
        return cron_problem(text) or str(exc)
    return None
