"""Checking arguments: one sentence that names the argument, what was given, and a value that works.

Used by every function of :mod:`energy_flows.data` and by the flows' own
parameter checks (:func:`energy_flows.data.check_pipeline_parameters`), so a learner
gets the same kind of sentence wherever a value is wrong. Each ``check_...``
returns the value it accepts (converted where that is safe) or raises a
:class:`~energy_flows.errors.DataError`.
"""

from __future__ import annotations

import datetime as dt
import math
import numbers

import numpy as np
import pandas as pd

from energy_flows.errors import DataError

__all__ = [
    "check_date",
    "check_flag",
    "check_text",
    "check_timezone",
    "check_whole_number",
    "message_prefix",
]


def message_prefix(where: str) -> str:
    """``"simulate_meter: "``: which function speaks, when it helps to say so."""
    return f"{where}: " if where else ""


def _given(value: object) -> str:
    """How an argument appears in an error: its repr and its type."""
    return f"{value!r} of type {type(value).__name__}"


def check_text(value: object, name: str, *, where: str, example: str) -> str:
    """``value`` if it is text (a ``str``), or a :class:`DataError` naming ``name`` and an ``example``."""
    if isinstance(value, str):
        return value
    raise DataError(
        f"{message_prefix(where)}{name} must be text, got {_given(value)}. Example: {example}."
    )


def check_whole_number(
    value: object,
    name: str,
    *,
    where: str,
    example: str,
    minimum: int | None = None,
    maximum: int | None = None,
) -> int:
    """``value`` as an ``int``, or a :class:`DataError` naming ``name`` and a valid ``example``.

    Accepts Python and numpy integers and floats without a fraction (``7.0``);
    refuses booleans, text ("7"), NaN, infinity and fractions, which would
    otherwise be silently converted (or fail deep inside numpy).
    """
    number: int | None = None
    if isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_):
        number = int(value)
    elif isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_):
        if math.isfinite(float(value)) and float(value).is_integer():
            number = int(float(value))
    if number is None:
        raise DataError(
            f"{message_prefix(where)}{name} must be a whole number, got {_given(value)}. Example: {example}."
        )
    if minimum is not None and number < minimum:
        raise DataError(
            f"{message_prefix(where)}{name} must be at least {minimum}, got {number}. Example: {example}."
        )
    if maximum is not None and number > maximum:
        raise DataError(
            f"{message_prefix(where)}{name} must be at most {maximum}, got {number}. Example: {example}."
        )
    return number


#: The resolution pandas gives a date written as text (microseconds in pandas 3).
_TEXT_DATE_UNIT = pd.Timestamp("2024-01-01").unit


def check_date(value: object, name: str, *, where: str, example: str) -> pd.Timestamp:
    """``value`` as a naive :class:`~pandas.Timestamp`, or a :class:`DataError` saying why not.

    Takes text such as ``"2024-01-01"``, a ``datetime.date``/``datetime`` or a
    Timestamp. Numbers are refused: ``pd.Timestamp(2024)`` is 2024 nanoseconds
    after 1970, not the year 2024.
    """
    accepted = (str, dt.date, np.datetime64)
    stamp: pd.Timestamp | None = None
    if isinstance(value, accepted) and not (isinstance(value, str) and not value.strip()):
        try:
            stamp = pd.Timestamp(value)
        except (ValueError, TypeError, OverflowError):
            stamp = None
    if stamp is None or pd.isna(stamp):
        raise DataError(
            f"{message_prefix(where)}{name} must be a date such as {example}, got {_given(value)}. "
            f"Write it as YYYY-MM-DD, e.g. {name}={example!r}."
        )
    # Dates and datetimes parse to other resolutions than text: one resolution
    # for all, so the index does not depend on how the date was spelled.
    stamp = stamp.as_unit(_TEXT_DATE_UNIT)
    if stamp.tzinfo is not None:
        raise DataError(
            f"{message_prefix(where)}{name} must be local clock time without a time zone, got {stamp}. "
            f"Drop the zone (e.g. {name}={f'{stamp:%Y-%m-%d}'!r}); pass the zone as timezone=."
        )
    return stamp


def check_flag(value: object, name: str, *, where: str) -> bool:
    """``value`` if it is True or False: the text "no" would otherwise count as True."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    raise DataError(
        f"{message_prefix(where)}{name} must be True or False, got {_given(value)}. Example: {name}=False."
    )


def check_timezone(value: object, *, where: str) -> str | None:
    """An IANA time zone name (or None), checked the way pandas will use it."""
    if value is None:
        return None
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if isinstance(value, str) and value.strip():
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            pass
        else:
            return value
    raise DataError(
        f"{message_prefix(where)}timezone must be an IANA time zone name, got {_given(value)}. "
        "Example: timezone='Europe/Paris' (or timezone='UTC')."
    )
