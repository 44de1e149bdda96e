"""LogTail: the last lines of a server's or worker's log file, or of one flow run's logs."""

from __future__ import annotations

import contextlib
import logging
import os
import uuid
from pathlib import Path
from typing import Any

from energy_flows.errors import ServiceError
from energy_flows.markup import bad, clock, element
from energy_flows.widgets.base import Controls, LiveView, prefect_api

__all__ = ["LogTail", "format_log_line"]

#: A log is followed, not refreshed.
FOLLOWING = Controls(
    "Read the log once now",
    start="Follow",
    start_tip="Show new lines as they come",
    stop_tip="Stop following",
    words=("following", "not following"),
)


def format_log_line(timestamp: Any, level: int | str, message: str) -> str:
    """One Prefect log record as ``HH:MM:SS LEVEL message`` (the time in UTC)."""
    name = logging.getLevelName(level) if isinstance(level, int) else str(level)
    return f"{clock(timestamp, utc=False)} {name:<7} {message}"


def _log_path_of(source: Any) -> Path | None:
    for attribute in ("log_path", "log_file", "logfile"):
        value = getattr(source, attribute, None)
        if value:
            return Path(value)
    return None


def _run_id_of(source: Any) -> uuid.UUID | None:
    if isinstance(source, uuid.UUID):
        return source
    if isinstance(source, str):
        with contextlib.suppress(ValueError):
            return uuid.UUID(source)
        return None
    for attribute in ("id", "flow_run_id", "run_id"):
        value = getattr(source, attribute, None)
        if value is not None:
            with contextlib.suppress(ValueError, TypeError):
                return uuid.UUID(str(value))
    return None


class LogTail(LiveView):
    """The last lines of a log: a server's or worker's log file, or one flow run's logs.

    ``source`` is a :class:`~energy_flows.PrefectServer` or
    :class:`~energy_flows.Worker` (their log file), a path to a log file, or a
    flow run (its id, or an object with ``.id`` such as what
    :func:`energy_flows.orchestration.trigger` returns): then the lines are
    the run's Prefect logs, the ones the UI shows on the run's page.

    ``follow=True`` (or ``.start()``) re-reads every ``interval`` seconds in a
    background thread; ``.lines`` is the latest list of lines.
    """

    def __init__(
        self,
        source: Any,
        *,
        lines: int = 20,
        interval: float = 1.0,
        follow: bool = False,
        title: str | None = None,
        api_url: str | None = None,
    ) -> None:
        self.source = source
        self.max_lines = lines
        self._api_url = api_url
        self.path = _log_path_of(source)
        self.run_id = None if self.path else _run_id_of(source)
        if self.path is None and self.run_id is None:
            if isinstance(source, str | os.PathLike):
                self.path = Path(source)
            else:
                raise TypeError(
                    "LogTail needs a PrefectServer or Worker, a log file path, or a flow run "
                    f"(its id or an object with .id); got {type(source).__name__}."
                )
        self.title = title or self._default_title()
        self.lines: list[str] = []
        self.problem: str | None = None
        super().__init__(interval, FOLLOWING, "energy-flows-log-tail")
        self.follow_button = self.start_button  # the name a log viewer's reader looks for
        self.refresh()
        if follow:
            self.start()
        else:
            self._status_changed()

    def _default_title(self) -> str:
        if self.run_id is not None:
            name = getattr(self.source, "name", None)
            return f"logs of flow run {name or self.run_id}"
        kind = type(self.source).__name__
        if kind in ("PrefectServer", "Worker"):
            name = getattr(self.source, "name", None)
            label = "Prefect server" if kind == "PrefectServer" else f"worker {name or ''}".strip()
            return f"log of the {label} ({self.path})"
        return f"log file {self.path}"

    def _read(self) -> list[str]:
        if self.path is not None:
            from energy_flows.services.process import tail

            if not self.path.exists():
                raise FileNotFoundError(f"{self.path} does not exist (yet)")
            text = tail(self.path, self.max_lines)
            return text.splitlines()
        return self._read_run_logs()

    def _read_run_logs(self) -> list[str]:
        if self.run_id is None:  # a LogTail of a file never gets here
            return []
        from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
        from prefect.client.schemas.sorting import LogSort

        from energy_flows.orchestration.common import client

        with prefect_api(self._api_url), client() as c:
            logs = c.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[self.run_id])),
                sort=LogSort.TIMESTAMP_DESC,
                limit=self.max_lines,
            )
        return [format_log_line(log.timestamp, log.level, log.message) for log in reversed(logs)]

    def refresh(self) -> list[str]:
        """Read the log once, update the view, and return the lines."""
        try:
            lines = self._read()
        except Exception as exc:
            self.problem = str(exc)
            if isinstance(exc, ServiceError):  # no server: following would only fail again
                self._halt()
        else:
            self.problem = None
            self.lines = lines
        self.view.value = self.snapshot_html()
        return self.lines

    def snapshot_text(self) -> str:
        """The title and the last lines, as text."""
        head = f"LogTail: {self.title}, last {len(self.lines)} lines"
        body = [f"  ! {self.problem}"] if self.problem else []
        return "\n".join([head, *body, *self.lines])

    def snapshot_html(self) -> str:
        """The title and the last lines in a scrollable monospace block."""
        return element(
            "div",
            element("div", element("b", self.title), f" · last {len(self.lines)} lines"),
            self.problem and bad("⚠ ", self.problem),
            element(
                "pre",
                "\n".join(self.lines) or "(empty)",
                style="max-height:22em;overflow:auto;font-size:0.85em;margin:2px 0;"
                "white-space:pre-wrap",
            ),
            class_="energy-flows-log",
        )
