"""A deployment's schedule: checked before Prefect sees it, built, and said in words.

``deploy(..., interval=30)``, ``cron="*/5 * * * *"`` or ``rrule="DTSTART:...\\nRRULE:..."``:
each is checked here the way the server would check it, so a typo gives one
sentence that says what to write instead of a server traceback. Two more
rules than the server's: a schedule that never fires (``cron="0 0 30 2 *"``)
is refused, and so is one that fires more often than every
:data:`MIN_INTERVAL_SECONDS` seconds, which fills the queue faster than a
classroom's workers can run it.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from energy_flows.cron import cron_never_fires, cron_problem
from energy_flows.errors import OrchestrationError

__all__ = [
    "MIN_INTERVAL_SECONDS",
    "build_schedule",
    "interval_text",
    "schedule_text",
    "validate_cron",
    "validate_interval",
    "validate_rrule",
    "validate_timezone",
]


#: The shortest time between two scheduled runs. Prefect takes any interval: with
#: ``interval=0.001`` the scheduler put 100 due runs in the queue within 5 s, more than two
#: cores can run, and every other lesson's runs wait behind them.
MIN_INTERVAL_SECONDS = 10

_FLOOR = (
    f"the shortest interval here is {MIN_INTERVAL_SECONDS} seconds, so that runs do not "
    "pile up in the queue faster than a classroom's workers can run them"
)


def _plural(n: float, unit: str) -> str:
    n = int(n) if float(n).is_integer() else n
    return f"every {unit}" if n == 1 else f"every {n} {unit}s"


def interval_text(interval: dt.timedelta) -> str:
    """``timedelta(seconds=30)`` → ``"every 30 seconds"``."""
    secs = interval.total_seconds()
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if secs >= size and secs % size == 0:
            return _plural(secs / size, unit)
    return _plural(secs, "second")


def schedule_text(schedules: list[Any] | None) -> str:
    """A deployment's schedules in words: "every 30 seconds", "cron '*/5 * * * *' (UTC)", "none"."""
    parts = []
    for item in schedules or []:
        sched = getattr(item, "schedule", item)
        tz = getattr(sched, "timezone", None) or "UTC"
        if hasattr(sched, "interval"):
            text = interval_text(sched.interval)
            if tz != "UTC":
                text += f" ({tz})"
        elif hasattr(sched, "cron"):
            text = f"cron {sched.cron!r} ({tz})"
        elif hasattr(sched, "rrule"):
            text = f"rrule {sched.rrule!r} ({tz})"
        else:
            text = str(sched)
        if getattr(item, "active", True) is False:
            text += " [inactive]"
        parts.append(text)
    return "; ".join(parts) if parts else "none"


_CRON_FIELDS = "minute hour day-of-month month day-of-week"


def validate_cron(cron: str) -> str:
    """Check a cron string the way the server will, and say why it is wrong.

    Prefect's own schedule schema (``CronSchedule``, public) decides; when it
    refuses, the message names the field to fix (:func:`energy_flows.cron.cron_problem`).
    """
    from prefect.client.schemas.schedules import CronSchedule
    from pydantic import ValidationError

    if not isinstance(cron, str) or not cron.strip():
        raise OrchestrationError(
            f"cron must be a string like '*/5 * * * *' (fields: {_CRON_FIELDS}); got {cron!r}."
        )
    fields = cron.split()
    if len(fields) != 5:
        raise OrchestrationError(
            f"Invalid cron {cron!r}: a cron string has 5 fields ({_CRON_FIELDS}), "
            f"this one has {len(fields)}. Example: '*/5 * * * *' is every 5 minutes."
        )
    if any(f.casefold() in ("r", "h") for f in fields):
        raise OrchestrationError(
            f"Invalid cron {cron!r}: random (R) and hashed (H) fields are not supported."
        )
    problem = cron_problem(cron)
    try:
        CronSchedule(cron=cron)
    except ValidationError:
        reason = problem or "Prefect's schedule check refuses it"
        raise OrchestrationError(
            f"Invalid cron {cron!r}: {reason} The fields are {_CRON_FIELDS}, "
            "e.g. '0 6 * * 1-5' is 06:00 on weekdays."
        ) from None
    never = cron_never_fires(cron)
    if never:
        raise OrchestrationError(
            f"The cron {cron!r} never fires: {never} Pick a day every month has "
            "(1-28), e.g. '0 6 28 2 *' is 06:00 on 28 February."
        )
    return cron


def validate_interval(interval: int | float | dt.timedelta) -> dt.timedelta:
    """Seconds (int/float) or a timedelta: finite and strictly positive.

    ``nan`` and ``inf`` are refused with the rest (a NaN is not even "more
    than 0", and Python cannot make a timedelta of it).
    """
    example = "Example: interval=30 runs the flow every 30 seconds."
    if isinstance(interval, dt.timedelta):
        value = interval
    elif isinstance(interval, int | float) and not isinstance(interval, bool):
        if isinstance(interval, float) and not math.isfinite(interval):
            raise OrchestrationError(
                f"interval must be a finite number of seconds; got {interval!r}. {example}"
            )
        try:
            value = dt.timedelta(seconds=interval)
        except OverflowError:
            raise OrchestrationError(
                f"interval={interval!r} seconds is longer than Python can count "
                f"({dt.timedelta.max.days} days). {example}"
            ) from None
    else:
        raise OrchestrationError(
            "interval must be a number of seconds or a datetime.timedelta, "
            f"e.g. interval=30; got {interval!r}."
        )
    if value.total_seconds() <= 0:
        raise OrchestrationError(
            f"interval must be more than 0 seconds; got {value.total_seconds():g} s. {example}"
        )
    if value.total_seconds() < MIN_INTERVAL_SECONDS:
        raise OrchestrationError(
            f"interval={value.total_seconds():g} s is too short: {_FLOOR}. {example}"
        )
    return value


def validate_rrule(rrule: str) -> str:
    """An RFC 5545 rule with a DTSTART (without it, Prefect starts counting in 2020)."""
    import dateutil.rrule

    if not isinstance(rrule, str) or not rrule.strip():
        raise OrchestrationError(f"rrule must be a string; got {rrule!r}.")
    if "DTSTART" not in rrule.upper():
        raise OrchestrationError(
            f"The rrule {rrule!r} has no start (DTSTART). Without one Prefect counts from "
            "2020 and the runs are not where you expect. Start it like "
            "'DTSTART:20250101T060000\\nRRULE:FREQ=DAILY;INTERVAL=1'."
        )
    try:
        rule = dateutil.rrule.rrulestr(rrule, cache=True)
    except (ValueError, TypeError) as exc:
        raise OrchestrationError(f"Invalid rrule {rrule!r}: {exc}.") from None
    _check_rrule_dates(rule, rrule)
    return rrule


#: Dates of an rrule looked at to tell whether it has ended: enough for any rule a lesson
#: writes, and fast (dateutil counts from DTSTART).
_RRULE_LOOKAHEAD = 10_000


def _check_rrule_dates(rule: Any, text: str) -> None:
    """Refuse a rule whose dates are too close together, or whose last date has passed."""
    import itertools

    first_two = list(itertools.islice(rule, 2))
    if len(first_two) == 2:
        gap = (first_two[1] - first_two[0]).total_seconds()
        if gap < MIN_INTERVAL_SECONDS:
            raise OrchestrationError(
                f"The rrule {text!r} fires every {gap:g} s: {_FLOOR}. Use FREQ=MINUTELY or slower."
            )
    dates = list(itertools.islice(rule, _RRULE_LOOKAHEAD + 1))
    if len(dates) > _RRULE_LOOKAHEAD:
        return  # it goes on long enough
    last = dates[-1] if dates else None
    now = dt.datetime.now(last.tzinfo) if last is not None else None
    if last is None or last < now:
        raise OrchestrationError(
            f"The rrule {text!r} never fires: its last date"
            + (f", {last:%Y-%m-%d %H:%M}," if last is not None else "")
            + " has passed (COUNT or UNTIL ended it). Move its DTSTART or UNTIL forward, or "
            "drop COUNT."
        )


def validate_timezone(timezone: str | None) -> str | None:
    if timezone is None:
        return None
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise OrchestrationError(
            f"Unknown timezone {timezone!r}: use an IANA name such as 'Europe/Paris' or 'UTC'."
        ) from None
    return timezone


def build_schedule(
    interval: int | float | dt.timedelta | None,
    cron: str | None,
    rrule: str | None,
    timezone: str | None,
) -> Any | None:
    """Validate the schedule arguments and build one Prefect schedule (or None)."""
    from prefect.schedules import Cron, Interval, RRule

    given = [
        n for n, v in (("interval", interval), ("cron", cron), ("rrule", rrule)) if v is not None
    ]
    if len(given) > 1:
        raise OrchestrationError(
            f"Give one schedule, not {' and '.join(given)}: interval=, cron= or rrule=."
        )
    timezone = validate_timezone(timezone)
    if interval is not None:
        return Interval(validate_interval(interval), timezone=timezone)
    if cron is not None:
        return Cron(validate_cron(cron), timezone=timezone)
    if rrule is not None:
        return RRule(validate_rrule(rrule), timezone=timezone)
    if timezone is not None:
        raise OrchestrationError("timezone= only makes sense with interval=, cron= or rrule=.")
    return None
