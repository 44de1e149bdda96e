"""The project's set-up files agree with each other.

A workshop installs with pip (pyproject.toml + constraints.txt) or with conda
(environment.yml); both must name the same packages, and the pinned versions
must satisfy the declared ranges, or one of the two set-ups drifts.
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


def _environment_packages() -> dict[str, str]:
    """conda package name -> its spec line, from environment.yml's dependencies."""
    packages = {}
    in_deps = False
    for line in (ROOT / "environment.yml").read_text().splitlines():
        if line.startswith("dependencies:"):
            in_deps = True
            continue
        if in_deps:
            m = re.match(r"^  - ([A-Za-z0-9_.\-]+)(.*)$", line)
            if m and m.group(1) not in ("pip", "python"):
                packages[m.group(1).lower().replace("_", "-")] = m.group(2).strip()
    return packages


def test_environment_yml_names_the_same_packages_as_pyproject():
    project = _pyproject()["project"]
    declared = {_name(r): r for r in project["dependencies"]}
    declared |= {_name(r): r for r in project["optional-dependencies"]["test"]}
    conda = _environment_packages()
    assert set(conda) == set(declared), (
        f"only in pyproject: {sorted(set(declared) - set(conda))}; "
        f"only in environment.yml: {sorted(set(conda) - set(declared))}"
    )
    for name, requirement in declared.items():
        bounds = requirement[len(name) :].replace(" ", "")
        assert conda[name].replace(" ", "") == bounds, (
            f"{name}: pyproject {bounds}, conda {conda[name]}"
        )


def test_environment_yml_installs_the_package_itself():
    text = (ROOT / "environment.yml").read_text()
    assert "- pip:" in text and "- -e ." in text


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
    """The environment the tests run in is the one constraints.txt records."""
    import importlib.metadata

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
