"""`energy-flows check` reports each package against the range this release was tested with."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

from energy_flows.check import _check_requirement, check_packages, check_python

ROOT = Path(__file__).resolve().parents[1]


def test_the_tested_ranges_come_from_the_package_metadata():
    """One row per dependency of pyproject.toml, nothing from a second hand-written list."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    rows = check_packages()
    assert [r.check.split()[0] for r in rows] == [Requirement(d).name for d in declared]
    prefect = next(r for r in rows if r.check.startswith("prefect "))
    spec = Requirement(next(d for d in declared if d.startswith("prefect"))).specifier
    assert set(prefect.check.split()[1].split(",")) == {str(s) for s in spec}
    assert prefect.ok and prefect.fix == "", prefect


def test_python_is_checked_against_requires_python_from_the_metadata():
    """The Python row names pyproject's requires-python, lower bound first, and holds here."""
    from packaging.specifiers import SpecifierSet

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    row = check_python()
    label, tested = row.check.split(" ", 1)
    assert label == "Python" and SpecifierSet(tested) == SpecifierSet(declared), row
    assert tested.startswith(">=") and "<" in tested, row  # a range, with an upper bound
    assert row.ok and row.found == ".".join(map(str, sys.version_info[:3])), row


def test_a_version_outside_the_tested_range_names_the_range():
    import prefect

    row = _check_requirement("prefect", ">=3.99,<3.100")
    assert not row.ok
    assert row.found == f"{prefect.__version__}: untested (tested: >=3.99,<3.100)"
    assert "pip install 'prefect>=3.99,<3.100'" in row.fix
    missing = _check_requirement("no-such-package-here", ">=1")
    assert (missing.ok, missing.found) == (False, "missing")


def test_the_cli_prints_prefect_against_its_tested_range():
    out = subprocess.run(
        [sys.executable, "-m", "energy_flows.cli", "check"],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    line = next(line for line in out.splitlines() if " prefect " in line)
    assert line.startswith("[ok ]") and ">=3." in line, out
