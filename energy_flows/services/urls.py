"""Where the server's API and UI are reached (here or through JupyterHub), and its database.

Behind JupyterHub a browser goes through jupyter-server-proxy: only its
non-stripping ``<hub prefix>/proxy/absolute/<port>/`` works for Prefect's UI.
"""

from __future__ import annotations

import os
import urllib.parse

#: The scheme of the PostgreSQL URLs Prefect takes (its asyncpg driver).
ASYNCPG_SCHEME = "postgresql+asyncpg"

#: The superuser and database of a managed PostgreSQL (``services/postgres.py``).
POSTGRES_USER, POSTGRES_DATABASE = "postgres", "prefect"


def hub_prefix(port: int) -> str | None:
    """The jupyter-server-proxy path for ``port`` under JupyterHub (its prefix, e.g.
    ``/user/alice/``, in ``JUPYTERHUB_SERVICE_PREFIX``), else None."""
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


def postgres_url_for(port: int, password: str | None = None) -> str:
    """A managed PostgreSQL's URL (``password=None``: the one to show and record)."""
    secret = f":{password}" if password else ""
    return f"{ASYNCPG_SCHEME}://{POSTGRES_USER}{secret}@127.0.0.1:{port}/{POSTGRES_DATABASE}"


def redact(url: str) -> str:
    """A database URL without its password, to show or record (``user:***@host``)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
