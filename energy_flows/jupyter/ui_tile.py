"""The "Prefect UI" tile in JupyterLab's Launcher, through jupyter-server-proxy.

A click starts the tile process (``python -m energy_flows.jupyter.ui_tile
--port N --base-url URL``), which answers at once with a "Starting" page,
starts or reuses the home's server with ``PrefectServer().start()`` (it
becomes the server's owner, as a kernel would), then redirects every request
to ``<base_url>proxy/absolute/<server port>/``, where the server serves its UI
under that prefix. The tile process ends with JupyterLab (or when its parent
dies), and the server with it unless a kernel still uses it. Only the
standard library is imported at the top: JupyterLab imports this module at
start-up to read :func:`server_proxy_spec`. More: docs/architecture.md.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from energy_flows.services.registry import ServerRecord

#: The tile's name: its path under JupyterLab's base URL (``<base_url>prefect-ui/``).
NAME = "prefect-ui"

#: The tile's label in the Launcher (jupyter-server-proxy adds " [↗]": it opens a new tab).
TITLE = "Prefect UI"

#: The Launcher section of the tile. JupyterLab draws a tile's own picture only in
#: its "Notebook" and "Console" sections, so proxied apps go to "Notebook".
CATEGORY = "Notebook"

#: The tile's picture.
ICON = Path(__file__).with_name("prefect-ui.svg")

#: Seconds jupyter-server-proxy waits for the tile process to answer its first request.
#: It answers within a second; the server's own start is shown on the "Starting" page.
READY_TIMEOUT = 30.0

#: How often the "Starting" page reloads itself, in seconds.
REFRESH_SECONDS = 1


def server_proxy_spec() -> dict[str, Any]:
    """The tile for jupyter-server-proxy (the ``jupyter_serverproxy_servers`` entry point).

    ``absolute_url``: the tile process gets the whole path, and its redirects reach
    the browser as they are.
    """
    entry: dict[str, Any] = {"title": TITLE, "category": CATEGORY}
    if ICON.is_file():
        entry["icon_path"] = str(ICON)
    return {
        "command": [
            sys.executable,
            "-m",
            "energy_flows.jupyter.ui_tile",
            "--port",
            "{port}",
            "--base-url",
            "{base_url}",
        ],
        "timeout": READY_TIMEOUT,
        "absolute_url": True,
        "new_browser_tab": True,
        "launcher_entry": entry,
    }


def normal_base_url(base_url: str) -> str:
    """JupyterLab's base URL with one slash at each end: ``/`` or ``/user/alice/``."""
    inner = base_url.strip("/")
    return f"/{inner}/" if inner else "/"


def proxy_path(base_url: str, port: int) -> str:
    """Where jupyter-server-proxy serves port ``port`` without changing the path.

    >>> proxy_path("/user/alice/", 4201)
    '/user/alice/proxy/absolute/4201/'
    """
    return f"{normal_base_url(base_url)}proxy/absolute/{port}/"


@dataclass(frozen=True)
class Reply:
    """One HTTP answer of the tile process."""

    status: int
    body: str = ""
    location: str | None = None


def _page(title: str, body: str, refresh: bool = False) -> str:
    meta = f"<meta http-equiv='refresh' content='{REFRESH_SECONDS}'>" if refresh else ""
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"{meta}<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;max-width:46em;margin:3em auto;line-height:1.5}"
        "pre{white-space:pre-wrap;background:#f4f4f4;padding:1em}</style>"
        f"</head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )


def starting_reply(home: os.PathLike[str] | str) -> Reply:
    """The page shown while the server starts: it reloads itself until the redirect."""
    body = (
        f"<p>Starting the Prefect server of <code>{html.escape(str(home))}</code>, or "
        "connecting to the one that runs already. This page opens the Prefect UI "
        "as soon as the server answers (a few seconds; longer the very first time).</p>"
    )
    return Reply(200, _page("Prefect UI: starting the server", body, refresh=True))


def failed_reply(message: str) -> Reply:
    """The page shown when the server could not start: what it said, and what to do."""
    body = (
        f"<pre>{html.escape(message)}</pre>"
        "<p>Reload this page to try again once the cause is fixed. "
        "<code>energy-flows status</code> in a terminal shows what runs for this home.</p>"
    )
    return Reply(503, _page("Prefect UI: the Prefect server did not start", body))


def ready_reply(api_url: str, port: int, ui_url: str, base_url: str) -> Reply:
    """The answer once the home's server runs: the redirect, or why there is none.

    A server started without the proxy's prefix (by a lesson outside a hub)
    cannot be shown through JupyterLab: the page sends a browser on this
    machine to ``ui_url``, and says how to get the proxied address otherwise.
    """
    from energy_flows.services.urls import api_url_for

    target = proxy_path(base_url, port)
    if api_url == api_url_for(port, target.rstrip("/")):
        return Reply(302, location=target)
    link = html.escape(ui_url)
    body = (
        "<p>The Prefect server of this home runs already, but it was started without "
        "the JupyterLab proxy settings (by a notebook or <code>energy-flows up</code> "
        f"before this tile was opened), so its UI is only at its own address: "
        f"<a href='{link}'>{link}</a>, which works from this machine.</p>"
        "<p>To see the UI through JupyterLab instead, stop that server "
        "(<code>server.stop()</code> in the notebook that started it, or "
        "<code>energy-flows down</code>), then open this tile again: it starts the "
        "server with the proxy settings, and the lessons reuse it.</p>"
        "<script>if (['127.0.0.1', 'localhost', '[::1]'].includes(location.hostname))"
        f" location.replace({json.dumps(ui_url)});</script>"
    )
    return Reply(200, _page("Prefect UI", body))


def _ready(rec: ServerRecord, base_url: str) -> Reply:
    return ready_reply(rec.api_url, rec.port, rec.ui_url, base_url)


class Tile:
    """The tile process's state: the home's server it holds (started or reused), or why not."""

    def __init__(self, base_url: str) -> None:
        self.base_url = normal_base_url(base_url)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._error: str | None = None
        self._held: tuple[int, float] | None = None  # pid and create_time of our server
        self._home: Path | None = None

    @property
    def home(self) -> Path:
        """The home whose server the tile shows (the lessons' home: ``settings.home_dir()``)."""
        if self._home is None:
            from energy_flows import settings

            self._home = settings.home_dir()
        return self._home

    def reply(self) -> Reply:
        """What to answer a request now; starts (in a thread) the server when none is held."""
        from energy_flows.services import registry

        with self._lock:
            starting = self._thread is not None
            if not starting:
                if self._error is not None:
                    message, self._error = self._error, None  # a reload tries again
                    return failed_reply(message)
                rec = registry.live_server(self.home)
                if rec is not None and (rec.pid, rec.create_time) == self._held:
                    return _ready(rec, self.base_url)
                # None runs, or one this process does not hold (the one it held
                # was stopped, and maybe started again by a lesson): start or adopt it.
                self._thread = threading.Thread(
                    target=self._start, name="start-server", daemon=True
                )
                self._thread.start()
                return starting_reply(self.home)
        return self._while_starting()

    def _while_starting(self) -> Reply:
        """A server this process spawned is shown as soon as it answers (``start()`` then
        imports Prefect for a kernel's next cells: no need to wait for that); one it adopts
        is waited for."""
        from energy_flows.services import api, registry

        rec = registry.live_server(self.home)
        if rec is None or rec.owner_pid != os.getpid() or not api.healthy(rec.api_url):
            return starting_reply(self.home)
        return _ready(rec, self.base_url)

    def _start(self) -> None:
        from energy_flows.services.server import PrefectServer

        error: str | None = None
        held: tuple[int, float] | None = None
        try:
            server = PrefectServer(self.home, quiet=True).start()
            rec = server.record
            if rec is None:
                error = "The Prefect server stopped right after it started; see its log."
            else:
                held = (rec.pid, rec.create_time)
                for line in server.messages:
                    log(line)
                how = "Reusing" if server.reused else "Started"
                log(f"{how} the Prefect server of {self.home} (pid {rec.pid}, port {rec.port}).")
        except Exception as exc:  # shown on the page; the next reload tries again
            error = f"{type(exc).__name__}: {exc}"
            log(f"The Prefect server of {self.home} did not start: {error}")
        with self._lock:
            self._held, self._error, self._thread = held, error, None


def log(message: str) -> None:
    """One line in JupyterLab's log (the tile process writes to its terminal)."""
    print(f"[{NAME}] {message}", file=sys.stderr, flush=True)


def handler_for(tile: Tile) -> type[BaseHTTPRequestHandler]:
    """The request handler class of the tile's HTTP server: every GET asks ``tile``."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self._send(tile.reply(), body=True)

        def do_HEAD(self) -> None:
            self._send(tile.reply(), body=False)

        def _send(self, reply: Reply, body: bool) -> None:
            data = reply.body.encode()
            self.send_response(reply.status)
            if reply.location:
                self.send_header("Location", reply.location)
            # The server's port changes from one JupyterLab session to the next.
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # jupyter-server-proxy logs the requests already

    return Handler


def _stop(signum: int, frame: object) -> None:
    raise SystemExit(0)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m energy_flows.jupyter.ui_tile --port N --base-url URL`` (run by the tile)."""
    parser = argparse.ArgumentParser(
        prog="python -m energy_flows.jupyter.ui_tile",
        description="JupyterLab's Prefect UI tile: start or reuse the home's Prefect server "
        "and redirect to its UI through jupyter-server-proxy.",
    )
    parser.add_argument("--port", type=int, required=True, help="the port to answer on")
    parser.add_argument("--base-url", default="/", help="JupyterLab's base URL (default /)")
    args = parser.parse_args(argv)
    base_url = normal_base_url(args.base_url)
    # The server this process starts serves its UI and API under
    # <base_url>proxy/absolute/<port>/ (urls.hub_prefix reads this variable;
    # on a JupyterHub it holds this same base URL).
    os.environ["JUPYTERHUB_SERVICE_PREFIX"] = base_url

    from energy_flows.services.launch import exit_with_parent

    exit_with_parent()  # JupyterLab killed outright: end, and the server with us
    signal.signal(signal.SIGTERM, _stop)
    tile = Tile(base_url)
    httpd = ThreadingHTTPServer(("127.0.0.1", args.port), handler_for(tile))
    tile.reply()  # start the server now: the browser's first request comes next
    try:
        httpd.serve_forever()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        httpd.server_close()
    # Leaving closes our end of the server's watchdog pipe: it stops the server
    # unless a kernel still uses it.
    return 0


if __name__ == "__main__":
    sys.exit(main())
