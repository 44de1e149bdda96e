"""The one place the package writes HTML: :func:`element`, its tables, and a few shorthands.

:func:`element` escapes every child that is plain text (a queue name, an
error, a log line may hold ``<`` or ``&``) and puts in as it is what is HTML
already (a :class:`Markup`, which it returns itself)::

    element("div", "⚠ ", message, style=f"color:{BAD_COLOUR}")
    # <div style='color:#b71c1c'>⚠ 1 &lt; 2</div>

:func:`field_table` is the titled table of the services' and the info objects'
``_repr_html_``; :func:`table` the column table of the widgets. Standard
library only (pandas is read only when the caller has imported it).
"""

from __future__ import annotations

import html
import math
import sys
from collections.abc import Iterable, Sequence
from typing import Any

from energy_flows.vocabulary import BAD_COLOUR, LATE_BACKGROUND, LATE_TEXT, MUTED_COLOUR, OK_COLOUR

#: How a Late count or state stands out: the orange of the Late state, on a light tint of it.
LATE_CELL_STYLE = f"background:{LATE_BACKGROUND};color:{LATE_TEXT};font-weight:bold"
#: The style of a table's header cells.
HEAD_STYLE = "text-align:left;padding:2px 8px"

__all__ = [
    "HEAD_STYLE",
    "LATE_CELL_STYLE",
    "MUTED_COLOUR",
    "Cell",
    "Markup",
    "bad",
    "cell",
    "clock",
    "coloured",
    "element",
    "field_table",
    "muted",
    "ok",
    "shown",
    "table",
]


class Markup(str):
    """Text that is already HTML: :func:`element` puts it in as it is."""

    __slots__ = ()


class Cell(Markup):
    """One ``<td>`` made by :func:`cell`: :func:`table` puts it in a row as it is."""

    __slots__ = ()


def _missing(value: Any) -> bool:
    """None, NaN, or pandas' NaT and NA (pandas is asked only if it has been imported)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return True
    pd = sys.modules.get("pandas")
    return pd is not None and not isinstance(value, str | Sequence) and bool(pd.isna(value))


def shown(value: Any) -> str:
    """A value as the text a table shows: ``"—"`` for a missing value (None, NaT, NaN)."""
    return "—" if _missing(value) else str(value)


def element(tag: str, *children: Any, **attributes: Any) -> Markup:
    """``<tag attributes>children</tag>``, with every plain-text child escaped.

    Children may be :class:`Markup` (put in as it is), ``None`` or ``False``
    (left out, for conditional parts), lists of children, or anything else
    (turned into text and escaped). Attributes are written in the order given
    with single quotes; ``class_`` stands for ``class``; ``None`` or empty
    values are left out.
    """
    attrs = "".join(
        f" {name.rstrip('_')}='{html.escape(str(value), quote=True)}'"
        for name, value in attributes.items()
        if value is not None and value != ""
    )
    return Markup(f"<{tag}{attrs}>{_inner(children)}</{tag}>")


def _inner(children: Iterable[Any]) -> str:
    parts: list[str] = []
    for child in children:
        if child is None or child is False:
            continue
        if isinstance(child, Markup):
            parts.append(child)
        elif isinstance(child, list | tuple):
            parts.append(_inner(child))
        else:
            parts.append(html.escape(str(child)))
    return "".join(parts)


def coloured(tag: str, colour: str, *children: Any, style: str = "") -> Markup:
    """An element whose text has ``colour`` (more CSS may follow in ``style``)."""
    return element(tag, *children, style=f"color:{colour}" + (f";{style}" if style else ""))


def ok(*children: Any, tag: str = "span") -> Markup:
    """Something that is fine ("✓ ready to deploy"), in the course's "fine" colour."""
    return coloured(tag, OK_COLOUR, *children)


def bad(*children: Any, tag: str = "div", style: str = "") -> Markup:
    """Something that needs attention (an error, a stopped server), in the "bad" colour."""
    return coloured(tag, BAD_COLOUR, *children, style=style)


def muted(*children: Any, tag: str = "span") -> Markup:
    """Something neither fine nor wrong ("■ stopped"), in grey."""
    return coloured(tag, MUTED_COLOUR, *children)


def cell(value: Any, *, style: str | None = None, bold: bool = False) -> Cell:
    """One table cell; a missing value shows as ``"—"`` (see :func:`shown`)."""
    content = value if isinstance(value, Markup) else shown(value)
    return Cell(element("td", element("b", content) if bold else content, style=style))


def table(
    head: Sequence[str], rows: Iterable[Sequence[Any]], *, empty: str | None = None
) -> Markup:
    """A table: a header row, then one row per item of ``rows``.

    A row's items are :func:`cell` results or plain values (shown with
    :func:`shown`). With no rows and ``empty`` given, one row spanning the
    table says ``empty`` ("no data").
    """
    body = [
        element("tr", *(item if isinstance(item, Cell) else cell(item) for item in row))
        for row in rows
    ]
    if not body and empty is not None:
        body = [element("tr", element("td", empty, colspan=len(head)))]
    header = element("tr", *(element("th", name, style=HEAD_STYLE) for name in head))
    return element("table", header, *body, style="border-collapse:collapse")


def field_table(
    title: str,
    fields: Iterable[tuple[str, Any]],
    *,
    note: str | None = None,
    title_tag: str = "b",
    name_style: str = "text-align:left",
) -> Markup:
    """A title over a table of one row per ``(name, value)``, and an optional note under it.

    Values are escaped unless they are :class:`Markup`.
    """
    rows = [
        element(
            "tr",
            element("th", name, style=name_style),
            element("td", value, style="text-align:left"),
        )
        for name, value in fields
    ]
    return element(
        "div",
        element(title_tag, title),
        element("table", *rows),
        note and element("p", element("em", note)),
    )


def clock(value: Any, *, utc: bool = True) -> str:
    """``HH:MM:SS UTC`` of a timestamp (``"—"`` when missing); ``utc=False`` drops " UTC".

    The time keeps its fractions of a second in the data; they are dropped
    here, where it is shown.
    """
    import pandas as pd

    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "—"
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.strftime("%H:%M:%S UTC" if utc else "%H:%M:%S")
