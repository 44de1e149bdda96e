"""Cron strings in words: which of the five fields is wrong, and why.

A cron has five fields: minute, hour, day of month, month, day of week
(``"*/5 * * * *"`` is every five minutes). Whether Prefect accepts a cron is
decided by Prefect's own schedule schema (see
:func:`energy_flows.orchestration.deployments.validate_cron`); this module
only finds the part a learner can fix, with no Prefect import, so that the
deployment check and the builder widget say the same thing. A cron can also
be valid and never fire (``"0 0 30 2 *"``: there is no 30 February):
:func:`cron_never_fires` says so.
"""

from __future__ import annotations

__all__ = ["CRON_FIELDS", "cron_never_fires", "cron_problem"]

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


#: The most days each month can have (February in a leap year).
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
_MONTH_NAMES = (
    "January February March April May June July August September October November December"
).split()


def _values(part: str, name: str, low: int, high: int) -> set[int]:
    """The numbers a field allows (a field :func:`cron_problem` accepts): ``*/15`` → {0, 15, 30, 45}."""
    names = _NAMES.get(name, ())
    # day-of-week names count from 0 (sun), month names from 1 (jan)
    offset = 0 if name == "day of week" else 1

    def number(text: str) -> int:
        return names.index(text.lower()) + offset if text.lower() in names else int(text)

    found: set[int] = set()
    for item in part.split(","):
        base, _, step_text = item.partition("/")
        step = int(step_text) if step_text else 1
        if base in ("*", "?"):
            first, last = low, high
        else:
            ends = base.split("-")
            first = number(ends[0])
            last = number(ends[-1]) if len(ends) > 1 else (high if step_text else first)
        found.update(range(first, last + 1, step))
    return found


def cron_never_fires(text: str) -> str | None:
    """Why a valid cron never fires, in words; ``None`` when it fires.

    A cron fires on a day when its day of month matches, or, if the day of
    week is restricted too, when either matches (the rule of Prefect's
    scheduler). So the only crons that never fire name days of the month
    that none of their months has: ``"0 0 30 2 *"`` (30 February),
    ``"0 0 31 4,6 *"``. ``"0 0 29 2 *"`` fires, in leap years.

    >>> cron_never_fires("0 0 30 2 *")
    'February has no day 30.'
    >>> cron_never_fires("0 0 30 2 1") is None  # also every Monday in February
    True
    """
    if cron_problem(text) is not None:
        return None
    _, _, day_part, month_part, week_part = text.split()
    days = _values(day_part, "day of month", 1, 31)
    weekdays = {d % 7 for d in _values(week_part, "day of week", 0, 7)}
    if days == set(range(1, 32)) or weekdays != set(range(7)):
        return None  # every day of a month, or (also) days of the week: it fires
    months = sorted(_values(month_part, "month", 1, 12))
    if any(min(days) <= _MONTH_DAYS[m - 1] for m in months):
        return None
    named = [_MONTH_NAMES[m - 1] for m in months]
    listed = ", ".join(str(d) for d in sorted(days))
    day_words = f"day {listed}" if len(days) == 1 else f"days {listed}"
    if len(named) == 1:
        return f"{named[0]} has no {day_words}."
    return f"none of {', '.join(named)} has {'a ' if len(days) == 1 else ''}{day_words}."
