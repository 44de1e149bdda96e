"""explain_cron: why a cron expression is refused, said field by field."""

from __future__ import annotations

from energy_flows.errors import OrchestrationError

__all__ = ["explain_cron"]

#: The five fields of a cron, with the numbers each allows.
_FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
)
#: The names a field may use instead of numbers.
_NAMES = {
    "month": "jan feb mar apr may jun jul aug sep oct nov dec".split(),
    "day of week": "sun mon tue wed thu fri sat".split(),
}
_EXAMPLE = "e.g. '*/5 * * * *' runs every five minutes."


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
        return _explain(text) or str(exc)
    return None


def _explain(text: str) -> str | None:
    """The first part of a refused cron a learner can fix, in words (None if none is found)."""
    if not text:
        return f"the cron is empty; {_EXAMPLE}"
    parts = text.split()
    if len(parts) != 5:
        return (
            f"a cron has 5 fields (minute hour day-of-month month day-of-week), "
            f"'{text}' has {len(parts)}; {_EXAMPLE}"
        )
    for part, (name, low, high) in zip(parts, _FIELDS, strict=True):
        problem = _explain_field(part, name, low, high)
        if problem:
            return problem
    return None


def _explain_field(part: str, name: str, low: int, high: int) -> str | None:
    for item in part.split(","):
        base, _, step = item.partition("/")
        if step and (not step.isdigit() or int(step) == 0):
            return f"the {name} field '{part}' has step '/{step}'; a step is a whole number ≥ 1."
        if base in ("*", "?"):
            continue
        for bound in base.split("-"):
            if bound.lower() in _NAMES.get(name, ()):
                continue
            if not bound.isdigit():
                return (
                    f"the {name} field '{part}' contains '{bound}', which is not a number "
                    f"({low}-{high}), '*', a range 'a-b', a list 'a,b' or a step '*/n'."
                )
            if not low <= int(bound) <= high:
                return f"the {name} field is {bound}, outside its range {low}-{high}."
    return None
