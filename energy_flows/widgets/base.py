"""What every widget shares: a static snapshot next to the live widget, and a refresh thread.

* :class:`SnapshotDisplay`: a widget box that also displays as text and HTML.
  Where widgets cannot run (a notebook rendered on a website, nbval comparing
  stored outputs) that snapshot is what a reader sees.
* :class:`LiveView`: a :class:`SnapshotDisplay` with Start / Stop / Refresh
  buttons and a daemon thread that calls ``refresh()`` every ``interval``
  seconds, so the kernel stays free to run cells while the view updates.
  :func:`stop_all_views` ends every such thread (it runs when the kernel exits).
* :func:`prefect_api`, :func:`current_api_url`, :func:`server_answers`: how a
  view finds the Prefect server it reads, and notices that it is gone.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import ipywidgets as w

from energy_flows.markup import muted, ok

__all__ = [
    "Controls",
    "LiveView",
    "SnapshotDisplay",
    "button",
    "current_api_url",
    "prefect_api",
    "server_answers",
    "stop_all_views",
]

_LIVE: weakref.WeakSet[LiveView] = weakref.WeakSet()


def stop_all_views() -> int:
    """Stop the refresh thread of every live view of this process; return how many ran.

    Registered with :mod:`atexit`, so a kernel that exits never leaves one behind.
    """
    count = 0
    for view in list(_LIVE):
        if view.running:
            count += 1
        with contextlib.suppress(Exception):
            view.stop()
    return count


atexit.register(stop_all_views)


@contextlib.contextmanager
def prefect_api(api_url: str | None) -> Iterator[None]:
    """Point Prefect at ``api_url`` for this thread only (no change when None).

    A view may watch another server than the kernel's; Prefect's
    ``temporary_settings`` changes the setting for the calling thread alone.
    """
    if not api_url:
        yield
        return
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api_url}):
        yield


def current_api_url() -> str | None:
    """The API address Prefect uses in this kernel now (None when none is set)."""
    try:
        from prefect.settings import get_current_settings

        url = get_current_settings().api.url
    except Exception:
        return os.environ.get("PREFECT_API_URL") or None
    return str(url) if url else None


def server_answers(api_url: str | None) -> bool:
    """True when the server at ``api_url`` answers its health check within 1.5 s.

    The health endpoint answers at once; a client call to a server that is
    gone would wait through Prefect's retries first.
    """
    if not api_url:
        return False
    from energy_flows.services.api import healthy

    return healthy(api_url, timeout=1.5)


def button(description: str, icon: str, tooltip: str, style: str = "") -> w.Button:
    """A button as wide as its label (``style``: "", "primary", "danger", ...)."""
    return w.Button(
        description=description,
        icon=icon,
        tooltip=tooltip,
        button_style=style,
        layout=w.Layout(width="auto"),
    )


class SnapshotDisplay(w.VBox):
    """A widget box that also shows as its static snapshot.

    Jupyter gets the live widget plus ``snapshot_text()`` and
    ``snapshot_html()`` (what nbval compares, what a static page renders);
    ``repr()`` is the text snapshot. Subclasses define both snapshots.
    """

    def snapshot_text(self) -> str:  # pragma: no cover - abstract
        """What the widget shows, as plain text."""
        raise NotImplementedError

    def snapshot_html(self) -> str:  # pragma: no cover - abstract
        """What the widget shows, as HTML that needs no JavaScript."""
        raise NotImplementedError

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        data = super()._repr_mimebundle_(**kwargs) if self.comm is not None else None
        data = dict(data or {})
        data["text/plain"] = self.snapshot_text()
        data["text/html"] = self.snapshot_html()
        return data

    def __repr__(self) -> str:
        return self.snapshot_text()


@dataclass(frozen=True)
class Controls:
    """The words of a live view's control bar: its start button, the tooltips, its status.

    ``words`` says what the status line calls refreshing and not refreshing
    ("live"/"stopped", "following"/"not following").
    """

    refresh_tip: str
    start: str = "Start"
    start_tip: str = "Refresh every few seconds"
    stop_tip: str = "Stop refreshing"
    words: tuple[str, str] = ("live", "stopped")


class LiveView(SnapshotDisplay):
    """A snapshot display that refreshes itself in a background thread.

    Above its ``view`` (an HTML widget the subclass fills) sits a control
    bar: a start button, Stop, Refresh, and a status line ("● live, every
    2 s" or "■ stopped"). Subclasses provide :meth:`refresh` and the two
    snapshots; the thread calls :meth:`refresh` every ``interval`` seconds
    between :meth:`start` and :meth:`stop`.
    """

    def __init__(self, interval: float, controls: Controls, css_class: str, **kwargs: Any) -> None:
        """Build the control bar (its words: ``controls``) above the ``view``."""
        self.start_button = button(controls.start, "play", controls.start_tip)
        self.stop_button = button("Stop", "stop", controls.stop_tip)
        self.refresh_button = button("Refresh", "refresh", controls.refresh_tip)
        self.status = w.HTML()
        self.view = w.HTML()
        self.start_button.on_click(lambda _: self.start())
        self.stop_button.on_click(lambda _: self.stop())
        self.refresh_button.on_click(lambda _: self.refresh())
        bar = w.HBox([self.start_button, self.stop_button, self.refresh_button, self.status])
        super().__init__(children=[bar, self.view], **kwargs)
        self.add_class(css_class)
        self.interval = float(interval)
        self._words = controls.words
        self._thread: threading.Thread | None = None
        self._stop_event = threading.Event()
        self._lock = threading.RLock()
        _LIVE.add(self)

    def refresh(self) -> Any:  # pragma: no cover - abstract
        """Read once, update the view, and return what was read."""
        raise NotImplementedError

    # -- refresh thread
    @property
    def running(self) -> bool:
        """True while the background refresh thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def live(self) -> bool:
        """True while the view refreshes and nothing has asked it to stop."""
        return self.running and not self._stop_event.is_set()

    def start(self) -> LiveView:
        """Refresh every ``interval`` seconds in a background thread (no-op if running)."""
        with self._lock:
            if self.running:
                return self
            self._stop_event = threading.Event()
            self._thread = threading.Thread(
                target=self._loop,
                args=(self._stop_event,),
                name=f"energy-flows {type(self).__name__}",
                daemon=True,
            )
            self._thread.start()
        self._status_changed()
        return self

    def stop(self, timeout: float = 10.0) -> LiveView:
        """Stop the background refresh and wait for its thread to end."""
        if not hasattr(self, "_stop_event"):  # construction failed before the thread parts
            return self
        self._stop_event.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._status_changed()
        return self

    def _halt(self) -> None:
        """Ask the refresh thread to end, without waiting (safe from inside that thread)."""
        self._stop_event.set()
        self._status_changed()

    def _loop(self, stop_event: threading.Event) -> None:
        while not stop_event.wait(self.interval):
            try:
                self.refresh()
            except Exception as exc:  # a view must never kill its thread silently
                self._show_problem(f"refresh failed: {exc}")

    def _show_problem(self, message: str) -> None:
        """Show an unexpected error (subclasses put it in their view)."""

    # -- status line
    def status_html(self) -> str:
        """The status line: live and how often, or stopped."""
        live_word, idle_word = self._words
        if self.live:
            return ok(f"● {live_word}, every {self.interval:g} s")
        return muted(f"■ {idle_word}")

    def _status_changed(self) -> None:
        """Show the status and enable the buttons that make sense now."""
        live = self.live
        self.status.value = self.status_html()
        self.start_button.disabled = live
        self.stop_button.disabled = not live

    def close(self) -> None:
        """Stop refreshing and close the widget and its children."""
        self.stop()
        for child in self._all_children():
            child.close()
        super().close()

    def _all_children(self) -> Iterator[w.Widget]:
        stack = list(self.children)
        while stack:
            child = stack.pop()
            yield child
            stack.extend(getattr(child, "children", ()))
