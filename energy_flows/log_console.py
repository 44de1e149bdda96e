"""Prefect's log lines in a notebook: one plain text block per cell, as in a terminal.

Prefect prints its log lines through rich (``PrefectConsoleHandler``). In a
Jupyter kernel rich renders every print as an HTML output of its own, so each
log line became a bordered block with its own scrollbar. The handler here is
Prefect's, with rich's notebook mode off: the lines go to the stream as text,
and JupyterLab joins a cell's consecutive writes into one monospace block.

The kernel uses it through Prefect's own logging settings (the variables of
:data:`energy_flows.settings.NOTEBOOK_LOG_SETTINGS`, which override the
``handlers.console`` entry of Prefect's ``logging.yml``); plain Prefect in a
notebook keeps rich's HTML outputs.
"""

from __future__ import annotations

from typing import Any

from prefect.logging.handlers import PrefectConsoleHandler

__all__ = ["NotebookConsoleHandler"]


class NotebookConsoleHandler(PrefectConsoleHandler):
    """Prefect's console log handler, writing text lines to its stream in a notebook too.

    Everything else (format, levels, colours when ``PREFECT_LOGGING_COLORS``
    is on, as ANSI codes a notebook shows) is Prefect's.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # rich's notebook mode: each print a display_data output of its own.
        self.console.is_jupyter = False
