"""Is this machine ready for the lessons? (`energy-flows check`, lesson 00)

Each check returns one row: what was checked, whether it is fine, what was
found, and, when something is wrong, the command that fixes it. Nothing here
starts a server or touches the network: the check is safe to run any time.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from energy_flows.settings import home_dir

if TYPE_CHECKING:
    import argparse

    import pandas as pd
    from packaging.specifiers import SpecifierSet

#: The distribution whose metadata declares the tested versions (pyproject.toml).
DISTRIBUTION = "energy-flows"

#: The port Prefect's server uses by default; another free one works too.
SERVER_PORT = 4200

#: Memory a lesson needs: a server (~240 MB), a worker, a flow run, the kernel.
MIN_FREE_MEMORY_MB = 1000


@dataclass(frozen=True)
class Check:
    """One line of the readiness report."""

    check: str
    ok: bool
    found: str
    fix: str = ""


#: Where to run the course on Windows, which the package does not support.
WINDOWS_ADVICE = (
    "Windows is not supported: run the course in WSL2 (Ubuntu, then `make lab` there), "
    "on a JupyterHub, or on Binder"
)


def check_platform() -> Check:
    """Linux and macOS run the lessons; Windows needs WSL2, a JupyterHub or Binder."""
    if sys.platform == "win32" or os.name == "nt":
        return Check("Linux or macOS", False, "Windows", WINDOWS_ADVICE)
    return Check("Linux or macOS", True, sys.platform)


#: What ``check_python`` compares with when the package's metadata cannot be read.
PYTHON_FALLBACK = ">=3.11"


def check_python() -> Check:
    """This Python against ``requires-python`` in the installed package's metadata.

    The upper bound is the newest Python every Prefect in the tested range
    supports; pip enforces it at install time, this row says it again when the
    package runs in an environment built some other way.
    """
    from packaging.specifiers import SpecifierSet

    version = ".".join(map(str, sys.version_info[:3]))
    try:
        wanted = importlib.metadata.metadata(DISTRIBUTION)["Requires-Python"] or PYTHON_FALLBACK
    except importlib.metadata.PackageNotFoundError:
        wanted = PYTHON_FALLBACK
    tested = _as_range(SpecifierSet(wanted))
    ok = version in SpecifierSet(tested)
    fix = "" if ok else f"use a Python {tested} (a new virtual environment, then make lab)"
    return Check(f"Python {tested}", ok, version, fix)


def check_packages() -> list[Check]:
    """Each package the lessons need, against the versions this release was tested with.

    The tested ranges are read from the installed package's own metadata (the
    ``dependencies`` of ``pyproject.toml``), so there is no second list to keep
    in step. A version outside its range gets a row to fix: it may work, but
    nobody has run the lessons with it.
    """
    from packaging.requirements import Requirement

    try:
        declared = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError:
        return [Check(f"{DISTRIBUTION} installed", False, "missing", "make lab (installs it)")]
    rows = []
    for text in declared:
        req = Requirement(text)
        if req.marker is not None:  # the test extra, or a platform-specific need
            continue
        rows.append(_check_requirement(req.name, _as_range(req.specifier)))
    return rows


def _as_range(specifier: SpecifierSet) -> str:
    """A specifier as text, lower bound first: ">=3.9.1,<4" reads as a range."""
    return ",".join(sorted((str(s) for s in specifier), key=lambda t: t.startswith("<")))


def _check_requirement(name: str, tested: str) -> Check:
    from packaging.specifiers import SpecifierSet
    from packaging.version import InvalidVersion, Version

    what = f"{name} {tested}"
    try:
        version = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return Check(what, False, "missing", "make lab (installs the tested versions)")
    try:
        inside = Version(version) in SpecifierSet(tested)
    except InvalidVersion:
        inside = False
    if inside:
        return Check(what, True, version)
    return Check(
        what,
        False,
        f"{version}: untested (tested: {tested})",
        f"make lab, or pip install '{name}{tested}' (the tested range); "
        "other versions may work but nobody ran the lessons with them",
    )


def check_port(port: int = SERVER_PORT) -> Check:
    from energy_flows.services.server import port_is_free

    ok = port_is_free(port)
    found = "free" if ok else "in use"
    # A busy 4200 is not fatal: the server picks another port and says so.
    fix = (
        ""
        if ok
        else "fine: the server will use another port (or `energy-flows down` if it is ours)"
    )
    return Check(f"port {port} for the Prefect server", True, found, fix)


def check_memory() -> Check:
    import psutil

    free_mb = psutil.virtual_memory().available // 2**20
    ok = free_mb >= MIN_FREE_MEMORY_MB
    fix = "" if ok else "close other programs; the lessons need about 1 GB"
    return Check(f"free memory >= {MIN_FREE_MEMORY_MB} MB", ok, f"{free_mb} MB", fix)


def check_home(home: str | os.PathLike[str] | None = None) -> Check:
    path = home_dir(home)
    probe = path if path.exists() else next(p for p in path.parents if p.exists())
    ok = os.access(probe, os.W_OK)
    free_mb = shutil.disk_usage(probe).free // 2**20
    ok = ok and free_mb >= 200
    fix = "" if ok else "export ENERGY_FLOWS_HOME=$HOME/energy_flows_home (a writable folder)"
    return Check("home folder writable", ok, f"{path} ({free_mb} MB free)", fix)


def check_leftovers(home: str | os.PathLike[str] | None = None) -> Check:
    """Servers or workers from an earlier session, for this home."""
    from energy_flows.services.control import running

    table = running(home)
    count = len(table)
    if count == 0:
        return Check("no leftover processes", True, "none")
    # Leftovers are not an error when the learner wants them (reuse), but
    # they should know about them and how to stop them.
    return Check(
        "no leftover processes",
        True,
        f"{count} running (reused by the lessons)",
        "energy-flows down   (stops them)",
    )


def check_offline() -> Check:
    """Everything a lesson needs ships with the installed packages."""
    import importlib.util

    spec = importlib.util.find_spec("prefect")
    problems = []
    if spec is None or spec.origin is None:
        problems.append("prefect missing")
    else:
        ui = Path(spec.origin).parent / "server" / "ui"
        if not (ui / "index.html").exists():
            problems.append("Prefect UI bundle missing")
    api_url = os.environ.get("PREFECT_API_URL", "")
    if api_url and "127.0.0.1" not in api_url and "localhost" not in api_url:
        problems.append(f"PREFECT_API_URL points away from this machine ({api_url})")
    ok = not problems
    found = "UI bundled, analytics off in the classroom environment" if ok else "; ".join(problems)
    fix = "" if ok else "make lab (reinstalls), and `unset PREFECT_API_URL`"
    return Check("works offline", ok, found, fix)


def check_setup(home: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """Run every check and return the report as a DataFrame (one row per check).

    Columns: ``check``, ``ok``, ``found``, ``fix``. A learner reads the ``fix``
    column of the rows that are not ok.
    """
    import pandas as pd

    if check_platform().ok is False:
        # Nothing else can be checked meaningfully (or safely) on Windows.
        return pd.DataFrame([check_platform().__dict__, check_python().__dict__])
    rows = [
        check_platform(),
        check_python(),
        *check_packages(),
        check_port(),
        check_memory(),
        check_home(home),
        check_offline(),
        check_leftovers(home),
    ]
    return pd.DataFrame([r.__dict__ for r in rows])


def run_check(args: argparse.Namespace) -> int:
    """`energy-flows check`: print the report; exit 1 when something needs fixing."""
    report = check_setup()
    width = max(len(c) for c in report["check"])
    for row in report.itertuples():
        mark = "ok " if row.ok else "FIX"
        line = f"[{mark}] {row.check:<{width}}  {row.found}"
        if row.fix:
            line += f"\n      -> {row.fix}"
        print(line)
    bad = int((~report["ok"]).sum())
    print("Ready for the lessons." if bad == 0 else f"{bad} problem(s) to fix first.")
    return 0 if bad == 0 else 1
