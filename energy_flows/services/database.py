"""A new home's Prefect database, copied from a migrated template instead of built.

Creating Prefect's database (its Alembic migrations) is most of a first
server start. The package builds it once per Prefect version, an empty
SQLite file in the user's cache (``ENERGY_FLOWS_CACHE``, else
``~/.cache/energy-flows``; ``make setup`` builds it), and copies it into each
new home. It is only a speed-up: without it the server migrates its own
database, and Prefect still checks the revision on start.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from energy_flows import settings
from energy_flows.errors import EnergyFlowsError
from energy_flows.services import process

#: Variables that point Prefect at another database (e.g. PostgreSQL): no template then.
DATABASE_URL_VARIABLES = (
    "PREFECT_API_DATABASE_CONNECTION_URL",
    "PREFECT_SERVER_DATABASE_CONNECTION_URL",
)


CANNOT_BUILD = (
    "... could not build it in {cache}. Nothing is lost: each new home builds its own "
    "database, as Prefect does, only slower. To fix this, set ENERGY_FLOWS_CACHE to a "
    "folder you can write, e.g. `export ENERGY_FLOWS_CACHE=/tmp/energy-flows-cache`."
)


#: Where the templates live (``$ENERGY_FLOWS_CACHE``, else the user's cache folder).
cache_dir = settings.cache_dir


def template_path() -> Path:
    """The template for the installed Prefect version (it may not exist yet)."""
    version = importlib.metadata.version("prefect")
    return cache_dir() / f"prefect-{version}-empty.db"


def home_database(home: str | os.PathLike[str] | None = None) -> Path:
    """The SQLite file a server for ``home`` uses (Prefect's default under ``PREFECT_HOME``)."""
    return settings.home_dir(home) / "prefect" / "prefect.db"


def revision(path: Path) -> str | None:
    """The Alembic revision stored in a Prefect database, or None if it has none."""
    try:
        # Read-only and immutable: reading never creates -wal or -shm files beside it.
        uri = f"file:{path}?mode=ro&immutable=1"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
            row = db.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row else None


def build_template(timeout: float = 300.0) -> Path | None:
    """Build the template with ``prefect server database upgrade``; return its path.

    Migrates in a scratch folder and moves the checked result into place in one
    step (two kernels at once both get a whole file); None, and nothing left, on failure.
    """
    target = template_path()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove_abandoned_builds(target.parent)
        scratch = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    except OSError:
        return None
    try:
        (scratch / "prefect").mkdir()
        env = settings.classroom_env(scratch)
        argv = [sys.executable, "-m", "energy_flows.services.launch", "prefect"]
        argv += ["server", "database", "upgrade", "-y"]
        code = process.run(argv, env, scratch / "build.log", timeout=timeout, cwd=scratch)
        built = scratch / "prefect" / "prefect.db"
        if code != 0:
            return None
        # One self-contained file (Prefect's WAL folded in), so a plain copy is a whole database.
        with contextlib.closing(sqlite3.connect(built)) as db:
            db.execute("PRAGMA journal_mode=DELETE")
        if revision(built) is None:
            return None
        os.replace(built, target)
        return target
    except (OSError, sqlite3.Error, subprocess.SubprocessError, EnergyFlowsError):
        return None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def ensure_template(say: Callable[[str], None] | None = None) -> Path | None:
    """The template, built first if it is missing or damaged; None if it cannot be built."""
    template = template_path()
    if revision(template) is not None:
        return template
    with contextlib.suppress(OSError):
        template.unlink()
    if say is not None:
        say("Preparing an empty Prefect database for new homes (once per Prefect version) ...")
    started = time.monotonic()
    built = build_template()
    if say is not None:
        if built is not None:
            say(f"... ready in {time.monotonic() - started:.1f} s; new homes now start from it.")
        else:
            say(CANNOT_BUILD.format(cache=cache_dir()))
    return built


def _remove_abandoned_builds(folder: Path, older_than: float = 900.0) -> None:
    """Scratch folders of builds whose process was killed."""
    for scratch in folder.glob(".build-*"):
        with contextlib.suppress(OSError):
            if time.time() - scratch.stat().st_mtime > older_than:
                shutil.rmtree(scratch, ignore_errors=True)


def seed_home(
    home: str | os.PathLike[str] | None = None, say: Callable[[str], None] | None = None
) -> bool:
    """Give a new home a copy of the template; True when it did.

    Nothing for a home that has a database, or when Prefect is pointed at
    another database; builds the template first if there is none (``say`` tells).
    """
    target = home_database(home)
    if target.exists() or any(os.environ.get(name) for name in DATABASE_URL_VARIABLES):
        return False
    template = ensure_template(say)
    if template is None:
        return False
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # The template never changes once in place, so a plain copy is safe.
        shutil.copyfile(template, partial)
        partial.chmod(0o600)  # the learner's database is private, like the rest of the home
        os.replace(partial, target)
    except OSError:
        with contextlib.suppress(OSError):
            partial.unlink()
        return False
    return True


def main() -> int:
    """``python -m energy_flows.services.database``: build the templates now (``make setup``).

    SQLite's, then PostgreSQL's when it is installed; only SQLite's, which the
    lessons need, decides the exit code.
    """
    from energy_flows.services import pgdata, postgres

    def say(line: str) -> None:
        print(line, file=sys.stderr)

    built = ensure_template(say=say)
    if built is None:
        return 1
    print(f"Prefect database template: {built}")
    try:
        pgdata.binaries()
    except EnergyFlowsError as exc:
        say(f"No PostgreSQL template: {exc}")
        return 0
    pg_template = postgres.ensure_template(say=say)
    if pg_template is not None:
        print(f"PostgreSQL template: {pg_template}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
