"""The project's set-up files agree with each other.

The pinned versions (constraints.txt) must satisfy pyproject.toml's declared
ranges. That make, conda (environment.yml) and Binder (binder/) install
exactly those pins is checked in tests/test_install_routes.py.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_constraints_pin_every_dependency_within_its_declared_range():
    from packaging.requirements import Requirement

    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[_name(name)] = version.strip()
    project = _pyproject()["project"]
    for requirement in [*project["dependencies"], *project["optional-dependencies"]["test"]]:
        req = Requirement(requirement)
        name = _name(req.name)
        assert name in pins, f"{name} is not pinned in constraints.txt"
        assert req.specifier.contains(pins[name]), (
            f"{name}=={pins[name]} is outside {req.specifier}"
        )


def test_installed_versions_are_the_pinned_ones():
    """The environment the tests run in is the one constraints.txt records.

    In an environment of ``make compat`` (``.compat/prefect-X.Y.Z[-lowest]/``) the
    promise is another: that Prefect, and every other requirement inside the declared
    range, at its lower bound exactly for ``-lowest``.
    """
    import importlib.metadata

    from packaging.requirements import Requirement
    from packaging.version import Version

    from tools.compat import COMPAT, lower_bounds

    venv = Path(sys.prefix)
    if venv.parent == COMPAT:
        wanted = venv.name.removeprefix("prefect-").removesuffix("-lowest")
        assert importlib.metadata.version("prefect") == wanted
        for line in _pyproject()["project"]["dependencies"]:
            req = Requirement(line)
            if req.name != "prefect":
                assert importlib.metadata.version(req.name) in req.specifier, line
        if venv.name.endswith("-lowest"):
            for pin in lower_bounds():
                req = Requirement(pin)
                low = Version(str(req.specifier).removeprefix("=="))
                assert Version(importlib.metadata.version(req.name)) == low, pin
        return
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, version = line.partition("==")
        if _name(name) in ("prefect", "jupyterlab", "pandas", "ipywidgets", "nbval"):
            assert importlib.metadata.version(name) == version.strip(), name


def test_console_script_lists_its_commands():
    out = subprocess.run(
        [sys.executable, "-m", "energy_flows.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for command in ("lab", "up", "down", "status", "logs", "tour", "check", "reset"):
        assert command in out


def test_importing_the_package_does_not_import_prefect():
    """`import energy_flows` stays fast: the CLI answers `status` without Prefect's ~2 s import."""
    code = "import sys, energy_flows; print('prefect' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_makefile_has_the_documented_targets():
    text = (ROOT / "Makefile").read_text()
    for target in ("lab", "test", "notebooks", "screenshots", "bench"):
        assert re.search(rf"^{target}:", text, re.M), target


def test_a_second_make_spends_no_time_reinstalling():
    """`make test` twice in a row: the second one finds the set-up up to date."""
    if not (ROOT / ".venv" / ".installed").exists():
        pytest.skip("this environment was not set up by `make` (no .venv/.installed)")
    result = subprocess.run(["make", "-q", "setup"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, "make would reinstall although nothing changed"
    dry = subprocess.run(["make", "-n", "test"], cwd=ROOT, capture_output=True, text=True)
    assert "pip install" not in dry.stdout


def test_the_type_checking_imports_are_the_lazy_exports():
    """``energy_flows/__init__.py`` lists each export twice: keep the two lists equal."""
    import ast

    import energy_flows

    tree = ast.parse((ROOT / "energy_flows" / "__init__.py").read_text())
    [block] = [
        n for n in tree.body if isinstance(n, ast.If) and ast.unparse(n.test) == "TYPE_CHECKING"
    ]
    typed = {
        alias.asname: node.module
        for node in block.body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
        if alias.asname == alias.name  # `X as X`: re-exported for strict checkers and editors
    }
    assert typed == energy_flows._EXPORTS


USES_THE_API = """
from energy_flows import PrefectServer, Worker, deploy_energy_flow

server = PrefectServer(port=4200)
reveal_type(server.start())
reveal_type(Worker("energy-pool", ["energy_usage"]).start())
reveal_type(deploy_energy_flow("nightly", cron="0 2 * * *"))
Worker(pool=1)
"""


def test_mypy_sees_the_public_api_with_its_real_types(tmp_path):
    """What a learner's editor or mypy sees: the classes and functions, not ``Any``.

    Runs from the checkout, with its mypy settings and cache (``make lint`` fills it).
    """
    snippet = tmp_path / "use_api.py"
    snippet.write_text(USES_THE_API)
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"), str(snippet)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = done.stdout
    assert 'Revealed type is "energy_flows.services.server.PrefectServer"' in out, out
    assert 'Revealed type is "energy_flows.services.worker.Worker"' in out, out
    assert 'Revealed type is "energy_flows.orchestration.deployments.listing.DeploymentInfo"' in out
    # A wrong call is reported where it is made.
    assert (
        f'{snippet.name}:8: error: Argument "pool" to "Worker" has incompatible type "int"' in out
    )
    assert done.returncode == 1 and "Found 1 error in 1 file" in out, out
