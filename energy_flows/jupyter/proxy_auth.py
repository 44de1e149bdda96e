"""The owner's Prefect UI through JupyterLab, without a password prompt.

A Prefect server with a password (``PrefectServer(auth=...)``, the default on a
JupyterHub) answers every API call without ``Authorization: Basic ...`` with
HTTP 401, and its UI shows a Login page. Through JupyterLab the password is
not needed: whoever reaches JupyterLab's proxy has already logged in to
JupyterLab, and can run code as its user anyway. So this Jupyter server
extension replaces jupyter-server-proxy's handler of
``<base_url>proxy/absolute/<port>/...`` (the address the Launcher tile and
``server.ui_url`` use under a hub) with one that, for a port where a Prefect
server *of this same user* listens:

* adds that server's ``Authorization`` header to each request it forwards
  (the password comes from the server process's own environment, so it is
  always the one that server asks for, whichever home it belongs to), and
* answers the UI's ``ui-settings`` with ``"auth": null``, so the UI shows no
  Login page and sends no password of its own (the proxy adds it).

The password never reaches the browser. Requests to any other port are
forwarded unchanged, exactly as jupyter-server-proxy would. Other users of
the machine still get 401 from the server itself: they cannot reach this
user's JupyterLab.

jupyter_server loads its extensions sorted by name and tornado matches the
first handler added, so this one (``energy_flows...``) comes before
jupyter-server-proxy's own. ``energy-flows lab`` enables it on its command line
(:data:`JUPYTER_ARGUMENT`); a JupyterHub or Binder installation enables it in a
``jupyter_server_config.d`` file (:func:`jupyter_config`).
"""

from __future__ import annotations

import base64
import gzip
import json
import os
from typing import Any

#: The module name jupyter_server loads (its ``jpserver_extensions`` key).
EXTENSION = "energy_flows.jupyter.proxy_auth"

#: The command-line option that enables the extension in a Jupyter server.
JUPYTER_ARGUMENT = f"--ServerApp.jpserver_extensions={EXTENSION}=True"

#: The Prefect server setting that holds its ``user:password``.
_AUTH_SETTING = "PREFECT_SERVER_API_AUTH_STRING"


def jupyter_config() -> dict[str, Any]:
    """The Jupyter server configuration that enables this extension."""
    return {"ServerApp": {"jpserver_extensions": {EXTENSION: True}}}


#: port -> (pid, create_time, auth string or None) of the process last found listening there.
_FOUND: dict[int, tuple[int, float, str | None]] = {}

#: port -> when nothing of this user's was found listening there (looked up again after a while).
_MISSED: dict[int, float] = {}

#: Seconds a port where nothing of this user's listens is not looked up again.
MISS_SECONDS = 2.0


def server_auth(port: int) -> str | None:
    """The ``user:password`` of the Prefect server of this user listening on ``port``, or None.

    None when nothing of this user's listens there, or what listens asks for no
    password. Finding the process reads the system's sockets (about 0.1 s), so
    the answer is kept while that process lives (checking it costs microseconds:
    every request the UI makes passes here); a miss is kept for :data:`MISS_SECONDS`.
    """
    import time

    import psutil

    known = _FOUND.get(port)
    if known is not None:
        pid, created, secret = known
        try:
            if psutil.Process(pid).create_time() == created:
                return secret
        except psutil.Error:
            pass
        del _FOUND[port]
    missed = _MISSED.get(port)
    if missed is not None and time.monotonic() - missed < MISS_SECONDS:
        return None
    _MISSED[port] = time.monotonic()
    for conn in psutil.net_connections(kind="inet"):
        if conn.status != psutil.CONN_LISTEN or not conn.laddr or conn.laddr.port != port:
            continue
        if conn.pid is None:
            continue  # another user's process: its password is not ours to send
        try:
            proc = psutil.Process(conn.pid)
            if proc.uids().real != os.getuid():
                continue
            secret = proc.environ().get(_AUTH_SETTING) or None
            _FOUND[port] = (proc.pid, proc.create_time(), secret)
        except psutil.Error:
            continue
        _MISSED.pop(port, None)
        return secret
    return None


def no_login(response: Any, path: str) -> None:
    """``rewrite_response``: the UI's ``ui-settings`` say the API needs no password."""
    if not path.rstrip("/").endswith("/ui-settings") or response.code != 200:
        return
    # Prefect compresses its answers when the browser accepts it; the proxy passes them on.
    gzipped = response.headers.get("Content-Encoding", "").lower() == "gzip"
    try:
        data = json.loads(gzip.decompress(response.body) if gzipped else response.body)
    except (OSError, ValueError):
        return
    if isinstance(data, dict) and data.get("auth"):
        data["auth"] = None
        response.body = json.dumps(data).encode()
        if gzipped:
            del response.headers["Content-Encoding"]


def _handler_class() -> type:
    from jupyter_server_proxy.handlers import LocalProxyHandler

    class OwnersProxyHandler(LocalProxyHandler):
        """jupyter-server-proxy's ``proxy/absolute/<port>`` that logs the owner in to Prefect."""

        _secret: str | None = None

        def proxy(self, port: str, proxied_path: str) -> Any:
            self._secret = server_auth(int(port))
            if self._secret:
                chain: Any = getattr(self, "rewrite_response", ())
                chain = list(chain) if isinstance(chain, list | tuple) else [chain]
                self.rewrite_response = (*chain, no_login)
            return super().proxy(port, proxied_path)

        def get_request_headers_override(self) -> dict[str, str]:
            headers = dict(super().get_request_headers_override())
            if self._secret:
                token = base64.b64encode(self._secret.encode()).decode()
                headers["Authorization"] = f"Basic {token}"
            return headers

    return OwnersProxyHandler


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": EXTENSION}]


def _load_jupyter_server_extension(server_app: Any) -> None:
    """Put the handler in front of jupyter-server-proxy's for ``proxy/absolute/<port>``."""
    from jupyter_server.utils import url_path_join

    web_app = server_app.web_app
    rewrite = server_app.config.get("ServerProxy", {}).get("non_service_rewrite_response", ())
    pattern = url_path_join(web_app.settings["base_url"], r"/proxy/absolute/(\d+)(/.*|)")
    options = {"absolute_url": True, "rewrite_response": rewrite or ()}
    web_app.add_handlers(".*", [(pattern, _handler_class(), options)])
    server_app.log.info("[energy-flows] the owner's Prefect UI opens through the proxy")
