"""Where the server's API and UI are reached: on this machine, or through JupyterHub.

On a JupyterHub, a browser cannot reach ``127.0.0.1:<port>`` of the user's
server: it goes through jupyter-server-proxy. Only the non-stripping path
``<hub prefix>/proxy/absolute/<port>/`` works for Prefect's UI, with the
server told its own path prefix (``docs/prefect-facts.md``).
"""

from __future__ import annotations

import os


def hub_prefix(port: int) -> str | None:
    """The jupyter-server-proxy path for ``port`` under JupyterHub, else None.

    ``JUPYTERHUB_SERVICE_PREFIX`` is e.g. ``/user/alice/``.
    """
    service_prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX")
    if not service_prefix:
        return None
    return f"{service_prefix.rstrip('/')}/proxy/absolute/{port}"


def hub_settings(prefix: str) -> dict[str, str]:
    """Server settings that make the UI and API work under a path prefix."""
    return {
        "PREFECT_SERVER_UI_SERVE_BASE": prefix,
        "PREFECT_SERVER_API_BASE_PATH": f"{prefix}/api",
        "PREFECT_SERVER_UI_API_URL": f"{prefix}/api",
    }


def api_url_for(port: int, prefix: str | None) -> str:
    """The API address clients on this machine use (``.../api``)."""
    return f"http://127.0.0.1:{port}{prefix or ''}/api"


def ui_url_for(port: int, prefix: str | None) -> str:
    """The UI address: local, or through the JupyterHub proxy."""
    if not prefix:
        return f"http://127.0.0.1:{port}"
    public = os.environ.get("JUPYTERHUB_PUBLIC_URL", "").rstrip("/")
    return f"{public}{prefix}/"
