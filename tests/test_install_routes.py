"""make, conda and Binder install one tested set, on one Python minor.

``constraints.txt`` pins every package ``make`` installs
(``pip install -c constraints.txt -e '.[test]'``); it is the set the tests run
on. ``environment.yml`` (conda) must hand pip the same two arguments, and
``binder/`` (repo2docker) must install the same versions; all three name the
same Python minor. The last test replays what conda does with
``environment.yml``'s ``pip:`` list and checks that pip would install exactly
the pinned versions.

The declared ranges themselves are checked the way a JupyterHub image installs
them: plain pip, no constraints file, the oldest Prefect the range accepts, and
``energy-flows tour`` on the result.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from tests.wheelhouse import (
    BUILD_REQUIREMENT,
    CONSTRAINTS,
    ROOT,
    ensure_wheelhouse,
    offline_pip_env,
    pins,
)

BINDER = ROOT / "binder"
REFRESH_BINDER = (
    "{ grep '^#' binder/requirements.txt; grep -v '^#' constraints.txt; } > binder/r.new "
    "&& mv binder/r.new binder/requirements.txt"
)


def frozen_python_minor() -> str:
    """The Python minor constraints.txt was frozen on (its first line says it)."""
    header = CONSTRAINTS.read_text().splitlines()[0]
    match = re.search(r"Python (\d+\.\d+)", header)
    assert match, f"constraints.txt's first line names no Python version: {header!r}"
    return match.group(1)


def make_install_arguments() -> list[str]:
    """What the Makefile's setup recipe installs (``INSTALL_ARGS``), with either installer."""
    makefile = (ROOT / "Makefile").read_text()
    (line,) = [x for x in makefile.splitlines() if x.startswith("INSTALL_ARGS = ")]
    # Both installers (uv, and pip where uv cannot) install exactly that.
    installs = [x for x in makefile.splitlines() if "pip install" in x and "echo" not in x]
    installs = [x for x in installs if "constraints" in x or "INSTALL_ARGS" in x]
    assert len(installs) == 2 and all("$(INSTALL_ARGS)" in x for x in installs), installs
    return shlex.split(line.split("=", 1)[1])


def environment_yml() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def conda_pip_section() -> list[str]:
    (section,) = [d["pip"] for d in environment_yml()["dependencies"] if isinstance(d, dict)]
    return section


def test_every_route_names_the_same_python_minor() -> None:
    minor = frozen_python_minor()
    assert minor == "3.11"
    conda = [d for d in environment_yml()["dependencies"] if str(d).startswith("python")]
    assert conda == [f"python={minor}"], "environment.yml pins Python to the tested minor"
    assert (BINDER / "runtime.txt").read_text().strip() == f"python-{minor}"
    # make takes the first Python it finds, in this order: the tested one first.
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(rf"for p in python{re.escape(minor)} ", makefile)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["tool"]["mypy"]["python_version"] == minor


def test_conda_hands_pip_what_make_does() -> None:
    """The same constraints file and the same target: the package with its test extra."""
    assert make_install_arguments() == ["-c", "constraints.txt", "-e", ".[test]"]
    assert [shlex.split(line) for line in conda_pip_section()] == [
        ["-c", "constraints.txt"],
        ["-e", ".[test]"],
    ]
    # Nothing else from conda: any other package would come from conda-forge, unpinned.
    conda_packages = [d for d in environment_yml()["dependencies"] if isinstance(d, str)]
    assert sorted(re.split(r"[=<>! ]", d)[0] for d in conda_packages) == ["pip", "python"]


def test_binder_pins_exactly_the_tested_set() -> None:
    binder = pins(BINDER / "requirements.txt")
    tested = pins(CONSTRAINTS)
    differ = {n: (binder.get(n), tested.get(n)) for n in binder.keys() | tested.keys()}
    differ = {n: pair for n, pair in differ.items() if pair[0] != pair[1]}
    assert not differ, (
        f"binder/requirements.txt and constraints.txt differ (binder, tested): {differ}. "
        f"Refresh it from the top of the repository with: {REFRESH_BINDER}"
    )


def test_binder_requirements_have_no_local_reference() -> None:
    """repo2docker caches the install only when requirements.txt names no local file."""
    for line in (BINDER / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        assert not line or re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9.+!-]+", line), line


def test_binder_scripts_install_nothing_else_and_wrap_the_command() -> None:
    post_build = (BINDER / "postBuild").read_text()
    start = (BINDER / "start").read_text()
    for script in ("postBuild", "start"):
        assert os.access(BINDER / script, os.X_OK), f"binder/{script} is not executable"
    (install,) = [line for line in post_build.splitlines() if "pip install" in line]
    # Only the package, not editable: the pinned set stays as requirements.txt installed it.
    assert shlex.split(install)[-1] == "." and "--no-deps" in install
    assert " -e " not in install and "--editable" not in install
    assert "energy_flows.services.database" in post_build
    assert "ENERGY_FLOWS_HOME" in start and "ENERGY_FLOWS_CACHE" in start
    assert start.rstrip().endswith('exec "$@"')


def _checkout_for_pip(target: Path) -> Path:
    """What pip needs of the checkout to install it: pyproject, README, the package, and
    the Jupyter config it installs (``[tool.setuptools.data-files]``)."""
    for name in ("pyproject.toml", "README.md", "constraints.txt", "environment.yml"):
        shutil.copy2(ROOT / name, target / name)
    shutil.copytree(
        ROOT / "energy_flows",
        target / "energy_flows",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    shutil.copytree(ROOT / "jupyter-config", target / "jupyter-config")  # data-files
    return target


def test_condas_pip_step_installs_exactly_the_pinned_versions(tmp_path: Path) -> None:
    """Replay conda's pip step (conda/env/installers/pip.py) as a dry run.

    conda writes the ``pip:`` list to ``condaenv.*.requirements.txt`` next to
    environment.yml and runs ``python -m pip install -U -r <that file>
    --exists-action=b`` in that folder; ``--ignore-installed`` makes pip
    resolve for an empty environment.
    """
    wheels = ensure_wheelhouse()
    checkout = _checkout_for_pip(tmp_path)
    requirements = checkout / "condaenv.test.requirements.txt"
    requirements.write_text("\n".join(conda_pip_section()))
    report = tmp_path / "report.json"
    argv = [sys.executable, "-m", "pip", "install", "-U", "-r", requirements.name]
    argv += ["--exists-action=b", "--dry-run", "--ignore-installed", "--quiet"]
    argv += ["--report", str(report)]
    result = subprocess.run(
        argv,
        cwd=checkout,
        env=offline_pip_env(dict(os.environ), wheels),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    would_install = {
        item["metadata"]["name"]: item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    assert pins_of(would_install) == {**pins(CONSTRAINTS), "energy-flows": _project_version()}


def test_condas_pip_step_needs_its_file_next_to_environment_yml(tmp_path: Path) -> None:
    """What environment.yml's comment warns about: written elsewhere (conda does that when
    the folder is read-only), the file's ``-c constraints.txt`` points at nothing."""
    elsewhere = tmp_path / "tmp"
    elsewhere.mkdir()
    requirements = elsewhere / "condaenv.test.requirements.txt"
    requirements.write_text("\n".join(conda_pip_section()))
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "-r", str(requirements)],
        cwd=elsewhere,
        env=offline_pip_env(dict(os.environ), tmp_path / "no-index"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert str(elsewhere / "constraints.txt") in result.stderr


def pins_of(installed: dict[str, str]) -> dict[str, str]:
    from packaging.utils import canonicalize_name

    return {canonicalize_name(name): version for name, version in installed.items()}


def _project_version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


#: The wheels plain pip chose for the lowest Prefect, kept between runs: pip's own cache is
#: not written on every machine, and a download is most of this test's time.
LOWEST_WHEELS = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / (
    "energy-flows-lowest-prefect"
)


def _lowest_prefect() -> str:
    """The declared lower bound of Prefect (``prefect>=X``), as ``prefect==X``."""
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    (prefect,) = [Requirement(r) for r in project["dependencies"] if r.startswith("prefect>")]
    (low,) = [s.version for s in prefect.specifier if s.operator == ">="]
    return f"prefect=={low}"


@pytest.mark.install
@pytest.mark.server
@pytest.mark.timeout(900)
def test_the_lowest_prefect_installs_as_declared_with_plain_pip(tmp_path: Path) -> None:
    """``pip install 'prefect==<lower bound>' <checkout>``, no constraints: the tour runs.

    pip resolves against the package registry as for anyone (``pip download``,
    which chooses exactly what ``pip install`` would, keeping the files it
    already has), then installs that set offline into a new environment. A new
    release of a library that breaks the declared ranges fails here.
    """
    (tmp_path / "checkout").mkdir()
    checkout = _checkout_for_pip(tmp_path / "checkout")
    wanted = [_lowest_prefect(), str(checkout)]
    env = {
        k: v for k, v in os.environ.items() if k not in ("PIP_CONSTRAINT", "PIP_REQUIRE_VIRTUALENV")
    }
    LOWEST_WHEELS.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    chose = subprocess.run(
        # setuptools: what pip's build isolation needs to build the checkout, offline below
        [*pip, "download", "--quiet", "--dest", str(LOWEST_WHEELS), *wanted, BUILD_REQUIREMENT],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert chose.returncode == 0, chose.stderr[-3000:]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    installed = subprocess.run(
        [
            *pip,
            "--python",
            str(python),
            "install",
            "--quiet",
            "--no-compile",
            "--no-index",
            "--find-links",
            str(LOWEST_WHEELS),
            *wanted,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert installed.returncode == 0, installed.stderr[-3000:]
    versions = subprocess.run(
        [
            str(python),
            "-c",
            "from importlib.metadata import version as v; print(v('prefect'), v('fastapi'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert f"prefect=={versions[0]}" == _lowest_prefect(), versions

    # As `make setup` does: the migrated empty database that new homes copy.
    subprocess.run(
        [str(python), "-m", "energy_flows.services.database"],
        env=env,
        capture_output=True,
        timeout=300,
        check=True,
    )
    home = tmp_path / "home"
    tour_env = {k: v for k, v in env.items() if not k.startswith(("PREFECT_", "ENERGY_FLOWS"))}
    tour_env["ENERGY_FLOWS_HOME"] = str(home)
    try:
        tour = subprocess.run(
            [str(venv / "bin" / "energy-flows"), "tour"],
            cwd=tmp_path,
            env=tour_env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        subprocess.run(
            [str(venv / "bin" / "energy-flows"), "down"],
            env=tour_env,
            capture_output=True,
            timeout=120,
        )
    assert tour.returncode == 0, f"{versions}\n{tour.stdout[-4000:]}\n{tour.stderr[-3000:]}"

    # What the machine had: FastAPI 0.165 over Prefect 3.8.8 (pip allows it when
    # asked by hand). The server dies at import; the error names the remedy.
    subprocess.run(
        [*pip, "--python", str(python), "install", "--quiet", "--no-compile", "fastapi==0.165.0"],
        env=env,
        capture_output=True,
        check=True,
        timeout=300,
    )
    up = subprocess.run(
        [str(venv / "bin" / "energy-flows"), "up"],
        cwd=tmp_path,
        env=tour_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    said = up.stdout + up.stderr
    assert up.returncode != 0, said
    assert "stopped with `TypeError: Body() got an unexpected keyword argument" in said, said
    assert "Reinstall the tested set: `make setup`" in said, said


#: The end of the server's log on the machine of issue 24 (Prefect 3.8.8, FastAPI 0.165).
_IMPORT_CRASH_LOG = """\
  File "/srv/venv/lib/python3.11/site-packages/prefect/server/api/concurrency_limits.py", line 22, in <module>
    from prefect.server.api.concurrency_limits_v2 import MinimalConcurrencyLimitResponse
  File "/srv/venv/lib/python3.11/site-packages/prefect/server/api/concurrency_limits_v2.py", line 305, in <module>
    names: List[str] = Body(..., min_items=1),
                       ^^^^^^^^^^^^^^^^^^^^^^
TypeError: Body() got an unexpected keyword argument 'min_items'
"""


def test_a_start_that_dies_at_import_names_the_remedy() -> None:
    from energy_flows.services.base import _crash_hint

    hint = _crash_hint(_IMPORT_CRASH_LOG, "the Prefect server")
    assert hint is not None
    assert hint.startswith(
        "The Prefect server stopped with `TypeError: Body() got an unexpected keyword"
    )
    assert "`make setup`" in hint and "`energy-flows check`" in hint
    # A log that ends otherwise keeps the general advice.
    assert _crash_hint("12:00:01 | ERROR | uvicorn.error - [Errno 98] in use\n", "x") is None
    assert _crash_hint("", "the Prefect server") is None
