"""The server a lesson's kernel talks to: kept in step with its home, or a short message.

Learners leave every lesson's tab open. Another lesson, a terminal
(``energy-flows down``) or the launcher tile can stop the home's Prefect
server, or start it again on another port or on PostgreSQL (lesson 07),
while a kernel still points at the old one. :func:`follow`, which a lesson's
first cell calls (``lesson_setup``), makes that visible instead of confusing:

* It records which server this kernel uses (its pid and address) and that
  the lesson is open in the home (``<home>/state/lessons/<pid>.json``), so
  lesson 07 can say which open lessons its switch to PostgreSQL affects
  (:func:`open_lessons`).
* Before each cell, it compares the home's server with the recorded one. If
  something else stopped or replaced it, the cell does not run: one short
  message says what happened and the one thing to do, "run this notebook's
  first cell again" (:class:`ServerGone`). The first cell itself always runs,
  and re-points the kernel (``PrefectServer.start()``: Prefect's settings, and
  its event and log senders, see ``docs/architecture.md``).
* A connection error from a Prefect call to the home's server (a flow
  called after the server stopped: a 60-frame ``httpx.ConnectError``) is
  shown as the same short message. The full traceback is one ``%tb`` away.

It only uses IPython's public hooks: an AST transformer that may reject a
cell (``InputRejected``), a custom exception handler (``set_custom_exc``) and
the ``pre_run_cell``/``post_run_cell`` events. Outside IPython it does nothing.
"""

from __future__ import annotations

import ast
import contextlib
import json
import os
import re
import sys
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from energy_flows.errors import EnergyFlowsError
from energy_flows.services import process, registry

__all__ = ["OpenLesson", "ServerGone", "follow", "note_stopped", "open_lessons"]

#: What the message for a stopped server asks the learner to do.
RERUN_HINT = "Run this notebook's first cell again ({call})"

#: The calls that point a kernel at the home's server (a lesson's first cell, lesson 01's
#: ``PrefectServer().start()``): a cell that makes one always runs, and the kernel follows.
SETUP_CALLS = frozenset({"lesson_setup", "PrefectServer"})

#: The IPython calls a cell of only magics and shell commands turns into (``%tb``,
#: ``!energy-flows status``): they run whatever happened to the server.
_MAGIC_CALLS = frozenset({"run_line_magic", "run_cell_magic", "system", "getoutput"})


try:  # IPython is there in every kernel; the package itself runs without it.
    from IPython.core.error import InputRejected as _Rejected
except ImportError:  # pragma: no cover - a script without IPython never rejects a cell
    _Rejected = Exception  # type: ignore[assignment,misc]


class ServerGone(EnergyFlowsError, _Rejected):
    """The Prefect server this notebook used was stopped: run the first cell again.

    Raised before a cell runs (the cell does not run), or shown instead of a
    connection error's traceback. In a notebook it shows as its message only;
    ``%tb`` in a new cell shows the full traceback of a connection error.
    """

    def _render_traceback_(self) -> list[str]:
        """What IPython shows: the message, not frames of the package's code."""
        return [f"ServerGone: {self}", "(The full traceback of the last error: %tb in a new cell.)"]


@dataclass(frozen=True)
class OpenLesson:
    """A lesson whose kernel ran its first cell in this home and still runs."""

    lesson: str
    pid: int


@dataclass
class _Link:
    """What this kernel knows about its home's server."""

    home: Path
    lesson: str
    pid: int | None = None
    create_time: float | None = None
    api_url: str = ""
    #: This kernel stopped the server itself (``server.stop()``, ``!energy-flows down``).
    stopped_here: bool = False
    #: The server was up when the running cell started.
    up_before_cell: bool = False
    #: The running cell points the kernel at the home's server (:data:`SETUP_CALLS`).
    setting_up: bool = False
    hooks: list[Any] = field(default_factory=list)

    def alive(self) -> bool:
        return process.is_alive(self.pid, self.create_time)


_LINK: _Link | None = None


# --------------------------------------------------------------------------
# Following the home's server (lesson_setup)
# --------------------------------------------------------------------------


def follow(home: str | os.PathLike[str], lesson: str) -> None:
    """Record the home's server as this kernel's, mark ``lesson`` open, install the hooks.

    Called by ``lesson_setup`` once the server runs and the kernel points at
    it. Calling it again (the first cell run again) records the server that
    runs now. Outside IPython it only records.
    """
    global _LINK
    home = Path(home)
    rec = registry.live_server(home)
    link = _LINK if _LINK is not None and _LINK.home == home else _Link(home, lesson)
    link.lesson = lesson
    link.pid, link.create_time = (rec.pid, rec.create_time) if rec else (None, None)
    link.api_url = rec.api_url if rec else ""
    link.stopped_here = False
    link.up_before_cell = rec is not None
    _LINK = link
    _mark_open(home, lesson)
    _install(link)


def _shell() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return None
    return get_ipython()


def _install(link: _Link) -> None:
    """Install the hooks once per kernel (a second call finds them in place)."""
    shell = _shell()
    if shell is None or link.hooks:
        return
    import httpx

    guard = _CellGuard()
    shell.ast_transformers.append(guard)
    shell.events.register("pre_run_cell", _before_cell)
    shell.events.register("post_run_cell", _after_cell)
    shell.set_custom_exc((httpx.TransportError, RuntimeError), _show_connection_error)
    link.hooks = [guard]


def _before_cell(*_: Any) -> None:
    if _LINK is not None:
        _LINK.up_before_cell = _LINK.alive()


def _after_cell(*_: Any) -> None:
    """A server that was up when the cell started and is gone now was stopped by this cell.

    After a cell that started (or reused) the home's server, the kernel follows it.
    """
    link = _LINK
    if link is None:
        return
    if link.setting_up:
        link.setting_up = False
        rec = registry.live_server(link.home)
        if rec is not None and os.environ.get("PREFECT_API_URL") == rec.api_url:
            link.pid, link.create_time, link.api_url = rec.pid, rec.create_time, rec.api_url
            link.stopped_here = False
            return
    if not link.up_before_cell or link.alive() or link.pid is None:
        return
    link.stopped_here = True
    note_stopped(link.home, link.pid, f"lesson {link.lesson}")


# --------------------------------------------------------------------------
# Who stopped the server
# --------------------------------------------------------------------------


def _stop_note(home: Path) -> Path:
    return registry.state_dir(home) / "server-stopped-by.json"


#: How many stopped servers the home remembers who stopped (the latest ones).
_NOTES_KEPT = 20


def note_stopped(home: str | os.PathLike[str], pid: int, by: str) -> None:
    """Leave word in the home that ``by`` (e.g. "lesson 07") stopped the server ``pid``."""
    path = _stop_note(Path(home))
    notes = {k: v for k, v in _stop_notes(path).items() if k != str(pid)}
    notes[str(pid)] = by
    kept = dict(list(notes.items())[-_NOTES_KEPT:])
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        process.write_private(path, json.dumps(kept))


def _stop_notes(path: Path) -> dict[str, str]:
    try:
        notes = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(notes, dict):
        return {}
    return {str(k): v for k, v in notes.items() if isinstance(v, str)}


def _stopped_by(home: Path, pid: int | None) -> str | None:
    return _stop_notes(_stop_note(home)).get(str(pid))


# --------------------------------------------------------------------------
# The lessons open in a home
# --------------------------------------------------------------------------


def _lessons_dir(home: Path) -> Path:
    return registry.state_dir(home) / "lessons"


def _mark_open(home: Path, lesson: str) -> None:
    folder = _lessons_dir(home)
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True)
        import psutil

        me = os.getpid()
        entry = {"lesson": lesson, "pid": me, "create_time": psutil.Process(me).create_time()}
        process.write_private(folder / f"{me}.json", json.dumps(entry))


def open_lessons(home: str | os.PathLike[str], exclude_self: bool = True) -> list[OpenLesson]:
    """The lessons whose kernels ran their first cell in ``home`` and still run, by number.

    A kernel that ended (closed tab, Restart Kernel) no longer counts; its
    entry is removed.
    """
    found = []
    for path in sorted(_lessons_dir(Path(home)).glob("*.json")):
        try:
            entry = json.loads(path.read_text())
            pid, lesson = int(entry["pid"]), str(entry["lesson"])
            create_time = entry.get("create_time")
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if not process.is_alive(pid, create_time):
            with contextlib.suppress(OSError):
                path.unlink()
            continue
        if exclude_self and pid == os.getpid():
            continue
        found.append(OpenLesson(lesson, pid))
    return sorted(found, key=lambda o: (o.lesson, o.pid))


# --------------------------------------------------------------------------
# The message
# --------------------------------------------------------------------------


def _gone_message(link: _Link) -> str:
    """What happened to this kernel's server, and the one thing to do."""
    call = f'lesson_setup("{link.lesson}")'
    if link.stopped_here:
        by = "by this notebook"
    else:
        who = _stopped_by(link.home, link.pid)
        by = f"by {who}" if who else "outside this notebook (a terminal, the launcher or a tab)"
    now = registry.live_server(link.home)
    if now is None:
        return (
            f"The Prefect server this notebook used was stopped {by}. "
            f"{RERUN_HINT.format(call=call)}: it starts the server again and points this "
            "notebook at it."
        )
    on = "PostgreSQL" if now.database != "sqlite" else "SQLite"
    return (
        f"The Prefect server this notebook used was stopped {by}; this home's server now "
        f"runs on {on} at {now.api_url}. {RERUN_HINT.format(call=call)} to continue on it."
    )


class _CellGuard(ast.NodeTransformer):
    """Refuses a cell while this kernel's server is gone, unless it is the first cell.

    A server this notebook stopped itself does not stop its cells (the lesson
    goes on, e.g. to ``leftovers()``); a Prefect call then gets the message
    from the connection error's handler.
    """

    def visit(self, node: ast.AST) -> Any:
        try:
            message = self._refusal(node)
        except Exception:  # never in the way of a cell: IPython would drop a failing guard
            return node
        if message:
            raise ServerGone(message)
        return node

    @staticmethod
    def _refusal(node: ast.AST) -> str | None:
        link = _LINK
        if link is None:
            return None
        link.setting_up = _calls(node, SETUP_CALLS)
        if link.pid is None or link.stopped_here or link.setting_up or link.alive():
            return None
        if _only_magics(node):
            return None
        return _gone_message(link)


def _call_names(node: ast.AST) -> set[str]:
    names = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            func = sub.func
            if isinstance(func, ast.Name):
                names.add(func.id)
            elif isinstance(func, ast.Attribute):
                names.add(func.attr)
    return names


def _calls(node: ast.AST, names: frozenset[str]) -> bool:
    return bool(_call_names(node) & names)


def _only_magics(node: ast.AST) -> bool:
    """A cell of ``%magic`` and ``!command`` lines only (``%tb`` must run)."""
    body = getattr(node, "body", [])
    return bool(body) and all(
        isinstance(stmt, ast.Expr | ast.Assign)
        and isinstance(stmt.value, ast.Call)
        and _call_names(stmt.value) <= _MAGIC_CALLS | {"get_ipython"}
        for stmt in body
    )


# --------------------------------------------------------------------------
# Connection errors
# --------------------------------------------------------------------------

_REACH_API = re.compile(r"Failed to reach API at (\S+?)\.?$")


def _failed_url(exc: BaseException | None) -> tuple[bool, str | None]:
    """Whether ``exc`` (or what caused it) is a connection error, and the URL it failed on."""
    import httpx

    seen = 0
    while exc is not None and seen < 20:
        if isinstance(exc, httpx.TransportError):
            try:
                return True, str(exc.request.url)
            except RuntimeError:  # an error raised without its request
                return True, None
        if isinstance(exc, RuntimeError):
            match = _REACH_API.search(str(exc))
            if match:
                return True, match.group(1)
        if isinstance(exc, ConnectionRefusedError):
            return True, None
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False, None


def _same_server(url: str | None, api_url: str) -> bool:
    if url is None or not api_url:
        return False
    a, b = urllib.parse.urlsplit(url), urllib.parse.urlsplit(api_url)
    return (a.hostname, a.port) == (b.hostname, b.port)


def connection_message(exc: BaseException) -> str | None:
    """The short message for ``exc`` if it is a connection error to this kernel's server."""
    link = _LINK
    if link is None:
        return None
    failed, url = _failed_url(exc)
    if not failed:
        return None
    ours = _same_server(url, link.api_url) or (url is None and not link.alive())
    if not ours:
        return None
    if not link.alive():
        return _gone_message(link)
    return (
        f"The Prefect server at {link.api_url} did not answer, although it still runs "
        f"({type(exc).__name__}). Run the cell again; if it fails again, "
        "`energy-flows status` in a terminal shows what runs."
    )


def _show_connection_error(
    shell: Any, etype: type[BaseException], value: BaseException, tb: Any, tb_offset: Any = None
) -> None:
    """IPython's handler for the registered errors: the short message, else the usual traceback."""
    message = connection_message(value)
    if message is None:
        shell.showtraceback((etype, value, tb), tb_offset=tb_offset)
        return
    short = ServerGone(message)
    shell.showtraceback((ServerGone, short, None))
    # `%tb` shows the last error: the connection error with all its frames.
    sys.last_type, sys.last_value, sys.last_traceback = etype, value, tb
    if sys.version_info >= (3, 12):
        sys.last_exc = value  # pragma: no cover - Python 3.12+
