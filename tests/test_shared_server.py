"""A class sharing one server: a password on the server, a classmate's worker joining it.

The instructor's server is started with ``PrefectServer(auth=True)``; a
classmate, in another home and another environment (a terminal with nothing
of the instructor's settings), joins it with ``energy-flows up --server URL
--worker POOL/QUEUE`` and the password in ``$PREFECT_API_AUTH_STRING``. Real
server, real worker, real runs, a real SIGKILL.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from flows_for_tests.nap import nap

from energy_flows import orchestration as orch
from energy_flows import settings
from energy_flows.errors import OrchestrationError
from energy_flows.orchestration import flow_run_command
from energy_flows.services import registry
from energy_flows.services.server import PrefectServer
from energy_flows.services.worker import Worker
from energy_flows.views import runs_with_workers
from energy_flows.waiting import wait_until
from tests.conftest import status_without_password

pytestmark = pytest.mark.server


def _classmate(home: Path, *args: str, password: str | None) -> subprocess.CompletedProcess:
    """``energy-flows`` as a classmate runs it: their own home, none of our settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "ENERGY_FLOWS_"))}
    env["ENERGY_FLOWS_HOME"] = str(home)
    if password is not None:
        env["PREFECT_API_AUTH_STRING"] = password
    return subprocess.run(
        [sys.executable, "-m", "energy_flows.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _status_without_password(url: str) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="GET"), timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_classmates_worker_joins_a_server_with_a_password(fresh_home, tmp_path):
    server = PrefectServer(auth=True, quiet=True).start()
    secret = server.auth_string
    assert secret is not None and secret.startswith("class:") and len(secret) > 20
    path = settings.auth_path(fresh_home)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600, "the password is readable by its user only"
    # The server refuses whoever has no password; health checks stay open.
    assert _status_without_password(f"{server.api_url}/flows/") == 401
    assert _status_without_password(f"{server.api_url}/health") == 200
    # This kernel sends it (Prefect's client and the package's own calls).
    pool, queue = f"class-{uuid.uuid4().hex[:6]}", "shared"
    orch.ensure_work_pool(pool)
    deployment = orch.deploy(
        nap,
        "nap-shared",
        work_pool=pool,
        work_queue=queue,
        job_variables={"command": flow_run_command()},
    ).full_name

    classmate = tmp_path / "classmate"
    refused = _classmate(
        classmate,
        *("up", "--server", server.api_url, "--worker", f"{pool}/{queue}"),
        password="class:wrong",
    )
    assert refused.returncode != 0
    assert "refused the one given (HTTP 401)" in refused.stderr, refused.stderr
    assert "Nothing was started" in refused.stderr
    assert not registry.worker_records(classmate)
    assert not settings.auth_path(classmate).exists(), "a refused password is not kept"

    joined = _classmate(
        classmate,
        *("up", "--server", server.api_url, "--worker", f"{pool}/{queue}"),
        password=secret,
    )
    assert joined.returncode == 0, joined.stderr
    assert f"polls {pool}/{queue} on {server.api_url}" in joined.stdout
    [worker] = registry.worker_records(classmate)
    assert worker.remote and worker.auth and worker.api_url == server.api_url
    assert secret not in " ".join(worker.argv), "the password is never on a command line"
    typo = _classmate(
        classmate,
        *("up", "--server", server.api_url, "--worker", f"{pool}/other"),
        password=secret + "x",
    )
    assert typo.returncode != 0 and "HTTP 401" in typo.stderr
    assert settings.auth_string(classmate) == secret, "a wrong password loses the right one"

    run = orch.wait_for(orch.trigger(deployment, parameters={"seconds": 0}), timeout=90)
    assert run.state == "Completed"
    table = runs_with_workers(orch.queue_runs(queue, pool, states=["Completed"]))
    assert list(table["worker"]) == [worker.name], "the classmate's worker ran it"

    # kill -9 of the classmate's worker mid-run: the run still ends Crashed, on our server.
    in_flight = orch.trigger(deployment, parameters={"seconds": 120})
    wait_until(
        lambda: orch.read_run(in_flight).state == "Running", 60, what="the run to be Running"
    )
    os.kill(worker.pid, signal.SIGKILL)
    wait_until(
        lambda: orch.read_run(in_flight).state == "Crashed",
        15,
        what="the killed worker's run to be Crashed",
    )

    down = _classmate(classmate, "down", password=None)
    assert down.returncode == 0, down.stderr
    assert not [r for r in registry.worker_records(classmate) if r.alive()]
    server.stop()


def test_a_bad_password_or_address_says_what_to_change(fresh_home):
    for bad in ("no-colon", ":nouser", "user:", "user:with space", 42):
        with pytest.raises(OrchestrationError, match="user and password joined by a colon"):
            PrefectServer(auth=bad)  # type: ignore[arg-type]
    with pytest.raises(OrchestrationError, match="not shown, in case it is a real password"):
        Worker(server="http://127.0.0.1:4200/api", auth="user:pass word")
    with pytest.raises(OrchestrationError, match="auth goes with server="):
        Worker(auth="class:secret")
    with pytest.raises(OrchestrationError, match="is the API address of a Prefect server"):
        Worker(server="127.0.0.1:4200")
    assert not settings.auth_path(fresh_home).exists(), "nothing was written"


#: A request another local account makes: the standard library only (that account cannot
#: read this checkout's virtualenv), without a password, and an attempt to read the file.
_ANOTHER_USER = """
import json, sys, urllib.error, urllib.request
url, password_file = sys.argv[1], sys.argv[2]
request = urllib.request.Request(url, data=b"{}", method="POST",
                                 headers={"Content-Type": "application/json"})
try:
    with urllib.request.urlopen(request, timeout=10) as response:
        status = response.status
except urllib.error.HTTPError as exc:
    status = exc.code
try:
    open(password_file).read()
    read = "read"
except PermissionError:
    read = "refused"
print(json.dumps({"status": status, "password_file": read}))
"""

#: An account that is not this one: nobody (65534) on Debian and most Linux systems.
_NOBODY = 65534


def _as_another_user(url: str, password_file: Path) -> dict[str, object] | None:
    """Run :data:`_ANOTHER_USER` as uid/gid 65534, or None when this process cannot switch."""
    import json
    import shutil

    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return None
    ids = [f"--reuid={_NOBODY}", f"--regid={_NOBODY}", "--clear-groups"]
    result = subprocess.run(
        ["setpriv", *ids, "/usr/bin/python3", "-c", _ANOTHER_USER, url, str(password_file)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
        env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"},
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_on_a_hub_another_local_user_is_refused(fresh_home, monkeypatch, capsys):
    """A JupyterHub runs every learner on one machine: their servers ask for a password.

    The learner starts a server without asking for anything, as a lesson does;
    another account of the machine gets 401 and cannot read the password. As
    root the request really runs as another uid (nobody); otherwise it is the
    same request without the password from this account, and the file's mode.
    """
    monkeypatch.setenv("JUPYTERHUB_USER", "learner")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "hub-token-of-the-learner")
    monkeypatch.setenv("JUPYTER_TOKEN", "jupyter-token-of-the-learner")
    monkeypatch.delenv(settings.AUTH_VARIABLE, raising=False)
    assert settings.shared_host() == "a JupyterHub ($JUPYTERHUB_USER is set)"
    server = PrefectServer(quiet=True).start()
    try:
        secret = server.auth_string
        assert secret is not None, "a server on a shared machine asks for a password by default"
        path = settings.auth_path(fresh_home)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        url = f"{server.api_url}/work_pools/filter"
        seen = _as_another_user(url, path)
        if seen is None:
            variant = f"uid {os.geteuid()} cannot switch users: request without the password"
            seen = {"status": status_without_password(url), "password_file": "mode 0600"}
        else:
            variant = f"as another local user (uid {_NOBODY}, via setpriv)"
        with capsys.disabled():
            print(f"\n[shared host] variant: {variant} -> {seen}")
        assert seen["status"] == 401, seen
        assert seen["password_file"] in ("refused", "mode 0600"), seen

        # The learner's own processes send it: this kernel (Prefect's client) ...
        orch.ensure_work_pool("hub-pool")
        # ... and Prefect's own CLI, as a lesson's `!prefect ...` cell runs it.
        from energy_flows.lessons import use_prefect_command

        script = use_prefect_command(fresh_home)
        listed = subprocess.run(
            [str(script), "work-pool", "ls"],
            env=dict(os.environ),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert listed.returncode == 0, listed.stderr
        assert "hub-pool" in listed.stdout
        assert secret not in listed.stdout + listed.stderr, "the password is never shown"

        # The server got the password, but none of the Jupyter tokens.
        import psutil

        env = psutil.Process(server.pid).environ()
        assert env.get("PREFECT_SERVER_API_AUTH_STRING") == secret
        leaked = {"JUPYTER_TOKEN", "JUPYTERHUB_API_TOKEN"} & set(env)
        assert not leaked, f"{leaked} reached the Prefect server"
        assert env.get("JUPYTERHUB_USER") == "learner", "only the secrets are left out"
    finally:
        server.stop()


def test_a_laptop_keeps_no_password_and_the_variable_decides(monkeypatch):
    """Without a hub the default stays off; ENERGY_FLOWS_AUTH=on|off decides either way."""
    for name in ("JUPYTERHUB_USER", "JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv(settings.AUTH_VARIABLE, raising=False)
    # The Launcher tile sets the proxy prefix on a laptop too: no sign of other users.
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/")
    assert settings.shared_host() is None and settings.auth_by_default() is False
    monkeypatch.setenv(settings.AUTH_VARIABLE, "on")
    assert settings.auth_by_default() is True
    assert PrefectServer(quiet=True).wanted_auth is True
    monkeypatch.setenv("JUPYTERHUB_USER", "learner")
    monkeypatch.setenv(settings.AUTH_VARIABLE, "off")
    assert settings.auth_by_default() is False
    monkeypatch.setenv(settings.AUTH_VARIABLE, "maybe")
    with pytest.raises(OrchestrationError, match="set it to 'on'"):
        PrefectServer(quiet=True)


def test_children_get_no_jupyter_token(monkeypatch, tmp_path):
    """classroom_env: the one environment of every child leaves Jupyter's credentials out."""
    secrets = {
        "JUPYTER_TOKEN": "a",
        "JPY_API_TOKEN": "b",
        "JUPYTERHUB_API_TOKEN": "c",
        "JUPYTER_PASSWORD": "d",
        "JUPYTERHUB_OAUTH_CLIENT_SECRET": "e",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("JUPYTERHUB_USER", "learner")
    env = settings.classroom_env(tmp_path)
    assert not set(secrets) & set(env)
    assert env["JUPYTERHUB_USER"] == "learner"
    # What needs one is given it on purpose (energy-flows lab: JupyterLab itself).
    assert settings.classroom_env(tmp_path, extra={"JUPYTER_TOKEN": "t"})["JUPYTER_TOKEN"] == "t"


def test_terminals_on_a_hub_send_the_homes_password(tmp_path):
    """Lesson 08's terminals: on a hub the hand-started server asks for the home's password."""
    from energy_flows import terminals

    home = tmp_path / "home"
    hub = {"ENERGY_FLOWS_HOME": str(home), "JUPYTERHUB_USER": "learner", "PATH": "/usr/bin"}
    terminals._make_password(hub)
    secret = settings.auth_string(home)
    assert secret and stat.S_IMODE(settings.auth_path(home).stat().st_mode) == 0o600
    env = terminals.terminal_env(hub)
    assert env["PREFECT_SERVER_API_AUTH_STRING"] == env["PREFECT_API_AUTH_STRING"] == secret
    laptop = {"ENERGY_FLOWS_HOME": str(home), "PATH": "/usr/bin"}
    assert "PREFECT_API_AUTH_STRING" not in terminals.terminal_env(laptop), "plain Prefect"


def test_the_proxy_tells_the_ui_no_login_plain_or_gzipped():
    """proxy_auth.no_login: only a successful ui-settings answer changes, compressed or not."""
    import gzip
    import json
    from io import BytesIO

    from jupyter_server_proxy.handlers import RewritableResponse
    from tornado.httpclient import HTTPRequest, HTTPResponse
    from tornado.httputil import HTTPHeaders

    from energy_flows.jupyter.proxy_auth import no_login

    def answer(body: bytes, encoding: str | None = None) -> RewritableResponse:
        request = HTTPRequest("http://127.0.0.1:4200/ui-settings")
        headers = HTTPHeaders({"Content-Encoding": encoding} if encoding else {})
        sent = HTTPResponse(request, 200, headers=headers, buffer=BytesIO(body))
        return RewritableResponse(orig_response=sent)

    settings_body = json.dumps({"api_url": "/api", "auth": "BASIC", "csrf_enabled": False})
    for gzipped in (False, True):
        if gzipped:
            response = answer(gzip.compress(settings_body.encode()), "gzip")
        else:
            response = answer(settings_body.encode())
        no_login(response, "/ui-settings")
        assert json.loads(response.body) == {"api_url": "/api", "auth": None, "csrf_enabled": False}
        assert "Content-Encoding" not in response.headers
    other = answer(settings_body.encode())
    no_login(other, "/api/flows/filter")
    assert json.loads(other.body)["auth"] == "BASIC", "nothing else is touched"


def test_the_package_enables_the_proxy_extension_in_jupyter():
    """The owner's UI needs the extension in every Jupyter server of the environment.

    The package installs ``etc/jupyter/jupyter_server_config.d/energy_flows.json``
    (a hub's or Binder's JupyterLab reads it), and ``energy-flows lab`` names the
    extension on its command line as well.
    """
    import json
    import tomllib

    from energy_flows.jupyter import proxy_auth
    from energy_flows.lab import lab_command

    root = Path(__file__).resolve().parents[1]
    shipped = root / "jupyter-config" / "energy_flows.json"
    assert json.loads(shipped.read_text()) == proxy_auth.jupyter_config()
    data_files = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert data_files["data-files"]["etc/jupyter/jupyter_server_config.d"] == [
        "jupyter-config/energy_flows.json"
    ]
    assert proxy_auth.JUPYTER_ARGUMENT in lab_command(8888, root, open_browser=False)
    # jupyter_server loads extensions by sorted name, and the first handler added wins.
    assert proxy_auth.EXTENSION < "jupyter_server_proxy"


def test_up_takes_auth_no_auth_or_leaves_it_to_the_machine():
    """``energy-flows up --auth | --no-auth``; without either, ``auth_by_default`` decides."""
    from energy_flows.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["up", "--auth"]).auth is True
    assert parser.parse_args(["up", "--no-auth"]).auth is False
    assert parser.parse_args(["up"]).auth is None
