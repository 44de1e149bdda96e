"""Cron strings in words: which of the five fields is wrong, and why.

A cron has five fields: minute, hour, day of month, month, day of week
(``"*/5 * * * *"`` is every five minutes). Whether Prefect accepts a cron is
decided by Prefect's own schedule schema (see
:func:`energy_flows.orchestration.deployments.validate_cron`); this module
only finds the part a learner can fix, with no Prefect import, so that the
deployment check and the builder widget say the same thing.
"""

from __future__ import annotations

__all__ = ["CRON_FIELDS", "cron_problem"]

#: The five fields of a cron, with the numbers each allows.
CRON_FIELDS = (
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


def cron_problem(text: str) -> str | None:
    """The first part of a cron a learner can fix, in words; ``None`` if none is found.

    >>> cron_problem("61 * * * *")
    'the minute field is 61, outside its range 0-59.'
    >>> cron_problem("*/5 * * * *") is None
    True
    """
    text = (text or "").strip()
    if not text:
        return f"the cron is empty; {_EXAMPLE}"
    parts = text.split()
    if len(parts) != 5:
        return (
            f"a cron has 5 fields (minute hour day-of-month month day-of-week), "
            f"'{text}' has {len(parts)}; {_EXAMPLE}"
        )
    for part, (name, low, high) in zip(parts, CRON_FIELDS, strict=True):
        problem = _field_problem(part, name, low, high)
        if problem:
            return problem
    return None


def _field_problem(part: str, name: str, low: int, high: int) -> str | None:
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
