"""A folder of wheels for the pinned set, so the install tests run without downloading.

The install tests (``test_install_routes.py``, ``test_binder.py``) install the
whole tested set into fresh environments. pip's own cache does not help on
every machine (behind a registry proxy that answers ``Cache-Control: no-store``
pip caches nothing), and downloading the set takes minutes (about 220 MB, 140 s
on a 2-core machine). So the tests download it once into a wheelhouse and then
install from it: the same versions, from local files. The wheelhouse is also a
package index (``simple/<name>/index.html``, PEP 503), which pip reads faster
than a folder of 200 wheels (``--find-links`` scans every file for every package).

``ENERGY_FLOWS_WHEELHOUSE`` moves the folder (default: ``energy-flows-wheelhouse``
in the user's cache folder). Deleting it is safe; the next test run fills it again.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "constraints.txt"

#: What pip's build isolation needs to build this package (pyproject.toml's [build-system]).
BUILD_REQUIREMENT = "setuptools>=68"


def pins(path: Path) -> dict[str, str]:
    """``name == version`` lines of a requirements or constraints file, by canonical name."""
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"{path.name}: {line!r} is not pinned with =="
            found[canonicalize_name(name)] = version.strip()
    return found


def wheelhouse_dir() -> Path:
    configured = os.environ.get("ENERGY_FLOWS_WHEELHOUSE")
    if configured:
        return Path(configured).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "energy-flows-wheelhouse"


def _wheels(folder: Path) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for wheel in folder.glob("*.whl"):
        try:
            name, version, _build, _tags = parse_wheel_filename(wheel.name)
        except InvalidWheelFilename:
            continue
        found.setdefault(name, set()).add(str(version))
    return found


def ensure_wheelhouse() -> Path:
    """The wheelhouse, with a wheel of every pin and setuptools (downloaded when missing)."""
    folder = wheelhouse_dir()
    folder.mkdir(parents=True, exist_ok=True)
    # Tests run in parallel (pytest-xdist): one process fills the folder, the others wait.
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _fill(folder)


def _fill(folder: Path) -> Path:
    have = _wheels(folder)
    missing = [n for n, v in pins(CONSTRAINTS).items() if v not in have.get(n, set())]
    if missing or "setuptools" not in have:
        # A download from the registry, once; later runs find everything here.
        argv = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:"]
        argv += ["--dest", str(folder), "--requirement", str(CONSTRAINTS), BUILD_REQUIREMENT]
        subprocess.run(argv, check=True, timeout=900)
        have = _wheels(folder)
    _write_index(folder, have)
    return folder


def _write_index(folder: Path, wheels: dict[str, set[str]]) -> None:
    """``simple/<name>/index.html`` linking each project's wheels (PEP 503)."""
    by_name: dict[str, list[str]] = {}
    for wheel in folder.glob("*.whl"):
        try:
            by_name.setdefault(parse_wheel_filename(wheel.name)[0], []).append(wheel.name)
        except InvalidWheelFilename:
            continue
    for name, files in by_name.items():
        links = "".join(f'<a href="../../{f}">{f}</a><br>\n' for f in sorted(files))
        page = folder / "simple" / name / "index.html"
        page.parent.mkdir(parents=True, exist_ok=True)
        text = f"<!DOCTYPE html>\n<html><body>\n{links}</body></html>\n"
        if not page.exists() or page.read_text() != text:
            page.write_text(text)


def offline_pip_env(env: dict[str, str], folder: Path) -> dict[str, str]:
    """``env`` with pip reading only the wheelhouse: no other index, no config file, no cache."""
    clean = {k: v for k, v in env.items() if not k.startswith("PIP_")}
    return {
        **clean,
        "PIP_CONFIG_FILE": os.devnull,  # no machine-wide indexes, links or constraints
        "PIP_INDEX_URL": (folder / "simple").as_uri() + "/",
        "PIP_NO_CACHE_DIR": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
    }
