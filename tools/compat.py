"""Run the tests on another Prefect release, in an environment of its own.

``make compat PREFECT=3.8.8`` (or ``python -m tools.compat 3.8.8``) builds
``.compat/prefect-3.8.8/``, a virtual environment with that Prefect and the
rest of the package's requirements resolved by pip within the bounds
``pyproject.toml`` declares (not ``constraints.txt``, which pins the one
tested set). It then runs the same ``make unit notebooks-test`` as ``make
test``, pointed at that environment. ``make compat`` alone does it for the
oldest and the newest release the declared range accepts.

An older Prefect needs the libraries of its own time: its requirements are
open-ended, so pip would pair it with today's FastAPI, which it does not run
on. ``tools/compat-<minor>.txt`` (e.g. ``compat-3.8.txt``, which older minors
get too) caps those, one line each, with the reason beside it.

``--lowest`` installs every other runtime requirement at its declared lower
bound (``pandas>=2.2`` becomes ``pandas==2.2``...): the oldest libraries
``pyproject.toml`` claims to work with, as an older JupyterHub image has them.
``make compat`` alone runs the oldest Prefect that way, and the newest with
the newest libraries pip finds: the two ends of what the package accepts.

    python -m tools.compat 3.8.8                 # build (once) and test
    python -m tools.compat 3.8.8 --lowest        # ... with the lower bounds of the rest
    python -m tools.compat 3.8.8 --only tour     # only `energy-flows tour`
    python -m tools.compat --oldest --only build # only build the oldest's environment
    python -m tools.compat --list                # the releases `make compat` runs

``.ci/run`` builds the oldest supported release's environment (with ``--lowest``)
while ``make test`` runs, then runs its ``energy-flows tour``: the whole suite on
it takes as long as ``make test`` itself, more than CI's time allows (``make
compat`` runs it).

Exit status 0 when every step passed on every release. Each environment is
kept for the next run; delete ``.compat/`` to rebuild.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
COMPAT = ROOT / ".compat"

#: What each ``--only`` runs; ``make`` targets run with VENV set to the environment
#: (``build`` only builds it, ``tour`` runs ``energy-flows tour`` in a new home).
STEPS: dict[str, list[str] | None] = {
    "build": [],
    "tests": ["unit"],
    "nbval": ["notebooks-test"],
    "tour": None,
}


def declared() -> tuple[list[str], Requirement]:
    """The package's requirements plus its ``test`` extra, and the Prefect one among them."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [*project["dependencies"], *project["optional-dependencies"]["test"]]
    prefect = next(Requirement(r) for r in wanted if Requirement(r).name == "prefect")
    return [r for r in wanted if Requirement(r).name != "prefect"], prefect


def lower_bounds() -> list[str]:
    """Each runtime requirement pinned at its declared lower bound (``name==X``).

    Only the package's own dependencies: the test tools (pytest, ruff...) are
    not what a learner's environment carries. A requirement without a ``>=``
    bound is left to pip.
    """
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = []
    for line in project["dependencies"]:
        req = Requirement(line)
        lows = [s.version for s in req.specifier if s.operator == ">="]
        if req.name != "prefect" and lows:
            pins.append(f"{req.name}=={max(lows, key=Version)}")
    return pins


def available() -> list[Version]:
    """Prefect releases on the package index, newest first (``pip index versions``)."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "index",
            "versions",
            "prefect",
            "--disable-pip-version-check",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    listed = out.split("Available versions:", 1)[1].splitlines()[0]
    return [Version(v.strip()) for v in listed.split(",")]


def oldest_and_newest() -> list[str]:
    """The oldest and the newest final release the declared Prefect range accepts."""
    _rest, prefect = declared()
    inside = sorted(v for v in available() if not v.is_prerelease and v in prefect.specifier)
    if not inside:
        raise SystemExit(f"compat: no Prefect release on the index satisfies {prefect}")
    return sorted({str(inside[0]), str(inside[-1])}, key=Version)


def caps(version: str) -> list[Path]:
    """The ``tools/compat-<minor>.txt`` files that apply to this release.

    A cap written for one minor holds for every older one too: a library too new
    for Prefect 3.8 is newer still than what 3.4 knew. So a release gets the
    files of its own minor and of every later one.
    """
    mine = Version(version).release[:2]
    found = []
    for path in sorted((ROOT / "tools").glob("compat-*.txt")):
        minor = Version(path.stem.removeprefix("compat-")).release[:2]
        if minor >= mine:
            found.append(path)
    return found


def env_name(version: str, lowest: bool = False) -> str:
    """The environment's folder name under ``.compat/``."""
    return f"prefect-{version}-lowest" if lowest else f"prefect-{version}"


def build(version: str, lowest: bool = False) -> Path:
    """``.compat/prefect-<version>[-lowest]/``, created and installed once; returns its folder."""
    venv = COMPAT / env_name(version, lowest)
    stamp = venv / ".installed"
    if stamp.exists():
        return venv
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    rest, _prefect = declared()
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as reqs:
        reqs.write("\n".join([f"prefect=={version}", *rest]) + "\n")
        if lowest:
            reqs.write("\n".join(lower_bounds()) + "\n")
    extra = [arg for path in caps(version) for arg in ("-c", str(path))]
    try:
        subprocess.run([*pip, "-r", reqs.name, *extra], check=True)
    finally:
        os.unlink(reqs.name)
    # The package itself without its dependencies: its own pin says which
    # Prefect it was tested with, and here another one is under test.
    subprocess.run([*pip, "--no-deps", "-e", str(ROOT)], check=True)
    subprocess.run([str(python), "-m", "energy_flows.services.database"], check=False)
    # `make` treats an environment with this stamp as set up (the Makefile's STAMP).
    stamp.touch()
    return venv


def run(version: str, only: list[str], lowest: bool = False) -> dict[str, int]:
    """Build the environment for ``version`` and run the chosen steps; their exit codes."""
    venv = build(version, lowest)
    (venv / ".installed").touch()  # newer than pyproject.toml: make must not reinstall
    codes: dict[str, int] = {}
    for step in only:
        targets = STEPS[step]
        print(f"\ncompat: {env_name(version, lowest)}: {step}", flush=True)
        if targets == []:
            codes[step] = 0  # built above
        elif targets is None:
            with tempfile.TemporaryDirectory(prefix="ef-compat-") as home:
                env = dict(os.environ, ENERGY_FLOWS_HOME=home)
                cmd = [str(venv / "bin" / "energy-flows"), "tour"]
                codes[step] = subprocess.run(cmd, env=env, cwd=ROOT).returncode
        else:
            cmd = ["make", "--no-print-directory", f"VENV={venv}", *targets]
            codes[step] = subprocess.run(cmd, cwd=ROOT).returncode
    return codes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.compat", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "versions",
        nargs="*",
        help="Prefect releases, e.g. 3.8.8 (default: oldest and newest supported)",
    )
    parser.add_argument(
        "--only", action="append", choices=sorted(STEPS), help="run only this step (repeatable)"
    )
    parser.add_argument(
        "--oldest", action="store_true", help="only the oldest release the declared range accepts"
    )
    parser.add_argument(
        "--lowest",
        action="store_true",
        help="the other requirements at their declared lower bounds "
        "(default: only for the oldest release, when no release is named)",
    )
    parser.add_argument(
        "--list", action="store_true", help="print the environments `make compat` runs and stop"
    )
    args = parser.parse_args(argv)
    versions = args.versions or oldest_and_newest()
    if args.oldest:
        versions = sorted(versions, key=Version)[:1]
    # Named releases get what was asked; the default pair spans the accepted range:
    # its oldest Prefect with the oldest libraries, its newest with the newest.
    oldest = min(versions, key=Version)
    lowest = {v: args.lowest or (not args.versions and v == oldest) for v in versions}
    if args.list:
        # One line per environment: the release, and --lowest where the rest are at their bounds.
        print("\n".join(f"{v} --lowest" if lowest[v] else v for v in versions))
        return 0
    only = args.only or ["tests", "nbval"]
    results = {env_name(v, lowest[v]): run(v, only, lowest[v]) for v in versions}
    print("\ncompat: results")
    for name, codes in results.items():
        print(
            f"  {name}: "
            + ", ".join(f"{s} {'pass' if c == 0 else f'FAIL ({c})'}" for s, c in codes.items())
        )
    return 0 if all(c == 0 for codes in results.values() for c in codes.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
