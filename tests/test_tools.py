"""Development tools stay in ``tools/``; the installed package holds what learners use.

* No module of ``energy_flows`` imports Playwright, nbclient or nbformat (the
  ``test`` extra) or ``tools``, at import time or inside a function.
* ``energy-flows --help`` offers learner and instructor commands only.
* The wheel's packages are ``energy_flows*``: ``tools/`` is not shipped.
* The tools run from the checkout, as ``python -m tools.x`` and ``python tools/x.py``;
  the lesson executor executes lesson 00 into another folder, leaving ``notebooks/`` as it was.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "energy_flows"

#: Imported by the development tools only: never by the installed package. (nbformat is
#: not one: `energy-flows student` reads and writes the lessons with it, and pyproject declares it.)
DEVELOPMENT_ONLY = ("playwright", "nbclient", "tools")

#: What ``energy-flows`` offers: learners' and instructors' commands.
LEARNER_COMMANDS = {"lab", "up", "down", "status", "logs", "reset", "tour", "check", "student"}


def _top_level(name: str) -> str:
    return name.split(".", 1)[0]


def test_no_package_module_imports_development_tools_anywhere_in_its_source():
    """Also the imports inside functions, which importing the module does not run."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            found += [
                f"{path.relative_to(ROOT)}:{node.lineno} imports {name}"
                for name in names
                if _top_level(name) in DEVELOPMENT_ONLY
            ]
    assert found == []


#: Run in a fresh interpreter: import every module of the package (as
#: pkgutil finds them), then print which were imported and which development
#: tools came along.
IMPORT_ALL = f"""
import importlib, json, pkgutil, sys
import energy_flows
names = ["energy_flows"] + [
    m.name for m in pkgutil.walk_packages(energy_flows.__path__, "energy_flows.")
]
for name in names:
    importlib.import_module(name)
tools = sorted(m for m in sys.modules if m.split(".")[0] in {DEVELOPMENT_ONLY!r})
print(json.dumps({{"modules": names, "tools": tools}}))
"""


def test_importing_every_package_module_imports_no_development_tool(tmp_path: Path):
    # From a folder outside the checkout: `tools` must not be importable by accident.
    out = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"energy_flows.lessons", "energy_flows.cli", "energy_flows.lab"} <= set(found["modules"])
    assert found["tools"] == []


def test_energy_flows_help_lists_no_developer_command():
    from energy_flows.cli import _COMMANDS, build_parser

    assert set(_COMMANDS) == LEARNER_COMMANDS
    parser = build_parser()
    [sub] = [a for a in parser._actions if a.dest == "command"]
    assert set(sub.choices) == LEARNER_COMMANDS
    out = subprocess.run(
        [sys.executable, "-m", "energy_flows.cli", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for command in LEARNER_COMMANDS:
        assert command in out
    for developer in ("screenshots", "notebooks", "execute", "tools"):
        assert developer not in out, f"`energy-flows --help` offers {developer!r}"


def test_the_wheel_ships_the_package_only():
    from setuptools import find_packages

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    include = config["packages"]["find"]["include"]
    packages = find_packages(str(ROOT), include=include)
    assert "energy_flows" in packages
    assert [p for p in packages if not p.startswith("energy_flows")] == []


@pytest.mark.parametrize(
    "argv",
    [
        ["-m", "tools.execute_lessons", "--help"],
        ["tools/execute_lessons.py", "execute", "--help"],
        ["-m", "tools.screenshots", "--help"],
        ["tools/screenshots.py", "--help"],
    ],
)
def test_tools_run_as_modules_and_as_scripts(argv: list[str]):
    out = subprocess.run(
        [sys.executable, *argv], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "usage:" in out.stdout


def test_executor_lists_the_lessons():
    out = subprocess.run(
        [sys.executable, "-m", "tools.execute_lessons", "list"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    ).stdout.split()
    assert out == sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert out[0].startswith("00_")


def test_executor_runs_lesson_00_into_another_folder(tmp_path: Path):
    """`make notebooks` in small: one lesson executed, its outputs stored; notebooks/ untouched."""
    import nbformat

    [original] = sorted((ROOT / "notebooks").glob("00_*.ipynb"))
    before = original.read_bytes()
    out = subprocess.run(
        [sys.executable, "tools/execute_lessons.py", "execute", "00", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=280,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 lesson(s)" in out.stdout and "ok" in out.stdout
    assert original.read_bytes() == before, "the executor wrote into notebooks/"
    executed = nbformat.read(tmp_path / original.name, as_version=4)
    code = [c for c in executed.cells if c.cell_type == "code"]
    assert code and all(c.outputs for c in code), "a code cell has no stored output"
    assert all("execution" not in c.metadata for c in executed.cells)


def test_compat_runs_the_oldest_and_newest_release_the_declared_range_accepts():
    """`make compat` alone: releases read from the package index, inside pyproject's range."""
    from packaging.requirements import Requirement
    from packaging.version import Version

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    prefect = next(Requirement(r) for r in project["dependencies"] if r.startswith("prefect"))
    out = subprocess.run(
        [sys.executable, "-m", "tools.compat", "--list"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout.splitlines()
    assert 1 <= len(out) <= 2, out
    versions = [line.split()[0] for line in out]
    assert all(Version(v) in prefect.specifier for v in versions), (out, str(prefect))
    assert versions == sorted(versions, key=Version)
    # The oldest runs with the other requirements at their lower bounds, the newest without.
    assert out[0].endswith(" --lowest") and (len(out) == 1 or out[1] == versions[1]), out


def test_compat_lowest_pins_each_runtime_requirement_at_its_lower_bound():
    """`--lowest` installs what pyproject claims as its oldest: every `>=` bound, exactly."""
    from packaging.requirements import Requirement

    from tools.compat import lower_bounds

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = {Requirement(p).name: str(Requirement(p).specifier) for p in lower_bounds()}
    for line in project["dependencies"]:
        req = Requirement(line)
        low = [s.version for s in req.specifier if s.operator == ">="]
        if req.name == "prefect":
            assert req.name not in pins  # the release under test is chosen separately
        elif low:
            assert pins[req.name] == f"=={low[0]}", (req.name, pins)
    assert "pytest" not in pins and "ruff" not in pins  # test tools are not a learner's


def test_compat_caps_name_a_minor_and_give_a_reason():
    """Each tools/compat-<minor>.txt says why it holds a library back."""
    caps = sorted((ROOT / "tools").glob("compat-*.txt"))
    assert caps, "tools/compat-3.8.txt caps FastAPI for Prefect 3.8"
    for path in caps:
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        assert any(line.startswith("#") for line in lines), f"{path.name}: no reason given"
        assert all(line.startswith("#") or "<" in line for line in lines), path.name
